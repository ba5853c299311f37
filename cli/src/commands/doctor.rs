//! `kms-jwt doctor`: check a deployment end to end and print each finding with its fix:
//! discovery and JWKS as AWS's verifiers require them, the functions' settings consistent
//! with rotate's (pre-publication and retirement are computed from them), every key enabled in
//! KMS in every region, each key's policy equal to what rotate writes today, the alarms.

use std::collections::HashMap;
use std::fmt::Write as _;

use kms_jwt::keyring::KeyRecord;
use kms_jwt::rotate::{DEFAULT_MAX_PUBLISHED_KEYS, MAX_JWKS_BYTES};
use kms_jwt::Keyring;
use serde::Serialize;
use serde_json::Value;

use super::verify::{fetch_documents, Documents};
use super::{emit, Deployment};
use crate::error::{CliError, Outcome};
use crate::render::{duration, Style, Tone};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn finding(check: &'static str, level: Level, message: impl Into<String>, fix: Option<String>) -> Finding {
    Finding { check, level, message: message.into(), fix }
}

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

/// Settings other functions share with rotate (pure): each must be the same value.
pub fn check_shared_settings(
    function: &str,
    theirs: &HashMap<String, String>,
    rotate: &HashMap<String, String>,
    names: &[&str],
) -> Vec<Finding> {
    names
        .iter()
        .map(|name| {
            let (a, b) = (theirs.get(*name), rotate.get(*name));
            if a == b {
                finding("configuration", Level::Ok, format!("{function}: {name} = rotate's ({})", a.map_or("default", String::as_str)), None)
            } else {
                finding(
                    "configuration",
                    Level::Fail,
                    format!("{function}: {name} is {a:?}, rotate has {b:?}: rotate's pre-publication and retirement are computed from rotate's value, so a verifier may see a key too late or a token outlive its key"),
                    Some(format!("set {name} to one value for all functions (the template sets it once)")),
                )
            }
        })
        .collect()
}

/// A key's policy against the one rotate writes today (pure): JSON-equal or drifted.
pub fn check_policy(kid: &str, region: &str, actual: &str, expected: &Value) -> Finding {
    match serde_json::from_str::<Value>(actual) {
        Ok(actual) if &actual == expected => finding("key policy", Level::Ok, format!("{kid} ({region}): the policy rotate writes"), None),
        Ok(_) => finding(
            "key policy",
            Level::Fail,
            format!("{kid} ({region}): the key policy differs from what rotate writes today (drift)"),
            Some("as a key-policy administrator, put the current policy on it: docs/runbook.md, \"Putting the current key policy on existing keys\"".into()),
        ),
        Err(e) => finding("key policy", Level::Fail, format!("{kid} ({region}): the key policy is not JSON: {e}"), None),
    }
}

pub fn render(findings: &[Finding], style: Style) -> String {
    let mut out = String::new();
    for f in findings {
        let mark = match f.level {
            Level::Ok => style.paint(Tone::Good, "ok  "),
            Level::Warn => style.paint(Tone::Warn, "warn"),
            Level::Fail => style.paint(Tone::Bad, "FAIL"),
        };
        let _ = writeln!(out, "{mark}  {:<13} {}", f.check, f.message);
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "      {:<13} fix: {fix}", "");
        }
    }
    let fails = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warns = findings.iter().filter(|f| f.level == Level::Warn).count();
    let _ = writeln!(out, "\n{} checks: {fails} failed, {warns} warnings", findings.len());
    out
}

pub async fn run(
    d: &Deployment,
    jwks_function: Option<&str>,
    sign_function: Option<&str>,
    json: bool,
    style: Style,
) -> Result<Outcome, CliError> {
    let mut findings = vec![rotate_timing(d)];
    findings.extend(check_functions(d, jwks_function, sign_function).await?);
    let loaded = d.keyring().await?;
    let ring = &loaded.ring;
    if loaded.version.is_none() {
        findings.push(finding(
            "keyring",
            Level::Fail,
            format!("keyring secret {} has no keyring", d.config.keyring_secret_id),
            Some("run `kms-jwt rotate` to bootstrap it".into()),
        ));
    }
    findings.extend(check_discovery(d, ring).await);
    for key in &ring.keys {
        findings.extend(check_key_states(d, key).await);
        findings.extend(check_key_policies(d, key).await);
    }
    findings.extend(check_alarms(d).await);
    emit(json, &findings, |style| render(&findings, style), style)?;
    Ok(if findings.iter().any(|f| f.level == Level::Fail) { Outcome::NeedsAttention } else { Outcome::Fine })
}

/// Rotate's lifecycle timing, as it computed it from its settings.
fn rotate_timing(d: &Deployment) -> Finding {
    finding(
        "configuration",
        Level::Ok,
        format!(
            "rotate: pre-publication {} and retirement grace {} within the rotation period {}",
            duration(d.policy.prepublication),
            duration(d.policy.retirement_grace),
            duration(d.policy.rotation_period)
        ),
        None,
    )
}

/// The jwks and sign functions' settings against rotate's, when they are named.
async fn check_functions(
    d: &Deployment,
    jwks_function: Option<&str>,
    sign_function: Option<&str>,
) -> Result<Vec<Finding>, CliError> {
    if jwks_function.is_none() && sign_function.is_none() {
        return Ok(vec![finding(
            "configuration",
            Level::Warn,
            "the jwks and sign functions' settings were not compared with rotate's",
            Some("pass --jwks-function and --sign-function".into()),
        )]);
    }
    // Without --function-name, rotate's settings are this process's (--config-from-env).
    let rotate_env = match d.function.as_deref() {
        Some(f) => d.aws.function_environment(f).await?,
        None => std::env::vars().collect(),
    };
    let mut findings = Vec::new();
    if let Some(f) = jwks_function {
        let env = d.aws.function_environment(f).await?;
        findings.extend(check_shared_settings(
            f,
            &env,
            &rotate_env,
            &["KEYRING_SECRET_ID", "JWKS_MAX_AGE", "KEYRING_CACHE_TTL", "KEYRING_MAX_STALENESS"],
        ));
    }
    if let Some(f) = sign_function {
        let env = d.aws.function_environment(f).await?;
        findings.extend(check_shared_settings(
            f,
            &env,
            &rotate_env,
            &["KEYRING_SECRET_ID", "MAX_TOKEN_TTL", "KEYRING_CACHE_TTL"],
        ));
    }
    Ok(findings)
}

/// Discovery and JWKS as served at the issuer, when it is known.
async fn check_discovery(d: &Deployment, ring: &Keyring) -> Vec<Finding> {
    let Some(issuer) = &d.issuer else {
        return vec![finding(
            "discovery",
            Level::Warn,
            "discovery and JWKS not checked",
            Some("pass --issuer".into()),
        )];
    };
    match fetch_documents(issuer).await {
        Ok(docs) => check_documents(&docs, issuer, ring),
        Err(e) => vec![finding(
            "discovery",
            Level::Fail,
            e.to_string(),
            Some("check the issuer URL, the jwks function and its API route".into()),
        )],
    }
}

/// A key enabled in KMS in every region, or how to fix it.
async fn check_key_states(d: &Deployment, key: &KeyRecord) -> Vec<Finding> {
    let mut findings = Vec::new();
    for region in &d.regions() {
        let state = d.aws.key_state(&key.kms_key_arn, region).await;
        if state.enabled() {
            findings.push(finding("kms", Level::Ok, format!("{} ({region}): Enabled", key.kid), None));
        } else {
            findings.push(finding(
                "kms",
                Level::Fail,
                format!(
                    "{} ({} key) is {} in {region}{}",
                    key.kid,
                    format!("{:?}", key.state).to_lowercase(),
                    state.state,
                    state.detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
                Some(format!(
                    "if it was disabled by mistake: `aws kms enable-key --key-id {} --region {region}`; if it is compromised: `kms-jwt revoke {}`",
                    kms_jwt::arn::local_key_arn(&key.kms_key_arn, Some(region)),
                    key.kid
                )),
            ));
        }
    }
    findings
}

/// A key's policy in every region against what rotate writes, when rotate's key access is known.
async fn check_key_policies(d: &Deployment, key: &KeyRecord) -> Vec<Finding> {
    let Some(access) = &d.config.key_access else {
        return Vec::new();
    };
    let expected = access.policy(key.alg);
    let mut findings = Vec::new();
    for region in &d.regions() {
        match d.aws.key_policy(&key.kms_key_arn, region).await {
            Ok(actual) => findings.push(check_policy(&key.kid, region, &actual, &expected)),
            Err(e) => findings.push(finding("key policy", Level::Fail, e.to_string(), None)),
        }
    }
    findings
}

/// An alarm on each metric the template alarms on: stalled rotation, backlog, rotate's errors.
async fn check_alarms(d: &Deployment) -> Vec<Finding> {
    let keyring_dim = ("Keyring", d.config.keyring_secret_id.as_str());
    let mut alarms = vec![
        ("kms-jwt", "CurrentKeyAgeSeconds", keyring_dim, "stalled rotation"),
        ("kms-jwt", "RetiringKeys", keyring_dim, "retirement backlog"),
    ];
    if let Some(f) = d.function.as_deref() {
        alarms.push(("AWS/Lambda", "Errors", ("FunctionName", f), "rotate errors"));
    }
    let mut findings = Vec::new();
    for (namespace, metric, dim, what) in alarms {
        match d.aws.alarms_for(namespace, metric, dim).await {
            Ok(names) if !names.is_empty() => findings.push(finding("alarms", Level::Ok, format!("{what}: {}", names.join(", ")), None)),
            Ok(_) => findings.push(finding("alarms", Level::Fail, format!("no alarm on {namespace} {metric} ({}={}): a {what} would go unnoticed", dim.0, dim.1), Some("deploy infra/template.yaml's alarms (StalledRotationAlarm, RetirementBacklogAlarm, RotateErrorsAlarm), home region".into()))),
            Err(e) => findings.push(finding("alarms", Level::Warn, e.to_string(), None)),
        }
    }
    findings
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::commands::status::tests::ring;
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

    #[test]
    fn policies_compare_as_json_and_settings_as_values() {
        let expected = json!({"Version": "2012-10-17", "Statement": []});
        assert_eq!(
            check_policy("k", "r", r#"{ "Statement": [], "Version": "2012-10-17" }"#, &expected).level,
            Level::Ok
        );
        let drift =
            check_policy("k", "r", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow"}]}"#, &expected);
        assert_eq!(drift.level, Level::Fail);
        assert!(drift.message.contains("drift"));
        let rotate: HashMap<String, String> = [("JWKS_MAX_AGE".to_owned(), "300".to_owned())].into();
        let jwks: HashMap<String, String> = [("JWKS_MAX_AGE".to_owned(), "600".to_owned())].into();
        assert_eq!(check_shared_settings("jwks", &jwks, &rotate, &["JWKS_MAX_AGE"])[0].level, Level::Fail);
        assert_eq!(check_shared_settings("jwks", &rotate, &rotate, &["JWKS_MAX_AGE"])[0].level, Level::Ok);
    }
}
