//! What a run did, as the function answers and logs it.

use std::time::Duration;

use serde::Serialize;

use crate::jose::alg::SigningAlg;
use crate::keyring::{KeyState, Keyring, UnixTime};

/// A lifecycle step a run took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The first keys: one current, one next.
    Bootstrap,
    /// Next became current, current became previous, and a new next key was published.
    Rotate,
    /// A keyring without a next key (hand-repaired) gets one.
    AddNext,
    /// A compromised key was withdrawn from the JWKS at once.
    Revoke,
    /// Previous keys whose tokens have all expired left the JWKS.
    Retire,
    /// Multi-region: keys were seen in every region (KMS replica enabled, keyring replica
    /// showing them); their pre-publication time starts now.
    Replicated,
    /// Multi-region: this region took over as home (after a fail-over), with a higher epoch.
    TakeOver,
}

/// The JSON summary a run answers and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// Whether this run wrote the keyring.
    pub changed: bool,
    /// Lifecycle steps taken, in order.
    pub transitions: Vec<Transition>,
    /// kids of keys created and added to the keyring.
    pub created: Vec<String>,
    /// kids whose KMS keys were disabled and scheduled for deletion by this run.
    pub retired: Vec<String>,
    /// KMS keys of crashed runs found and scheduled for deletion.
    pub orphans_deleted: Vec<String>,
    /// The published keys after the run.
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
    /// Lifecycle events of this run's transitions that the event bus did not take (they are
    /// not re-sent; see docs/events.md).
    #[serde(skip_serializing_if = "is_zero")]
    pub events_unpublished: usize,
    /// Revoked kids whose CDN invalidation is not confirmed yet (the next run retries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edge_invalidations_owed: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A key that began signing before verifiers could all have fetched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarlyActivation {
    /// The key that began signing early.
    pub kid: String,
    /// Seconds it had been published when it began signing.
    pub published_for_seconds: i64,
    /// Seconds of pre-publication the policy asks for.
    pub prepublication_seconds: i64,
}

/// One published key, as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    /// The key's thumbprint.
    pub kid: String,
    /// Where the key stands: next, current or previous.
    pub state: KeyState,
    /// The algorithm the key signs with.
    pub alg: SigningAlg,
    /// Full ARN of the KMS key.
    pub kms_key_arn: String,
    /// Seconds since the KMS key was created.
    pub age_seconds: i64,
}

impl RotationReport {
    pub(super) fn unchanged(ring: &Keyring, version: Option<String>, now: UnixTime) -> Self {
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
            events_unpublished: 0,
            edge_invalidations_owed: Vec::new(),
        }
        .describing(ring, now)
    }

    pub(super) fn describing(mut self, ring: &Keyring, now: UnixTime) -> Self {
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
        self.edge_invalidations_owed = ring.edge_invalidations.iter().map(|o| o.kid.clone()).collect();
        self.current_key_age_seconds = ring.current().and_then(|k| k.activated_at).map(|at| now - at);
        self
    }
}

/// Why a rotation that was due or asked for did not happen, and when it can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationHeld {
    /// Keys the JWKS would hold after the rotation.
    pub published_keys: usize,
    /// The key limit (`MAX_PUBLISHED_KEYS`).
    pub max_published_keys: usize,
    /// Size of that JWKS, in bytes.
    pub jwks_bytes: usize,
    /// The size limit, in bytes ([`MAX_JWKS_BYTES`](super::MAX_JWKS_BYTES)).
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
