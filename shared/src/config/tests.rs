//! Configuration parsing and the checks that refuse unsafe settings.

use super::*;
use std::collections::HashMap;

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

const ROLES: [(&str, &str); 2] = [
    ("KEY_ADMIN_ROLE_ARN", "arn:aws:iam::123456789012:role/rotate"),
    ("KEY_USER_ROLE_ARNS", "arn:aws:iam::123456789012:role/sign, arn:aws:iam::123456789012:role/sign2"),
];

/// A rotate environment: the roles plus `pairs`.
fn rotate_env(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    let mut all = ROLES.to_vec();
    all.extend_from_slice(pairs);
    lookup(&all)
}

#[test]
fn defaults_apply_and_durations_parse() {
    let c = RotateConfig::from_lookup(rotate_env(&[("KEYRING_SECRET_ID", "kr"), ("ROTATION_PERIOD", "7d")]))
        .unwrap();
    // RS256 is the one algorithm every AWS verifier accepts (API Gateway HTTP API JWT
    // authorizers and ALB take RSA only).
    assert_eq!(c.signing_alg, SigningAlg::RS256);
    assert_eq!(c.rotation_period, Duration::from_secs(7 * 86_400));
    assert_eq!(c.deletion_window_days, 30);
    assert_eq!(
        c.prepublication(),
        Duration::from_secs(300 + 900 + 60 + 3_600 + 60),
        "max-age + the longer of stale-while-revalidate and stale-if-error + cache TTL + jwks max staleness + clock skew"
    );
    assert_eq!(c.key_discovery, KeyDiscoveryMode::TaggingApi);
    assert_eq!(c.aws_timeouts, CallTimeouts::default());
    let policy = c.key_access.unwrap().policy(SigningAlg::ES256).to_string();
    assert!(policy.contains("role/sign2"), "{policy}");
    let c = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("MAX_TOKEN_TTL", "900"),
        ("KEYRING_MAX_STALENESS", "0"),
        ("KEY_DISCOVERY", "list-keys"),
        ("AWS_CALL_ATTEMPT_TIMEOUT", "1"),
        ("AWS_CALL_TIMEOUT", "3s"),
    ]))
    .unwrap();
    assert_eq!(c.max_token_ttl, Duration::from_secs(900));
    assert_eq!(c.prepublication(), Duration::from_secs(300 + 900 + 60 + 60));
    assert_eq!(c.key_discovery, KeyDiscoveryMode::ListKeys);
    assert_eq!(
        c.aws_timeouts,
        CallTimeouts { attempt: Duration::from_secs(1), total: Duration::from_secs(3) }
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = RotateConfig::from_lookup(lookup(&[
        ("SIGNING_ALG", "HS256"),
        ("ROTATION_PERIOD", "soon"),
        ("KEY_DELETION_WINDOW_DAYS", "3"),
    ]))
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 6, "{text}");
    for needle in [
        "KEYRING_SECRET_ID",
        "SIGNING_ALG",
        "ROTATION_PERIOD",
        "KEY_DELETION_WINDOW_DAYS",
        "KEY_ADMIN_ROLE_ARN",
        "KEY_USER_ROLE_ARNS",
    ] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
}

#[test]
fn key_roles_and_timeouts_are_validated() {
    let err = RotateConfig::from_lookup(lookup(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("KEY_ADMIN_ROLE_ARN", "arn:aws:iam::123456789012:user/alice"),
        ("KEY_USER_ROLE_ARNS", "arn:aws:iam::123456789012:role/sign"),
        ("KEY_DISCOVERY", "scan"),
        ("AWS_CALL_ATTEMPT_TIMEOUT", "10s"),
        ("AWS_CALL_TIMEOUT", "5s"),
    ]))
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 3, "{text}");
    for needle in ["not an IAM role ARN", "KEY_DISCOVERY", "AWS_CALL_ATTEMPT_TIMEOUT is longer"] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
}

#[test]
fn issuer_and_jwks_uri_are_urls_aws_verifiers_accept() {
    for good in [
        "https://auth.example.com",
        "https://auth.example.com/tenant-a",
        "http://127.0.0.1:9000/lambda-url/jwks",
        "http://localhost:9000",
        "http://[::1]:9000",
    ] {
        assert_eq!(check_verifier_url(good), Ok(()), "{good}");
    }
    for (bad, why) in [
        ("auth.example.com", "absolute URL"),
        ("http://auth.example.com", "must be https"),
        ("ftp://auth.example.com", "must be https"),
        ("https://auth.example.com/", "slash"),
        ("https://auth.example.com/t/", "slash"),
        ("https://auth.example.com?tenant=a", "query"),
        ("https://auth.example.com#a", "fragment"),
        ("https://user:pw@auth.example.com", "credentials"),
    ] {
        let err = check_verifier_url(bad).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
    let long = format!("https://auth.example.com/{}", "a".repeat(240));
    assert!(check_verifier_url(&long).unwrap_err().contains("256"));
    let err = JwksConfig::from_lookup(lookup(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("ISSUER", "https://auth.example.com/"),
        ("JWKS_URI", "http://keys.example.com/jwks.json"),
    ]))
    .unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    let err = SignConfig::from_lookup(lookup(&[("KEYRING_SECRET_ID", "kr")])).unwrap_err();
    assert_eq!(err.problems, vec!["ISSUER is required".to_string()]);
}

#[test]
fn replica_regions_are_optional_and_checked() {
    let single = RotateConfig::from_lookup(rotate_env(&[("KEYRING_SECRET_ID", "kr")])).unwrap();
    assert!(!single.is_multi_region());
    let multi = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("AWS_REGION", "us-east-1"),
        ("REPLICA_REGIONS", "eu-west-1, ap-southeast-2"),
    ]))
    .unwrap();
    assert_eq!(multi.replica_regions, ["eu-west-1", "ap-southeast-2"]);
    for (regions, problem) in [
        ("eu-west-1,eu-west-1", "names eu-west-1 twice"),
        ("us-east-1", "includes the home region us-east-1"),
        ("EU-WEST-1", "is not a region name"),
        ("eu-west", "is not a region name"),
    ] {
        let err = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("AWS_REGION", "us-east-1"),
            ("REPLICA_REGIONS", regions),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(problem), "{regions}: {err}");
    }
    let err = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("REPLICA_REGIONS", "eu-west-1"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("need AWS_REGION"), "{err}");
    // A home region alone (a two-region deployment after a fail-over) is multi-region too.
    let home_only = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("AWS_REGION", "eu-west-1"),
        ("HOME_REGION", "eu-west-1"),
    ]))
    .unwrap();
    assert!(home_only.is_multi_region());
}

#[test]
fn the_published_key_cap_defaults_to_albs_and_must_leave_room_for_scheduled_rotation() {
    let c = RotateConfig::from_lookup(rotate_env(&[("KEYRING_SECRET_ID", "kr")])).unwrap();
    assert_eq!(c.max_published_keys, 10);
    assert_eq!(c.keys_published_by_schedule(), 3, "next, current, one previous");
    // Daily rotation with day-long tokens: the grace (1d + 2m) spans two periods, so two
    // previous keys are published at once.
    let day = rotate_env(&[("KEYRING_SECRET_ID", "kr"), ("ROTATION_PERIOD", "1d"), ("MAX_TOKEN_TTL", "1d")]);
    let c = RotateConfig::from_lookup(day).unwrap();
    assert_eq!(c.keys_published_by_schedule(), 4, "grace = 1d + 2m spans two rotation periods");
    for (value, problem) in [("2", "from 3 to 100"), ("101", "from 3 to 100"), ("ten", "from 3 to 100")] {
        let err = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("MAX_PUBLISHED_KEYS", value),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(problem), "{value}: {err}");
    }
    let err = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("ROTATION_PERIOD", "1d"),
        ("MAX_TOKEN_TTL", "1d"),
        ("MAX_PUBLISHED_KEYS", "3"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("below the 4 keys scheduled rotation publishes"), "{err}");
}

#[test]
fn settings_that_break_verifiers_are_refused() {
    let err = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("ROTATION_PERIOD", "30m"),
        ("MAX_TOKEN_TTL", "1h"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("shorter than MAX_TOKEN_TTL"), "{err}");
    let err = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("ROTATION_PERIOD", "1h"),
        ("MAX_TOKEN_TTL", "5m"),
        ("JWKS_MAX_AGE", "2h"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("pre-publication"), "{err}");
    // The jwks function's stale window counts: a key must not sign while a jwks container
    // may still serve a keyring without it.
    let err = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("ROTATION_PERIOD", "2h"),
        ("MAX_TOKEN_TTL", "5m"),
        ("KEYRING_MAX_STALENESS", "3h"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("KEYRING_MAX_STALENESS"), "{err}");
    // So does stale-if-error: a verifier riding on it keeps an older set.
    let err = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("ROTATION_PERIOD", "2h"),
        ("MAX_TOKEN_TTL", "5m"),
        ("KEYRING_MAX_STALENESS", "0"),
        ("JWKS_STALE_IF_ERROR", "2h"),
    ]))
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "(2h 7m = JWKS_MAX_AGE + 2h (the longer of 60s stale-while-revalidate and JWKS_STALE_IF_ERROR)"
        ),
        "{err}"
    );
}

/// JWKS_STALE_IF_ERROR: 15 minutes unless set, zero allowed (stale-while-revalidate then
/// bounds the stale window), never more than a day; rotate and jwks read it alike.
#[test]
fn stale_if_error_is_bounded_and_counts_in_pre_publication() {
    let jwks = |pairs: &[(&'static str, &'static str)]| {
        let mut all = vec![("KEYRING_SECRET_ID", "kr"), ("ISSUER", "https://auth.example.com")];
        all.extend_from_slice(pairs);
        JwksConfig::from_lookup(lookup(&all))
    };
    let c = jwks(&[]).unwrap();
    assert_eq!(
        (c.stale_if_error, c.rotation_period),
        (Duration::from_secs(900), Duration::from_secs(30 * 86_400))
    );
    let c = jwks(&[("JWKS_STALE_IF_ERROR", "0"), ("ROTATION_PERIOD", "7d")]).unwrap();
    assert_eq!((c.stale_if_error, c.rotation_period), (Duration::ZERO, Duration::from_secs(7 * 86_400)));
    let err = jwks(&[("JWKS_STALE_IF_ERROR", "2d")]).unwrap_err();
    assert!(err.to_string().contains("JWKS_STALE_IF_ERROR (2days) is longer than 1day"), "{err}");
    assert!(jwks(&[("JWKS_STALE_IF_ERROR", "1d")]).is_ok());

    let rotate = |sie: &'static str| {
        RotateConfig::from_lookup(rotate_env(&[("KEYRING_SECRET_ID", "kr"), ("JWKS_STALE_IF_ERROR", sie)]))
    };
    assert_eq!(rotate("0").unwrap().prepublication(), Duration::from_secs(300 + 60 + 60 + 3_600 + 60));
    assert_eq!(rotate("1h").unwrap().prepublication(), Duration::from_secs(300 + 3_600 + 60 + 3_600 + 60));
    assert!(rotate("25h").unwrap_err().to_string().contains("JWKS_STALE_IF_ERROR"));
}

#[test]
fn new_algorithms_are_accepted_and_key_spec_must_match() {
    for (alg, spec) in [
        ("ES256K", "ECC_SECG_P256K1"),
        ("EdDSA", "ECC_NIST_EDWARDS25519"),
        ("Ed25519", "ECC_NIST_EDWARDS25519"),
        ("ML-DSA-44", "ML_DSA_44"),
        ("ML-DSA-65", "ML_DSA_65"),
        ("ML-DSA-87", "ML_DSA_87"),
    ] {
        let c = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("SIGNING_ALG", alg),
            ("KEY_SPEC", spec),
        ]))
        .unwrap();
        assert_eq!((c.signing_alg.as_str(), c.signing_alg.kms_key_spec()), (alg, spec));
    }
    for (alg, spec, problem) in [
        ("EdDSA", "ECC_NIST_P256", "KEY_SPEC ECC_NIST_P256 does not match SIGNING_ALG EdDSA (which needs ECC_NIST_EDWARDS25519); ECC_NIST_P256 keys sign ES256"),
        ("ML-DSA-65", "ML_DSA_44", "ML_DSA_44 keys sign ML-DSA-44"),
        ("ES256K", "ECC_NIST_P256", "which needs ECC_SECG_P256K1"),
        ("RS256", "RSA_3072", "RSA_3072 keys sign RS384 or PS384"),
        ("ES256", "SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT keys sign no JWS algorithm"),
    ] {
        let err = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("SIGNING_ALG", alg),
            ("KEY_SPEC", spec),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(problem), "{alg}/{spec}: {err}");
    }
    let err =
        RotateConfig::from_lookup(rotate_env(&[("KEYRING_SECRET_ID", "kr"), ("SIGNING_ALG", "ML-DSA-42")]))
            .unwrap_err();
    assert!(err.to_string().contains("ML-DSA-44, ML-DSA-65, ML-DSA-87"), "{err}");
}

#[test]
fn sign_and_jwks_need_an_issuer() {
    let err = SignConfig::from_lookup(lookup(&[("KEYRING_SECRET_ID", "kr")])).unwrap_err();
    assert_eq!(err.problems, vec!["ISSUER is required".to_string()]);
    let err = JwksConfig::from_lookup(lookup(&[])).unwrap_err();
    assert_eq!(err.problems.len(), 2);
    let c = SignConfig::from_lookup(lookup(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("ISSUER", "https://i"),
        ("MAX_TOKEN_TTL", "5m"),
    ]))
    .unwrap();
    assert_eq!(c.default_token_ttl, Duration::from_secs(300), "default TTL is capped by the maximum");
}

#[test]
fn the_minting_policy_and_transport_are_read_and_checked() {
    let base = [("KEYRING_SECRET_ID", "kr"), ("ISSUER", "https://i")];
    let c = SignConfig::from_lookup(lookup(&base)).unwrap();
    assert_eq!((c.minting_policy, c.transport), (None, crate::config::SignTransport::Direct));
    let policy = crate::minting::ALLOW_ALL_POLICY;
    let c = SignConfig::from_lookup(lookup(&[
        base[0],
        base[1],
        ("MINTING_POLICY", policy),
        ("SIGN_TRANSPORT", "api-gateway"),
    ]))
    .unwrap();
    assert_eq!(c.minting_policy, Some(crate::minting::parse_policy(policy).unwrap()));
    assert_eq!(c.transport, crate::config::SignTransport::ApiGateway);
    let bad =
        r#"{"version": 2, "rules": [{"id": "", "callers": [], "subject": "caller", "max_ttl_seconds": 1}]}"#;
    let err = SignConfig::from_lookup(lookup(&[
        base[0],
        base[1],
        ("MINTING_POLICY", bad),
        ("SIGN_TRANSPORT", "both"),
    ]))
    .unwrap_err();
    assert_eq!(err.problems.len(), 5, "every problem at once: {err}");
    assert!(
        err.problems.iter().all(|p| p.starts_with("MINTING_POLICY: ") || p.starts_with("SIGN_TRANSPORT")),
        "{err}"
    );
}

#[test]
fn the_cdn_and_the_event_bus_are_optional_and_empty_means_off() {
    let off = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("JWKS_DISTRIBUTION_ID", " "),
        ("LIFECYCLE_EVENT_BUS", ""),
    ]))
    .unwrap();
    assert_eq!((&off.jwks_distribution_id, &off.lifecycle_event_bus), (&None, &None));
    assert_eq!(off.invalidation_paths(), vec!["/.well-known/jwks.json", "/.well-known/openid-configuration"]);

    let on = RotateConfig::from_lookup(rotate_env(&[
        ("KEYRING_SECRET_ID", "kr"),
        ("JWKS_DISTRIBUTION_ID", "E2ABCDEF123456"),
        ("JWKS_PATH_PREFIX", "/auth"),
        ("LIFECYCLE_EVENT_BUS", "arn:aws:events:us-east-1:111122223333:event-bus/keys"),
    ]))
    .unwrap();
    assert_eq!(on.jwks_distribution_id.as_deref(), Some("E2ABCDEF123456"));
    assert_eq!(
        on.lifecycle_event_bus.as_deref(),
        Some("arn:aws:events:us-east-1:111122223333:event-bus/keys")
    );
    assert_eq!(
        on.invalidation_paths(),
        vec!["/auth/.well-known/jwks.json", "/auth/.well-known/openid-configuration"]
    );

    for bad in ["auth", "/auth/", "/a*", "/a?b"] {
        let err =
            RotateConfig::from_lookup(rotate_env(&[("KEYRING_SECRET_ID", "kr"), ("JWKS_PATH_PREFIX", bad)]))
                .unwrap_err();
        assert!(err.problems.iter().any(|p| p.starts_with("JWKS_PATH_PREFIX")), "{bad}: {err}");
    }
}
