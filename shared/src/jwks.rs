//! The jwks service: the JWK Set and OIDC discovery document, rendered once per keyring
//! version, and the HTTP semantics around them (caching headers, ETag/304, 404/405).
//!
//! Transport-neutral: the jwks function adapts API Gateway / function URL events to
//! [`respond`], so every HTTP rule here is unit-tested without Lambda.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cache::{CachePolicy, KeyringCache};
use crate::keyring::Keyring;
use crate::ports::KeyringStore;

/// Where the JWK Set is served, below the issuer; also the default `jwks_uri`.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Where the OIDC discovery document is served, below the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// `stale-while-revalidate` we advertise. It lengthens how old a client's JWKS may be, so
/// the rotate function's pre-publication time includes it.
pub const STALE_WHILE_REVALIDATE: Duration = Duration::from_secs(60);
/// `stale-if-error`: if this endpoint is down, clients may keep verifying with what they had.
pub const STALE_IF_ERROR: Duration = Duration::from_secs(86_400);

/// A rendered document and its strong validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The JSON document as served.
    pub body: String,
    /// Strong `ETag`: the quoted base64url of the first 16 bytes of the body's SHA-256.
    pub etag: String,
}

impl Rendered {
    fn new(body: String) -> Self {
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&Sha256::digest(body.as_bytes())[..16]));
        Rendered { body, etag }
    }
}

/// Everything the jwks function serves for one keyring version, rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKeys {
    /// False until rotate has bootstrapped the keyring: we answer 503 rather than let clients
    /// cache an empty key set.
    pub bootstrapped: bool,
    /// The JWK Set, served at [`JWKS_PATH`].
    pub jwks: Rendered,
    /// The discovery document, served at [`DISCOVERY_PATH`].
    pub discovery: Rendered,
}

impl PublishedKeys {
    /// Render both documents for `ring`, advertising the algorithms its keys use.
    pub fn render(site: &Site, ring: &Keyring) -> Self {
        let body = serde_json::to_string(&ring.jwks()).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned());
        let mut algs: Vec<String> = ring.keys.iter().map(|k| k.alg.to_string()).collect();
        algs.sort();
        algs.dedup();
        PublishedKeys {
            bootstrapped: !ring.is_empty(),
            jwks: Rendered::new(body),
            discovery: site.discovery(&algs),
        }
    }
}

/// Static settings of the HTTP surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    /// The JWK Set URL the discovery document gives.
    pub jwks_uri: String,
    /// The `max-age` of the served documents: how old a JWKS a verifier may use.
    pub max_age: Duration,
}

impl Site {
    /// Settings for `issuer`; `jwks_uri` defaults to the issuer followed by [`JWKS_PATH`].
    pub fn new(issuer: &str, jwks_uri: Option<&str>, max_age: Duration) -> Self {
        let issuer = issuer.trim_end_matches('/').to_owned();
        let jwks_uri = jwks_uri.map_or_else(|| format!("{issuer}{JWKS_PATH}"), str::to_owned);
        Site { issuer, jwks_uri, max_age }
    }

    /// OIDC Discovery 1.0 §3 metadata (required members), for the algorithms in use.
    pub fn discovery(&self, algs: &[String]) -> Rendered {
        Rendered::new(
            json!({
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri,
                "id_token_signing_alg_values_supported": algs,
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
            })
            .to_string(),
        )
    }

    fn cache_control(&self) -> String {
        format!(
            "public, max-age={}, stale-while-revalidate={}, stale-if-error={}",
            self.max_age.as_secs(),
            STALE_WHILE_REVALIDATE.as_secs(),
            STALE_IF_ERROR.as_secs()
        )
    }
}

/// A transport-neutral HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status: 200, 304, 404, 405 or 503.
    pub status: u16,
    /// Header names, in lower case, and their values.
    pub headers: Vec<(&'static str, String)>,
    /// The document, or an error object; empty for `HEAD` and 304.
    pub body: String,
}

impl Answer {
    /// The value of header `name` (compared case-insensitively), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn plain(status: u16, message: &str) -> Self {
        Answer {
            status,
            headers: vec![("content-type", "application/json".into()), ("cache-control", "no-store".into())],
            body: json!({ "error": message }).to_string(),
        }
    }
}

/// Which document a path names. API Gateway stages and custom-domain base paths put a prefix
/// before the well-known path, so the suffix is what counts.
fn route(path: &str) -> Option<&'static str> {
    [JWKS_PATH, DISCOVERY_PATH].into_iter().find(|p| path == *p || path.ends_with(p))
}

/// RFC 9110 §13.1.2: `If-None-Match` uses weak comparison and may list several tags or `*`.
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// Answer one request. `keys` is `None` when no keyring could be loaded at all.
pub fn respond(
    site: &Site,
    method: &str,
    path: &str,
    if_none_match: Option<&str>,
    keys: Option<&PublishedKeys>,
) -> Answer {
    let Some(route) = route(path) else {
        return Answer::plain(404, "not found");
    };
    let head = method.eq_ignore_ascii_case("HEAD");
    if !head && !method.eq_ignore_ascii_case("GET") {
        let mut answer = Answer::plain(405, "method not allowed");
        answer.headers.push(("allow", "GET, HEAD".into()));
        return answer;
    }
    let keys = match keys {
        Some(keys) if keys.bootstrapped => keys,
        _ => {
            let mut answer = Answer::plain(503, "signing keys are not available yet");
            answer.headers.push(("retry-after", "30".into()));
            return answer;
        }
    };
    let doc = if route == JWKS_PATH { &keys.jwks } else { &keys.discovery };
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("cache-control", site.cache_control()),
        ("etag", doc.etag.clone()),
        ("access-control-allow-origin", "*".to_owned()),
    ];
    if if_none_match.is_some_and(|inm| matches_etag(inm, &doc.etag)) {
        headers.retain(|(n, _)| *n != "content-type");
        return Answer { status: 304, headers, body: String::new() };
    }
    headers.push(("content-length", doc.body.len().to_string()));
    Answer { status: 200, headers, body: if head { String::new() } else { doc.body.clone() } }
}

/// What the jwks function runs per container: the site, and the keyring cache holding the
/// rendered documents (with stale-if-error, so a Secrets Manager outage does not take the
/// JWKS down).
pub struct JwksService<S> {
    site: Site,
    keys: KeyringCache<S, PublishedKeys>,
}

impl<S: KeyringStore> JwksService<S> {
    /// Serve `site` from the keyring in `store`, cached as `policy` says.
    pub fn new(store: S, site: Site, policy: CachePolicy) -> Self {
        let render_site = site.clone();
        // Rendered once per keyring version: warm requests serialize nothing.
        let keys = KeyringCache::new(store, policy, move |ring| PublishedKeys::render(&render_site, ring));
        JwksService { site, keys }
    }

    /// Answer one HTTP request. A keyring that cannot be read (and no good copy cached) is a
    /// 503, never an empty key set.
    pub async fn answer(&self, method: &str, path: &str, if_none_match: Option<&str>) -> Answer {
        let keys = match self.keys.get().await {
            Ok(keys) => Some(keys),
            Err(e) => {
                tracing::error!(error = %e, "no keyring to serve");
                None
            }
        };
        respond(&self.site, method, path, if_none_match, keys.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;
    use crate::SigningAlg;

    fn site() -> Site {
        Site::new("https://auth.example.com/", None, Duration::from_secs(300))
    }

    fn keys() -> PublishedKeys {
        PublishedKeys::render(&site(), &Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 0))
    }

    #[test]
    fn jwks_is_served_with_caching_headers_and_304() {
        let keys = keys();
        let a = respond(&site(), "GET", JWKS_PATH, None, Some(&keys));
        assert_eq!(a.status, 200);
        assert_eq!(
            a.header("cache-control"),
            Some("public, max-age=300, stale-while-revalidate=60, stale-if-error=86400")
        );
        assert_eq!(a.header("access-control-allow-origin"), Some("*"));
        let etag = a.header("etag").unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["keys"].as_array().unwrap().len(), 2);

        let b = respond(&site(), "GET", JWKS_PATH, Some(&format!("\"x\", W/{etag}")), Some(&keys));
        assert_eq!(b.status, 304);
        assert!(b.body.is_empty());
        assert_eq!(respond(&site(), "GET", JWKS_PATH, Some("\"other\""), Some(&keys)).status, 200);

        let head = respond(&site(), "HEAD", "/prod/.well-known/jwks.json", None, Some(&keys));
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), Some(a.body.len().to_string().as_str()));
    }

    #[test]
    fn discovery_document_points_at_the_jwks() {
        let a = respond(&site(), "GET", DISCOVERY_PATH, None, Some(&keys()));
        let doc: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(doc["issuer"], "https://auth.example.com");
        assert_eq!(doc["jwks_uri"], "https://auth.example.com/.well-known/jwks.json");
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["ES256"]));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
    }

    /// What API Gateway's JWT authorizers and ALB read: a discovery document whose `issuer` is
    /// the configured one and whose `jwks_uri` is an absolute https URL; a `kid` (and `kty`,
    /// `alg`, `use`) on every key; and the largest JWKS rotation allows (10 RSA-4096 keys)
    /// well under the 150,000 bytes the HTTP API authorizer and ALB accept.
    #[test]
    fn discovery_and_jwks_carry_what_aws_jwt_authorizers_read() {
        use crate::jose::jwk::PublicJwk;
        let site = Site::new("https://auth.example.com", None, Duration::from_secs(300));
        let rsa_4096 = |seed: u8| {
            let mut key = new_key(seed, 0);
            key.public_jwk = PublicJwk::Rsa {
                n: URL_SAFE_NO_PAD.encode([seed | 0x80; 512]),
                e: URL_SAFE_NO_PAD.encode([1, 0, 1]),
            };
            key.kid = key.public_jwk.thumbprint();
            key.alg = SigningAlg::RS512;
            key
        };
        let mut ring = Keyring::empty().bootstrap(rsa_4096(1), rsa_4096(2), 0);
        for seed in 3..=10 {
            ring = ring.rotate(rsa_4096(seed), i64::from(seed));
        }
        assert_eq!(ring.keys.len(), 10);
        let keys = PublishedKeys::render(&site, &ring);
        let doc: serde_json::Value = serde_json::from_str(&keys.discovery.body).unwrap();
        assert_eq!(doc["issuer"], "https://auth.example.com");
        let jwks_uri = doc["jwks_uri"].as_str().unwrap();
        assert_eq!(crate::config::check_verifier_url(jwks_uri), Ok(()), "{jwks_uri}");
        let jwks: serde_json::Value = serde_json::from_str(&keys.jwks.body).unwrap();
        for key in jwks["keys"].as_array().unwrap() {
            for member in ["kid", "kty", "alg", "use"] {
                assert!(key[member].is_string(), "{member} missing: {key}");
            }
        }
        assert!(keys.jwks.body.len() < 10_000, "{} bytes", keys.jwks.body.len());
        assert!(keys.jwks.body.len() * 15 < crate::rotate::MAX_JWKS_BYTES);
    }

    /// Odd paths, methods and headers: every answer is a deliberate 2xx/3xx/4xx/503.
    #[test]
    fn bad_input_matrix_never_answers_500() {
        let keys = keys();
        let paths = [
            "",
            "/",
            "//",
            "/.well-known",
            "/.well-known/",
            "/.WELL-KNOWN/JWKS.JSON",
            "/.well-known/jwks.json?x=1",
            "/.well-known/jwks.json%00",
            "/../.well-known/jwks.json",
            "/.well-known/jwks.json/..",
            "/é/ü",
            "\\",
            &"/a".repeat(10_000),
        ];
        let methods = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "get", "",
            "FOO BAR",
        ];
        let conditions = [None, Some(""), Some("*"), Some("W/"), Some("\"\""), Some(",,,"), Some("\u{0}")];
        for path in paths {
            for method in methods {
                for inm in conditions {
                    for ks in [Some(&keys), None] {
                        let a = respond(&site(), method, path, inm, ks);
                        assert!(
                            matches!(a.status, 200 | 304 | 404 | 405 | 503),
                            "{method} {path:.40} -> {}",
                            a.status
                        );
                        assert!(!a.body.contains("panicked"));
                    }
                }
            }
        }
    }

    #[test]
    fn errors_are_clean() {
        let keys = keys();
        assert_eq!(respond(&site(), "GET", "/", None, Some(&keys)).status, 404);
        assert_eq!(respond(&site(), "GET", "/.well-known/jwks.json/x", None, Some(&keys)).status, 404);
        let post = respond(&site(), "POST", JWKS_PATH, None, Some(&keys));
        assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
        let cold = respond(&site(), "GET", JWKS_PATH, None, None);
        assert_eq!((cold.status, cold.header("retry-after")), (503, Some("30")));
        let empty = PublishedKeys::render(&site(), &Keyring::empty());
        assert_eq!(respond(&site(), "GET", JWKS_PATH, None, Some(&empty)).status, 503);
    }
}
