//! The sign service against LocalStack: calls per token, a signing loop while rotate runs and
//! revokes, the disabled-key path, and batches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use kms_jwt::aws::{KmsAdapter, SecretsManagerStore};
use kms_jwt::config::SignConfig;
use kms_jwt::memory::{Fault, Faulty};
use kms_jwt::ports::{KeyAdmin, KeyringStore};
use kms_jwt::rotate::{Command, RotationPolicy, Rotator};
use kms_jwt::signer::{SignAnswer, TokenSigner};
use kms_jwt::{Keyring, SigningAlg};
use kms_jwt_tests::verify;
use serde_json::json;

const ISSUER: &str = "https://issuer.kms-jwt.test";

/// Daily rotation (on the injected clock) with a grace long enough that no key retires while
/// the real-time tokens of a test are valid: only revocation may end a token early here.
fn rotator(sdk: &aws_config::SdkConfig, secret_id: &str) -> Rotator<KmsAdapter, SecretsManagerStore> {
    let policy = RotationPolicy {
        alg: SigningAlg::ES256,
        rotation_period: 86_400,
        prepublication: 600,
        retirement_grace: 30 * 86_400,
        deletion_window_days: 7,
        max_published_keys: kms_jwt::rotate::DEFAULT_MAX_PUBLISHED_KEYS,
    };
    kms_jwt_tests::localstack::rotator(sdk, secret_id, policy)
}

type CountedSigner = TokenSigner<Arc<Faulty<KmsAdapter>>, Arc<Faulty<SecretsManagerStore>>>;

/// A signer whose KMS and Secrets Manager calls are counted.
fn counted_signer(
    sdk: &aws_config::SdkConfig,
    secret_id: &str,
    ttl: Duration,
) -> (CountedSigner, Arc<Faulty<KmsAdapter>>, Arc<Faulty<SecretsManagerStore>>) {
    let kms = Arc::new(Faulty::new(KmsAdapter::new(sdk), |_| Fault::Pass));
    let store = Arc::new(Faulty::new(SecretsManagerStore::new(sdk, secret_id, None), |_| Fault::Pass));
    let signer = SignConfig { keyring_cache_ttl: ttl, ..SignConfig::for_tests(ISSUER) }
        .token_signer(Arc::clone(&kms), Arc::clone(&store));
    (signer, kms, store)
}

#[tokio::test]
async fn steady_state_costs_one_kms_call_per_token_and_no_keyring_read() {
    let sdk = kms_jwt_tests::localstack::sdk(None).await;
    let secret_id = format!("kms-jwt-test/sign-calls/{}", uuid::Uuid::new_v4());
    rotator(&sdk, &secret_id).reconcile(kms_jwt::unix_now()).await.unwrap();
    let (signer, kms, store) = counted_signer(&sdk, &secret_id, Duration::from_secs(60));
    signer.sign_event(json!({"claims": {}}), kms_jwt::unix_now()).await.unwrap(); // warm up
    let (kms_before, store_before) = (kms.calls(), store.calls());
    let tokens = 200;
    for i in 0..tokens {
        signer.sign_event(json!({"claims": {"n": i}}), kms_jwt::unix_now()).await.unwrap();
    }
    assert_eq!(kms.calls() - kms_before, tokens, "exactly one KMS call per token");
    assert_eq!(kms.calls_of("Sign"), tokens + 1, "and that call is Sign");
    assert_eq!(store.calls() - store_before, 0, "no Secrets Manager read while the cache is fresh");
    assert_eq!(store.calls_of("GetSecretValue"), 1, "one keyring read for the whole run");

    let mut batch: Vec<_> = (0..50).map(|i| json!({"claims": {"n": i}})).collect();
    batch[13] = json!({"claims": {"jti": "mine"}});
    let kms_before = kms.calls();
    let answer = signer.invoke(json!({ "requests": batch }), kms_jwt::unix_now()).await.unwrap();
    let keys = kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await;
    let SignAnswer::Batch(results) = answer else { panic!("a batch answer") };
    for (i, result) in results.iter().enumerate() {
        if i == 13 {
            assert_eq!(result.as_ref().unwrap_err().code(), "ReservedClaim");
        } else {
            assert_eq!(verify(&result.as_ref().unwrap().token, &keys, ISSUER).unwrap()["n"], i);
        }
    }
    assert_eq!(kms.calls() - kms_before, 49, "a batch of 50 with one refused item costs 49 KMS calls");

    // The input-validation matrix against the real signer: every refusal is typed, costs no
    // AWS call, and is a client error.
    let (kms_before, store_before) = (kms.calls(), store.calls());
    for (request, code) in [
        (json!({"claims": {"iat": 1}}), "ReservedClaim"),
        (json!({"claims": {"nbf": 1}}), "ReservedClaim"),
        (json!({"claims": {}, "header": {"alg": "none"}}), "HeaderNotAllowed"),
        (json!({"claims": {}, "alg": "HS256"}), "HeaderNotAllowed"),
        (json!({"claims": [1, 2]}), "ClaimsNotObject"),
        (json!({"claims": null}), "ClaimsNotObject"),
        (json!({"claims": {"big": "x".repeat(17 * 1024)}}), "ClaimsTooLarge"),
        (json!({"claims": {}, "ttl_seconds": 0}), "InvalidTtl"),
        (json!({"claims": {}, "ttl_seconds": 86_400}), "InvalidTtl"),
        (json!({"claims": {}, "typ": "jwt"}), "InvalidTyp"),
        (json!({"claims": {"sub": "a"}, "subject": "b"}), "AmbiguousClaim"),
        (json!({"claims": {}, "surprise": true}), "InvalidRequest"),
        (json!([]), "InvalidRequest"),
    ] {
        let err = signer.sign_event(request.clone(), kms_jwt::unix_now()).await.unwrap_err();
        assert_eq!(err.code(), code, "{request}");
        assert!(err.is_client_error(), "{request}");
    }
    assert_eq!((kms.calls(), store.calls()), (kms_before, store_before), "refusals cost no AWS call");
}

#[tokio::test]
async fn a_disabled_current_key_is_never_used_and_the_signer_recovers_after_revocation() {
    let sdk = kms_jwt_tests::localstack::sdk(None).await;
    let secret_id = format!("kms-jwt-test/sign-disabled/{}", uuid::Uuid::new_v4());
    let rot = rotator(&sdk, &secret_id);
    rot.reconcile(kms_jwt::unix_now()).await.unwrap();
    let (signer, kms, _) = counted_signer(&sdk, &secret_id, Duration::from_secs(3_600));
    let first = signer.sign_event(json!({"claims": {}}), kms_jwt::unix_now()).await.unwrap();

    // Revoke the current key: rotate disables it in KMS; the signer's cache still names it.
    let report = rot.run(Command::Revoke { kid: first.kid.clone() }, kms_jwt::unix_now()).await.unwrap();
    assert_eq!(report.retired, vec![first.kid.clone()]);
    let before = kms.calls();
    let second = signer.sign_event(json!({"claims": {}}), kms_jwt::unix_now()).await.unwrap();
    assert_ne!(second.kid, first.kid, "never signs with a revoked key");
    assert_eq!(kms.calls() - before, 2, "one refused call on the disabled key, one on the new current key");
    let keys = kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await;
    verify(&second.token, &keys, ISSUER).unwrap();
    assert!(verify(&first.token, &keys, ISSUER).is_err(), "a revoked key's tokens no longer verify");

    // A key disabled by hand (not through rotate) is refused by KMS, and so is the token.
    let current = KmsAdapter::new(&sdk);
    let ring = Keyring::from_json(
        &SecretsManagerStore::new(&sdk, &secret_id, None).load().await.unwrap().unwrap().text,
    )
    .unwrap();
    current.disable_key(&ring.current().unwrap().kms_key_arn).await.unwrap();
    let err = signer.sign_event(json!({"claims": {}}), kms_jwt::unix_now()).await.unwrap_err();
    assert_eq!(err.code(), "KmsError", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_signed_while_rotate_runs_and_revokes_verify_until_they_expire() {
    let sdk = kms_jwt_tests::localstack::sdk(None).await;
    let secret_id = format!("kms-jwt-test/sign-loop/{}", uuid::Uuid::new_v4());
    let rot = Arc::new(rotator(&sdk, &secret_id));
    let t0 = kms_jwt::unix_now();
    rot.reconcile(t0).await.unwrap();
    let (signer, _, _) = counted_signer(&sdk, &secret_id, Duration::ZERO);
    let signer = Arc::new(signer);

    let loop_signer = Arc::clone(&signer);
    let signing = tokio::spawn(async move {
        let mut tokens = Vec::new();
        for i in 0..120 {
            match loop_signer.sign_event(json!({"claims": {"n": i}}), kms_jwt::unix_now()).await {
                Ok(t) => tokens.push(t),
                Err(e) => panic!("signing failed during rotation: {e}"),
            }
        }
        tokens
    });
    // Meanwhile: scheduled rotations (clock injected), then a revocation of a previous key.
    let mut revoked = None;
    for step in 1..=4 {
        rot.reconcile(t0 + step * 86_400).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ring = Keyring::from_json(
        &SecretsManagerStore::new(&sdk, &secret_id, None).load().await.unwrap().unwrap().text,
    )
    .unwrap();
    if let Some(previous) = ring.previous().next() {
        rot.run(Command::Revoke { kid: previous.kid.clone() }, t0 + 4 * 86_400 + 10).await.unwrap();
        revoked = Some(previous.kid.clone());
    }
    let tokens = signing.await.unwrap();
    let revoked = revoked.expect("a previous key existed to revoke");
    let keys = kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await;
    let mut kids = std::collections::HashSet::new();
    for token in &tokens {
        kids.insert(token.kid.clone());
        let verdict = verify(&token.token, &keys, ISSUER);
        if token.kid == revoked {
            assert!(verdict.is_err(), "a token of the revoked key must stop verifying");
        } else {
            verdict.unwrap_or_else(|e| {
                panic!("token of {} failed though its key was never revoked: {e}", token.kid)
            });
        }
    }
    eprintln!("{} tokens over {} keys", tokens.len(), kids.len());
    assert!(kids.len() >= 2, "the loop saw rotations");
}
