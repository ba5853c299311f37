//! The deployment's own checks: rotate's timing, the other functions' settings against
//! rotate's, the served documents, every key in KMS in every region, and the alarms.

use std::collections::HashMap;

use kms_jwt::keyring::KeyRecord;
use kms_jwt::Keyring;
use serde_json::Value;

use super::documents::check_documents;
use super::{finding, Finding, Level};
use crate::commands::verify::fetch_documents;
use crate::commands::Deployment;
use crate::error::CliError;
use crate::render::duration;

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

/// Rotate's lifecycle timing, as it computed it from its settings.
pub fn rotate_timing(d: &Deployment) -> Finding {
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
pub async fn check_functions(
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
            &[
                "KEYRING_SECRET_ID",
                "JWKS_MAX_AGE",
                "JWKS_STALE_IF_ERROR",
                "KEYRING_CACHE_TTL",
                "KEYRING_MAX_STALENESS",
            ],
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
pub async fn check_discovery(d: &Deployment, ring: &Keyring) -> Vec<Finding> {
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
pub async fn check_key_states(d: &Deployment, key: &KeyRecord) -> Vec<Finding> {
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
pub async fn check_key_policies(d: &Deployment, key: &KeyRecord) -> Vec<Finding> {
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
pub async fn check_alarms(d: &Deployment) -> Vec<Finding> {
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
    use serde_json::json;

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
