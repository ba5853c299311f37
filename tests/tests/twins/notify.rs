//! After a transition is committed, rotate tells the outside: the CDN invalidation a
//! revocation owes (recorded in the keyring by the withdrawal itself, retried by later runs
//! until confirmed) and the lifecycle events of every committed write. Neither ever blocks or
//! undoes a transition. In-memory twins; the CDN and the bus fail through `Faulty`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kms_jwt::events::EventKind;
use kms_jwt::jwks::{DISCOVERY_PATH, JWKS_PATH};
use kms_jwt::memory::{Fault, Faulty, MemoryEdgeCache, MemoryEventBus, MemoryKms, MemoryStore};
use kms_jwt::ports::KeyringStore;
use kms_jwt::rotate::{Command, RotationPolicy, Rotator, Transition};
use kms_jwt::SigningAlg;
use kms_jwt_tests::memory::stored;
use serde_json::Value;

const T0: i64 = 1_700_000_000;
const HOUR: i64 = 3_600;
/// The jwks function's keyring cache lifetime in these tests.
const CACHE_TTL: i64 = 60;

fn policy() -> RotationPolicy {
    RotationPolicy::for_tests(SigningAlg::ES256)
}

fn paths() -> Vec<String> {
    vec![JWKS_PATH.to_owned(), DISCOVERY_PATH.to_owned()]
}

fn keyring() -> String {
    kms_jwt::test_stacks::single_region_keyring()
}

/// A fault that a test switches while the rotator holds the wrapper.
fn switchable() -> (Arc<Mutex<Fault>>, impl FnMut(&'static str) -> Fault + Send + 'static) {
    let fault = Arc::new(Mutex::new(Fault::Pass));
    let decide = {
        let fault = Arc::clone(&fault);
        move |_: &'static str| *fault.lock().unwrap()
    };
    (fault, decide)
}

fn current_kid(store: &MemoryStore) -> String {
    stored(store).current().unwrap().kid.clone()
}

#[tokio::test]
async fn a_revocation_invalidates_both_paths_again_once_the_jwks_cache_has_expired() {
    let (kms, store, edge) =
        (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()), Arc::new(MemoryEdgeCache::new()));
    let rotator = Rotator::new(kms, store.clone(), policy(), keyring()).with_edge_cache(
        edge.clone(),
        paths(),
        Duration::from_secs(CACHE_TTL as u64),
    );
    rotator.reconcile(T0).await.unwrap();
    assert!(edge.invalidations().is_empty(), "no revocation, no invalidation");

    let revoked = current_kid(&store);
    let t1 = T0 + HOUR;
    let report = rotator.run(Command::Revoke { kid: revoked.clone() }, t1).await.unwrap();
    assert_eq!(report.transitions[0], Transition::Revoke);
    assert!(stored(&store).find(&revoked).is_none(), "withdrawn");
    let sent = edge.invalidations();
    assert_eq!(sent.len(), 1, "invalidated right after the withdrawal");
    assert_eq!(sent[0].paths, vec!["/.well-known/jwks.json", "/.well-known/openid-configuration"]);
    // A jwks container may serve its cached keyring for CACHE_TTL more: one more is owed.
    assert_eq!(report.edge_invalidations_owed, vec![revoked.clone()]);
    assert_eq!(stored(&store).edge_invalidations[0].not_before, t1 + CACHE_TTL);
    assert!(report.incomplete.iter().any(|i| i.contains("one more is due")), "{:?}", report.incomplete);

    // Before the cache expired, a run repeats the same invalidation (same CallerReference).
    let early = rotator.reconcile(t1 + 30).await.unwrap();
    assert_eq!((edge.calls(), edge.invalidations().len()), (2, 1));
    assert_eq!(early.edge_invalidations_owed, vec![revoked.clone()]);

    // After it, a new invalidation, confirmed: the debt leaves the keyring.
    let settled = rotator.reconcile(t1 + CACHE_TTL).await.unwrap();
    let sent = edge.invalidations();
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[0].reference, sent[1].reference);
    assert_eq!(sent[1].paths, paths());
    assert!(settled.edge_invalidations_owed.is_empty(), "{settled:?}");
    assert!(stored(&store).edge_invalidations.is_empty());
    rotator.reconcile(t1 + 2 * HOUR).await.unwrap();
    assert_eq!(edge.calls(), 3, "nothing owed, nothing sent");
}

#[tokio::test]
async fn with_no_cdn_nothing_is_owed_and_the_keyring_is_as_before() {
    let store = Arc::new(MemoryStore::new());
    let rotator = Rotator::new(MemoryKms::new(), store.clone(), policy(), keyring());
    rotator.reconcile(T0).await.unwrap();
    let report = rotator.run(Command::Revoke { kid: current_kid(&store) }, T0 + HOUR).await.unwrap();
    assert!(report.edge_invalidations_owed.is_empty());
    assert!(!store.current_text().unwrap().contains("edge_invalidations"));
}

#[tokio::test]
async fn a_failing_or_hanging_cdn_never_blocks_the_revocation_and_the_next_run_retries() {
    for fault in [Fault::FailBefore, Fault::FailAfter, Fault::Hang] {
        let (kms, store, edge) =
            (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()), Arc::new(MemoryEdgeCache::new()));
        let (switch, decide) = switchable();
        // A hanging call costs one step reserve (the adapters' own time limit on AWS).
        let rotator = Rotator::new(kms, store.clone(), policy(), keyring())
            .with_step_reserve(Duration::from_millis(300))
            .with_edge_cache(Faulty::new(edge.clone(), decide), paths(), Duration::ZERO);
        rotator.reconcile(T0).await.unwrap();
        let revoked = current_kid(&store);
        *switch.lock().unwrap() = fault;
        let report = rotator.run(Command::Revoke { kid: revoked.clone() }, T0 + HOUR).await.unwrap();
        assert_eq!(report.transitions[0], Transition::Revoke, "{fault:?}");
        assert!(stored(&store).find(&revoked).is_none(), "{fault:?}: the withdrawal stands");
        assert!(stored(&store).next().is_some(), "{fault:?}: the follow-up went on");
        assert!(
            report
                .incomplete
                .iter()
                .any(|i| i.starts_with(&format!("CDN invalidation for revoked {revoked}"))),
            "{fault:?}: {:?}",
            report.incomplete
        );
        assert_eq!(report.edge_invalidations_owed, vec![revoked.clone()], "{fault:?}");

        *switch.lock().unwrap() = Fault::Pass;
        let next = rotator.reconcile(T0 + 2 * HOUR).await.unwrap();
        assert!(next.edge_invalidations_owed.is_empty(), "{fault:?}: {next:?}");
        assert!(stored(&store).edge_invalidations.is_empty());
        // FailAfter: the first call took effect; its retry is the same invalidation.
        assert_eq!(edge.invalidations().len(), 1, "{fault:?}");
    }
}

#[tokio::test]
async fn a_crash_right_after_the_withdrawal_leaves_the_invalidation_owed() {
    let (kms, store, edge) =
        (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()), Arc::new(MemoryEdgeCache::new()));
    let healthy = Rotator::new(kms.clone(), store.clone(), policy(), keyring()).with_edge_cache(
        edge.clone(),
        paths(),
        Duration::ZERO,
    );
    healthy.reconcile(T0).await.unwrap();
    let revoked = current_kid(&store);
    // The withdrawal's write lands, its reply is lost: the run ends there, as if it crashed.
    let crashing = Rotator::new(
        kms.clone(),
        Faulty::new(store.clone(), |op| if op == "CompareAndSwap" { Fault::FailAfter } else { Fault::Pass }),
        policy(),
        keyring(),
    )
    .with_edge_cache(edge.clone(), paths(), Duration::ZERO);
    crashing.run(Command::Revoke { kid: revoked.clone() }, T0 + HOUR).await.unwrap_err();
    assert!(stored(&store).find(&revoked).is_none());
    assert!(edge.invalidations().is_empty());
    assert_eq!(stored(&store).edge_invalidations[0].kid, revoked);
    healthy.reconcile(T0 + 2 * HOUR).await.unwrap();
    assert_eq!(edge.invalidations().len(), 1);
    assert!(stored(&store).edge_invalidations.is_empty());
}

fn kinds(bus: &MemoryEventBus) -> Vec<EventKind> {
    bus.events().iter().map(|e| e.kind).collect()
}

fn detail(bus: &MemoryEventBus, index: usize) -> Value {
    serde_json::from_str(&bus.events()[index].detail_json()).unwrap()
}

#[tokio::test]
async fn every_committed_transition_is_published_with_the_documented_schema() {
    let (kms, store, bus) =
        (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()), Arc::new(MemoryEventBus::new()));
    let policy = RotationPolicy { max_published_keys: 3, retirement_grace: 30 * 86_400, ..policy() };
    let rotator = Rotator::new(kms, store.clone(), policy.clone(), keyring())
        .with_lifecycle_events(bus.clone(), Some("us-east-1".into()));

    rotator.reconcile(T0).await.unwrap();
    assert_eq!(kinds(&bus), vec![EventKind::Published, EventKind::Published, EventKind::Current]);
    let current = detail(&bus, 2);
    assert_eq!(bus.events()[2].detail_type(), "Signing Key Current");
    assert_eq!(current["schema_version"], 1);
    assert_eq!(current["transition"], "current");
    assert_eq!(current["kid"], current_kid(&store).as_str());
    assert_eq!(current["alg"], "ES256");
    assert_eq!(current["region"], "us-east-1");
    assert_eq!(current["keyring"], keyring().as_str());
    assert_eq!(current["time"], "2023-11-14T22:13:20Z");
    assert_eq!(current["activated_at"], "2023-11-14T22:13:20Z");
    let version = store.load().await.unwrap().unwrap().version_id;
    assert_eq!(current["keyring_version"], version.as_str());

    rotator.reconcile(T0 + 60).await.unwrap();
    assert_eq!(bus.events().len(), 3, "nothing changed, nothing published");

    // A scheduled rotation: the new next key is published, the old next key is current.
    let t1 = T0 + policy.rotation_period;
    rotator.reconcile(t1).await.unwrap();
    assert_eq!(kinds(&bus)[3..], [EventKind::Published, EventKind::Current]);
    // The next one would publish a fourth key: it waits, and says so.
    let t2 = t1 + policy.rotation_period;
    let held = rotator.reconcile(t2).await.unwrap();
    assert!(held.rotation_held.is_some());
    assert_eq!(kinds(&bus)[5..], [EventKind::RotationHeld]);
    assert_eq!(detail(&bus, 5)["rotation_held"]["max_published_keys"], 3);

    // A revocation of the current key: revoked, the next key current, a new next published.
    let revoked = current_kid(&store);
    rotator.run(Command::Revoke { kid: revoked.clone() }, t2 + 10).await.unwrap();
    assert_eq!(kinds(&bus)[6..], [EventKind::Revoked, EventKind::Current, EventKind::Published]);
    assert_eq!(detail(&bus, 6)["kid"], revoked.as_str());
    assert_eq!(bus.events()[6].detail_type(), "Signing Key Revoked");

    // The previous key's tokens expire: retired.
    let before = bus.events().len();
    rotator.reconcile(t2 + policy.retirement_grace + policy.rotation_period).await.unwrap();
    assert!(kinds(&bus)[before..].contains(&EventKind::Retired), "{:?}", kinds(&bus));
    let ids: std::collections::HashSet<String> =
        bus.events().iter().map(|e| e.detail.event_id.clone()).collect();
    assert_eq!(ids.len(), bus.events().len(), "every transition has its own id");
}

#[tokio::test]
async fn events_come_only_from_writes_that_landed() {
    let bus = Arc::new(MemoryEventBus::new());
    let rotator = Rotator::new(
        MemoryKms::new(),
        Faulty::new(
            MemoryStore::new(),
            |op| if op == "CompareAndSwap" { Fault::FailBefore } else { Fault::Pass },
        ),
        policy(),
        keyring(),
    )
    .with_lifecycle_events(bus.clone(), None);
    rotator.reconcile(T0).await.unwrap_err();
    assert!(bus.events().is_empty());
    assert_eq!(bus.calls(), 0);
}

#[tokio::test]
async fn a_failing_bus_never_blocks_a_transition() {
    for fault in [Fault::FailBefore, Fault::Hang] {
        let store = Arc::new(MemoryStore::new());
        let bus = Arc::new(MemoryEventBus::new());
        let rotator = Rotator::new(MemoryKms::new(), store.clone(), policy(), keyring())
            .with_step_reserve(Duration::from_millis(300))
            .with_lifecycle_events(Faulty::new(bus.clone(), move |_| fault), None);
        let report = rotator.reconcile(T0).await.unwrap();
        assert_eq!(report.transitions, vec![Transition::Bootstrap], "{fault:?}");
        assert_eq!(stored(&store).keys.len(), 2);
        assert_eq!(report.events_unpublished, 3, "{fault:?}");
        assert!(
            report.incomplete.iter().any(|i| i.starts_with("lifecycle events: 3 not published")),
            "{report:?}"
        );
        assert!(bus.events().is_empty());
    }
}

#[tokio::test]
async fn entries_the_bus_rejects_are_sent_once_more() {
    for (rejected, lost) in [(2, 0), (5, 2)] {
        let bus = Arc::new(MemoryEventBus::new());
        let rotator = Rotator::new(MemoryKms::new(), MemoryStore::new(), policy(), keyring())
            .with_lifecycle_events(bus.clone(), None);
        bus.reject_entries(rejected);
        let report = rotator.reconcile(T0).await.unwrap();
        assert_eq!(bus.calls(), 2);
        assert_eq!(bus.events().len(), 3 - lost);
        assert_eq!(report.events_unpublished, lost);
    }
}
