//! The rotate service: a reconciler that brings the keyring to the state due at `now`.
//!
//! One run:
//! 1. reads the keyring (refusing an invalid one: nothing is ever overwritten);
//! 2. a revocation first withdraws the key in a compare-and-swap of its own, before any KMS
//!    call, then carries on as a reconciliation (its replacement key);
//! 3. plans the transitions due (pure [`plan`]): bootstrap, rotation, a missing next key,
//!    retirement of expired keys;
//! 4. if the plan needs new KMS keys, first records an intent in the keyring, then creates
//!    keys tagged with the run's request id (one `CreateKey` attempt each: see `aws`);
//! 5. writes the new keyring with compare-and-swap; on a conflict it re-reads and plans again,
//!    reusing keys it already created;
//! 6. housekeeping, within the run's time budget: disables and schedules deletion of keys in
//!    the retirement queue, sweeps creation intents older than a run can live (their keys that
//!    never made it into the keyring are scheduled for deletion), and records what it finished.
//!
//! Any step may fail or the process may die between steps: every valid token stays
//! verifiable (keys leave KMS only after they left the keyring), and the next run converges.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::alg::SigningAlg;
use crate::config::{secs, RotateConfig};
use crate::jwk::{JwkError, PublicJwk};
use crate::keyring::{KeyState, Keyring, KeyringError, NewKey, PendingCreation, RetireReason, UnixTime};
use crate::ports::{KeyAdmin, KeyTags, KeyringStore, KmsError, StoreError};

/// Compare-and-swap conflicts a run tolerates before giving up (the next run carries on).
const MAX_CONFLICTS: usize = 16;
/// A creation intent older than this belongs to a dead run: Lambda stops a run after 15
/// minutes at most.
pub const STALE_INTENT_SECS: i64 = 15 * 60 + 60;
/// Budget of a run started without a deadline (tests, local runs): inside the deployed
/// 30-second Lambda timeout.
pub const DEFAULT_RUN_BUDGET: Duration = Duration::from_secs(25);
/// Time kept in hand per further AWS call: the SDK's default operation timeout.
pub const DEFAULT_STEP_RESERVE: Duration = Duration::from_secs(5);
/// How long a run waits for a key it just created to become usable.
const NEW_KEY_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The stored keyring is invalid. Nothing was written: a human must look at it.
    #[error("refusing to touch the stored keyring: {0}")]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error(transparent)]
    Store(StoreError),
    #[error("KMS returned a public key kms-jwt cannot use: {0}")]
    PublicKey(#[from] JwkError),
    #[error("gave up after {MAX_CONFLICTS} compare-and-swap conflicts on the keyring")]
    TooManyConflicts,
    #[error("no published key has kid {0:?}")]
    UnknownKid(String),
    #[error("the run's time budget ran out before {0}")]
    OutOfTime(&'static str),
    /// A rotation would publish more keys (or a larger JWKS) than verifiers accept.
    #[error("{0}")]
    TooManyPublishedKeys(RotationHeld),
}

impl RotateError {
    /// A stable name for the Lambda `errorType`.
    pub fn kind(&self) -> &'static str {
        match self {
            RotateError::Keyring(_) => "KeyringInvalid",
            RotateError::Kms(_) => "KmsError",
            RotateError::Store(_) => "KeyringStoreError",
            RotateError::PublicKey(_) => "PublicKeyInvalid",
            RotateError::TooManyConflicts => "KeyringConflict",
            RotateError::UnknownKid(_) => "UnknownKid",
            RotateError::OutOfTime(_) => "OutOfTime",
            RotateError::TooManyPublishedKeys(_) => "TooManyPublishedKeys",
        }
    }
}

/// Lifecycle timing derived from configuration, in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    pub alg: SigningAlg,
    pub rotation_period: i64,
    pub prepublication: i64,
    pub retirement_grace: i64,
    pub deletion_window_days: i32,
    /// Most keys the JWKS may hold (`MAX_PUBLISHED_KEYS`): a rotation that would publish
    /// more waits until enough previous keys have retired.
    pub max_published_keys: usize,
}

#[cfg(any(test, feature = "test-util"))]
impl RotationPolicy {
    /// The policy tests start from (and override with struct update syntax where a test is
    /// about one of its values): weekly rotation, 10 minutes of pre-publication, two hours of
    /// retirement grace, the shortest KMS deletion window, ALB's key cap.
    pub fn for_tests(alg: SigningAlg) -> Self {
        RotationPolicy {
            alg,
            rotation_period: 7 * 86_400,
            prepublication: 600,
            retirement_grace: 7_200,
            deletion_window_days: 7,
            max_published_keys: DEFAULT_MAX_PUBLISHED_KEYS,
        }
    }
}

/// Most keys ALB's JWT verification accepts in a JWKS, our default cap.
pub const DEFAULT_MAX_PUBLISHED_KEYS: usize = 10;

/// Largest JWKS ALB's JWT verification accepts (150 KB; read as the smaller 150,000 bytes).
/// Rotation keeps the JWKS within it whatever the key size.
pub const MAX_JWKS_BYTES: usize = 150_000;

/// Why a rotation that was due or asked for did not happen, and when it can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationHeld {
    /// Keys the JWKS would hold after the rotation.
    pub published_keys: usize,
    pub max_published_keys: usize,
    /// Size of that JWKS, in bytes.
    pub jwks_bytes: usize,
    pub max_jwks_bytes: usize,
    /// When enough previous keys will have retired (their tokens expired) for the rotation to
    /// fit; `None` if retirement alone never makes room (a cap lowered below the keys held).
    pub possible_at: Option<UnixTime>,
}

impl std::fmt::Display for RotationHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rotation refused: the JWKS would hold {} keys ({} bytes); the limits are {} keys (MAX_PUBLISHED_KEYS) and {} bytes, as ALB's JWT verification accepts no more. ",
            self.published_keys, self.jwks_bytes, self.max_published_keys, self.max_jwks_bytes
        )?;
        match self.possible_at.and_then(|at| u64::try_from(at).ok()) {
            Some(at) => write!(
                f,
                "Possible from {} (unix {at}), when the oldest previous key's tokens have expired and it retires.",
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(at))
            )?,
            None => write!(f, "Retirement alone will not make room: revoke a previous key or raise MAX_PUBLISHED_KEYS.")?,
        }
        write!(f, " Revocation is never refused.")
    }
}

impl From<&RotateConfig> for RotationPolicy {
    fn from(c: &RotateConfig) -> Self {
        RotationPolicy {
            alg: c.signing_alg,
            rotation_period: secs(c.rotation_period),
            prepublication: secs(c.prepublication()),
            retirement_grace: secs(c.retirement_grace()),
            deletion_window_days: c.deletion_window_days,
            max_published_keys: c.max_published_keys,
        }
    }
}

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Scheduled: whatever is due.
    Reconcile,
    /// Rotate now, whatever the current key's age. Pre-publication is still honoured unless
    /// `force` (which can make fresh tokens fail at clients holding an older JWKS).
    Rotate { force: bool },
    /// Withdraw a compromised key at once.
    Revoke { kid: String },
    /// Report; change nothing.
    Status,
}

#[derive(serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Action {
    Reconcile,
    Rotate {
        #[serde(default)]
        force: bool,
    },
    Revoke {
        kid: String,
    },
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized rotate event: {0}. Send an EventBridge scheduled event, {{}}, or {{\"action\": \"reconcile\" | \"rotate\" | \"revoke\" | \"status\"}}")]
pub struct UnrecognizedEvent(pub String);

impl Command {
    /// Read an invocation payload: an EventBridge rule or Scheduler event (or `{}`) means
    /// "reconcile"; an object with `action` is an explicit command.
    pub fn from_event(event: &serde_json::Value) -> Result<Command, UnrecognizedEvent> {
        let Some(object) = event.as_object() else {
            return Err(UnrecognizedEvent("the payload is not a JSON object".into()));
        };
        if object.contains_key("action") {
            return match serde_json::from_value::<Action>(event.clone()) {
                Ok(Action::Reconcile) => Ok(Command::Reconcile),
                Ok(Action::Rotate { force }) => Ok(Command::Rotate { force }),
                Ok(Action::Revoke { kid }) => Ok(Command::Revoke { kid }),
                Ok(Action::Status) => Ok(Command::Status),
                Err(e) => Err(UnrecognizedEvent(e.to_string())),
            };
        }
        let scheduled = object.is_empty()
            || object.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event")
            || matches!(object.get("source").and_then(|v| v.as_str()), Some("aws.events" | "aws.scheduler"));
        if scheduled {
            Ok(Command::Reconcile)
        } else {
            Err(UnrecognizedEvent("neither a scheduled event nor an action".into()))
        }
    }
}

/// A lifecycle step a run took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Bootstrap,
    Rotate,
    /// A keyring without a next key (hand-repaired) gets one.
    AddNext,
    Revoke,
    /// Previous keys whose tokens have all expired left the JWKS.
    Retire,
}

/// The JSON summary a run answers and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    pub changed: bool,
    pub transitions: Vec<Transition>,
    /// kids of keys created and added to the keyring.
    pub created: Vec<String>,
    /// kids whose KMS keys were disabled and scheduled for deletion by this run.
    pub retired: Vec<String>,
    /// KMS keys of crashed runs found and scheduled for deletion.
    pub orphans_deleted: Vec<String>,
    pub keys: Vec<KeyStatus>,
    /// kids waiting for their KMS retirement (it failed; the next run retries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<String>,
    /// Seconds the current key has been signing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_key_age_seconds: Option<i64>,
    /// Keyring secret version after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyring_version: Option<String>,
    /// A key this run made current before its pre-publication time was over (a revocation
    /// or a forced rotation): some verifiers reject its tokens until they refetch the JWKS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_activation: Option<EarlyActivation>,
    /// Steps this run could not finish (failed, or out of time); the next run carries on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
    /// A scheduled rotation that was due but would have published too many keys: it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_held: Option<RotationHeld>,
}

/// A key that began signing before verifiers could all have fetched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarlyActivation {
    pub kid: String,
    pub published_for_seconds: i64,
    pub prepublication_seconds: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    pub kid: String,
    pub state: KeyState,
    pub alg: SigningAlg,
    pub kms_key_arn: String,
    pub age_seconds: i64,
}

impl RotationReport {
    fn unchanged(ring: &Keyring, version: Option<String>, now: UnixTime) -> Self {
        RotationReport {
            changed: false,
            transitions: Vec::new(),
            created: Vec::new(),
            retired: Vec::new(),
            orphans_deleted: Vec::new(),
            keys: Vec::new(),
            retiring: Vec::new(),
            current_key_age_seconds: None,
            keyring_version: version,
            early_activation: None,
            incomplete: Vec::new(),
            rotation_held: None,
        }
        .describing(ring, now)
    }

    fn describing(mut self, ring: &Keyring, now: UnixTime) -> Self {
        self.keys = ring
            .keys
            .iter()
            .map(|k| KeyStatus {
                kid: k.kid.clone(),
                state: k.state,
                alg: k.alg,
                kms_key_arn: k.kms_key_arn.clone(),
                age_seconds: now - k.created_at,
            })
            .collect();
        self.retiring = ring.retiring.iter().map(|k| k.kid.clone()).collect();
        self.current_key_age_seconds = ring.current().and_then(|k| k.activated_at).map(|at| now - at);
        self
    }

    /// One CloudWatch Embedded Metric Format record, so an alarm can watch for a stalled
    /// rotation (current key older than the rotation period plus a margin) or a stuck
    /// retirement queue.
    pub fn emf(&self, keyring: &str, timestamp_ms: i64) -> String {
        serde_json::json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": "kms-jwt",
                    "Dimensions": [["Keyring"]],
                    "Metrics": [
                        {"Name": "CurrentKeyAgeSeconds", "Unit": "Seconds"},
                        {"Name": "PublishedKeys", "Unit": "Count"},
                        {"Name": "RetiringKeys", "Unit": "Count"},
                        {"Name": "KeysCreated", "Unit": "Count"},
                        {"Name": "KeysRetired", "Unit": "Count"},
                        {"Name": "RotationHeld", "Unit": "Count"},
                    ],
                }],
            },
            "Keyring": keyring,
            "CurrentKeyAgeSeconds": self.current_key_age_seconds.unwrap_or(0),
            "PublishedKeys": self.keys.len(),
            "RetiringKeys": self.retiring.len(),
            "KeysCreated": self.created.len(),
            "KeysRetired": self.retired.len() + self.orphans_deleted.len(),
            "RotationHeld": usize::from(self.rotation_held.is_some()),
        })
        .to_string()
    }
}

/// How a run rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Reconcile,
    RotateNow { force: bool },
}

/// What a plan could not do without more input.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// This many fresh keys in total.
    Keys(usize),
    /// Nothing: the rotation asked for does not fit the published-key limits.
    Refusal(RotationHeld),
}

/// The keyring a run should write, and how many fresh keys it uses.
struct Plan {
    transitions: Vec<Transition>,
    keyring: Keyring,
    used_new_keys: usize,
    /// A due scheduled rotation left for later by the published-key limits.
    held: Option<RotationHeld>,
}

/// Pure decision: what the keyring should look like at `now`. `fresh` supplies new keys in
/// order; `Err(Need::Keys(n))` asks for `n` of them.
fn plan(
    ring: &Keyring,
    policy: &RotationPolicy,
    mode: &Mode,
    now: UnixTime,
    fresh: &[NewKey],
) -> Result<Plan, Need> {
    let mut transitions = Vec::new();
    let mut held = None;
    let mut used = 0;
    let mut take = |n: usize| -> Result<Vec<NewKey>, Need> {
        if fresh.len() < used + n {
            return Err(Need::Keys(used + n));
        }
        used += n;
        Ok(fresh[used - n..used].to_vec())
    };
    let mut next_ring = match (ring.current(), ring.next()) {
        (None, _) => {
            let keys = take(2)?;
            transitions.push(Transition::Bootstrap);
            ring.bootstrap(keys[0].clone(), keys[1].clone(), now)
        }
        (Some(_), None) => {
            // Without a next key (after a revocation, or hand-repaired): add one and let it wait
            // its pre-publication time.
            let keys = take(1)?;
            transitions.push(Transition::AddNext);
            ring.with_next(keys[0].clone(), now)
        }
        (Some(current), Some(next)) => {
            let current_age = now - current.activated_at.unwrap_or(current.published_at);
            let prepublished = now - next.published_at >= policy.prepublication;
            let due = match mode {
                Mode::RotateNow { force } => prepublished || *force,
                Mode::Reconcile => current_age >= policy.rotation_period && prepublished,
            };
            // Checked before asking for a key: a refused rotation creates nothing.
            let refusal = if due { rotation_held(ring, policy, now) } else { None };
            match (due, refusal, mode) {
                (true, None, _) => {
                    let keys = take(1)?;
                    transitions.push(Transition::Rotate);
                    ring.rotate(keys[0].clone(), now)
                }
                (true, Some(refusal), Mode::RotateNow { .. }) => return Err(Need::Refusal(refusal)),
                (true, Some(refusal), Mode::Reconcile) => {
                    held = Some(refusal);
                    ring.clone()
                }
                (false, _, _) => ring.clone(),
            }
        }
    };
    let (after_retirement, expired) = next_ring.retire_expired(now, policy.retirement_grace);
    if !expired.is_empty() {
        transitions.push(Transition::Retire);
        next_ring = after_retirement;
    }
    Ok(Plan { transitions, keyring: next_ring, used_new_keys: used, held })
}

/// Why rotating `ring` at `now` would break the published-key limits, if it would. A
/// rotation publishes one more key (of the size of the largest published one: new keys
/// follow the configured algorithm) after retiring the previous keys whose tokens expired.
fn rotation_held(ring: &Keyring, policy: &RotationPolicy, now: UnixTime) -> Option<RotationHeld> {
    let largest_key = ring.jwks().keys.iter().map(|k| serde_json::to_string(k).map_or(0, |t| t.len())).max();
    let published_after_rotation_at = |at: UnixTime| {
        let (kept, _) = ring.retire_expired(at, policy.retirement_grace);
        let bytes = serde_json::to_string(&kept.jwks()).map_or(usize::MAX, |t| t.len());
        // One more member: a comma and the new key.
        (kept.keys.len() + 1, bytes.saturating_add(1 + largest_key.unwrap_or(0)))
    };
    let fits = |(keys, bytes): (usize, usize)| keys <= policy.max_published_keys && bytes <= MAX_JWKS_BYTES;
    let (published_keys, jwks_bytes) = published_after_rotation_at(now);
    if fits((published_keys, jwks_bytes)) {
        return None;
    }
    let mut retirements: Vec<UnixTime> = ring
        .previous()
        .filter_map(|k| k.deactivated_at.map(|at| at.saturating_add(policy.retirement_grace)))
        .filter(|&at| at > now)
        .collect();
    retirements.sort_unstable();
    let possible_at = retirements.into_iter().find(|&at| fits(published_after_rotation_at(at)));
    Some(RotationHeld {
        published_keys,
        max_published_keys: policy.max_published_keys,
        jwks_bytes,
        max_jwks_bytes: MAX_JWKS_BYTES,
        possible_at,
    })
}

/// Pure decision of a revocation: the keyring without `kid`, or `None` if it was already
/// withdrawn (revoking again is harmless).
fn withdraw(ring: &Keyring, kid: &str, now: UnixTime) -> Result<Option<Keyring>, RotateError> {
    if ring.retiring.iter().any(|k| k.kid == kid && k.reason == RetireReason::Revoked) {
        return Ok(None);
    }
    ring.revoke(kid, now).map(Some).ok_or_else(|| RotateError::UnknownKid(kid.to_owned()))
}

/// The key a write made current, if it began signing before its pre-publication time was
/// over: verifiers holding an older JWKS reject its tokens until they refetch.
fn early_activation(
    before: &Keyring,
    after: &Keyring,
    policy: &RotationPolicy,
    now: UnixTime,
) -> Option<EarlyActivation> {
    let current = after.current()?;
    let first_bootstrap = before.keys.is_empty() && before.retiring.is_empty();
    if first_bootstrap || before.current().is_some_and(|c| c.kid == current.kid) {
        return None;
    }
    let published_for = now - current.published_at;
    (published_for < policy.prepublication).then(|| EarlyActivation {
        kid: current.kid.clone(),
        published_for_seconds: published_for,
        prepublication_seconds: policy.prepublication,
    })
}

/// Runs reconciliations against a KMS and a keyring store.
pub struct Rotator<K, S> {
    kms: K,
    store: S,
    policy: RotationPolicy,
    keyring_name: String,
    step_reserve: Duration,
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
}

impl RunState {
    fn new(deadline: Instant, reserve: Duration) -> Self {
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
        }
    }

    /// Is there time for `steps` more AWS calls (each bounded by the SDK's operation
    /// timeout) before the run's deadline?
    fn has_time_for(&self, steps: u32) -> bool {
        Instant::now() + self.reserve * steps <= self.deadline
    }

    /// The time by which an open-ended step must stop, keeping one write's worth in hand.
    fn soft_deadline(&self) -> Instant {
        self.deadline.checked_sub(self.reserve).unwrap_or(self.deadline)
    }

    fn record_written(&mut self, ring: Keyring, version: String) {
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

impl<K: KeyAdmin, S: KeyringStore> Rotator<K, S> {
    /// `keyring_name` tags every key created (`kms-jwt:keyring`); use the secret id.
    pub fn new(kms: K, store: S, policy: RotationPolicy, keyring_name: impl Into<String>) -> Self {
        Rotator { kms, store, policy, keyring_name: keyring_name.into(), step_reserve: DEFAULT_STEP_RESERVE }
    }

    /// Time kept in hand for each further AWS call: the SDK's operation timeout.
    pub fn with_step_reserve(mut self, reserve: Duration) -> Self {
        self.step_reserve = reserve;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn keyring_name(&self) -> &str {
        &self.keyring_name
    }

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
        let mut run = RunState::new(deadline, self.step_reserve);
        let mode = match command {
            Command::Status => {
                let (ring, version) = self.read().await?;
                return Ok(RotationReport::unchanged(&ring, version, now));
            }
            Command::Revoke { kid } => return self.revoke(&kid, now, run).await,
            Command::Reconcile => Mode::Reconcile,
            Command::Rotate { force } => Mode::RotateNow { force },
        };
        let result = self.converge(&mode, now, &mut run).await;
        self.finish(&mut run).await;
        match result {
            Err(e @ RotateError::Keyring(_)) => Err(e),
            Err(e) => {
                self.housekeeping(now, &mut run).await;
                Err(e)
            }
            Ok(converged) => {
                self.housekeeping(now, &mut run).await;
                Ok(self.report(converged, run, now))
            }
        }
    }

    /// Withdraw a compromised key: one compare-and-swap with no KMS call before it, so neither
    /// a failing KMS nor a large account can keep the key published. The replacement key, the
    /// KMS retirement and sweeps follow; their failures are reported, never undo the withdrawal.
    async fn revoke(
        &self,
        kid: &str,
        now: UnixTime,
        mut run: RunState,
    ) -> Result<RotationReport, RotateError> {
        let mut done = Converged::default();
        let mut conflicts = 0;
        loop {
            let (ring, version) = self.read().await?;
            run.latest = Some((ring.clone(), version.clone()));
            let Some(withdrawn) = withdraw(&ring, kid, now)? else { break };
            withdrawn.validate()?;
            match self.store.compare_and_swap(version.as_deref(), &withdrawn.to_json()).await {
                Ok(new_version) => {
                    done.transitions.push(Transition::Revoke);
                    done.early_activation = early_activation(&ring, &withdrawn, &self.policy, now);
                    run.record_written(withdrawn, new_version);
                    warn!(kid, "key revoked: withdrawn from the keyring");
                    break;
                }
                Err(StoreError::Conflict) => {
                    conflicts += 1;
                    if conflicts >= MAX_CONFLICTS {
                        return Err(RotateError::TooManyConflicts);
                    }
                }
                Err(e) => return Err(RotateError::Store(e)),
            }
        }
        match self.converge(&Mode::Reconcile, now, &mut run).await {
            Ok(follow_up) => {
                done.transitions.extend(follow_up.transitions);
                done.created = follow_up.created;
                done.early_activation = done.early_activation.or(follow_up.early_activation);
                done.rotation_held = follow_up.rotation_held;
            }
            Err(e) => {
                warn!(error = %e, "revocation done; its replacement key is left for the next run");
                run.incomplete.push(format!("replacement key: {e}"));
            }
        }
        self.finish(&mut run).await;
        self.housekeeping(now, &mut run).await;
        Ok(self.report(done, run, now))
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
        }
        .describing(&ring, now)
    }

    /// Plan, create the keys the plan needs (after recording the intent), and write.
    async fn converge(
        &self,
        mode: &Mode,
        now: UnixTime,
        run: &mut RunState,
    ) -> Result<Converged, RotateError> {
        let mut conflicts = 0;
        let mut conflict = || {
            conflicts += 1;
            info!(conflicts, "keyring changed while planning; re-reading");
            if conflicts >= MAX_CONFLICTS {
                Err(RotateError::TooManyConflicts)
            } else {
                Ok(())
            }
        };
        loop {
            let (ring, version) = self.read().await?;
            run.latest = Some((ring.clone(), version.clone()));
            let plan = match plan(&ring, &self.policy, mode, now, &run.fresh) {
                Ok(plan) => plan,
                Err(Need::Keys(needed)) => {
                    if !ring.pending.iter().any(|p| p.request_id == run.request_id) {
                        match self.declare_intent(&ring, version.as_deref(), now, run).await {
                            Ok(()) => {}
                            Err(RotateError::Store(StoreError::Conflict)) => {
                                conflict()?;
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    while run.fresh.len() < needed {
                        let key = self.create_key(now, run).await?;
                        run.fresh.push(key);
                    }
                    continue;
                }
                Err(Need::Refusal(held)) => return Err(RotateError::TooManyPublishedKeys(held)),
            };
            let held = plan.held;
            let mut target = plan.keyring;
            if plan.used_new_keys == run.fresh.len() && !run.creation_uncertain {
                // Every key this run created lands in this write: the intent is fulfilled.
                // Otherwise it stays until `finish` (or a sweep) has dealt with the others.
                target.pending.retain(|p| p.request_id != run.request_id);
            }
            if target == ring {
                return Ok(Converged { rotation_held: held, ..Converged::default() });
            }
            target.validate()?;
            match self.store.compare_and_swap(version.as_deref(), &target.to_json()).await {
                Ok(new_version) => {
                    if !target.pending.iter().any(|p| p.request_id == run.request_id) {
                        run.intent_outstanding = false;
                    }
                    let created = run.fresh.drain(..plan.used_new_keys).map(|k| k.kid).collect();
                    let early_activation = early_activation(&ring, &target, &self.policy, now);
                    run.record_written(target, new_version);
                    return Ok(Converged {
                        transitions: plan.transitions,
                        created,
                        early_activation,
                        rotation_held: held,
                    });
                }
                Err(StoreError::Conflict) => conflict()?,
                Err(e) => {
                    run.write_uncertain = true;
                    return Err(RotateError::Store(e));
                }
            }
        }
    }

    /// Record that this run is about to create keys, so a crash cannot orphan one.
    async fn declare_intent(
        &self,
        ring: &Keyring,
        version: Option<&str>,
        now: UnixTime,
        run: &mut RunState,
    ) -> Result<(), RotateError> {
        let mut intent = ring.clone();
        intent.pending.push(PendingCreation {
            request_id: run.request_id.clone(),
            requested_at: now,
            sweep_cursor: None,
        });
        // Set before the call: a write whose reply is lost may still have landed.
        run.intent_outstanding = true;
        match self.store.compare_and_swap(version, &intent.to_json()).await {
            Ok(new_version) => {
                run.record_written(intent, new_version);
                Ok(())
            }
            Err(StoreError::Conflict) => Err(RotateError::Store(StoreError::Conflict)),
            Err(e) => {
                run.write_uncertain = true;
                Err(RotateError::Store(e))
            }
        }
    }

    /// Account for keys this run created but did not land: schedule deletion of those the
    /// keyring does not hold, then drop this run's creation intent. Whatever is uncertain (a
    /// write that may have landed with the keys, a key KMS may hold that we never learned of)
    /// is left to the stale-intent sweep of a later run, which sees the settled keyring.
    async fn finish(&self, run: &mut RunState) {
        if run.fresh.is_empty() && !run.intent_outstanding {
            return;
        }
        if !run.fresh.is_empty() && run.write_uncertain {
            // Deleting now could disable keys a landed write just published.
            warn!(request_id = %run.request_id, "a keyring write with new keys may have landed; the stale-intent sweep will settle them");
            run.incomplete.push("new keys of an unconfirmed write: left to the stale-intent sweep".into());
            return;
        }
        for _ in 0..MAX_CONFLICTS {
            let (ring, version) = match self.read().await {
                Ok(read) => read,
                Err(e) => {
                    warn!(error = %e, "cannot re-read the keyring to clean up; a later run will sweep");
                    return;
                }
            };
            // Every write that carried these keys conflicted: they are in no keyring.
            let mut all_retired = true;
            for key in run.fresh.iter().filter(|k| !ring.holds_arn(&k.kms_key_arn)) {
                if let Err(e) = self.retire_kms_key(&key.kms_key_arn).await {
                    warn!(kms_key_arn = %key.kms_key_arn, error = %e, "could not schedule deletion of an unused new key");
                    all_retired = false;
                }
            }
            if !all_retired || run.creation_uncertain {
                return;
            }
            run.fresh.clear();
            if !ring.pending.iter().any(|p| p.request_id == run.request_id) {
                run.intent_outstanding = false;
                return;
            }
            let mut without_intent = ring.clone();
            without_intent.pending.retain(|p| p.request_id != run.request_id);
            match self.store.compare_and_swap(version.as_deref(), &without_intent.to_json()).await {
                Ok(new_version) => {
                    run.intent_outstanding = false;
                    run.record_written(without_intent, new_version);
                    return;
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => {
                    warn!(error = %e, "could not clear this run's creation intent; a later run will");
                    return;
                }
            }
        }
    }

    /// Finish what earlier runs (and this one) left, as far as the time budget allows: KMS
    /// retirement of queued keys, then sweeps of stale creation intents; then record what was
    /// finished in one more write. Failures are logged and reported; the next run carries on.
    async fn housekeeping(&self, now: UnixTime, run: &mut RunState) {
        let ring = match (&run.latest, run.write_uncertain) {
            (Some((ring, _)), false) => ring.clone(),
            _ => match self.read().await {
                Ok((ring, version)) => {
                    run.latest = Some((ring.clone(), version));
                    ring
                }
                Err(e) => {
                    run.incomplete.push(format!("housekeeping: {e}"));
                    return;
                }
            },
        };
        for key in &ring.retiring {
            if !run.has_time_for(3) {
                run.incomplete.push(format!("KMS retirement of {}: out of time", key.kid));
                continue;
            }
            match self.retire_kms_key(&key.kms_key_arn).await {
                Ok(()) => run.retired.push(key.kid.clone()),
                Err(e) => {
                    warn!(kid = %key.kid, error = %e, "KMS retirement failed; will retry");
                    run.incomplete.push(format!("KMS retirement of {}: {e}", key.kid));
                }
            }
        }
        let own = run.request_id.clone();
        let stale =
            ring.pending.iter().filter(|p| p.request_id != own && now - p.requested_at >= STALE_INTENT_SECS);
        for intent in stale {
            match self.sweep(intent, &ring, run).await {
                Ok(SweepProgress::Done) => run.swept.push(intent.request_id.clone()),
                Ok(SweepProgress::Paused(cursor)) => {
                    run.incomplete.push(format!("sweep of intent {}: out of time", intent.request_id));
                    if cursor != intent.sweep_cursor {
                        run.sweep_cursors.push((intent.request_id.clone(), cursor));
                    }
                }
                Err(e) => {
                    warn!(request_id = %intent.request_id, error = %e, "sweep of a stale creation intent failed; kept");
                    run.incomplete.push(format!("sweep of intent {}: {e}", intent.request_id));
                }
            }
        }
        self.record_housekeeping(run).await;
    }

    /// Schedule deletion of every key a dead run created that the keyring does not hold, a
    /// page at a time, resuming where an earlier sweep of the same intent stopped.
    async fn sweep(
        &self,
        intent: &PendingCreation,
        ring: &Keyring,
        run: &mut RunState,
    ) -> Result<SweepProgress, KmsError> {
        let mut cursor = intent.sweep_cursor.clone();
        loop {
            if !run.has_time_for(3) {
                return Ok(SweepProgress::Paused(cursor));
            }
            let search =
                self.kms.find_keys_by_request(&self.keyring_name, &intent.request_id, cursor.as_deref());
            let page = match tokio::time::timeout_at(run.soft_deadline(), search).await {
                Err(_elapsed) => return Ok(SweepProgress::Paused(cursor)),
                Ok(page) => page?,
            };
            for arn in page.arns.iter().filter(|arn| !ring.holds_arn(arn)) {
                if !run.has_time_for(3) {
                    // This page is looked at again next time; retiring is idempotent.
                    return Ok(SweepProgress::Paused(cursor));
                }
                match self.retire_kms_key(arn).await {
                    Ok(()) => {
                        warn!(kms_key_arn = %arn, request_id = %intent.request_id, "deleted a key left by a crashed run");
                        run.orphans_deleted.push(arn.clone());
                    }
                    // Our keys' policy lets rotate retire them; a key that carries our tags
                    // but refuses us is somebody else's, tagged by hand. Not ours to touch.
                    Err(KmsError::AccessDenied { .. }) => {
                        warn!(kms_key_arn = %arn, "a key carries this keyring's tags but its key policy does not let rotate retire it; skipped")
                    }
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                None => return Ok(SweepProgress::Done),
                Some(next) => cursor = Some(next),
            }
        }
    }

    /// Write down what housekeeping finished: retired keys leave the queue, swept intents go,
    /// paused sweeps keep their cursor.
    async fn record_housekeeping(&self, run: &mut RunState) {
        if run.retired.is_empty() && run.swept.is_empty() && run.sweep_cursors.is_empty() {
            return;
        }
        let mut known = run.latest.clone().filter(|_| !run.write_uncertain);
        for _ in 0..MAX_CONFLICTS {
            let (ring, version) = match known.take() {
                Some(latest) => latest,
                None => match self.read().await {
                    Ok(read) => read,
                    Err(e) => {
                        run.incomplete.push(format!("recording housekeeping: {e}"));
                        return;
                    }
                },
            };
            let mut tidy = ring.clone();
            tidy.retiring.retain(|k| !run.retired.contains(&k.kid));
            tidy.pending.retain(|p| !run.swept.contains(&p.request_id));
            for (request_id, cursor) in &run.sweep_cursors {
                if let Some(intent) = tidy.pending.iter_mut().find(|p| &p.request_id == request_id) {
                    intent.sweep_cursor.clone_from(cursor);
                }
            }
            if tidy == ring {
                return;
            }
            match self.store.compare_and_swap(version.as_deref(), &tidy.to_json()).await {
                Ok(new_version) => {
                    run.record_written(tidy, new_version);
                    return;
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => {
                    warn!(error = %e, "could not record finished housekeeping; the next run repeats it (idempotent)");
                    run.incomplete.push(format!("recording housekeeping: {e}"));
                    return;
                }
            }
        }
    }

    async fn create_key(&self, now: UnixTime, run: &mut RunState) -> Result<NewKey, RotateError> {
        if !run.has_time_for(3) {
            return Err(RotateError::OutOfTime("creating a key"));
        }
        let tags = KeyTags { keyring: self.keyring_name.clone(), request_id: run.request_id.clone() };
        let mut backoff = Duration::from_millis(200);
        let arn = loop {
            match self.kms.create_key(self.policy.alg, &tags).await {
                Ok(arn) => break arn,
                // Throttled means refused: nothing was created, so asking again is safe.
                Err(KmsError::Throttled) if run.has_time_for(4) && backoff < Duration::from_secs(2) => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => {
                    if e.outcome_unknown() {
                        // The key may exist: only a sweep of this run's tag can tell.
                        run.creation_uncertain = true;
                    }
                    return Err(e.into());
                }
            }
        };
        let key = async {
            let der = self.await_public_key(&arn, run).await?;
            let jwk = PublicJwk::from_spki_der(&der)?;
            jwk.check_alg(self.policy.alg)?;
            Ok::<_, RotateError>(NewKey {
                kid: jwk.thumbprint(),
                alg: self.policy.alg,
                kms_key_arn: arn.clone(),
                public_jwk: jwk,
                created_at: now,
            })
        }
        .await;
        if key.is_err() {
            // The key exists in KMS but will never be in the keyring: do not leave it behind.
            if let Err(e) = self.retire_kms_key(&arn).await {
                warn!(kms_key_arn = %arn, error = %e, "could not schedule deletion of a key that failed setup; the stale-intent sweep will");
                run.creation_uncertain = true;
            }
        }
        key
    }

    /// A new key's public key. KMS is eventually consistent: for a moment after `CreateKey`
    /// the key (or its key policy) may not be visible yet, which looks like "not found" or
    /// "access denied". Wait for it, within the run's budget.
    async fn await_public_key(&self, arn: &str, run: &RunState) -> Result<Vec<u8>, RotateError> {
        let give_up = (Instant::now() + NEW_KEY_PATIENCE).min(run.soft_deadline());
        let mut wait = Duration::from_millis(250);
        loop {
            match self.kms.public_key_der(arn).await {
                Err(KmsError::AccessDenied { .. } | KmsError::NotFound(_))
                    if Instant::now() + wait < give_up =>
                {
                    info!(kms_key_arn = %arn, "new key not usable yet; waiting for KMS");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                other => return other.map_err(RotateError::from),
            }
        }
    }

    async fn retire_kms_key(&self, arn: &str) -> Result<(), KmsError> {
        self.kms.disable_key(arn).await?;
        self.kms.schedule_deletion(arn, self.policy.deletion_window_days).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{FakeKeyState, MemoryKms, MemoryStore};
    use crate::ports::KeyTags;

    const HOUR: i64 = 3_600;
    const DAY: i64 = 86_400;

    pub(crate) fn policy() -> RotationPolicy {
        RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 7 * DAY,
            prepublication: HOUR,
            retirement_grace: 2 * HOUR,
            deletion_window_days: 30,
            max_published_keys: DEFAULT_MAX_PUBLISHED_KEYS,
        }
    }

    fn rotator() -> Rotator<MemoryKms, MemoryStore> {
        Rotator::new(MemoryKms::new(), MemoryStore::new(), policy(), "kr")
    }

    fn stored(r: &Rotator<MemoryKms, MemoryStore>) -> Keyring {
        Keyring::from_json(&r.store().current_text().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_new_algorithm_is_pre_published_before_it_signs() {
        let (kms, store) = (std::sync::Arc::new(MemoryKms::new()), std::sync::Arc::new(MemoryStore::new()));
        let t0 = 1_700_000_000;
        let es256 = Rotator::new(kms.clone(), store.clone(), policy(), "kr");
        es256.reconcile(t0).await.unwrap();
        // The operator switches the algorithm: new keys follow it, published keys keep theirs.
        let es384 = Rotator::new(
            kms.clone(),
            store.clone(),
            RotationPolicy { alg: SigningAlg::ES384, ..policy() },
            "kr",
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

    #[test]
    fn the_jwks_byte_limit_holds_back_a_rotation_whatever_the_key_count_cap() {
        use crate::keyring::tests::new_key;
        let t0 = 1_700_000_000;
        // Keys big enough that the byte limit binds before any sensible key-count cap.
        let big = |seed: u8| {
            let mut key = new_key(seed, t0);
            if let crate::jwk::PublicJwk::Ec { x, .. } = &mut key.public_jwk {
                x.push_str(&"A".repeat(20_000));
            }
            key
        };
        let mut ring = Keyring::empty().bootstrap(big(0), big(1), t0);
        let policy = RotationPolicy { max_published_keys: 100, ..policy() };
        let mut rotations = 0;
        for seed in 2..=20 {
            match rotation_held(&ring, &policy, t0 + i64::from(seed)) {
                None => {
                    ring = ring.rotate(big(seed), t0 + i64::from(seed));
                    rotations += 1;
                }
                Some(held) => {
                    assert!(held.published_keys < held.max_published_keys, "the count did not bind");
                    assert!(held.jwks_bytes > MAX_JWKS_BYTES, "{held:?}");
                    // The first previous key (deactivated at t0 + 2) retires a grace later.
                    assert_eq!(held.possible_at, Some(t0 + 2 + policy.retirement_grace));
                    break;
                }
            }
        }
        let bytes = serde_json::to_string(&ring.jwks()).unwrap().len();
        assert!(bytes <= MAX_JWKS_BYTES && rotations >= 3, "{rotations} rotations, {bytes} bytes");
        assert!(bytes + 20_000 > MAX_JWKS_BYTES, "the limit was reached: {bytes} bytes");
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
        assert!(tags.contains(&("kms-jwt:keyring".to_string(), "kr".to_string())), "{tags:?}");
        assert!(tags.iter().any(|(k, _)| k == "kms-jwt:request"), "{tags:?}");
    }

    #[test]
    fn events_map_to_commands() {
        use serde_json::json;
        let scheduled =
            json!({"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","detail":{}});
        assert_eq!(Command::from_event(&scheduled), Ok(Command::Reconcile));
        assert_eq!(Command::from_event(&json!({})), Ok(Command::Reconcile));
        assert_eq!(Command::from_event(&json!({"action":"rotate"})), Ok(Command::Rotate { force: false }));
        assert_eq!(
            Command::from_event(&json!({"action":"rotate","force":true})),
            Ok(Command::Rotate { force: true })
        );
        assert_eq!(Command::from_event(&json!({"action":"status"})), Ok(Command::Status));
        assert_eq!(
            Command::from_event(&json!({"action":"revoke","kid":"abc"})),
            Ok(Command::Revoke { kid: "abc".into() })
        );
        for bad in [
            json!({"action":"explode"}),
            json!({"action":"rotate","force":"yes"}),
            json!({"action":"revoke"}),
            json!([1]),
            json!({"hello":1}),
            json!(null),
        ] {
            assert!(Command::from_event(&bad).is_err(), "{bad} must be refused");
        }
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
            r.run(Command::Revoke { kid: current.kid.clone() }, 20).await.unwrap_err().kind(),
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
        Rotator::new(Faulty::new(kms, decide), store, policy(), "kr")
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
        Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy(), "kr").reconcile(0).await.unwrap();
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
        let later =
            Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy(), "kr").reconcile(120).await.unwrap();
        assert_eq!(later.transitions, vec![Transition::AddNext]);
    }

    #[tokio::test(start_paused = true)]
    async fn revocation_and_sweeps_of_a_huge_account_stay_inside_the_time_budget() {
        let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy(), "kr").reconcile(0).await.unwrap();
        // A run died after tagging a key with its request id and before recording it; the
        // account holds thousands of other keys, listed a slow page at a time.
        let orphan = kms
            .create_key(SigningAlg::ES256, &KeyTags { keyring: "kr".into(), request_id: "dead-run".into() })
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
        Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy(), "kr").reconcile(0).await.unwrap();
        let orphan = kms
            .create_key(SigningAlg::ES256, &KeyTags { keyring: "kr".into(), request_id: "dead-run".into() })
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
        Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy(), "kr")
            .reconcile(DAY + HOUR)
            .await
            .unwrap();
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
        let r = Rotator::new(Arc::clone(&kms), Arc::clone(&faulty_store), policy(), "kr");
        assert_eq!(r.reconcile(0).await.unwrap_err().kind(), "KeyringStoreError");
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
        let r = Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy(), "kr");
        let report = r.reconcile(0).await.unwrap();
        assert_eq!(report.transitions, vec![Transition::Bootstrap]);
        assert_eq!(kms.key_arns().len(), 2, "no key was created twice");
        assert_no_enabled_orphan(&kms, &stored_in(&store));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_key_denied_for_longer_than_a_run_is_swept_later_with_no_orphan() {
        let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
        kms.deny_after_create(Duration::from_secs(300));
        let r = Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy(), "kr");
        assert_eq!(r.reconcile(0).await.unwrap_err().kind(), "KmsError");
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
        let r = Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy(), "kr");
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
            let r = Rotator::new(MemoryKms::new(), MemoryStore::with_document(text), policy(), "kr");
            let err = r.reconcile(0).await.unwrap_err();
            assert_eq!(err.kind(), "KeyringInvalid");
            assert_eq!(r.store().current_text().as_deref(), Some(text));
            assert_eq!(r.store().version_count(), 1);
            assert_eq!(r.kms().calls("CreateKey"), 0, "no key is created for a keyring we refuse");
        }
    }

    #[test]
    fn emf_record_names_its_metrics() {
        let report = RotationReport::unchanged(&Keyring::empty(), None, 0);
        let emf: serde_json::Value = serde_json::from_str(&report.emf("kr", 1_000)).unwrap();
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "kms-jwt");
        assert_eq!(emf["Keyring"], "kr");
        let names: Vec<&str> = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in names {
            assert!(emf.get(name).is_some(), "metric {name} has a value");
        }
    }
}
