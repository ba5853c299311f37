//! The rotate service: a reconciler that brings the keyring to the state due at `now`.
//!
//! One run:
//! 1. reads the keyring (refusing an invalid one: nothing is ever overwritten);
//! 2. finishes housekeeping left by earlier runs: keys queued for retirement are disabled and
//!    scheduled for deletion; creation intents older than a Lambda run can live are swept
//!    (keys they created that never made it into the keyring are scheduled for deletion);
//! 3. plans the transitions due (pure [`plan`]): bootstrap, rotation, revocation, retirement;
//! 4. if the plan needs new KMS keys, first records an intent in the keyring, then creates
//!    keys tagged with the run's request id;
//! 5. writes the new keyring with compare-and-swap; on a conflict it re-reads and plans again,
//!    reusing keys it already created;
//! 6. disables and schedules deletion of keys the write unpublished, then clears them from
//!    the retirement queue.
//!
//! Any step may fail or the process may die between steps: every valid token stays
//! verifiable (keys leave KMS only after they left the keyring), and the next run converges.

use serde::Serialize;
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
}

impl From<&RotateConfig> for RotationPolicy {
    fn from(c: &RotateConfig) -> Self {
        RotationPolicy {
            alg: c.signing_alg,
            rotation_period: secs(c.rotation_period),
            prepublication: secs(c.prepublication()),
            retirement_grace: secs(c.retirement_grace()),
            deletion_window_days: c.deletion_window_days,
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
                    ],
                }],
            },
            "Keyring": keyring,
            "CurrentKeyAgeSeconds": self.current_key_age_seconds.unwrap_or(0),
            "PublishedKeys": self.keys.len(),
            "RetiringKeys": self.retiring.len(),
            "KeysCreated": self.created.len(),
            "KeysRetired": self.retired.len() + self.orphans_deleted.len(),
        })
        .to_string()
    }
}

/// How a run rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Reconcile,
    RotateNow { force: bool },
    Revoke { kid: String },
}

/// What a plan could not do without more input.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// This many fresh keys in total.
    Keys(usize),
    UnknownKid(String),
}

/// The keyring a run should write, and how many fresh keys it uses.
struct Plan {
    transitions: Vec<Transition>,
    keyring: Keyring,
    used_new_keys: usize,
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
    let mut used = 0;
    let mut take = |n: usize| -> Result<Vec<NewKey>, Need> {
        if fresh.len() < used + n {
            return Err(Need::Keys(used + n));
        }
        used += n;
        Ok(fresh[used - n..used].to_vec())
    };
    let mut next_ring = match (mode, ring.current(), ring.next()) {
        (Mode::Revoke { kid }, _, _) => {
            if ring.retiring.iter().any(|k| &k.kid == kid && k.reason == RetireReason::Revoked) {
                ring.clone() // already revoked: finishing its KMS retirement is housekeeping
            } else {
                let key = ring.find(kid).ok_or_else(|| Need::UnknownKid(kid.clone()))?;
                let replacement = match key.state {
                    KeyState::Previous => None,
                    KeyState::Current | KeyState::Next => take(1)?.pop(),
                };
                transitions.push(Transition::Revoke);
                ring.revoke(kid, replacement, now).ok_or_else(|| Need::UnknownKid(kid.clone()))?
            }
        }
        (_, None, _) => {
            let keys = take(2)?;
            transitions.push(Transition::Bootstrap);
            ring.bootstrap(keys[0].clone(), keys[1].clone(), now)
        }
        (_, Some(_), None) => {
            // Valid but without a next key: add one and let it wait its pre-publication time.
            let keys = take(1)?;
            transitions.push(Transition::AddNext);
            ring.with_next(keys[0].clone(), now)
        }
        (mode, Some(current), Some(next)) => {
            let current_age = now - current.activated_at.unwrap_or(current.published_at);
            let prepublished = now - next.published_at >= policy.prepublication;
            let due = match mode {
                Mode::RotateNow { force } => prepublished || *force,
                _ => current_age >= policy.rotation_period && prepublished,
            };
            if due {
                let keys = take(1)?;
                transitions.push(Transition::Rotate);
                ring.rotate(keys[0].clone(), now)
            } else {
                ring.clone()
            }
        }
    };
    let (after_retirement, expired) = next_ring.retire_expired(now, policy.retirement_grace);
    if !expired.is_empty() {
        transitions.push(Transition::Retire);
        next_ring = after_retirement;
    }
    Ok(Plan { transitions, keyring: next_ring, used_new_keys: used })
}

/// Runs reconciliations against a KMS and a keyring store.
pub struct Rotator<K, S> {
    kms: K,
    store: S,
    policy: RotationPolicy,
    keyring_name: String,
}

/// Progress of one run, kept across compare-and-swap retries.
struct RunState {
    request_id: String,
    fresh: Vec<NewKey>,
    last_read: Keyring,
    retired: Vec<String>,
    orphans_deleted: Vec<String>,
    /// Stale intents this run has swept.
    swept: Vec<String>,
    /// This run's creation intent may be in the stored keyring.
    intent_outstanding: bool,
    /// A key creation failed: KMS may hold a key this run never learned about, so only a
    /// later sweep (by tag) may clear the intent.
    creation_failed: bool,
}

impl<K: KeyAdmin, S: KeyringStore> Rotator<K, S> {
    /// `keyring_name` tags every key created (`kms-jwt:keyring`); use the secret id.
    pub fn new(kms: K, store: S, policy: RotationPolicy, keyring_name: impl Into<String>) -> Self {
        Rotator { kms, store, policy, keyring_name: keyring_name.into() }
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

    /// Carry out one command.
    pub async fn run(&self, command: Command, now: UnixTime) -> Result<RotationReport, RotateError> {
        let mode = match command {
            Command::Status => {
                let (ring, version) = self.read().await?;
                return Ok(RotationReport::unchanged(&ring, version, now));
            }
            Command::Reconcile => Mode::Reconcile,
            Command::Rotate { force } => Mode::RotateNow { force },
            Command::Revoke { kid } => Mode::Revoke { kid },
        };
        let mut state = RunState {
            request_id: uuid::Uuid::new_v4().to_string(),
            fresh: Vec::new(),
            last_read: Keyring::empty(),
            retired: Vec::new(),
            orphans_deleted: Vec::new(),
            swept: Vec::new(),
            intent_outstanding: false,
            creation_failed: false,
        };
        let result = self.converge(&mode, now, &mut state).await;
        self.finish(&mut state).await;
        result
    }

    /// Account for keys this run created but did not (knowingly) land: re-read the keyring,
    /// schedule deletion of those it does not hold, then drop this run's creation intent.
    /// Re-reading matters: a write whose reply was lost may have landed, and its keys are live.
    /// If anything here fails, the intent stays and goes stale, and a later run sweeps it.
    async fn finish(&self, run: &mut RunState) {
        if run.fresh.is_empty() && !run.intent_outstanding {
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
            let mut all_retired = true;
            for key in run.fresh.iter().filter(|k| !ring.holds_arn(&k.kms_key_arn)) {
                if let Err(e) = self.retire_kms_key(&key.kms_key_arn).await {
                    warn!(kms_key_arn = %key.kms_key_arn, error = %e, "could not schedule deletion of an unused new key");
                    all_retired = false;
                }
            }
            if !all_retired || run.creation_failed {
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
                Ok(_) => {
                    run.intent_outstanding = false;
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

    /// Bring the keyring to the state due at `now`.
    pub async fn reconcile(&self, now: UnixTime) -> Result<RotationReport, RotateError> {
        self.run(Command::Reconcile, now).await
    }

    async fn converge(
        &self,
        mode: &Mode,
        now: UnixTime,
        run: &mut RunState,
    ) -> Result<RotationReport, RotateError> {
        let mut conflicts = 0;
        loop {
            let (ring, version) = self.read().await?;
            run.last_read.clone_from(&ring);
            let housekept = self.housekeeping(&ring, now, run).await;

            let plan = match plan(&housekept, &self.policy, mode, now, &run.fresh) {
                Ok(plan) => plan,
                Err(Need::UnknownKid(kid)) => return Err(RotateError::UnknownKid(kid)),
                Err(Need::Keys(needed)) => {
                    if !ring.pending.iter().any(|p| p.request_id == run.request_id) {
                        // Declare the creation before it happens, so a crash cannot orphan a key.
                        let mut intent = housekept.clone();
                        intent
                            .pending
                            .push(PendingCreation { request_id: run.request_id.clone(), requested_at: now });
                        // Set before the call: a write whose reply is lost may still have landed.
                        run.intent_outstanding = true;
                        match self.store.compare_and_swap(version.as_deref(), &intent.to_json()).await {
                            Ok(_) => {}
                            Err(StoreError::Conflict) => {
                                conflicts += 1;
                                if conflicts >= MAX_CONFLICTS {
                                    return Err(RotateError::TooManyConflicts);
                                }
                                continue;
                            }
                            Err(e) => return Err(RotateError::Store(e)),
                        }
                    }
                    while run.fresh.len() < needed {
                        match self.create_key(now, &run.request_id).await {
                            Ok(key) => run.fresh.push(key),
                            Err(e) => {
                                run.creation_failed = true;
                                return Err(e);
                            }
                        }
                    }
                    continue;
                }
            };

            let mut target = plan.keyring;
            if plan.used_new_keys == run.fresh.len() {
                // Every key this run created lands in this write: the intent is fulfilled.
                // Otherwise it stays until `finish` has dealt with the unused keys.
                target.pending.retain(|p| p.request_id != run.request_id);
            }
            if target == ring {
                return Ok(RotationReport::unchanged(&ring, version, now));
            }
            target.validate()?;
            match self.store.compare_and_swap(version.as_deref(), &target.to_json()).await {
                Ok(new_version) => {
                    if !target.pending.iter().any(|p| p.request_id == run.request_id) {
                        run.intent_outstanding = false;
                    }
                    let created: Vec<String> = run.fresh.drain(..plan.used_new_keys).map(|k| k.kid).collect();
                    let (written, final_version) =
                        self.retire_unpublished(&ring, target, new_version, run).await;
                    return Ok(RotationReport {
                        changed: true,
                        transitions: plan.transitions,
                        created,
                        retired: std::mem::take(&mut run.retired),
                        orphans_deleted: std::mem::take(&mut run.orphans_deleted),
                        keys: Vec::new(),
                        retiring: Vec::new(),
                        current_key_age_seconds: None,
                        keyring_version: Some(final_version),
                    }
                    .describing(&written, now));
                }
                Err(StoreError::Conflict) => {
                    conflicts += 1;
                    info!(conflicts, "keyring changed while planning; re-reading");
                    if conflicts >= MAX_CONFLICTS {
                        return Err(RotateError::TooManyConflicts);
                    }
                }
                Err(e) => return Err(RotateError::Store(e)),
            }
        }
    }

    /// Finish what earlier runs left: KMS retirement of queued keys, and the sweep of stale
    /// creation intents. Returns the keyring without the finished entries. Failures are
    /// logged and left for the next run: housekeeping never blocks a rotation.
    async fn housekeeping(&self, ring: &Keyring, now: UnixTime, run: &mut RunState) -> Keyring {
        let mut ring_after = ring.clone();
        // After a conflict the loop re-reads: KMS calls this run already made are not repeated.
        ring_after.retiring.retain(|k| !run.retired.contains(&k.kid));
        ring_after.pending.retain(|p| !run.swept.contains(&p.request_id));
        let queued: Vec<_> = ring.retiring.iter().filter(|k| !run.retired.contains(&k.kid)).collect();
        for key in queued {
            match self.retire_kms_key(&key.kms_key_arn).await {
                Ok(()) => {
                    ring_after.retiring.retain(|k| k.kid != key.kid);
                    run.retired.push(key.kid.clone());
                }
                Err(e) => warn!(kid = %key.kid, error = %e, "KMS retirement failed; will retry"),
            }
        }
        let stale: Vec<_> = ring
            .pending
            .iter()
            .filter(|p| {
                p.request_id != run.request_id
                    && now - p.requested_at >= STALE_INTENT_SECS
                    && !run.swept.contains(&p.request_id)
            })
            .collect();
        for intent in stale {
            match self.sweep(intent, ring).await {
                Ok(orphans) => {
                    ring_after.pending.retain(|p| p.request_id != intent.request_id);
                    run.swept.push(intent.request_id.clone());
                    run.orphans_deleted.extend(orphans);
                }
                Err(e) => {
                    warn!(request_id = %intent.request_id, error = %e, "sweep of a stale creation intent failed")
                }
            }
        }
        ring_after
    }

    /// Schedule deletion of every key a dead run created that the keyring does not hold.
    async fn sweep(&self, intent: &PendingCreation, ring: &Keyring) -> Result<Vec<String>, KmsError> {
        let mut deleted = Vec::new();
        for arn in self.kms.find_keys_by_request(&self.keyring_name, &intent.request_id).await? {
            if !ring.holds_arn(&arn) {
                warn!(kms_key_arn = %arn, request_id = %intent.request_id, "deleting a key left by a crashed run");
                self.retire_kms_key(&arn).await?;
                deleted.push(arn);
            }
        }
        Ok(deleted)
    }

    /// After a write that moved keys to the retirement queue: retire them in KMS and clear
    /// them from the queue (one more compare-and-swap; if that fails, the next run does it).
    async fn retire_unpublished(
        &self,
        before: &Keyring,
        written: Keyring,
        version: String,
        run: &mut RunState,
    ) -> (Keyring, String) {
        let newly: Vec<_> = written
            .retiring
            .iter()
            .filter(|k| !before.retiring.iter().any(|b| b.kid == k.kid))
            .cloned()
            .collect();
        let mut cleared = written.clone();
        for key in &newly {
            match self.retire_kms_key(&key.kms_key_arn).await {
                Ok(()) => {
                    cleared.retiring.retain(|k| k.kid != key.kid);
                    run.retired.push(key.kid.clone());
                }
                Err(e) => warn!(kid = %key.kid, error = %e, "KMS retirement failed; will retry"),
            }
        }
        if cleared == written {
            return (written, version);
        }
        match self.store.compare_and_swap(Some(&version), &cleared.to_json()).await {
            Ok(v) => (cleared, v),
            Err(e) => {
                warn!(error = %e, "could not clear the retirement queue; the next run will");
                (written, version)
            }
        }
    }

    async fn create_key(&self, now: UnixTime, request_id: &str) -> Result<NewKey, RotateError> {
        let tags = KeyTags { keyring: self.keyring_name.clone(), request_id: request_id.to_owned() };
        let arn = self.kms.create_key(self.policy.alg, &tags).await?;
        let key = async {
            let der = self.kms.public_key_der(&arn).await?;
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
                warn!(kms_key_arn = %arn, error = %e, "could not schedule deletion of a key that failed setup");
            }
        }
        key
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

    const HOUR: i64 = 3_600;
    const DAY: i64 = 86_400;

    pub(crate) fn policy() -> RotationPolicy {
        RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 7 * DAY,
            prepublication: HOUR,
            retirement_grace: 2 * HOUR,
            deletion_window_days: 30,
        }
    }

    fn rotator() -> Rotator<MemoryKms, MemoryStore> {
        Rotator::new(MemoryKms::new(), MemoryStore::new(), policy(), "kr")
    }

    fn stored(r: &Rotator<MemoryKms, MemoryStore>) -> Keyring {
        Keyring::from_json(&r.store().current_text().unwrap()).unwrap()
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
        assert_eq!(report.transitions, vec![Transition::Revoke]);
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
