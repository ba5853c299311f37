//! The minting policy against LocalStack: the sign function's signer as its configuration
//! builds it (`MINTING_POLICY`), real KMS and Secrets Manager calls. Refusals cost no KMS call;
//! admitted tokens verify against the JWKS and carry what the rule says (`act`, the caller's
//! own `sub`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kms_jwt::aws::{KmsAdapter, SecretsManagerStore};
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
