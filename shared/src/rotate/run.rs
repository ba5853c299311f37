//! The reconciler: carries out a plan against KMS and the keyring store (see the module docs
//! of [`crate::rotate`] for the order of a run).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::error::{RotateError, MAX_CONFLICTS};
use super::plan::{early_activation, plan, withdraw, Mode, Need, Plan};
use super::policy::RotationPolicy;
use super::report::{EarlyActivation, RotationHeld, RotationReport, Transition};
use crate::arn::{arn_region, local_key_arn, regional_arn};
use crate::events::{EventOrigin, LifecycleEvent};
use crate::jose::jwk::PublicJwk;
use crate::keyring::{Home, KeyRecord, KeyState, Keyring, NewKey, PendingCreation, UnixTime};
use crate::ports::{
    EdgeCache, KeyAdmin, KeyPage, KeyTags, KeyringStore, KmsError, LifecycleEvents, NoEdgeCache,
    NoLifecycleEvents, RotateKms, StoreError,
};
use crate::regions::{Regions, ReplicaRegion};

mod converge;
mod housekeeping;
mod kms_everywhere;
mod notify;
mod regions;
mod revoke;

/// A creation intent older than this belongs to a dead run: Lambda stops a run after 15
/// minutes at most.
pub const STALE_INTENT_SECS: i64 = 15 * 60 + 60;
/// Budget of a run started without a deadline (tests, local runs): inside the deployed
/// 30-second Lambda timeout.
pub const DEFAULT_RUN_BUDGET: Duration = Duration::from_secs(25);
/// Time kept in hand per further AWS call: the SDK's default operation timeout.
pub const DEFAULT_STEP_RESERVE: Duration = Duration::from_secs(5);

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Scheduled: whatever is due.
    Reconcile,
    /// Rotate now, whatever the current key's age. Pre-publication is still honoured unless
    /// `force` (which can make fresh tokens fail at clients holding an older JWKS).
    Rotate {
        /// Rotate even before the next key's pre-publication time is over.
        force: bool,
    },
    /// Withdraw a compromised key at once.
    Revoke {
        /// The kid of the key to withdraw.
        kid: String,
    },
    /// Report; change nothing.
    Status,
    /// Multi-region fail-over: make this region the keyring's home (epoch + 1). Run in the new
    /// home after its replica secret was promoted to a standalone secret; from then on the
    /// old home's rotate refuses to write (`NotHome`).
    TakeOver,
}

/// Runs reconciliations against a KMS and a keyring store.
pub struct Rotator<K, S> {
    kms: K,
    store: S,
    policy: RotationPolicy,
    keyring_name: String,
    step_reserve: Duration,
    regions: Option<Regions>,
    /// The CDN in front of the jwks function ([`NoEdgeCache`] when there is none).
    edge: Arc<dyn EdgeCache>,
    /// The paths a revocation invalidates at the CDN.
    edge_paths: Vec<String>,
    /// The jwks function's keyring cache lifetime, in seconds: how long after a withdrawal a
    /// jwks container may still serve the revoked key.
    origin_cache_ttl: i64,
    /// Where lifecycle events go ([`NoLifecycleEvents`] when nowhere).
    events: Arc<dyn LifecycleEvents>,
    /// Stamped on every event: keyring and region.
    origin: EventOrigin,
}

/// What a run saw of the replica regions.
struct Observed {
    /// The keyring with the home claimed and newly replicated keys stamped.
    keyring: Keyring,
    /// Keys stamped `replicated_at` by this observation.
    replicated: Vec<String>,
}

/// How a sweep of one stale intent ended.
enum SweepProgress {
    Done,
    /// Out of time; resume from this cursor next run.
    Paused(Option<String>),
}

/// Progress of one run, kept across compare-and-swap retries and phases.
struct RunState {
    request_id: String,
    deadline: Instant,
    reserve: Duration,
    fresh: Vec<NewKey>,
    /// The last keyring this run read or wrote, and its version.
    latest: Option<(Keyring, Option<String>)>,
    wrote: bool,
    retired: Vec<String>,
    orphans_deleted: Vec<String>,
    /// Stale intents this run has swept completely.
    swept: Vec<String>,
    /// Stale intents whose sweep ran out of time, with where to resume.
    sweep_cursors: Vec<(String, Option<String>)>,
    /// This run's creation intent may be in the stored keyring.
    intent_outstanding: bool,
    /// A key creation may have left a key in KMS this run never learned about (a lost reply
    /// or timeout), or a created key could not be set up nor deleted: only a later sweep, by
    /// tag, may clear the intent.
    creation_uncertain: bool,
    /// A keyring write answered neither success nor conflict: it may have landed.
    write_uncertain: bool,
    /// Steps left for a later run, for the report.
    incomplete: Vec<String>,
    /// The run's clock and who it is, for the lifecycle events of its writes.
    now: UnixTime,
    origin: EventOrigin,
    /// Lifecycle events of committed writes, not published yet.
    events: Vec<LifecycleEvent>,
    /// Events the bus did not take (failed or out of time): lost, counted.
    events_unpublished: usize,
    /// The owed CDN invalidation was attempted (once per run).
    edge_attempted: bool,
}

impl RunState {
    fn new(deadline: Instant, reserve: Duration, now: UnixTime, origin: EventOrigin) -> Self {
        RunState {
            request_id: uuid::Uuid::new_v4().to_string(),
            deadline,
            reserve,
            fresh: Vec::new(),
            latest: None,
            wrote: false,
            retired: Vec::new(),
            orphans_deleted: Vec::new(),
            swept: Vec::new(),
            sweep_cursors: Vec::new(),
            intent_outstanding: false,
            creation_uncertain: false,
            write_uncertain: false,
            incomplete: Vec::new(),
            now,
            origin,
            events: Vec::new(),
            events_unpublished: 0,
            edge_attempted: false,
        }
    }

    /// Is there time for `steps` more AWS calls (each bounded by the SDK's operation
    /// timeout) before the run's deadline?
    fn has_time_for(&self, steps: u32) -> bool {
        Instant::now() + self.reserve * steps <= self.deadline
    }

    /// The latest time one further AWS call may answer by: one call's time (the adapters'
    /// own bound, kept here too for ports that have none), within the soft deadline.
    fn call_deadline(&self) -> Instant {
        (Instant::now() + self.reserve).min(self.soft_deadline())
    }

    /// The time by which an open-ended step must stop, keeping one write's worth in hand.
    fn soft_deadline(&self) -> Instant {
        self.deadline.checked_sub(self.reserve).unwrap_or(self.deadline)
    }

    /// A write of `ring` (based on the keyring last read or written, `latest`) landed as
    /// `version`: the transitions it committed become lifecycle events.
    fn record_written(&mut self, ring: Keyring, version: String) {
        if let Some((before, _)) = &self.latest {
            let changes = self.origin.changes(before, &ring, self.now, &version);
            self.events.extend(changes);
        }
        self.record_tidied(ring, version);
    }

    /// A write that only tidied queues (retirement, intents, owed invalidations), possibly
    /// over a keyring re-read since `latest`: it commits no transition of its own.
    fn record_tidied(&mut self, ring: Keyring, version: String) {
        self.latest = Some((ring, Some(version)));
        self.wrote = true;
    }
}

/// What the planning phase of a run did.
#[derive(Default)]
struct Converged {
    transitions: Vec<Transition>,
    created: Vec<String>,
    early_activation: Option<EarlyActivation>,
    rotation_held: Option<RotationHeld>,
}

/// Compare-and-swap conflicts met while writing one change, counted against
/// [`MAX_CONFLICTS`].
#[derive(Default)]
struct Conflicts(usize);

impl Conflicts {
    /// Count one more conflict; at the limit, give up (the next run carries on).
    fn count(&mut self) -> Result<(), RotateError> {
        self.0 += 1;
        info!(conflicts = self.0, "keyring changed while planning; re-reading");
        if self.0 >= MAX_CONFLICTS {
            Err(RotateError::TooManyConflicts)
        } else {
            Ok(())
        }
    }
}

/// How dropping settled entries from the keyring ended.
enum Dropped {
    /// Nothing was left to drop.
    Unchanged,
    /// Written: the keyring and its new version.
    Written(Keyring, String),
    /// Every attempt met a conflict: a later run drops them (dropping is idempotent).
    GaveUp,
}

/// Why dropping settled entries from the keyring failed.
enum DropFailed {
    Read(RotateError),
    Write(StoreError),
}

impl<K: RotateKms, S: KeyringStore> Rotator<K, S> {
    /// `keyring_name` tags every key created (`kms-jwt:keyring`); use the secret id.
    pub fn new(kms: K, store: S, policy: RotationPolicy, keyring_name: impl Into<String>) -> Self {
        let keyring_name = keyring_name.into();
        Rotator {
            kms,
            store,
            policy,
            keyring_name: keyring_name.clone(),
            step_reserve: DEFAULT_STEP_RESERVE,
            regions: None,
            edge: Arc::new(NoEdgeCache),
            edge_paths: Vec::new(),
            origin_cache_ttl: 0,
            events: Arc::new(NoLifecycleEvents),
            origin: EventOrigin { keyring: keyring_name.clone(), region: None },
        }
    }

    /// Invalidate `paths` at `edge` after every revocation, until confirmed (see
    /// [`crate::keyring::EdgeInvalidation`]); `origin_cache_ttl` is the jwks function's
    /// `KEYRING_CACHE_TTL`.
    pub fn with_edge_cache(
        mut self,
        edge: impl EdgeCache + 'static,
        paths: Vec<String>,
        origin_cache_ttl: Duration,
    ) -> Self {
        self.edge = Arc::new(edge);
        self.edge_paths = paths;
        self.origin_cache_ttl = i64::try_from(origin_cache_ttl.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Publish the lifecycle events of every committed transition to `events`, stamped with
    /// `region` (see [`crate::events`]).
    pub fn with_lifecycle_events(
        mut self,
        events: impl LifecycleEvents + 'static,
        region: Option<String>,
    ) -> Self {
        self.events = Arc::new(events);
        self.origin.region = region;
        self
    }

    /// Rotate a multi-region keyring from `regions.own()` (its home), replicated to the other
    /// regions: keys are created as multi-Region primaries here (`kms` must create them so)
    /// and made current only once every region has them (see [`crate::regions`]).
    pub fn with_regions(mut self, regions: Regions) -> Self {
        self.regions = Some(regions);
        self
    }

    /// Time kept in hand for each further AWS call: the SDK's operation timeout.
    pub fn with_step_reserve(mut self, reserve: Duration) -> Self {
        self.step_reserve = reserve;
        self
    }

    /// The keyring store the rotator reads and writes.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The name tagged on every key created (`kms-jwt:keyring`).
    pub fn keyring_name(&self) -> &str {
        &self.keyring_name
    }

    /// The KMS the rotator creates and retires keys in.
    pub fn kms(&self) -> &K {
        &self.kms
    }

    async fn read(&self) -> Result<(Keyring, Option<String>), RotateError> {
        match self.store.load().await.map_err(RotateError::Store)? {
            None => Ok((Keyring::empty(), None)),
            Some(doc) => Ok((Keyring::from_json(&doc.text)?, Some(doc.version_id))),
        }
    }

    /// Carry out one command within [`DEFAULT_RUN_BUDGET`].
    pub async fn run(&self, command: Command, now: UnixTime) -> Result<RotationReport, RotateError> {
        self.run_until(command, now, Instant::now() + DEFAULT_RUN_BUDGET).await
    }

    /// Bring the keyring to the state due at `now`.
    pub async fn reconcile(&self, now: UnixTime) -> Result<RotationReport, RotateError> {
        self.run(Command::Reconcile, now).await
    }

    /// Carry out one command, starting no AWS call that could outlive `deadline`.
    ///
    /// Order matters: first what the command is for (a revocation's withdrawal, then the plan
    /// and its write), then housekeeping left by earlier runs (KMS retirements, sweeps of stale
    /// creation intents), each step allowed to fail or run out of time without undoing what
    /// came before. Housekeeping never delays a rotation or a revocation.
    pub async fn run_until(
        &self,
        command: Command,
        now: UnixTime,
        deadline: Instant,
    ) -> Result<RotationReport, RotateError> {
        let mut run = RunState::new(deadline, self.step_reserve, now, self.origin.clone());
        let mode = match command {
            Command::Status => {
                let (ring, version) = self.read().await?;
                return Ok(RotationReport::unchanged(&ring, version, now));
            }
            Command::Revoke { kid } => return self.revoke(&kid, now, run).await,
            Command::TakeOver => return self.take_over(now, run).await,
            Command::Reconcile => Mode::Reconcile,
            Command::Rotate { force } => Mode::RotateNow { force },
        };
        let result = self.converge(&mode, now, &mut run).await;
        self.finish(&mut run).await;
        match result {
            // Refused before any change: not even housekeeping (a fenced region must not
            // retire keys or sweep, nor write its keyring).
            Err(e) if e.refuses_writes() => Err(e),
            Err(e) => {
                self.housekeeping(now, &mut run).await;
                // What was committed before the failure is told all the same.
                self.publish_events(&mut run).await;
                Err(e)
            }
            Ok(converged) => {
                self.housekeeping(now, &mut run).await;
                Ok(self.conclude(converged, run, now).await)
            }
        }
    }

    fn report(&self, converged: Converged, run: RunState, now: UnixTime) -> RotationReport {
        let (ring, version) = run.latest.unwrap_or_default();
        if let Some(held) = &converged.rotation_held {
            warn!(
                published_keys = held.published_keys,
                max_published_keys = held.max_published_keys,
                possible_at = held.possible_at,
                "a due rotation waits: it would publish more keys than verifiers accept"
            );
        }
        if let Some(early) = &converged.early_activation {
            warn!(
                kid = %early.kid,
                published_for_seconds = early.published_for_seconds,
                prepublication_seconds = early.prepublication_seconds,
                "a key began signing before its pre-publication time: verifiers with an older JWKS reject its tokens until they refetch"
            );
        }
        RotationReport {
            changed: run.wrote,
            transitions: converged.transitions,
            created: converged.created,
            retired: run.retired,
            orphans_deleted: run.orphans_deleted,
            keys: Vec::new(),
            retiring: Vec::new(),
            current_key_age_seconds: None,
            keyring_version: version,
            early_activation: converged.early_activation,
            incomplete: run.incomplete,
            rotation_held: converged.rotation_held,
            events_unpublished: run.events_unpublished,
            edge_invalidations_owed: Vec::new(),
        }
        .describing(&ring, now)
    }

    /// The second half of "retire in KMS, then drop from the queue", for the retirement queue
    /// and for creation intents: write the keyring without what this run settled (`settle`
    /// takes it out), starting from `known` if given, with compare-and-swap, again on a
    /// conflict. Callers retire in KMS first, so nothing leaves the keyring's records before
    /// it left KMS.
    async fn drop_settled(
        &self,
        mut known: Option<(Keyring, Option<String>)>,
        settle: impl Fn(&Keyring) -> Keyring,
    ) -> Result<Dropped, DropFailed> {
        for _ in 0..MAX_CONFLICTS {
            let (ring, version) = match known.take() {
                Some(latest) => latest,
                None => self.read().await.map_err(DropFailed::Read)?,
            };
            let settled = settle(&ring);
            if settled == ring {
                return Ok(Dropped::Unchanged);
            }
            match self.store.compare_and_swap(version.as_deref(), &settled.to_json()).await {
                Ok(new_version) => return Ok(Dropped::Written(settled, new_version)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(DropFailed::Write(e)),
            }
        }
        Ok(Dropped::GaveUp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::alg::SigningAlg;
    use crate::memory::{FakeKeyState, MemoryKms, MemoryStore};
    use crate::ports::KeyTags;
    use crate::rotate::tests::{policy, DAY, HOUR};
    use crate::test_stacks::single_region_keyring;

    fn rotator() -> Rotator<MemoryKms, MemoryStore> {
        Rotator::new(MemoryKms::new(), MemoryStore::new(), policy(), single_region_keyring())
    }

    /// A rotator over twins the test also holds, as the single-Region stack configures it.
    fn shared_rotator(
        kms: &Arc<MemoryKms>,
        store: &Arc<MemoryStore>,
    ) -> Rotator<Arc<MemoryKms>, Arc<MemoryStore>> {
        Rotator::new(Arc::clone(kms), Arc::clone(store), policy(), single_region_keyring())
    }

    fn stored(r: &Rotator<MemoryKms, MemoryStore>) -> Keyring {
        Keyring::from_json(&r.store().current_text().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_new_algorithm_is_pre_published_before_it_signs() {
        let (kms, store) = (std::sync::Arc::new(MemoryKms::new()), std::sync::Arc::new(MemoryStore::new()));
        let t0 = 1_700_000_000;
        let es256 = Rotator::new(kms.clone(), store.clone(), policy(), single_region_keyring());
        es256.reconcile(t0).await.unwrap();
        // The operator switches the algorithm (a stack update: rotate's IAM names the key
        // spec): new keys follow it, published keys keep theirs.
        kms.redeploy_for(SigningAlg::ES384);
        let es384 = Rotator::new(
            kms.clone(),
            store.clone(),
            RotationPolicy { alg: SigningAlg::ES384, ..policy() },
            single_region_keyring(),
        );
        let first = es384.reconcile(t0 + policy().rotation_period).await.unwrap();
        assert_eq!(first.transitions, vec![Transition::Rotate]);
        let ring = Keyring::from_json(&store.current_text().unwrap()).unwrap();
        assert_eq!(ring.current().unwrap().alg, SigningAlg::ES256, "the pre-published key signs first");
        assert_eq!(ring.next().unwrap().alg, SigningAlg::ES384);
        es384.reconcile(t0 + 2 * policy().rotation_period).await.unwrap();
        let ring = Keyring::from_json(&store.current_text().unwrap()).unwrap();
        assert_eq!(ring.current().unwrap().alg, SigningAlg::ES384, "after its pre-publication");
        assert!(ring.previous().all(|k| k.alg == SigningAlg::ES256));
    }

    #[tokio::test]
    async fn bootstrap_is_idempotent_then_rotation_waits_for_its_period() {
        let r = rotator();
        let t0 = 1_700_000_000;
        let first = r.reconcile(t0).await.unwrap();
        assert_eq!(first.transitions, vec![Transition::Bootstrap]);
        assert_eq!(first.created.len(), 2);
        assert!(stored(&r).pending.is_empty(), "the creation intent is cleared by the final write");
        let again = r.reconcile(t0 + HOUR).await.unwrap();
        assert!(!again.changed, "nothing is due an hour later");
        assert_eq!(r.kms().calls("CreateKey"), 2);

        let rotated = r.reconcile(t0 + 7 * DAY).await.unwrap();
        assert_eq!(rotated.transitions, vec![Transition::Rotate]);
        assert_eq!(rotated.current_key_age_seconds, Some(0));
        let ring = stored(&r);
        assert_eq!(ring.current().unwrap().kid, first.keys[0].kid, "the old next key signs now");
        assert_eq!(ring.previous().count(), 1);

        let retired = r.reconcile(t0 + 7 * DAY + 2 * HOUR).await.unwrap();
        assert_eq!(retired.transitions, vec![Transition::Retire]);
        let gone = &first.keys[1];
        assert_eq!(retired.retired, vec![gone.kid.clone()]);
        assert!(stored(&r).retiring.is_empty(), "queue cleared once KMS confirmed");
        assert_eq!(
            r.kms().key_state(&gone.kms_key_arn),
            Some(FakeKeyState::PendingDeletion { window_days: 30 })
        );
        let tags = r.kms().key_tags(&gone.kms_key_arn);
        assert!(tags.contains(&("kms-jwt:keyring".to_string(), single_region_keyring())), "{tags:?}");
        assert!(tags.iter().any(|(k, _)| k == "kms-jwt:request"), "{tags:?}");
    }

    #[tokio::test]
    async fn explicit_rotation_honours_prepublication_unless_forced() {
        let r = rotator();
        let t0 = 1_000_000;
        r.reconcile(t0).await.unwrap();
        let early = r.run(Command::Rotate { force: false }, t0 + 60).await.unwrap();
        assert!(!early.changed, "next key has not been published long enough");
        let forced = r.run(Command::Rotate { force: true }, t0 + 60).await.unwrap();
        assert_eq!(forced.transitions, vec![Transition::Rotate]);
        let status = r.run(Command::Status, t0 + 120).await.unwrap();
        assert!(!status.changed);
        assert_eq!(status.keys.len(), 3);
        assert_eq!(status.keys.iter().map(|k| k.age_seconds).max(), Some(120));
        let later = r.run(Command::Rotate { force: false }, t0 + 60 + HOUR).await.unwrap();
        assert_eq!(
            later.transitions,
            vec![Transition::Rotate],
            "rotates before the period once pre-published"
        );
    }

    #[tokio::test]
    async fn revoking_the_current_key_withdraws_it_and_disables_it_at_once() {
        let r = rotator();
        let boot = r.reconcile(0).await.unwrap();
        let ring = stored(&r);
        let current = ring.current().unwrap().clone();
        let next = ring.next().unwrap().clone();
        let report = r.run(Command::Revoke { kid: current.kid.clone() }, 10).await.unwrap();
        assert_eq!(
            report.transitions,
            vec![Transition::Revoke, Transition::AddNext],
            "withdrawn first, replaced after"
        );
        assert_eq!(
            report.early_activation.as_ref().map(|e| e.kid.as_str()),
            Some(next.kid.as_str()),
            "next signs before its pre-publication ended"
        );
        assert_eq!(report.retired, vec![current.kid.clone()]);
        let after = stored(&r);
        assert_eq!(after.current().unwrap().kid, next.kid, "next is promoted");
        assert!(after.next().is_some(), "a new next is created");
        assert!(after.find(&current.kid).is_none());
        assert!(after.retiring.is_empty());
        assert_ne!(r.kms().key_state(&current.kms_key_arn), Some(FakeKeyState::Enabled));
        // Idempotent: the same revocation again is a clear error, changes nothing.
        assert_eq!(
            r.run(Command::Revoke { kid: current.kid.clone() }, 20).await.unwrap_err().code(),
            "UnknownKid"
        );
        assert_eq!(boot.created.len(), 2);
    }

    use crate::memory::{Fault, Faulty};
    use std::sync::Arc;

    /// A rotator whose KMS calls go through `decide` (given the operation name).
    fn faulty_rotator(
        kms: Arc<MemoryKms>,
        store: Arc<MemoryStore>,
        decide: impl FnMut(&'static str) -> Fault + Send + 'static,
    ) -> Rotator<Faulty<Arc<MemoryKms>>, Arc<MemoryStore>> {
        Rotator::new(Faulty::new(kms, decide), store, policy(), single_region_keyring())
    }

    fn stored_in(store: &MemoryStore) -> Keyring {
        Keyring::from_json(&store.current_text().unwrap()).unwrap()
    }

    /// Every enabled KMS key is in the keyring: nothing was orphaned.
    fn assert_no_enabled_orphan(kms: &MemoryKms, ring: &Keyring) {
        for arn in kms.key_arns() {
            if kms.key_state(&arn) == Some(FakeKeyState::Enabled) {
                assert!(ring.holds_arn(&arn), "enabled key {arn} is not in the keyring");
            }
        }
    }

    /// A keyring holding a creation intent of a run that died at `at`.
    async fn with_dead_intent(store: &MemoryStore, request_id: &str, at: UnixTime) {
        let doc = store.load().await.unwrap().unwrap();
        let mut ring = Keyring::from_json(&doc.text).unwrap();
        ring.pending.push(PendingCreation {
            request_id: request_id.into(),
            requested_at: at,
            sweep_cursor: None,
        });
        store.compare_and_swap(Some(&doc.version_id), &ring.to_json()).await.unwrap();
    }

    #[tokio::test]
    async fn revocation_withdraws_the_key_even_when_kms_cannot_create_its_replacement() {
        let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        shared_rotator(&kms, &store).reconcile(0).await.unwrap();
        let compromised = stored_in(&store).current().unwrap().clone();
        let r = faulty_rotator(Arc::clone(&kms), Arc::clone(&store), |op| {
            if op == "CreateKey" {
                Fault::FailBefore
            } else {
                Fault::Pass
            }
        });
        let report = r.run(Command::Revoke { kid: compromised.kid.clone() }, 60).await.unwrap();
        assert_eq!(report.transitions, vec![Transition::Revoke]);
        assert!(
            report.incomplete.iter().any(|s| s.starts_with("replacement key")),
            "{:?}",
            report.incomplete
        );
        let ring = stored_in(&store);
        assert!(ring.find(&compromised.kid).is_none(), "withdrawn from the JWKS");
        assert!(ring.current().is_some(), "the next key signs");
        assert_eq!(report.retired, vec![compromised.kid.clone()], "and the KMS key is disabled");
        assert_ne!(kms.key_state(&compromised.kms_key_arn), Some(FakeKeyState::Enabled));
        // The replacement comes with the next run that can create keys.
        let later = shared_rotator(&kms, &store).reconcile(120).await.unwrap();
        assert_eq!(later.transitions, vec![Transition::AddNext]);
    }

    #[tokio::test(start_paused = true)]
    async fn revocation_and_sweeps_of_a_huge_account_stay_inside_the_time_budget() {
        let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        shared_rotator(&kms, &store).reconcile(0).await.unwrap();
        // A run died after tagging a key with its request id and before recording it; the
        // account holds thousands of other keys, listed a slow page at a time.
        let orphan = kms
            .create_key(
                SigningAlg::ES256,
                &KeyTags { keyring: single_region_keyring(), request_id: "dead-run".into() },
            )
            .await
            .unwrap();
        with_dead_intent(&store, "dead-run", 10).await;
        kms.add_foreign_keys(5_000);
        kms.set_page_size(100);
        let slow_pages = |op: &'static str| match op {
            "FindKeys" => Fault::Delay(Duration::from_secs(1)),
            _ => Fault::Pass,
        };
        let compromised = stored_in(&store).current().unwrap().kid.clone();
        let r = faulty_rotator(Arc::clone(&kms), Arc::clone(&store), slow_pages);
        let started = Instant::now();
        let budget = Duration::from_secs(25);
        let report =
            r.run_until(Command::Revoke { kid: compromised.clone() }, DAY, started + budget).await.unwrap();
        assert!(started.elapsed() <= budget, "the run took {:?}", started.elapsed());
        assert!(stored_in(&store).find(&compromised).is_none(), "the key left the JWKS in this run");
        assert_eq!(report.transitions, vec![Transition::Revoke, Transition::AddNext]);
        let intent = stored_in(&store).pending.into_iter().find(|p| p.request_id == "dead-run").unwrap();
        assert!(intent.sweep_cursor.is_some(), "the unfinished sweep keeps its progress");
        assert_eq!(kms.key_state(&orphan), Some(FakeKeyState::Enabled), "not reached yet");

        // Later runs resume where the sweep stopped, and finish it.
        for run in 1..=5 {
            let started = Instant::now();
            r.run_until(Command::Reconcile, DAY + run * HOUR, started + budget).await.unwrap();
            assert!(started.elapsed() <= budget);
        }
        let ring = stored_in(&store);
        assert!(ring.pending.is_empty(), "swept: {:?}", ring.pending);
        assert!(matches!(kms.key_state(&orphan), Some(FakeKeyState::PendingDeletion { .. })));
        assert_no_enabled_orphan(&kms, &ring);
    }

    #[tokio::test]
    async fn a_failing_key_search_keeps_the_intent_and_a_later_run_finds_the_orphan() {
        let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        shared_rotator(&kms, &store).reconcile(0).await.unwrap();
        let orphan = kms
            .create_key(
                SigningAlg::ES256,
                &KeyTags { keyring: single_region_keyring(), request_id: "dead-run".into() },
            )
            .await
            .unwrap();
        with_dead_intent(&store, "dead-run", 10).await;
        let throttled = faulty_rotator(Arc::clone(&kms), Arc::clone(&store), |op| match op {
            "FindKeys" => Fault::FailBefore,
            _ => Fault::Pass,
        });
        let report = throttled.reconcile(DAY).await.unwrap();
        assert!(report.incomplete.iter().any(|s| s.contains("dead-run")), "{:?}", report.incomplete);
        assert_eq!(stored_in(&store).pending.len(), 1, "the intent is kept");
        shared_rotator(&kms, &store).reconcile(DAY + HOUR).await.unwrap();
        assert!(stored_in(&store).pending.is_empty());
        assert!(matches!(kms.key_state(&orphan), Some(FakeKeyState::PendingDeletion { .. })));
    }

    #[tokio::test]
    async fn a_write_that_may_have_landed_never_gets_its_keys_disabled() {
        let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        // The bootstrap write lands but its reply is lost, and the next read does not show it
        // yet (Secrets Manager is eventually consistent).
        let faulty_store = Arc::new(Faulty::new(Arc::clone(&store), {
            let store = Arc::clone(&store);
            let mut writes = 0;
            move |op| {
                if op == "CompareAndSwap" {
                    writes += 1;
                    if writes == 2 {
                        store.lag_reads(1);
                        return Fault::FailAfter;
                    }
                }
                Fault::Pass
            }
        }));
        let r = Rotator::new(Arc::clone(&kms), Arc::clone(&faulty_store), policy(), single_region_keyring());
        assert_eq!(r.reconcile(0).await.unwrap_err().code(), "KeyringStoreError");
        let ring = stored_in(&store);
        assert_eq!(ring.keys.len(), 2, "the write landed");
        for key in &ring.keys {
            assert_eq!(
                kms.key_state(&key.kms_key_arn),
                Some(FakeKeyState::Enabled),
                "published keys stay enabled"
            );
        }
        assert_eq!(ring.pending.len(), 0, "the landed write had fulfilled its intent");
        assert_no_enabled_orphan(&kms, &ring);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_key_kms_denies_for_a_while_is_waited_for() {
        let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        kms.deny_after_create(Duration::from_secs(3));
        let r = shared_rotator(&kms, &store);
        let report = r.reconcile(0).await.unwrap();
        assert_eq!(report.transitions, vec![Transition::Bootstrap]);
        assert_eq!(kms.key_arns().len(), 2, "no key was created twice");
        assert_no_enabled_orphan(&kms, &stored_in(&store));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_key_denied_for_longer_than_a_run_is_swept_later_with_no_orphan() {
        let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        kms.deny_after_create(Duration::from_secs(300));
        let r = shared_rotator(&kms, &store);
        assert_eq!(r.reconcile(0).await.unwrap_err().code(), "KmsError");
        assert_eq!(stored_in(&store).pending.len(), 1, "the intent covers the key KMS would not let us use");
        kms.deny_after_create(Duration::ZERO); // KMS has caught up
        r.reconcile(DAY).await.unwrap();
        let ring = stored_in(&store);
        assert!(ring.pending.is_empty());
        assert_eq!(ring.keys.len(), 2);
        assert_no_enabled_orphan(&kms, &ring);
    }

    #[tokio::test]
    async fn queued_keys_kms_already_deleted_leave_the_queue() {
        let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        let r = shared_rotator(&kms, &store);
        r.reconcile(0).await.unwrap();
        let first = stored_in(&store).current().unwrap().clone();
        r.run(Command::Rotate { force: true }, 10).await.unwrap();
        // The retirement's DisableKey fails; meanwhile the key is deleted by hand.
        let failing = faulty_rotator(Arc::clone(&kms), Arc::clone(&store), |op| match op {
            "DisableKey" => Fault::FailBefore,
            _ => Fault::Pass,
        });
        let report = failing.reconcile(10 + 3 * HOUR).await.unwrap();
        assert_eq!(report.retiring, vec![first.kid.clone()]);
        kms.schedule_deletion(&first.kms_key_arn, 7).await.unwrap();
        kms.delete_pending();
        let report = r.reconcile(10 + 4 * HOUR).await.unwrap();
        assert_eq!(report.retired, vec![first.kid]);
        assert!(stored_in(&store).retiring.is_empty(), "the queue does not stick");
    }

    #[tokio::test]
    async fn revocations_in_a_row_report_keys_that_sign_before_their_prepublication() {
        let r = rotator();
        r.reconcile(0).await.unwrap();
        let first_next = stored(&r).next().unwrap().kid.clone();
        // Well past pre-publication: promoting the next key is not early.
        let current = stored(&r).current().unwrap().kid.clone();
        let calm = r.run(Command::Revoke { kid: current }, 2 * HOUR).await.unwrap();
        assert_eq!(stored(&r).current().unwrap().kid, first_next);
        assert_eq!(calm.early_activation, None);
        // At once again: the replacement next key was published seconds ago.
        let replacement = stored(&r).next().unwrap().kid.clone();
        let hasty = r.run(Command::Revoke { kid: first_next }, 2 * HOUR + 30).await.unwrap();
        let early = hasty.early_activation.clone().unwrap();
        assert_eq!(early.kid, replacement);
        assert_eq!(early.published_for_seconds, 30);
        assert_eq!(early.prepublication_seconds, HOUR);
        assert!(serde_json::to_string(&hasty).unwrap().contains("early_activation"));
    }

    #[tokio::test]
    async fn a_corrupt_keyring_is_never_overwritten() {
        for text in ["{not json", r#"{"schema_version":9,"keys":[]}"#] {
            let r = Rotator::new(
                MemoryKms::new(),
                MemoryStore::with_document(text),
                policy(),
                single_region_keyring(),
            );
            let err = r.reconcile(0).await.unwrap_err();
            assert_eq!(err.code(), "KeyringInvalid");
            assert_eq!(r.store().current_text().as_deref(), Some(text));
            assert_eq!(r.store().version_count(), 1);
            assert_eq!(r.kms().calls("CreateKey"), 0, "no key is created for a keyring we refuse");
        }
    }
}
