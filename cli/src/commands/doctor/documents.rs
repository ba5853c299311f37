//! Discovery and JWKS as each AWS verifier requires them (pure): the issuer, https, the
//! URL's length, the caching headers, the JWKS's size and members, and that it is the keyring's.

use kms_jwt::rotate::{DEFAULT_MAX_PUBLISHED_KEYS, MAX_JWKS_BYTES};
use kms_jwt::Keyring;
use serde_json::Value;

use super::{finding, Finding, Level};
use crate::commands::verify::Documents;

fn is_loopback(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]")
}

/// Discovery and JWKS as each AWS verifier requires them (pure).
pub fn check_documents(docs: &Documents, issuer: &str, ring: &Keyring) -> Vec<Finding> {
    let mut out = vec![check_issuer(docs, issuer)];
    out.extend(check_https(issuer, &docs.jwks_uri));
    out.extend(check_jwks_uri_length(&docs.jwks_uri));
    out.extend(check_headers(docs));
    let keys = docs.jwks_keys();
    out.extend(check_jwks_size(keys.len(), docs.jwks_text.len()));
    out.extend(check_jwk_members(&keys));
    out.push(check_served_keys(docs, ring));
    out
}

/// The discovery document names the issuer exactly as tokens carry it.
fn check_issuer(docs: &Documents, issuer: &str) -> Finding {
    let served_issuer = docs.discovery.get("issuer").and_then(Value::as_str).unwrap_or_default();
    if served_issuer == issuer {
        finding("discovery", Level::Ok, format!("{} names issuer {issuer}", docs.discovery_url), None)
    } else {
        finding("discovery", Level::Fail, format!("the discovery document names issuer {served_issuer:?}, not {issuer:?}: AWS verifiers compare them character for character"), Some("set ISSUER of the jwks and sign functions to the same value (the template's Issuer parameter)".into()))
    }
}

/// The issuer and the JWKS are served over https; loopback http passes with a warning.
fn check_https(issuer: &str, jwks_uri: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for (what, url) in [("issuer", issuer), ("jwks_uri", jwks_uri)] {
        if url.starts_with("https://") {
            out.push(finding("https", Level::Ok, format!("{what} {url} is https"), None));
        } else if is_loopback(url) {
            out.push(finding(
                "https",
                Level::Warn,
                format!(
                    "{what} {url} is plain http on loopback: fine locally, refused by every AWS verifier"
                ),
                None,
            ));
        } else {
            out.push(finding(
                "https",
                Level::Fail,
                format!("{what} {url} is not https: API Gateway and ALB fetch keys over https only"),
                Some(
                    "serve the jwks API under an https custom domain and set ISSUER (and JWKS_URI) to it"
                        .into(),
                ),
            ));
        }
    }
    out
}

/// ALB's limit on the JWKS URL.
fn check_jwks_uri_length(jwks_uri: &str) -> Option<Finding> {
    (jwks_uri.len() > 256).then(|| {
        finding(
            "jwks_uri",
            Level::Fail,
            format!("jwks_uri is {} characters; ALB accepts at most 256", jwks_uri.len()),
            Some("shorten the JWKS URL (JWKS_URI)".into()),
        )
    })
}

/// Both documents say how long to cache them and that they are JSON.
fn check_headers(docs: &Documents) -> Vec<Finding> {
    let mut out = Vec::new();
    for (what, headers) in [("discovery", &docs.discovery_headers), ("JWKS", &docs.jwks_headers)] {
        let cache = headers.get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if cache.contains("max-age") {
            out.push(finding("headers", Level::Ok, format!("{what}: Cache-Control {cache}"), None));
        } else {
            out.push(finding(
                "headers",
                Level::Warn,
                format!("{what} has no Cache-Control max-age: clients cannot know how long to keep it"),
                Some("serve it through the jwks function (a cache in front must keep its headers)".into()),
            ));
        }
        let kind = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !kind.contains("json") {
            out.push(finding(
                "headers",
                Level::Warn,
                format!("{what} Content-Type is {kind:?}, not JSON"),
                None,
            ));
        }
    }
    out
}

/// The JWKS within ALB's key count and the authorizers' size limit.
fn check_jwks_size(keys: usize, bytes: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    if keys > DEFAULT_MAX_PUBLISHED_KEYS {
        out.push(finding(
            "jwks",
            Level::Fail,
            format!("the JWKS holds {keys} keys; ALB accepts at most {DEFAULT_MAX_PUBLISHED_KEYS}"),
            Some(
                "lower MAX_PUBLISHED_KEYS to 10 (or revoke previous keys) if ALB verifies your tokens".into(),
            ),
        ));
    } else {
        out.push(finding(
            "jwks",
            Level::Ok,
            format!("{keys} keys, {bytes} bytes (limits {DEFAULT_MAX_PUBLISHED_KEYS} keys, {MAX_JWKS_BYTES} bytes)"),
            None,
        ));
    }
    if bytes > MAX_JWKS_BYTES {
        out.push(finding(
            "jwks",
            Level::Fail,
            format!("the JWKS is {bytes} bytes; the HTTP API authorizer and ALB accept {MAX_JWKS_BYTES}"),
            Some("lower MAX_PUBLISHED_KEYS".into()),
        ));
    }
    out
}

/// Every JWK carries the members verifiers select keys by.
fn check_jwk_members(keys: &[Value]) -> Vec<Finding> {
    keys.iter()
        .filter_map(|key| {
            let missing: Vec<&str> =
                ["kid", "kty", "alg", "use"].into_iter().filter(|m| key.get(m).is_none()).collect();
            (!missing.is_empty()).then(|| {
                finding(
                    "jwks",
                    Level::Fail,
                    format!("a JWK lacks {}", missing.join(", ")),
                    Some("serve the JWKS from the jwks function".into()),
                )
            })
        })
        .collect()
}

/// The served JWKS holds exactly the keyring's published keys.
fn check_served_keys(docs: &Documents, ring: &Keyring) -> Finding {
    let served: Vec<String> = docs.jwks_kids();
    let published: Vec<&str> = ring.keys.iter().map(|k| k.kid.as_str()).collect();
    let absent: Vec<&&str> = published.iter().filter(|k| !served.iter().any(|s| s == *k)).collect();
    let extra: Vec<&String> = served.iter().filter(|s| !published.contains(&s.as_str())).collect();
    if absent.is_empty() && extra.is_empty() {
        finding("jwks", Level::Ok, "the served JWKS is the keyring's", None)
    } else {
        finding("jwks", Level::Warn, format!("the served JWKS differs from the keyring (missing {absent:?}, extra {extra:?}): a cache serves an older keyring, or the jwks function reads another secret"), Some("wait KEYRING_CACHE_TTL + JWKS_MAX_AGE and check again; check KEYRING_SECRET_ID of the jwks function".into()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::commands::doctor::render;
    use crate::commands::status::tests::ring;
    use crate::render::Style;
    use serde_json::json;

    fn docs(issuer: &str, ring: &Keyring) -> Documents {
        let jwks = serde_json::to_value(ring.jwks()).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("cache-control", "public, max-age=300".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        Documents {
            discovery_url: format!("{issuer}/.well-known/openid-configuration"),
            discovery: json!({"issuer": issuer, "jwks_uri": format!("{issuer}/.well-known/jwks.json")}),
            discovery_headers: headers.clone(),
            jwks_uri: format!("{issuer}/.well-known/jwks.json"),
            jwks_text: jwks.to_string(),
            jwks,
            jwks_headers: headers,
        }
    }

    #[test]
    fn a_served_https_jwks_of_the_keyring_passes() {
        let ring = ring();
        let findings =
            check_documents(&docs("https://auth.example.com", &ring), "https://auth.example.com", &ring);
        assert!(findings.iter().all(|f| f.level == Level::Ok), "{findings:?}");
    }

    #[test]
    fn a_wrong_issuer_and_plain_http_fail_with_a_fix() {
        let ring = ring();
        let findings =
            check_documents(&docs("http://auth.example.com", &ring), "http://auth.example.com/", &ring);
        let fails: Vec<&Finding> = findings.iter().filter(|f| f.level == Level::Fail).collect();
        assert!(fails.iter().any(|f| f.check == "discovery"), "{findings:?}");
        assert!(fails.iter().any(|f| f.check == "https" && f.fix.is_some()), "{findings:?}");
        let text = render(&findings, Style::plain());
        assert!(text.contains("FAIL  https") && text.contains("fix: serve the jwks API"), "{text}");
    }
}
