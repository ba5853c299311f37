//! The rotate service: brings the keyring to the state due at `now`.
//!
//! Each run reads the keyring, decides what is due (bootstrap, rotation, retirement), creates
//! any KMS keys the new state needs, and writes it with compare-and-swap. On a conflict it
//! re-reads and plans again, reusing keys it already created. Keys that leave the keyring are
//! disabled and scheduled for deletion only after the write that removed them succeeded, so a
//! crash never retires a key that is still published.

use serde::Serialize;
use tracing::{info, warn};

use crate::alg::SigningAlg;
use crate::config::{secs, RotateConfig};
use crate::jwk::{JwkError, PublicJwk};
use crate::keyring::{KeyRecord, KeyState, Keyring, KeyringError, NewKey, UnixTime};
use crate::ports::{KeyAdmin, KeyTags, KeyringStore, KmsError, StoreError};

/// How many times a run re-plans after losing a compare-and-swap race before giving up.
const MAX_ATTEMPTS: usize = 8;

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
    #[error("gave up after {MAX_ATTEMPTS} compare-and-swap conflicts on the keyring")]
    TooManyConflicts,
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
        }
    }
}

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Reconcile,
    Rotate { force: bool },
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
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized rotate event: {0}. Send an EventBridge scheduled event, {{}}, or {{\"action\": \"reconcile\" | \"rotate\" | \"status\"}}")]
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
                Ok(Action::Status) => Ok(Command::Status),
                Err(e) => Err(UnrecognizedEvent(e.to_string())),
            };
        }
        let scheduled = object.is_empty()
            || object.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event")
            || matches!(
                object.get("source").and_then(|v| v.as_str()),
                Some("aws.events" | "aws.scheduler")
            );
        if scheduled {
            Ok(Command::Reconcile)
        } else {
            Err(UnrecognizedEvent(
                "neither a scheduled event nor an action".into(),
            ))
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

/// What a run decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Bootstrap,
    Rotate,
    /// A keyring without a next key (hand-repaired) gets one.
    AddNext,
    Retire,
}

/// The JSON summary a run answers and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    pub changed: bool,
    pub transitions: Vec<Transition>,
    pub created: Vec<String>,
    pub retired: Vec<String>,
    pub keys: Vec<KeyStatus>,
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

fn statuses(ring: &Keyring, now: UnixTime) -> Vec<KeyStatus> {
    ring.keys
        .iter()
        .map(|k| KeyStatus {
            kid: k.kid.clone(),
            state: k.state,
            alg: k.alg,
            kms_key_arn: k.kms_key_arn.clone(),
            age_seconds: now - k.created_at,
        })
        .collect()
}

/// The plan for one attempt: the keyring to write and what leaves it.
struct Plan {
    transitions: Vec<Transition>,
    keyring: Keyring,
    retiring: Vec<KeyRecord>,
    used_new_keys: usize,
}

/// Why a run rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Scheduled: only what is due.
    Reconcile,
    /// `{"action":"rotate"}`: rotate now, whatever the current key's age. Pre-publication is
    /// still honoured unless `force` (which can make fresh tokens fail verification at
    /// clients holding a JWKS older than the next key).
    RotateNow { force: bool },
}

/// Pure decision: what the keyring should look like at `now`. `fresh` supplies new keys in
/// order; on `Err(n)` the caller must supply `n` keys and ask again.
fn plan(
    ring: &Keyring,
    policy: &RotationPolicy,
    mode: Mode,
    now: UnixTime,
    fresh: &[NewKey],
) -> Result<Plan, usize> {
    let mut transitions = Vec::new();
    let mut used = 0;
    let mut take = |n: usize| -> Result<&[NewKey], usize> {
        if fresh.len() < used + n {
            return Err(used + n);
        }
        used += n;
        Ok(&fresh[used - n..used])
    };
    let mut next_ring = match (ring.current(), ring.next()) {
        (None, _) => {
            let keys = take(2)?;
            transitions.push(Transition::Bootstrap);
            Keyring::bootstrap(keys[0].clone(), keys[1].clone(), now)
        }
        (Some(_), None) => {
            // Valid but without a next key: add one and let it wait its pre-publication time.
            let keys = take(1)?;
            transitions.push(Transition::AddNext);
            let mut ring = ring.clone();
            ring.keys.insert(0, new_next_record(&keys[0], now));
            ring
        }
        (Some(current), Some(next)) => {
            let current_age = now - current.activated_at.unwrap_or(current.published_at);
            let next_published_for = now - next.published_at;
            let (period_due, prepublished) = match mode {
                Mode::Reconcile => (
                    current_age >= policy.rotation_period,
                    next_published_for >= policy.prepublication,
                ),
                Mode::RotateNow { force } => {
                    (true, force || next_published_for >= policy.prepublication)
                }
            };
            if period_due && prepublished {
                let keys = take(1)?;
                transitions.push(Transition::Rotate);
                ring.rotate(keys[0].clone(), now)
            } else {
                ring.clone()
            }
        }
    };
    let (kept, retiring) = next_ring.without_expired(now, policy.retirement_grace);
    if !retiring.is_empty() {
        transitions.push(Transition::Retire);
        next_ring = kept;
    }
    Ok(Plan {
        transitions,
        keyring: next_ring,
        retiring,
        used_new_keys: used,
    })
}

fn new_next_record(key: &NewKey, now: UnixTime) -> KeyRecord {
    KeyRecord {
        kid: key.kid.clone(),
        state: KeyState::Next,
        alg: key.alg,
        kms_key_arn: key.kms_key_arn.clone(),
        public_jwk: key.public_jwk.clone(),
        created_at: key.created_at,
        published_at: now,
        activated_at: None,
        deactivated_at: None,
    }
}

/// Runs reconciliations against a KMS and a keyring store.
pub struct Rotator<K, S> {
    kms: K,
    store: S,
    policy: RotationPolicy,
    tags: KeyTags,
}

impl<K: KeyAdmin, S: KeyringStore> Rotator<K, S> {
    pub fn new(kms: K, store: S, policy: RotationPolicy, tags: KeyTags) -> Self {
        Rotator {
            kms,
            store,
            policy,
            tags,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
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

    /// Report the keys and their ages; change nothing.
    pub async fn status(&self, now: UnixTime) -> Result<RotationReport, RotateError> {
        let (ring, version) = self.read().await?;
        Ok(RotationReport {
            changed: false,
            transitions: Vec::new(),
            created: Vec::new(),
            retired: Vec::new(),
            keys: statuses(&ring, now),
            keyring_version: version,
        })
    }

    /// Carry out one command.
    pub async fn run(
        &self,
        command: Command,
        now: UnixTime,
    ) -> Result<RotationReport, RotateError> {
        match command {
            Command::Reconcile => self.apply(Mode::Reconcile, now).await,
            Command::Rotate { force } => self.apply(Mode::RotateNow { force }, now).await,
            Command::Status => self.status(now).await,
        }
    }

    /// Bring the keyring to the state due at `now`.
    pub async fn reconcile(&self, now: UnixTime) -> Result<RotationReport, RotateError> {
        self.apply(Mode::Reconcile, now).await
    }

    async fn apply(&self, mode: Mode, now: UnixTime) -> Result<RotationReport, RotateError> {
        let mut fresh: Vec<NewKey> = Vec::new();
        let mut last_read = Keyring::empty();
        let result = self
            .reconcile_with(mode, now, &mut fresh, &mut last_read)
            .await;
        // What is left was created for a plan that never landed: it must not linger as an
        // orphan. A key the stored keyring holds (our own write, seen as a conflict after a
        // retried request) is never touched.
        for key in fresh.iter().filter(|k| last_read.find(&k.kid).is_none()) {
            if let Err(e) = self.retire_kms_key(&key.kms_key_arn).await {
                warn!(kms_key_arn = %key.kms_key_arn, error = %e, "could not schedule deletion of an unused new key");
            }
        }
        result
    }

    async fn reconcile_with(
        &self,
        mode: Mode,
        now: UnixTime,
        fresh: &mut Vec<NewKey>,
        last_read: &mut Keyring,
    ) -> Result<RotationReport, RotateError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let (ring, version) = self.read().await?;
            last_read.clone_from(&ring);
            let plan = loop {
                match plan(&ring, &self.policy, mode, now, fresh) {
                    Ok(plan) => break plan,
                    Err(needed) => {
                        while fresh.len() < needed {
                            fresh.push(self.create_key(now).await?);
                        }
                    }
                }
            };
            if plan.transitions.is_empty() {
                return Ok(RotationReport {
                    changed: false,
                    transitions: Vec::new(),
                    created: Vec::new(),
                    retired: Vec::new(),
                    keys: statuses(&ring, now),
                    keyring_version: version,
                });
            }
            plan.keyring.validate()?;
            match self
                .store
                .compare_and_swap(version.as_deref(), &plan.keyring.to_json())
                .await
            {
                Ok(new_version) => {
                    let created: Vec<String> =
                        fresh.drain(..plan.used_new_keys).map(|k| k.kid).collect();
                    let mut retired = Vec::new();
                    for key in &plan.retiring {
                        self.retire_kms_key(&key.kms_key_arn).await?;
                        retired.push(key.kid.clone());
                    }
                    return Ok(RotationReport {
                        changed: true,
                        transitions: plan.transitions,
                        created,
                        retired,
                        keys: statuses(&plan.keyring, now),
                        keyring_version: Some(new_version),
                    });
                }
                Err(StoreError::Conflict) => {
                    info!(attempt, "keyring changed while planning; re-reading");
                }
                Err(e) => return Err(RotateError::Store(e)),
            }
        }
        Err(RotateError::TooManyConflicts)
    }

    async fn create_key(&self, now: UnixTime) -> Result<NewKey, RotateError> {
        let arn = self.kms.create_key(self.policy.alg, &self.tags).await?;
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
        self.kms
            .schedule_deletion(arn, self.policy.deletion_window_days)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{FakeKeyState, MemoryKms, MemoryStore};

    const HOUR: i64 = 3_600;
    const DAY: i64 = 86_400;

    fn policy() -> RotationPolicy {
        RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 7 * DAY,
            prepublication: HOUR,
            retirement_grace: 2 * HOUR,
            deletion_window_days: 30,
        }
    }

    fn rotator() -> Rotator<MemoryKms, MemoryStore> {
        Rotator::new(
            MemoryKms::new(),
            MemoryStore::new(),
            policy(),
            KeyTags {
                keyring: "kr".into(),
            },
        )
    }

    #[tokio::test]
    async fn bootstrap_is_idempotent_then_rotation_waits_for_its_period() {
        let r = rotator();
        let t0 = 1_700_000_000;
        let first = r.reconcile(t0).await.unwrap();
        assert_eq!(first.transitions, vec![Transition::Bootstrap]);
        assert_eq!(first.created.len(), 2);
        let again = r.reconcile(t0 + HOUR).await.unwrap();
        assert!(!again.changed, "nothing is due an hour later");
        assert_eq!(r.kms().calls("CreateKey"), 2);

        let rotated = r.reconcile(t0 + 7 * DAY).await.unwrap();
        assert_eq!(rotated.transitions, vec![Transition::Rotate]);
        let ring = Keyring::from_json(&r.store().current_text().unwrap()).unwrap();
        assert_eq!(
            ring.current().unwrap().kid,
            first.keys[0].kid,
            "the old next key signs now"
        );
        assert_eq!(ring.previous().count(), 1);

        let retired = r.reconcile(t0 + 7 * DAY + 2 * HOUR).await.unwrap();
        assert_eq!(retired.transitions, vec![Transition::Retire]);
        let gone = &first.keys[1];
        assert_eq!(retired.retired, vec![gone.kid.clone()]);
        assert_eq!(
            r.kms().key_state(&gone.kms_key_arn),
            Some(FakeKeyState::PendingDeletion { window_days: 30 })
        );
        assert_eq!(
            r.kms().key_tags(&gone.kms_key_arn),
            vec![
                ("kms-jwt:managed-by".to_string(), "kms-jwt".to_string()),
                ("kms-jwt:keyring".to_string(), "kr".to_string())
            ]
        );
    }

    #[test]
    fn events_map_to_commands() {
        use serde_json::json;
        let scheduled = json!({"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","detail":{}});
        assert_eq!(Command::from_event(&scheduled), Ok(Command::Reconcile));
        assert_eq!(Command::from_event(&json!({})), Ok(Command::Reconcile));
        assert_eq!(
            Command::from_event(&json!({"action":"rotate"})),
            Ok(Command::Rotate { force: false })
        );
        assert_eq!(
            Command::from_event(&json!({"action":"rotate","force":true})),
            Ok(Command::Rotate { force: true })
        );
        assert_eq!(
            Command::from_event(&json!({"action":"status"})),
            Ok(Command::Status)
        );
        for bad in [
            json!({"action":"explode"}),
            json!({"action":"rotate","force":"yes"}),
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
        let early = r
            .run(Command::Rotate { force: false }, t0 + 60)
            .await
            .unwrap();
        assert!(
            !early.changed,
            "next key has not been published long enough"
        );
        let forced = r
            .run(Command::Rotate { force: true }, t0 + 60)
            .await
            .unwrap();
        assert_eq!(forced.transitions, vec![Transition::Rotate]);
        let status = r.run(Command::Status, t0 + 120).await.unwrap();
        assert!(!status.changed);
        assert_eq!(status.keys.len(), 3);
        assert_eq!(status.keys.iter().map(|k| k.age_seconds).max(), Some(120));
        let later = r
            .run(Command::Rotate { force: false }, t0 + 60 + HOUR)
            .await
            .unwrap();
        assert_eq!(
            later.transitions,
            vec![Transition::Rotate],
            "rotates before the period once pre-published"
        );
    }

    #[tokio::test]
    async fn a_corrupt_keyring_is_never_overwritten() {
        for text in ["{not json", r#"{"schema_version":9,"keys":[]}"#] {
            let r = Rotator::new(
                MemoryKms::new(),
                MemoryStore::with_document(text),
                policy(),
                KeyTags {
                    keyring: "kr".into(),
                },
            );
            let err = r.reconcile(0).await.unwrap_err();
            assert_eq!(err.kind(), "KeyringInvalid");
            assert_eq!(r.store().current_text().as_deref(), Some(text));
            assert_eq!(r.store().version_count(), 1);
            assert_eq!(
                r.kms().calls("CreateKey"),
                0,
                "no key is created for a keyring we refuse"
            );
        }
    }
}
