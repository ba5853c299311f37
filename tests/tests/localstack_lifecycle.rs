//! Crash safety and concurrency of the rotate reconciler against LocalStack:
//! - a fault injected at each external call in turn (before the call, or after it took effect
//!   with the reply lost), then a clean run: it converges, with no key lost and no orphan;
//! - eight reconcilers racing on one keyring;
//! - a hand-edited keyring with two current keys is refused and left untouched.
//!
//! Each test uses its own AWS region, so listing "all keys" sees only its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::types::KeyState as KmsKeyState;
use kms_jwt::aws::{KmsAdapter, SecretsManagerStore};
use kms_jwt::config::SignConfig;
use kms_jwt::keyring::{KeyState, Keyring};
use kms_jwt::memory::{Fault, Faulty};
use kms_jwt::rotate::{Command, RotationPolicy, Rotator, STALE_INTENT_SECS};
use kms_jwt::SigningAlg;
use kms_jwt_tests::localstack::{keys_of, stored};
use kms_jwt_tests::verify;
use serde_json::json;

const ISSUER: &str = "https://issuer.kms-jwt.test";
const DAY: i64 = 86_400;

fn policy() -> RotationPolicy {
    RotationPolicy {
        alg: SigningAlg::ES256,
        rotation_period: 7 * DAY,
        prepublication: 600,
        retirement_grace: 7_200,
        deletion_window_days: 7,
        max_published_keys: kms_jwt::rotate::DEFAULT_MAX_PUBLISHED_KEYS,
    }
}

fn rotator(sdk: &aws_config::SdkConfig, secret_id: &str) -> Rotator<KmsAdapter, SecretsManagerStore> {
    kms_jwt_tests::localstack::rotator(sdk, secret_id, policy())
}

/// Converged: a valid keyring with one current and one next key, nothing queued, no
/// intents, and every KMS key of the keyring either published or pending deletion.
async fn assert_converged(sdk: &aws_config::SdkConfig, secret_id: &str, context: &str) -> Keyring {
    let ring = stored(sdk, secret_id).await;
    assert!(ring.current().is_some() && ring.next().is_some(), "{context}: {ring:?}");
    assert!(ring.retiring.is_empty(), "{context}: retirement queue {:?}", ring.retiring);
    assert!(ring.pending.is_empty(), "{context}: intents {:?}", ring.pending);
    for (arn, state) in keys_of(sdk, secret_id).await {
        let published = ring.keys.iter().any(|k| k.kms_key_arn == arn);
        assert!(
            published || state == KmsKeyState::PendingDeletion,
            "{context}: orphan {arn} in state {state:?}"
        );
        if published {
            assert_eq!(state, KmsKeyState::Enabled, "{context}: published key {arn} must be usable");
        }
    }
    ring
}

async fn sign(sdk: &aws_config::SdkConfig, secret_id: &str) -> String {
    let signer = SignConfig { keyring_cache_ttl: Duration::ZERO, ..SignConfig::for_tests(ISSUER) }
        .token_signer(KmsAdapter::new(sdk), SecretsManagerStore::new(sdk, secret_id, None));
    signer.sign_event(json!({"claims": {"sub": "t"}}), kms_jwt::unix_now()).await.unwrap().token
}

/// Count the external calls of a clean run of `command` from the state `prepare` leaves.
async fn calls_in_clean_run(sdk: &aws_config::SdkConfig, command: &Command, at: i64, prepared: bool) -> u64 {
    let secret_id = format!("kms-jwt-test/count/{}", uuid::Uuid::new_v4());
    if prepared {
        rotator(sdk, &secret_id).reconcile(at - 7 * DAY).await.unwrap();
    }
    let kms = Arc::new(Faulty::new(KmsAdapter::new(sdk), |_| Fault::Pass));
    let store = Arc::new(Faulty::new(SecretsManagerStore::new(sdk, &secret_id, None), |_| Fault::Pass));
    Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy(), secret_id.as_str())
        .run(command.clone(), at)
        .await
        .unwrap();
    kms.calls() + store.calls()
}

/// Fail each call of a run in turn, both ways; a clean run afterwards converges and tokens
/// signed before the fault still verify.
async fn fault_at_every_step(region: &'static str, command: Command, prepared: bool) {
    let sdk = kms_jwt_tests::localstack::sdk(Some(region)).await;
    let at = kms_jwt::unix_now();
    let total = calls_in_clean_run(&sdk, &command, at, prepared).await;
    assert!(total >= 6, "a run makes several calls ({total})");
    for n in 1..=total {
        for fault in [Fault::FailBefore, Fault::FailAfter] {
            let context = format!("{command:?}, {fault:?} at call {n}/{total}");
            let secret_id = format!("kms-jwt-test/fault/{}", uuid::Uuid::new_v4());
            let mut token = None;
            if prepared {
                rotator(&sdk, &secret_id).reconcile(at - 7 * DAY).await.unwrap();
                token = Some(sign(&sdk, &secret_id).await);
            }
            // The faulty run may fail; it must never corrupt the keyring.
            // One counter across both ports: wrap them so the nth call overall fails.
            let counter = Arc::new(std::sync::Mutex::new(0u64));
            let decide = |counter: Arc<std::sync::Mutex<u64>>| {
                move |_: &'static str| {
                    let mut seen = counter.lock().unwrap();
                    *seen += 1;
                    if *seen == n {
                        fault
                    } else {
                        Fault::Pass
                    }
                }
            };
            let faulty = Rotator::new(
                Faulty::new(KmsAdapter::new(&sdk), decide(Arc::clone(&counter))),
                Faulty::new(SecretsManagerStore::new(&sdk, &secret_id, None), decide(Arc::clone(&counter))),
                policy(),
                secret_id.as_str(),
            );
            if let Err(e) = faulty.run(command.clone(), at).await {
                assert_ne!(e.code(), "KeyringInvalid", "{context}: {e}");
            }
            stored(&sdk, &secret_id).await.validate().unwrap();
            if let Some(token) = &token {
                verify(token, &kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await, ISSUER)
                    .unwrap_or_else(|e| {
                        panic!("{context}: a valid token stopped verifying right after the fault: {e}")
                    });
            }
            // Clean runs after any intent went stale converge.
            let clean = rotator(&sdk, &secret_id);
            clean.run(command.clone(), at + 1).await.unwrap();
            clean.reconcile(at + STALE_INTENT_SECS + 60).await.unwrap();
            assert_converged(&sdk, &secret_id, &context).await;
            if let Some(token) = &token {
                verify(token, &kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await, ISSUER)
                    .unwrap_or_else(|e| panic!("{context}: a valid token failed after convergence: {e}"));
            }
            let fresh = sign(&sdk, &secret_id).await;
            verify(&fresh, &kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await, ISSUER).unwrap();
        }
    }
}

#[tokio::test]
async fn bootstrap_survives_a_fault_at_every_step() {
    fault_at_every_step("eu-west-1", Command::Reconcile, false).await;
}

#[tokio::test]
async fn rotation_survives_a_fault_at_every_step() {
    fault_at_every_step("eu-west-2", Command::Reconcile, true).await;
}

#[tokio::test]
async fn revoking_the_next_key_replaces_it_and_withdraws_it_at_once() {
    let sdk = kms_jwt_tests::localstack::sdk(Some("eu-west-3")).await;
    let at = kms_jwt::unix_now();
    let probe = format!("kms-jwt-test/revoke-probe/{}", uuid::Uuid::new_v4());
    rotator(&sdk, &probe).reconcile(at).await.unwrap();
    let kid = stored(&sdk, &probe).await.next().unwrap().kid.clone();
    let secret_id = format!("kms-jwt-test/revoke/{}", uuid::Uuid::new_v4());
    rotator(&sdk, &secret_id).reconcile(at).await.unwrap();
    let next = stored(&sdk, &secret_id).await.next().unwrap().kid.clone();
    let report = rotator(&sdk, &secret_id).run(Command::Revoke { kid: next.clone() }, at + 10).await.unwrap();
    assert_eq!(report.retired, vec![next.clone()]);
    let ring = assert_converged(&sdk, &secret_id, "revoke next").await;
    assert!(ring.find(&next).is_none());
    assert!(
        !kms_jwt_tests::localstack::jwks(&sdk, &secret_id, ISSUER).await.contains(&next),
        "a revoked key leaves the JWKS at once"
    );
    let unknown = rotator(&sdk, &secret_id).run(Command::Revoke { kid }, at + 20).await.unwrap_err();
    assert_eq!(unknown.code(), "UnknownKid", "a kid of another keyring is refused");
}

/// Every KMS key of the keyring is published, queued for retirement, covered by a creation
/// intent, or pending deletion: nothing is lost track of, even mid-race.
async fn assert_accounted(sdk: &aws_config::SdkConfig, secret_id: &str, context: &str) {
    let ring = stored(sdk, secret_id).await;
    ring.validate().unwrap();
    let kms = aws_sdk_kms::Client::new(sdk);
    for (arn, state) in keys_of(sdk, secret_id).await {
        if state == KmsKeyState::PendingDeletion || ring.holds_arn(&arn) {
            continue;
        }
        let tags = kms.list_resource_tags().key_id(&arn).send().await.unwrap();
        let request =
            tags.tags().iter().find(|t| t.tag_key() == "kms-jwt:request").map(|t| t.tag_value().to_owned());
        assert!(
            ring.pending.iter().any(|p| Some(&p.request_id) == request.as_ref()),
            "{context}: {arn} ({state:?}) is neither in the keyring, nor covered by an intent, nor pending deletion"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_reconcilers_racing_on_one_keyring_converge() {
    let sdk = kms_jwt_tests::localstack::sdk(Some("ap-southeast-1")).await;
    let secret_id = format!("kms-jwt-test/race/{}", uuid::Uuid::new_v4());
    let at = kms_jwt::unix_now();
    for (round, when) in [("bootstrap", at), ("rotation", at + 7 * DAY), ("retirement", at + 7 * DAY + 7_200)]
    {
        let runs: Vec<_> = (0..8)
            .map(|_| {
                let sdk = sdk.clone();
                let secret_id = secret_id.clone();
                tokio::spawn(async move { rotator(&sdk, &secret_id).reconcile(when).await })
            })
            .collect();
        let (mut won, mut lost) = (0, 0);
        for run in runs {
            // A run may give up after too many conflicts, or meet a store error: LocalStack's
            // Secrets Manager answers some concurrent UpdateSecretVersionStage calls with an
            // InternalError. Both are faults the reconciler must survive; corruption is not.
            match run.await.unwrap() {
                Ok(report) => won += usize::from(report.changed),
                Err(e) => {
                    assert!(matches!(e.code(), "KeyringConflict" | "KeyringStoreError"), "{round}: {e}");
                    lost += 1;
                }
            }
        }
        eprintln!("{round}: {won} racing runs changed the keyring, {lost} failed safely");
        assert_accounted(&sdk, &secret_id, round).await;
        // The next scheduled run (here after any intent went stale) converges.
        rotator(&sdk, &secret_id).reconcile(when + STALE_INTENT_SECS + 60).await.unwrap();
        let ring = assert_converged(&sdk, &secret_id, round).await;
        let expected_previous = usize::from(round == "rotation");
        assert_eq!(ring.previous().count(), expected_previous, "{round}: {ring:?}");
    }
}

#[tokio::test]
async fn a_keyring_with_two_current_keys_is_refused_and_untouched() {
    let sdk = kms_jwt_tests::localstack::sdk(Some("ca-central-1")).await;
    let secret_id = format!("kms-jwt-test/two-current/{}", uuid::Uuid::new_v4());
    rotator(&sdk, &secret_id).reconcile(kms_jwt::unix_now()).await.unwrap();
    let mut ring = stored(&sdk, &secret_id).await;
    for key in &mut ring.keys {
        key.state = KeyState::Current;
        key.activated_at = Some(key.published_at);
    }
    let edited = serde_json::to_string(&ring).unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    secrets.put_secret_value().secret_id(&secret_id).secret_string(&edited).send().await.unwrap();

    let err = rotator(&sdk, &secret_id).reconcile(kms_jwt::unix_now() + 30 * DAY).await.unwrap_err();
    assert_eq!(err.code(), "KeyringInvalid");
    assert!(err.to_string().contains("exactly one current key"), "{err}");
    let current = secrets.get_secret_value().secret_id(&secret_id).send().await.unwrap();
    assert_eq!(current.secret_string(), Some(edited.as_str()), "left exactly as the human wrote it");
    for (arn, state) in keys_of(&sdk, &secret_id).await {
        assert_eq!(state, KmsKeyState::Enabled, "no key of a refused keyring is touched: {arn}");
    }
}
