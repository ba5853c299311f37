//! The minting policy against LocalStack: the sign function's signer as its configuration
//! builds it (`MINTING_POLICY`, or `MINTING_POLICY_PARAMETER` in SSM), real KMS, Secrets Manager and SSM calls. Refusals cost no KMS call;
//! admitted tokens verify against the JWKS and carry what the rule says (`act`, the caller's
//! own `sub`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kms_jwt::aws::{KmsAdapter, SecretsManagerStore, SsmParameter};
use kms_jwt::config::SignConfig;
use kms_jwt::memory::{Fault, Faulty};
use kms_jwt::minting::{Caller, PrincipalArn};
use kms_jwt::rotate::RotationPolicy;
use kms_jwt::signer::SignAnswer;
use kms_jwt::SigningAlg;
use kms_jwt_tests::verify;

const ISSUER: &str = "https://issuer.kms-jwt.test";

const POLICY: &str = r#"{"version": 1, "rules": [
  {"id": "orders-for-users", "callers": ["arn:aws:iam::000000000000:role/orders-*"],
   "audiences": ["https://api.example.com"], "subject": {"pattern": "user-*"},
   "claims": {"scope": {"space_delimited": ["orders:read"]}}, "max_ttl_seconds": 300, "act": true},
  {"id": "workload-self", "callers": ["arn:aws:iam::000000000000:role/billing"],
   "audiences": ["https://ledger.example.com"], "subject": "caller", "max_ttl_seconds": 300},
  {"id": "batch-jobs", "direct_invoke": true, "audiences": ["https://batch.example.com"],
   "subject": {"fixed": "batch"}, "max_ttl_seconds": 60}
]}"#;

fn config(secret_id: &str) -> SignConfig {
    SignConfig::from_lookup(|name| match name {
        "KEYRING_SECRET_ID" => Some(secret_id.to_owned()),
        "ISSUER" => Some(ISSUER.to_owned()),
        "MINTING_POLICY" => Some(POLICY.to_owned()),
        "SIGN_TRANSPORT" => Some("api-gateway".to_owned()),
        _ => None,
    })
    .unwrap()
}

fn token_of(answer: SignAnswer) -> String {
    match answer {
        SignAnswer::Single(token) => token.token,
        batch => panic!("a single answer, not {batch:?}"),
    }
}

#[tokio::test]
async fn the_policy_decides_before_kms_and_admitted_tokens_verify_with_what_the_rule_adds() {
    let sdk = kms_jwt_tests::localstack::sdk(None).await;
    let secret_id = format!("kms-jwt-test/minting/{}", uuid::Uuid::new_v4());
    let rotation = RotationPolicy { rotation_period: 86_400, ..RotationPolicy::for_tests(SigningAlg::ES256) };
    kms_jwt_tests::localstack::rotator(&sdk, &secret_id, rotation)
        .reconcile(kms_jwt::unix_now())
        .await
        .unwrap();
    let kms = Arc::new(Faulty::new(KmsAdapter::new(&sdk), |_| Fault::Pass));
    let store = Arc::new(SecretsManagerStore::new(&sdk, &secret_id, None));
    let signer = config(&secret_id).token_signer(Arc::clone(&kms), store);
    let now = kms_jwt::unix_now();

    let orders = Caller::Iam(PrincipalArn::new("arn:aws:sts::000000000000:assumed-role/orders-api/i-1"));
    let billing = Caller::Iam(PrincipalArn::new("arn:aws:sts::000000000000:assumed-role/billing/job-7"));
    let stranger = Caller::Iam(PrincipalArn::new("arn:aws:iam::000000000000:user/mallory"));
    for (caller, request) in [
        (&orders, r#"{"claims": {"sub": "admin"}, "audience": "https://api.example.com"}"#),
        (
            &orders,
            r#"{"claims": {"sub": "user-1", "scope": "orders:write"}, "audience": "https://api.example.com"}"#,
        ),
        (&orders, r#"{"claims": {"sub": "user-1"}, "audience": "https://ledger.example.com"}"#),
        (
            &billing,
            r#"{"claims": {"sub": "arn:aws:iam::000000000000:role/orders-api"}, "audience": "https://ledger.example.com"}"#,
        ),
        (&stranger, r#"{"claims": {}, "audience": "https://batch.example.com"}"#),
        (&Caller::DirectInvoke, r#"{"claims": {"sub": "user-1"}, "audience": "https://api.example.com"}"#),
    ] {
        let error = signer.invoke_json_as(caller, request, now).await.unwrap_err();
        assert_eq!(error.code(), "NotAllowed", "{request}: {error}");
    }
    assert_eq!(kms.calls(), 0, "no refusal reached KMS");

    let jwks_of = || kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER);
    let delegated =
        r#"{"claims": {"sub": "user-42", "scope": "orders:read"}, "audience": "https://api.example.com"}"#;
    let token = token_of(signer.invoke_json_as(&orders, delegated, now).await.unwrap());
    let claims = verify(&token, &jwks_of().await, ISSUER).unwrap();
    assert_eq!(claims["sub"], "user-42");
    assert_eq!(claims["act"], serde_json::json!({"sub": "arn:aws:iam::000000000000:role/orders-api"}));
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 300);

    let own = r#"{"claims": {}, "audience": "https://ledger.example.com"}"#;
    let token = token_of(signer.invoke_json_as(&billing, own, now).await.unwrap());
    let claims = verify(&token, &jwks_of().await, ISSUER).unwrap();
    assert_eq!(claims["sub"], "arn:aws:iam::000000000000:role/billing", "the workload's own identity");
    assert!(claims.get("act").is_none());

    let direct = r#"{"claims": {}, "audience": "https://batch.example.com", "ttl_seconds": 60}"#;
    let token = token_of(signer.invoke_json_as(&Caller::DirectInvoke, direct, now).await.unwrap());
    assert_eq!(verify(&token, &jwks_of().await, ISSUER).unwrap()["sub"], "batch");
    assert_eq!(kms.calls_of("Sign"), 3, "one KMS call per admitted token");
}

/// Put `text` as the parameter's new version (LocalStack serves SSM like AWS: each
/// `PutParameter` with `Overwrite` makes a version).
async fn put_policy(ssm: &aws_sdk_ssm::Client, name: &str, text: &str) {
    ssm.put_parameter()
        .name(name)
        .value(text)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .tier(aws_sdk_ssm::types::ParameterTier::Advanced)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

/// `MINTING_POLICY_PARAMETER`: the policy in SSM Parameter Store, read through the SDK
/// adapter and cached. A new version is in force within the cache TTL; a version that does not
/// validate changes nothing; a deleted parameter ends in refusals, never in a wider policy.
#[tokio::test]
async fn a_policy_in_ssm_applies_within_its_ttl_and_a_broken_version_changes_nothing() {
    let sdk = kms_jwt_tests::localstack::sdk(None).await;
    let secret_id = format!("kms-jwt-test/minting-ssm/{}", uuid::Uuid::new_v4());
    let parameter = format!("/kms-jwt-test/{}/minting-policy", uuid::Uuid::new_v4());
    let rotation = RotationPolicy { rotation_period: 86_400, ..RotationPolicy::for_tests(SigningAlg::ES256) };
    kms_jwt_tests::localstack::rotator(&sdk, &secret_id, rotation)
        .reconcile(kms_jwt::unix_now())
        .await
        .unwrap();
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    put_policy(&ssm, &parameter, POLICY).await;
    let config = SignConfig::from_lookup(|name| match name {
        "KEYRING_SECRET_ID" => Some(secret_id.clone()),
        "ISSUER" => Some(ISSUER.to_owned()),
        "MINTING_POLICY_PARAMETER" => Some(parameter.clone()),
        "KEYRING_CACHE_TTL" => Some("1".to_owned()),
        "MINTING_POLICY_MAX_STALENESS" => Some("0".to_owned()),
        _ => None,
    })
    .unwrap();
    let kms = Arc::new(Faulty::new(KmsAdapter::new(&sdk), |_| Fault::Pass));
    let store = Arc::new(SecretsManagerStore::new(&sdk, &secret_id, None));
    let signer =
        config.token_signer_with_policy(Arc::clone(&kms), store, SsmParameter::new(&sdk, &parameter));
    let batch = r#"{"claims": {}, "audience": "https://batch.example.com", "ttl_seconds": 60}"#;
    let reports = r#"{"claims": {}, "audience": "https://reports.example.com", "ttl_seconds": 60}"#;
    let sign =
        |request: &'static str| signer.invoke_json_as(&Caller::DirectInvoke, request, kms_jwt::unix_now());
    let after_ttl = || tokio::time::sleep(std::time::Duration::from_millis(1_100));

    let token = token_of(sign(batch).await.unwrap());
    assert_eq!(
        verify(&token, &kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await, ISSUER).unwrap()
            ["sub"],
        "batch"
    );
    assert_eq!(sign(reports).await.unwrap_err().code(), "NotAllowed");

    // The operator moves the batch rule to another audience: in force after the TTL.
    put_policy(&ssm, &parameter, &POLICY.replace("https://batch.example.com", "https://reports.example.com"))
        .await;
    after_ttl().await;
    assert_eq!(sign(batch).await.unwrap_err().code(), "NotAllowed");
    token_of(sign(reports).await.unwrap());

    // A version that does not validate (here: it would let everyone mint anything for
    // anyone, with an unknown member) is refused; the last valid policy stays in force.
    put_policy(&ssm, &parameter, r#"{"version": 1, "rules": [{"id": "all", "callers": ["*"], "direct_invoke": true, "subject": "any", "max_ttl_seconds": 60, "any_other_claims": true, "require_audience": false, "grant": "all"}]}"#).await;
    after_ttl().await;
    assert_eq!(sign(batch).await.unwrap_err().code(), "NotAllowed", "the broken version widened nothing");
    token_of(sign(reports).await.unwrap());

    // The parameter deleted: refused (no stale window configured), never signed.
    ssm.delete_parameter().name(&parameter).send().await.unwrap();
    after_ttl().await;
    assert_eq!(sign(reports).await.unwrap_err().code(), "MintingPolicyUnavailable");
    assert_eq!(kms.calls_of("Sign"), 3, "one KMS call per admitted token, none for a refusal");
}
