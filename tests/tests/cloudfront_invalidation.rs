//! The CDN invalidation after a revocation, through the real CloudFront SDK adapter, the
//! fault-injecting proxy, and a stand-in for CloudFront's `CreateInvalidation` (LocalStack's
//! community edition has no CloudFront). The keyring and KMS are the in-memory twins: what is
//! under test is the wire (REST-XML, retries, timeouts) and the run's handling of it. No
//! LocalStack needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use kms_jwt::aws::CloudFrontEdgeCache;
use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::rotate::{Command, RotationPolicy, Rotator, Transition};
use kms_jwt::SigningAlg;
use kms_jwt_tests::aws_proxy::{AwsProxy, Fault};
use kms_jwt_tests::cloudfront_stand_in::CloudFrontStandIn;
use kms_jwt_tests::memory::stored;

const DISTRIBUTION: &str = "E2STANDIN0001";
const T0: i64 = 1_700_000_000;
const HOUR: i64 = 3_600;

struct Setup {
    stand_in: CloudFrontStandIn,
    proxy: AwsProxy,
    store: Arc<MemoryStore>,
    rotator: Rotator<Arc<MemoryKms>, Arc<MemoryStore>>,
}

/// A rotator whose CDN is the stand-in behind the proxy, with the SDK's default retries (three
/// attempts, short backoffs) and tight time limits; the keyring bootstrapped at `T0`.
async fn setup() -> Setup {
    let stand_in = CloudFrontStandIn::start(DISTRIBUTION).await.unwrap();
    let proxy = AwsProxy::start(&stand_in.endpoint()).await.unwrap();
    let sdk = proxy
        .sdk_loader()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new("test", "test", None, None, "test"))
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(10)))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(3))
                .build(),
        )
        .load()
        .await;
    let store = Arc::new(MemoryStore::new());
    let rotator = Rotator::new(
        Arc::new(MemoryKms::new()),
        store.clone(),
        RotationPolicy::for_tests(SigningAlg::ES256),
        kms_jwt::test_stacks::single_region_keyring(),
    )
    .with_step_reserve(Duration::from_secs(3))
    .with_edge_cache(
        CloudFrontEdgeCache::new(&sdk, DISTRIBUTION),
        vec!["/.well-known/jwks.json".into(), "/.well-known/openid-configuration".into()],
        Duration::ZERO,
    );
    rotator.reconcile(T0).await.unwrap();
    Setup { stand_in, proxy, store, rotator }
}

fn current_kid(store: &MemoryStore) -> String {
    stored(store).current().unwrap().kid.clone()
}

#[tokio::test]
async fn a_revocation_invalidates_both_paths_and_a_lost_reply_is_retried_as_the_same_invalidation() {
    let s = setup().await;
    let revoked = current_kid(&s.store);
    s.proxy.inject_times("CreateInvalidation", Fault::LoseReply, 1);
    let report = s.rotator.run(Command::Revoke { kid: revoked.clone() }, T0 + HOUR).await.unwrap();
    assert_eq!(report.transitions[0], Transition::Revoke);
    assert!(report.edge_invalidations_owed.is_empty(), "{report:?}");
    assert!(!report.incomplete.iter().any(|i| i.contains("CDN")), "{:?}", report.incomplete);
    // The SDK sent it twice (the first reply was lost); CloudFront made one invalidation.
    assert_eq!(s.proxy.forwarded("CreateInvalidation"), 2);
    assert_eq!(s.stand_in.requests(), 2);
    let created = s.stand_in.invalidations();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].paths, vec!["/.well-known/jwks.json", "/.well-known/openid-configuration"]);
    assert!(created[0].caller_reference.starts_with("kms-jwt-revoke-"));
    assert!(stored(&s.store).edge_invalidations.is_empty());
}

#[tokio::test]
async fn a_hanging_cdn_costs_one_bounded_call_and_the_next_run_retries() {
    let s = setup().await;
    let revoked = current_kid(&s.store);
    s.proxy.inject("CreateInvalidation", Fault::Hang);
    let started = Instant::now();
    let report = s.rotator.run(Command::Revoke { kid: revoked.clone() }, T0 + HOUR).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    assert!(stored(&s.store).find(&revoked).is_none(), "the withdrawal stands");
    assert!(stored(&s.store).next().is_some(), "and the follow-up went on");
    assert!(
        report.incomplete.iter().any(|i| i.starts_with(&format!("CDN invalidation for revoked {revoked}"))),
        "{:?}",
        report.incomplete
    );
    assert_eq!(report.edge_invalidations_owed, vec![revoked.clone()]);
    assert!(s.stand_in.invalidations().is_empty());

    s.proxy.clear("CreateInvalidation");
    let next = s.rotator.reconcile(T0 + 2 * HOUR).await.unwrap();
    assert!(next.edge_invalidations_owed.is_empty(), "{next:?}");
    assert_eq!(s.stand_in.invalidations().len(), 1);
    assert!(stored(&s.store).edge_invalidations.is_empty());
}

#[tokio::test]
async fn replies_lost_for_a_whole_run_leave_it_owed_and_the_next_run_gets_the_same_invalidation() {
    let s = setup().await;
    let revoked = current_kid(&s.store);
    s.proxy.inject("CreateInvalidation", Fault::LoseReplyByClosing);
    let report = s.rotator.run(Command::Revoke { kid: revoked.clone() }, T0 + HOUR).await.unwrap();
    assert_eq!(report.edge_invalidations_owed, vec![revoked.clone()]);
    assert_eq!(s.stand_in.invalidations().len(), 1, "it took effect; no answer came back");
    assert!(s.stand_in.requests() >= 2, "the SDK retried");

    s.proxy.clear("CreateInvalidation");
    let next = s.rotator.reconcile(T0 + 2 * HOUR).await.unwrap();
    assert!(next.edge_invalidations_owed.is_empty(), "{next:?}");
    assert_eq!(s.stand_in.invalidations().len(), 1, "the same CallerReference: no second invalidation");
}
