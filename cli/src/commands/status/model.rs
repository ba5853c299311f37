//! What `status` reports: the keys with their KMS state, the next transition, the queues, the
//! regions, and what needs attention; and what it gathered from AWS to build it.

use std::collections::HashMap;

use kms_jwt::keyring::{Home, KeyState, RetireReason};
use kms_jwt::rotate::{PlannedRun, RotationHeld};
use kms_jwt::{Keyring, SigningAlg, UnixTime};
use serde::Serialize;

use crate::aws::KmsState;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub now: UnixTime,
    pub region: String,
    pub keyring_secret: String,
    pub keyring_version: Option<String>,
    /// The algorithm of keys rotate creates from now on.
    pub signing_alg: SigningAlg,
    pub rotation_period_seconds: i64,
    pub keys: Vec<KeyView>,
    /// The next scheduled run that changes something (or holds a rotation).
    pub next_transition: Option<PlannedRun>,
    /// When a transition already due became due, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_since: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_held: Option<RotationHeld>,
    pub pending: Vec<PendingView>,
    pub retiring: Vec<RetiringView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<Home>,
    pub replicas: Vec<ReplicaView>,
    /// What needs a human; non-empty: exit code 1.
    pub attention: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct KeyView {
    pub kid: String,
    pub state: KeyState,
    pub alg: SigningAlg,
    pub kms_key_arn: String,
    pub created_at: UnixTime,
    pub published_at: UnixTime,
    /// Multi-region: when every region had it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_everywhere_at: Option<UnixTime>,
    pub current_since: Option<UnixTime>,
    /// Previous keys: when they leave the JWKS.
    pub retires_at: Option<UnixTime>,
    pub kms: Vec<KmsState>,
}

#[derive(Debug, Serialize)]
pub struct PendingView {
    pub request_id: String,
    pub requested_at: UnixTime,
    /// Older than a run can live: its run died; the next run sweeps its keys.
    pub stale: bool,
}

#[derive(Debug, Serialize)]
pub struct RetiringView {
    pub kid: String,
    pub reason: RetireReason,
    pub since: UnixTime,
    pub kms_key_arn: String,
    pub kms: Vec<KmsState>,
}

#[derive(Debug, Serialize)]
pub struct ReplicaView {
    pub region: String,
    /// Whether the region's keyring copy could be read.
    pub found: bool,
    pub epoch: Option<u64>,
    /// kids published here but not there.
    pub missing: Vec<String>,
    pub behind: bool,
}

/// What `status` gathered from AWS, for [`build`](super::build).
pub struct Observed {
    pub ring: Keyring,
    pub version: Option<String>,
    pub kms: HashMap<String, Vec<KmsState>>,
    pub replicas: Vec<(String, Option<Keyring>)>,
}

/// A key state as the table and the attention lines name it.
pub fn state_word(state: KeyState) -> &'static str {
    match state {
        KeyState::Next => "next",
        KeyState::Current => "current",
        KeyState::Previous => "previous",
    }
}
