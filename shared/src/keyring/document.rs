//! The keyring document: its records, its JSON form, and the invariants every stored and every
//! written keyring satisfies.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::UnixTime;
use crate::jose::alg::SigningAlg;
use crate::jose::jwk::PublicJwk;

/// The only schema this build reads and writes. A newer document is refused, not rewritten.
pub const SCHEMA_VERSION: u32 = 1;

/// Where a published key stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published in the JWKS ahead of use, so verifiers' caches hold it before any token does.
    Next,
    /// The one key that signs.
    Current,
    /// Published, no longer signs, kept until every token it signed has expired.
    Previous,
}

/// One published signing key, as recorded in the keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// RFC 7638 thumbprint of `public_jwk`.
    pub kid: String,
    /// Where the key stands: next, current or previous.
    pub state: KeyState,
    /// The algorithm the key signs with.
    pub alg: SigningAlg,
    /// Full ARN of the KMS key that holds the private half.
    pub kms_key_arn: String,
    /// The public key, as served in the JWKS.
    pub public_jwk: PublicJwk,
    /// When the KMS key was created.
    pub created_at: UnixTime,
    /// When it first appeared in the keyring, hence in the JWKS.
    pub published_at: UnixTime,
    /// When it became current, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<UnixTime>,
    /// When it stopped being current, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<UnixTime>,
    /// Multi-region keyrings only: when rotate saw the key enabled in every replica region's
    /// KMS and published in every region's keyring replica. Pre-publication counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated_at: Option<UnixTime>,
    /// Multi-region keyrings only: when rotate saw every region's keyring replica record the
    /// key as previous, so no region signs with it any more. Retirement grace counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_everywhere_at: Option<UnixTime>,
}

/// The region whose rotate writes a multi-region keyring, and how many times the home moved.
/// A rotate run refuses to write a keyring that names another home, or when any region's copy
/// shows a higher epoch: after a fail-over, the old home never rotates again (see
/// `Command::TakeOver`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Home {
    /// The home region, e.g. `us-east-1`.
    pub region: String,
    /// 0 for the first home, one more at each take-over.
    pub epoch: u64,
}

/// Why a key left the published set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireReason {
    /// Every token it signed has expired.
    Expired,
    /// Compromised: withdrawn at once.
    Revoked,
}

/// A key already gone from the JWKS whose KMS key still has to be disabled and scheduled for
/// deletion. It is queued by the same write that unpublishes it, so a crash between that write
/// and the KMS calls never leaves an enabled key nobody accounts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiringKey {
    /// The key's thumbprint, as it was published.
    pub kid: String,
    /// Full ARN of the KMS key to disable and schedule for deletion.
    pub kms_key_arn: String,
    /// Why it left the JWKS.
    pub reason: RetireReason,
    /// When it left the JWKS.
    pub since: UnixTime,
}

/// A run's declared intent to create KMS keys, written before `CreateKey`. The keys it
/// creates carry the request id as a tag, so if the run dies before recording them, a later
/// run can find them (only then, never routinely) and schedule their deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingCreation {
    /// The run's request id: the `kms-jwt:request` tag on every key it creates.
    pub request_id: String,
    /// When the intent was written: once older than a run can live, its run is dead.
    pub requested_at: UnixTime,
    /// Where an unfinished sweep of this intent's keys resumes (an opaque search cursor): a
    /// sweep that ran out of time keeps its progress, so a large account is covered over runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_cursor: Option<String>,
}

/// An invalidation of the JWKS paths at the CDN that a revocation owes and that is not
/// confirmed yet. Written by the withdrawal's own compare-and-swap (so a crash right after it
/// still leaves the debt recorded), dropped once an invalidation sent after `not_before` was
/// confirmed. Present only in deployments with a CDN (`JWKS_DISTRIBUTION_ID`), and only from a
/// revocation until its invalidation is confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeInvalidation {
    /// The revoked key.
    pub kid: String,
    /// When it was withdrawn from the keyring.
    pub revoked_at: UnixTime,
    /// When every jwks container has dropped its cached keyring (`revoked_at` plus
    /// `KEYRING_CACHE_TTL`): an invalidation sent before then may let an edge refill from a
    /// container still serving the revoked key, so one more is sent after it.
    pub not_before: UnixTime,
}

/// The keyring document. Serialized as JSON into the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyring {
    /// Always [`SCHEMA_VERSION`]: a document with another is refused, never rewritten.
    pub schema_version: u32,
    /// Published keys: next, current, then previous keys from newest to oldest.
    pub keys: Vec<KeyRecord>,
    /// Unpublished keys whose KMS retirement is not confirmed yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<RetiringKey>,
    /// Key creations in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingCreation>,
    /// Multi-region keyrings only: the one region whose rotate writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Home>,
    /// CDN invalidations revocations owe (absent when none is owed: a keyring holding none
    /// reads the same as before this field existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edge_invalidations: Vec<EdgeInvalidation>,
}

/// Why a stored keyring was refused. Each is a reason to stop and alert a human, never to
/// overwrite the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// Not JSON, or not this schema's shape (unknown members included).
    #[error("keyring is not valid JSON for schema version {SCHEMA_VERSION}: {0}")]
    Malformed(String),
    /// Another schema version than this build's; holds it.
    #[error("keyring schema version {0} is not supported by this build (expected {SCHEMA_VERSION})")]
    UnsupportedSchema(u32),
    /// Valid JSON that breaks an invariant of [`Keyring::validate`], such as two current keys.
    #[error("keyring is inconsistent: {0}")]
    Inconsistent(String),
}

/// The part of a stored document we read before trusting the rest of it.
#[derive(Deserialize)]
struct SchemaProbe {
    schema_version: u32,
}

impl Default for Keyring {
    fn default() -> Self {
        Keyring::empty()
    }
}

impl Keyring {
    /// The keyring before bootstrap: no keys, nothing retiring or pending.
    pub fn empty() -> Self {
        Keyring {
            schema_version: SCHEMA_VERSION,
            keys: Vec::new(),
            retiring: Vec::new(),
            pending: Vec::new(),
            home: None,
            edge_invalidations: Vec::new(),
        }
    }

    /// Parse and validate a stored document. Invalid content is an error, never "empty".
    pub fn from_json(text: &str) -> Result<Self, KeyringError> {
        let probe: SchemaProbe =
            serde_json::from_str(text).map_err(|e| KeyringError::Malformed(e.to_string()))?;
        if probe.schema_version != SCHEMA_VERSION {
            return Err(KeyringError::UnsupportedSchema(probe.schema_version));
        }
        let keyring: Keyring =
            serde_json::from_str(text).map_err(|e| KeyringError::Malformed(e.to_string()))?;
        keyring.validate()?;
        Ok(keyring)
    }

    /// The JSON document stored in the secret.
    pub fn to_json(&self) -> String {
        // Serializing plain structs with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Structural invariants every stored and every written keyring satisfies.
    pub fn validate(&self) -> Result<(), KeyringError> {
        let bad = |msg: String| Err(KeyringError::Inconsistent(msg));
        let count = |state| self.keys.iter().filter(|k| k.state == state).count();
        let (current, next) = (count(KeyState::Current), count(KeyState::Next));
        if !self.keys.is_empty() && current != 1 {
            return bad(format!("expected exactly one current key, found {current}"));
        }
        if next > 1 {
            return bad(format!("expected at most one next key, found {next}"));
        }
        let mut kids = HashSet::new();
        let mut arns = HashSet::new();
        for key in &self.keys {
            if !kids.insert(key.kid.as_str()) {
                return bad(format!("kid {} appears twice", key.kid));
            }
            if !arns.insert(key.kms_key_arn.as_str()) {
                return bad(format!("KMS key {} appears twice", key.kms_key_arn));
            }
            if key.kms_key_arn.is_empty() {
                return bad(format!("key {} has no KMS key ARN", key.kid));
            }
            if key.public_jwk.thumbprint() != key.kid {
                return bad(format!("kid {} is not the thumbprint of its public key", key.kid));
            }
            if let Err(e) = key.public_jwk.check_alg(key.alg) {
                return bad(format!("key {}: {e}", key.kid));
            }
            let stamps_ok = match key.state {
                KeyState::Next => key.activated_at.is_none() && key.deactivated_at.is_none(),
                KeyState::Current => key.activated_at.is_some() && key.deactivated_at.is_none(),
                KeyState::Previous => key.activated_at.is_some() && key.deactivated_at.is_some(),
            };
            if !stamps_ok {
                return bad(format!("key {} has timestamps that contradict its state", key.kid));
            }
        }
        for key in &self.retiring {
            if !kids.insert(key.kid.as_str()) {
                return bad(format!("kid {} is both published and retiring, or retiring twice", key.kid));
            }
            if !arns.insert(key.kms_key_arn.as_str()) {
                return bad(format!("KMS key {} appears twice", key.kms_key_arn));
            }
        }
        let mut requests = HashSet::new();
        if !self.pending.iter().all(|p| requests.insert(p.request_id.as_str())) {
            return bad("a pending creation request appears twice".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;

    #[test]
    fn json_round_trip_and_refusals() {
        let ring = Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 0);
        assert_eq!(Keyring::from_json(&ring.to_json()).unwrap(), ring);
        assert_eq!(Keyring::from_json(r#"{"schema_version":1,"keys":[]}"#).unwrap(), Keyring::empty());

        assert!(matches!(Keyring::from_json("not json"), Err(KeyringError::Malformed(_))));
        assert!(matches!(Keyring::from_json(""), Err(KeyringError::Malformed(_))));
        assert_eq!(
            Keyring::from_json(r#"{"schema_version":2,"keys":[],"future":true}"#),
            Err(KeyringError::UnsupportedSchema(2))
        );
        assert!(matches!(
            Keyring::from_json(r#"{"schema_version":1,"keys":[],"extra":1}"#),
            Err(KeyringError::Malformed(_))
        ));

        let mut two_current = ring.clone();
        for k in &mut two_current.keys {
            k.state = KeyState::Current;
            k.activated_at = Some(0);
        }
        assert!(matches!(Keyring::from_json(&two_current.to_json()), Err(KeyringError::Inconsistent(_))));

        let mut retiring_and_published = ring.clone();
        retiring_and_published.retiring.push(RetiringKey {
            kid: ring.keys[0].kid.clone(),
            kms_key_arn: "arn:other".into(),
            reason: RetireReason::Revoked,
            since: 0,
        });
        assert!(matches!(
            Keyring::from_json(&retiring_and_published.to_json()),
            Err(KeyringError::Inconsistent(_))
        ));

        // An owed CDN invalidation round-trips; with none owed the document is as before.
        assert!(!ring.to_json().contains("edge_invalidations"));
        let mut owed = ring.clone();
        owed.edge_invalidations.push(EdgeInvalidation { kid: "k".into(), revoked_at: 5, not_before: 65 });
        assert_eq!(Keyring::from_json(&owed.to_json()).unwrap(), owed);

        let mut wrong_kid = ring.clone();
        wrong_kid.keys[0].kid = "forged".into();
        assert!(matches!(Keyring::from_json(&wrong_kid.to_json()), Err(KeyringError::Inconsistent(_))));
    }
}
