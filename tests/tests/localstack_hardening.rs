//! What real AWS does and LocalStack does not, injected by the fault proxy between the code
//! under test and LocalStack: throttling, lost replies beneath the SDK's retries, slow and
//! failing calls, access denied for a while after `CreateKey`. Each test is one defect of the
//! real-AWS review (issue 12) that it fails without the fix for.
//!
//! Each test uses its own AWS region, so listing "all keys" sees only its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_sdk_kms::types::{KeyState as KmsKeyState, Tag};
use kms_jwt::aws::{KmsAdapter, SecretsManagerStore};
use kms_jwt::config::{CallTimeouts, SignConfig};
use kms_jwt::key_policy::KeyAccess;
use kms_jwt::keyring::{Keyring, PendingCreation};
use kms_jwt::ports::{KeyAdmin, KeyringStore};
use kms_jwt::rotate::{Command, Rotator, Transition, STALE_INTENT_SECS};
use kms_jwt_tests::aws_proxy::{AwsProxy, Fault};
use kms_jwt_tests::localstack::{daily_es256_policy, jwks, keys_of, sdk, stored};
use tokio::time::Instant;

const ISSUER: &str = "https://issuer.hardening.test";
const T0: i64 = 1_900_000_000;

/// The SDK as the functions configure it (bounded calls), talking to LocalStack through
/// `proxy`, in `region`.
async fn proxied_sdk(
    proxy: &AwsProxy,
    region: &'static str,
    timeouts: CallTimeouts,
) -> aws_config::SdkConfig {
    proxy
        .sdk_loader()
        .region(aws_config::Region::new(region))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(timeouts.attempt)
                .operation_attempt_timeout(timeouts.attempt)
                .operation_timeout(timeouts.total)
                .build(),
        )
        .load()
        .await
}

fn rotator_on(sdk: &aws_config::SdkConfig, secret_id: &str) -> Rotator<KmsAdapter, SecretsManagerStore> {
    kms_jwt_tests::localstack::rotator(sdk, secret_id, daily_es256_policy())
}

/// Every enabled key of the keyring is published: no orphan.
async fn assert_no_orphan(sdk: &aws_config::SdkConfig, secret_id: &str, context: &str) {
    let ring = stored(sdk, secret_id).await;
    for (arn, state) in keys_of(sdk, secret_id).await {
        if state == KmsKeyState::Enabled {
            assert!(ring.holds_arn(&arn), "{context}: enabled key {arn} is not in the keyring");
        }
    }
}

/// A key left by a run that died before recording it, and that run's intent in the keyring.
async fn orphan_of_a_dead_run(sdk: &aws_config::SdkConfig, secret_id: &str) -> String {
    let tag = |k: &str, v: &str| Tag::builder().tag_key(k).tag_value(v).build().unwrap();
    let created = aws_sdk_kms::Client::new(sdk)
        .create_key()
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .tags(tag("kms-jwt:keyring", secret_id))
        .tags(tag("kms-jwt:request", "dead-run"))
        .send()
        .await
        .unwrap();
    let store = SecretsManagerStore::new(sdk, secret_id, None);
    let doc = store.load().await.unwrap().unwrap();
    let mut ring = Keyring::from_json(&doc.text).unwrap();
    ring.pending.push(PendingCreation {
        request_id: "dead-run".into(),
        requested_at: T0,
        sweep_cursor: None,
    });
    store.compare_and_swap(Some(&doc.version_id), &ring.to_json()).await.unwrap();
    created.key_metadata.unwrap().arn.unwrap()
}

async fn key_state(sdk: &aws_config::SdkConfig, arn: &str) -> KmsKeyState {
    let meta = aws_sdk_kms::Client::new(sdk).describe_key().key_id(arn).send().await.unwrap();
    meta.key_metadata.unwrap().key_state.unwrap()
}

#[tokio::test]
async fn revocation_withdraws_the_key_in_one_run_while_create_key_is_throttled() {
    let region = "eu-north-1";
    let direct = sdk(Some(region)).await;
    let secret_id = format!("kms-jwt-test/harden/revoke-throttled/{}", uuid::Uuid::new_v4());
    rotator_on(&direct, &secret_id).reconcile(T0).await.unwrap();
    let compromised = stored(&direct, &secret_id).await.current().unwrap().clone();

    let proxy = AwsProxy::start_for_localstack().await.unwrap();
    proxy.inject("CreateKey", Fault::Throttle);
    let via_proxy = proxied_sdk(&proxy, region, CallTimeouts::default()).await;
    let report = rotator_on(&via_proxy, &secret_id)
        .run(Command::Revoke { kid: compromised.kid.clone() }, T0 + 60)
        .await
        .unwrap();
    assert_eq!(report.transitions, vec![Transition::Revoke]);
    assert!(report.incomplete.iter().any(|s| s.starts_with("replacement key")), "{:?}", report.incomplete);
    assert!(proxy.calls("CreateKey") >= 1, "the replacement was attempted, after the withdrawal");
    assert!(!jwks(&direct, &secret_id, ISSUER).await.contains(&compromised.kid), "gone from the JWKS");
    assert_eq!(key_state(&direct, &compromised.kms_key_arn).await, KmsKeyState::PendingDeletion);
}

#[tokio::test]
async fn a_slow_sweep_never_keeps_a_revocation_past_its_time_budget() {
    let region = "eu-south-1";
    let direct = sdk(Some(region)).await;
    let secret_id = format!("kms-jwt-test/harden/revoke-slow-sweep/{}", uuid::Uuid::new_v4());
    rotator_on(&direct, &secret_id).reconcile(T0).await.unwrap();
    let orphan = orphan_of_a_dead_run(&direct, &secret_id).await;
    let compromised = stored(&direct, &secret_id).await.current().unwrap().kid.clone();

    // Reading a key's tags takes 3 s: the sweep (ListKeys fallback) cannot finish in budget.
    let proxy = AwsProxy::start_for_localstack().await.unwrap();
    proxy.inject("ListResourceTags", Fault::Delay(Duration::from_secs(3)));
    let via_proxy = proxied_sdk(&proxy, region, CallTimeouts::default()).await;
    let rotator = rotator_on(&via_proxy, &secret_id).with_step_reserve(Duration::from_secs(1));
    let started = Instant::now();
    let budget = Duration::from_secs(8);
    let now = T0 + STALE_INTENT_SECS + 60;
    let report =
        rotator.run_until(Command::Revoke { kid: compromised.clone() }, now, started + budget).await.unwrap();
    let took = started.elapsed();
    assert!(took <= budget + Duration::from_millis(500), "the revocation run took {took:?}");
    assert!(!jwks(&direct, &secret_id, ISSUER).await.contains(&compromised), "withdrawn in this run");
    assert!(report.incomplete.iter().any(|s| s.contains("dead-run")), "{:?}", report.incomplete);
    assert_eq!(key_state(&direct, &orphan).await, KmsKeyState::Enabled, "not reached in this run");
    assert_eq!(stored(&direct, &secret_id).await.pending.len(), 1, "the intent waits for a later sweep");

    // Without the delay, a later run sweeps it.
    proxy.clear_all();
    rotator.reconcile(now + 3_600).await.unwrap();
    assert_eq!(key_state(&direct, &orphan).await, KmsKeyState::PendingDeletion);
    assert!(stored(&direct, &secret_id).await.pending.is_empty());
    assert_no_orphan(&direct, &secret_id, "after the sweep").await;
}

#[tokio::test]
async fn a_lost_create_key_reply_is_not_retried_and_leaves_no_orphan_after_convergence() {
    let region = "eu-central-2";
    let direct = sdk(Some(region)).await;
    let secret_id = format!("kms-jwt-test/harden/lost-create/{}", uuid::Uuid::new_v4());
    let proxy = AwsProxy::start_for_localstack().await.unwrap();
    // KMS creates the key, and the reply never arrives (a 500 after the fact).
    proxy.inject_times("CreateKey", Fault::LoseReply, 1);
    let via_proxy = proxied_sdk(&proxy, region, CallTimeouts::default()).await;
    let rotator = rotator_on(&via_proxy, &secret_id);
    let err = rotator.reconcile(T0).await.unwrap_err();
    assert_eq!(err.code(), "KmsError", "{err}");
    assert_eq!(proxy.forwarded("CreateKey"), 1, "CreateKey is never retried blindly");
    assert_eq!(stored(&direct, &secret_id).await.pending.len(), 1, "the intent covers the unknown key");

    // The next runs bootstrap, and once the intent is stale, sweep the key nobody recorded.
    rotator.reconcile(T0 + 60).await.unwrap();
    rotator.reconcile(T0 + STALE_INTENT_SECS + 60).await.unwrap();
    let ring = stored(&direct, &secret_id).await;
    assert!(ring.pending.is_empty(), "{:?}", ring.pending);
    let keys = keys_of(&direct, &secret_id).await;
    assert_eq!(keys.len(), 3, "two published and the one whose reply was lost");
    assert_eq!(keys.iter().filter(|(_, s)| *s == KmsKeyState::Enabled).count(), 2);
    assert_no_orphan(&direct, &secret_id, "after convergence").await;
}

#[tokio::test]
async fn a_throttled_tag_read_keeps_the_intent_until_a_later_sweep_finds_the_orphan() {
    let region = "af-south-1";
    let direct = sdk(Some(region)).await;
    let secret_id = format!("kms-jwt-test/harden/throttled-sweep/{}", uuid::Uuid::new_v4());
    rotator_on(&direct, &secret_id).reconcile(T0).await.unwrap();
    let orphan = orphan_of_a_dead_run(&direct, &secret_id).await;

    let proxy = AwsProxy::start_for_localstack().await.unwrap();
    proxy.inject("ListResourceTags", Fault::Throttle);
    let via_proxy = proxied_sdk(&proxy, region, CallTimeouts::default()).await;
    let rotator = rotator_on(&via_proxy, &secret_id);
    let now = T0 + STALE_INTENT_SECS + 60;
    let report = rotator.reconcile(now).await.unwrap();
    assert!(report.incomplete.iter().any(|s| s.contains("dead-run")), "{:?}", report.incomplete);
    assert_eq!(stored(&direct, &secret_id).await.pending.len(), 1, "a throttled sweep keeps the intent");
    assert_eq!(key_state(&direct, &orphan).await, KmsKeyState::Enabled);

    proxy.clear_all();
    let report = rotator.reconcile(now + 3_600).await.unwrap();
    assert_eq!(report.orphans_deleted, vec![orphan.clone()]);
    assert!(stored(&direct, &secret_id).await.pending.is_empty());
    assert_eq!(key_state(&direct, &orphan).await, KmsKeyState::PendingDeletion);
}

#[tokio::test]
async fn access_denied_for_a_while_after_create_key_is_waited_out_with_no_orphan() {
    let region = "ap-east-1";
    let direct = sdk(Some(region)).await;
    let secret_id = format!("kms-jwt-test/harden/denied-new-key/{}", uuid::Uuid::new_v4());
    let proxy = AwsProxy::start_for_localstack().await.unwrap();
    proxy.deny_after_create(&["GetPublicKey"], Duration::from_secs(2));
    let via_proxy = proxied_sdk(&proxy, region, CallTimeouts::default()).await;
    let report = rotator_on(&via_proxy, &secret_id).reconcile(T0).await.unwrap();
    assert_eq!(report.transitions, vec![Transition::Bootstrap]);
    assert!(proxy.calls("GetPublicKey") > 2, "the first reads were denied and retried");
    assert_eq!(proxy.forwarded("CreateKey"), 2, "no key was created twice");
    assert_eq!(keys_of(&direct, &secret_id).await.len(), 2);
    assert_no_orphan(&direct, &secret_id, "after bootstrap").await;
}

#[tokio::test]
async fn retiring_a_key_kms_has_already_deleted_succeeds() {
    let direct = sdk(Some("ap-south-2")).await;
    let kms = KmsAdapter::new(&direct);
    let gone = "arn:aws:kms:ap-south-2:000000000000:key/00000000-0000-0000-0000-000000000000";
    kms.disable_key(gone).await.unwrap();
    kms.schedule_deletion(gone, 7).await.unwrap();
}

#[tokio::test]
async fn keys_are_created_with_the_key_policy_that_names_their_users() {
    let direct = sdk(Some("ap-northeast-3")).await;
    let secret_id = format!("kms-jwt-test/harden/key-policy/{}", uuid::Uuid::new_v4());
    let access = KeyAccess::new(
        "arn:aws:iam::000000000000:role/kms-jwt-rotate",
        &["arn:aws:iam::000000000000:role/kms-jwt-sign".to_owned()],
    )
    .unwrap();
    let kms = KmsAdapter::new(&direct).with_key_access(access.clone());
    let store = SecretsManagerStore::new(&direct, &secret_id, None);
    Rotator::new(kms, store, daily_es256_policy(), secret_id.as_str()).reconcile(T0).await.unwrap();
    let ring = stored(&direct, &secret_id).await;
    for key in &ring.keys {
        let policy = aws_sdk_kms::Client::new(&direct)
            .get_key_policy()
            .key_id(&key.kms_key_arn)
            .policy_name("default")
            .send()
            .await
            .unwrap()
            .policy
            .unwrap();
        let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(policy, access.policy(key.alg), "{}", key.kid);
    }
}

/// A jwks configuration as the function reads it, with a one-second keyring cache.
fn jwks_config(secret_id: &str) -> kms_jwt::config::JwksConfig {
    kms_jwt::config::JwksConfig::from_lookup(|name| match name {
        "KEYRING_SECRET_ID" => Some(secret_id.to_owned()),
        "ISSUER" => Some(ISSUER.to_owned()),
        "KEYRING_CACHE_TTL" => Some("1".to_owned()),
        _ => None,
    })
    .unwrap()
}

/// Tight limits so the test is quick: one attempt may take 1 s, a call with retries 2 s.
const TIGHT: CallTimeouts = CallTimeouts { attempt: Duration::from_secs(1), total: Duration::from_secs(2) };

#[tokio::test]
async fn a_hanging_secrets_manager_costs_jwks_seconds_stale_when_warm_and_503_when_cold() {
    let region = "us-east-2";
    let direct = sdk(Some(region)).await;
    let secret_id = format!("kms-jwt-test/harden/jwks-hang/{}", uuid::Uuid::new_v4());
    rotator_on(&direct, &secret_id).reconcile(T0).await.unwrap();
    let proxy = AwsProxy::start_for_localstack().await.unwrap();
    let via_proxy = proxied_sdk(&proxy, region, TIGHT).await;
    let config = jwks_config(&secret_id);
    let service = config.jwks_service(SecretsManagerStore::new(&via_proxy, &secret_id, None));
    let warm = service.answer("GET", kms_jwt::jwks::JWKS_PATH, None).await;
    assert_eq!(warm.status, 200);

    proxy.inject("GetSecretValue", Fault::Hang);
    tokio::time::sleep(Duration::from_millis(1_100)).await; // past the cache TTL
    let started = Instant::now();
    let stale = service.answer("GET", kms_jwt::jwks::JWKS_PATH, None).await;
    assert!(started.elapsed() < Duration::from_secs(4), "warm answer took {:?}", started.elapsed());
    assert_eq!((stale.status, &stale.body), (200, &warm.body), "the last good key set");

    let cold = config.jwks_service(SecretsManagerStore::new(&via_proxy, &secret_id, None));
    let started = Instant::now();
    let unavailable = cold.answer("GET", kms_jwt::jwks::JWKS_PATH, None).await;
    assert!(started.elapsed() < Duration::from_secs(4), "cold answer took {:?}", started.elapsed());
    assert_eq!(unavailable.status, 503);
    assert!(unavailable.header("retry-after").is_some());
}

#[tokio::test]
async fn a_hanging_kms_sign_answers_a_retryable_error_within_the_call_timeout() {
    let region = "us-west-1";
    let direct = sdk(Some(region)).await;
    let secret_id = format!("kms-jwt-test/harden/sign-hang/{}", uuid::Uuid::new_v4());
    rotator_on(&direct, &secret_id).reconcile(T0).await.unwrap();
    let proxy = AwsProxy::start_for_localstack().await.unwrap();
    proxy.inject("Sign", Fault::Hang);
    let via_proxy = proxied_sdk(&proxy, region, TIGHT).await;
    let signer = SignConfig { default_token_ttl: Duration::from_secs(300), ..SignConfig::for_tests(ISSUER) }
        .token_signer(KmsAdapter::new(&via_proxy), SecretsManagerStore::new(&direct, &secret_id, None));
    let started = Instant::now();
    let err = signer
        .sign_event(serde_json::json!({"claims": {"sub": "x"}}), kms_jwt::unix_now())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.code(), "KmsTimeout");
}
