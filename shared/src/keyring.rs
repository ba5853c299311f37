//! The keyring document kept in one Secrets Manager secret, and its pure lifecycle.
//!
//! Nothing here performs I/O or reads a clock: every transition takes `now` (Unix seconds)
//! as an argument, so a year of rotations can be simulated in milliseconds.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::arn::same_kms_key;
use crate::jose::alg::SigningAlg;
use crate::jose::jwk::{JwkSet, PublicJwk, PublishedJwk};

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

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

impl KeyRecord {
    fn published(&self) -> PublishedJwk {
        PublishedJwk::signing_key(self.public_jwk.clone(), self.kid.clone(), self.alg)
    }

    /// Since when every verifier can have it: its publication in a single-region keyring; in a
    /// multi-region one, the moment rotate saw it in every region (`None` until then).
    pub fn published_everywhere_at(&self, multi_region: bool) -> Option<UnixTime> {
        if multi_region {
            self.replicated_at
        } else {
            Some(self.published_at)
        }
    }
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

/// A key freshly created in KMS, not yet in the keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// RFC 7638 thumbprint of `public_jwk`.
    pub kid: String,
    /// The algorithm the key was created for.
    pub alg: SigningAlg,
    /// Full ARN of the KMS key that holds the private half.
    pub kms_key_arn: String,
    /// The public key, from KMS `GetPublicKey`.
    pub public_jwk: PublicJwk,
    /// When the KMS key was created.
    pub created_at: UnixTime,
}

impl NewKey {
    fn into_record(self, state: KeyState, now: UnixTime) -> KeyRecord {
        KeyRecord {
            kid: self.kid,
            state,
            alg: self.alg,
            kms_key_arn: self.kms_key_arn,
            public_jwk: self.public_jwk,
            created_at: self.created_at,
            published_at: now,
            activated_at: (state == KeyState::Current).then_some(now),
            deactivated_at: None,
            replicated_at: None,
            superseded_everywhere_at: None,
        }
    }
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

    /// Whether the keyring is replicated to other regions (it names a home region).
    pub fn is_multi_region(&self) -> bool {
        self.home.is_some()
    }

    /// The keyring with `replicated_at = now` on each published key in `kids` that lacks it.
    pub fn mark_replicated(&self, kids: &[String], now: UnixTime) -> Keyring {
        let mut ring = self.clone();
        for key in ring.keys.iter_mut().filter(|k| k.replicated_at.is_none() && kids.contains(&k.kid)) {
            key.replicated_at = Some(now);
        }
        ring
    }

    /// The keyring with `superseded_everywhere_at = now` on each previous key in `kids` that
    /// lacks it.
    pub fn mark_superseded(&self, kids: &[String], now: UnixTime) -> Keyring {
        let mut ring = self.clone();
        for key in ring.keys.iter_mut().filter(|k| {
            k.state == KeyState::Previous && k.superseded_everywhere_at.is_none() && kids.contains(&k.kid)
        }) {
            key.superseded_everywhere_at = Some(now);
        }
        ring
    }

    /// True until the first bootstrap.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key that signs; `None` before bootstrap, or once every published key was revoked.
    pub fn current(&self) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Current)
    }

    /// The key published ahead of its turn, if there is one.
    pub fn next(&self) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Next)
    }

    /// Keys that no longer sign but stay published, most recently deactivated first.
    pub fn previous(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().filter(|k| k.state == KeyState::Previous)
    }

    /// The published key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Does this keyring account for the KMS key (published or retiring)? A multi-Region key
    /// is one key in every region: the ARN of any of its replicas counts as the recorded one
    /// (after a fail-over, the new home finds its local replica of a key the old home made).
    pub fn holds_arn(&self, arn: &str) -> bool {
        let held = |recorded: &str| same_kms_key(recorded, arn);
        self.keys.iter().any(|k| held(&k.kms_key_arn)) || self.retiring.iter().any(|k| held(&k.kms_key_arn))
    }

    /// Every key verifiers must accept: next, current and previous.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.keys.iter().map(KeyRecord::published).collect() }
    }

    /// A bootstrapped keyring: one key that signs from now on, one published ahead of its
    /// turn. The retirement queue and pending creations carry over.
    pub fn bootstrap(&self, current: NewKey, next: NewKey, now: UnixTime) -> Keyring {
        let mut ring = self.clone();
        ring.keys = vec![next.into_record(KeyState::Next, now), current.into_record(KeyState::Current, now)];
        ring.sort();
        ring
    }

    /// Add a next key to a keyring that lacks one (a hand-repaired keyring).
    pub fn with_next(&self, next: NewKey, now: UnixTime) -> Keyring {
        let mut ring = self.clone();
        ring.keys.push(next.into_record(KeyState::Next, now));
        ring.sort();
        ring
    }

    /// next → current, current → previous, `new_next` → next. If there is no next key, the
    /// new key becomes current directly.
    pub fn rotate(&self, new_next: NewKey, now: UnixTime) -> Keyring {
        let mut ring = self.clone();
        let had_next = ring.next().is_some();
        for key in &mut ring.keys {
            match key.state {
                KeyState::Current => {
                    key.state = KeyState::Previous;
                    key.deactivated_at = Some(now);
                }
                KeyState::Next => {
                    key.state = KeyState::Current;
                    key.activated_at = Some(now);
                }
                KeyState::Previous => {}
            }
        }
        let state = if had_next { KeyState::Next } else { KeyState::Current };
        ring.keys.push(new_next.into_record(state, now));
        ring.sort();
        ring
    }

    /// Withdraw a published key at once, with no new key: revocation must not wait for KMS.
    /// A revoked current key is succeeded by the key verifiers have held longest among those
    /// that can sign without breaking them: the next key, else the most recently retired-from-
    /// signing previous key (still published, its tokens still accepted). Only when no key is
    /// left does the keyring have no current key until a new one is created. `None` when the
    /// kid is not published.
    pub fn revoke(&self, kid: &str, now: UnixTime) -> Option<Keyring> {
        let index = self.keys.iter().position(|k| k.kid == kid)?;
        let mut ring = self.clone();
        let revoked = ring.keys.remove(index);
        ring.retiring.push(RetiringKey {
            kid: revoked.kid,
            kms_key_arn: revoked.kms_key_arn,
            reason: RetireReason::Revoked,
            since: now,
        });
        if revoked.state == KeyState::Current {
            let successor = ring.keys.iter().position(|k| k.state == KeyState::Next).or_else(|| {
                // Previous keys are sorted most recently deactivated first.
                ring.keys.iter().position(|k| k.state == KeyState::Previous)
            });
            if let Some(successor) = successor {
                let key = &mut ring.keys[successor];
                key.state = KeyState::Current;
                key.activated_at = Some(now);
                key.deactivated_at = None;
                // It signs again: its grace restarts from its next demotion, in every region.
                key.superseded_everywhere_at = None;
            }
        }
        ring.sort();
        Some(ring)
    }

    /// Move previous keys whose tokens have all expired (`now >= deactivated_at + grace`;
    /// multi-region: `superseded_everywhere_at + grace`, as a lagging region may have signed
    /// with the key after the home stopped) from the published set to the retirement queue.
    /// Returns their kids.
    pub fn retire_expired(&self, now: UnixTime, grace_secs: i64) -> (Keyring, Vec<String>) {
        let multi_region = self.is_multi_region();
        let (expired, kept): (Vec<_>, Vec<_>) = self.keys.iter().cloned().partition(|k| {
            let since = if multi_region { k.superseded_everywhere_at } else { k.deactivated_at };
            k.state == KeyState::Previous && since.is_some_and(|at| now >= at.saturating_add(grace_secs))
        });
        let mut ring = self.clone();
        ring.keys = kept;
        let kids = expired.iter().map(|k| k.kid.clone()).collect();
        ring.retiring.extend(expired.into_iter().map(|k| RetiringKey {
            kid: k.kid,
            kms_key_arn: k.kms_key_arn,
            reason: RetireReason::Expired,
            since: now,
        }));
        (ring, kids)
    }

    fn sort(&mut self) {
        let rank = |k: &KeyRecord| match k.state {
            KeyState::Next => 0,
            KeyState::Current => 1,
            KeyState::Previous => 2,
        };
        self.keys.sort_by_key(|k| (rank(k), std::cmp::Reverse(k.deactivated_at)));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn new_key(seed: u8, now: UnixTime) -> NewKey {
        // A syntactically valid P-256 JWK; thumbprints only need distinct inputs.
        let jwk = PublicJwk::Ec {
            crv: "P-256".into(),
            x: base64_of(seed, 32),
            y: base64_of(seed.wrapping_add(1), 32),
        };
        NewKey {
            kid: jwk.thumbprint(),
            alg: SigningAlg::ES256,
            kms_key_arn: format!("arn:aws:kms:us-east-1:000000000000:key/{seed}"),
            public_jwk: jwk,
            created_at: now,
        }
    }

    fn base64_of(byte: u8, len: usize) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![byte; len])
    }

    #[test]
    fn bootstrap_then_rotate_moves_every_key_one_step() {
        let ring = Keyring::empty().bootstrap(new_key(1, 100), new_key(2, 100), 100);
        ring.validate().unwrap();
        assert_eq!(ring.current().unwrap().kms_key_arn, new_key(1, 0).kms_key_arn);
        assert_eq!(ring.next().unwrap().kms_key_arn, new_key(2, 0).kms_key_arn);

        let rotated = ring.rotate(new_key(3, 200), 200);
        rotated.validate().unwrap();
        assert_eq!(rotated.current().unwrap().kid, ring.next().unwrap().kid);
        assert_eq!(rotated.current().unwrap().activated_at, Some(200));
        let prev: Vec<_> = rotated.previous().collect();
        assert_eq!(prev.len(), 1);
        assert_eq!(prev[0].kid, ring.current().unwrap().kid);
        assert_eq!(prev[0].deactivated_at, Some(200));
        assert_eq!(rotated.next().unwrap().kid, new_key(3, 0).kid);
        assert_eq!(rotated.jwks().keys.len(), 3);
    }

    /// Two revocations in a row (the runbook's advice for several compromised keys) put a
    /// previous key back to signing. Its old `superseded_everywhere_at` must go: counted from
    /// it, the key would be retired at its next demotion while its new tokens are live.
    #[test]
    fn a_re_promoted_key_forgets_when_it_was_last_superseded() {
        let mut ring =
            Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 0).rotate(new_key(3, 100), 100);
        ring.home = Some(Home { region: "us-east-1".into(), epoch: 0 });
        let first = new_key(1, 0).kid;
        let ring = ring.mark_superseded(std::slice::from_ref(&first), 110);
        // Revoke the current key (2), then the next (3): key 1 signs again from 5000.
        let ring = ring.revoke(&new_key(2, 0).kid, 4_000).unwrap();
        let ring = ring.revoke(&new_key(3, 0).kid, 5_000).unwrap();
        let again = ring.find(&first).unwrap();
        assert_eq!((again.state, again.activated_at), (KeyState::Current, Some(5_000)));
        assert_eq!(again.superseded_everywhere_at, None);
        // Demoted at 9000: nothing may retire it before its new grace has run, whatever the
        // regions said of it before.
        let ring = ring.rotate(new_key(4, 9_000), 9_000).rotate(new_key(5, 9_001), 9_001);
        let (kept, gone) = ring.retire_expired(9_100, 1_000);
        assert!(gone.is_empty(), "retired {gone:?}");
        assert!(kept.find(&first).is_some());
    }

    /// After a fail-over the new home sweeps by tag in its own region and finds its local
    /// replica of a key the old home created and recorded under the primary's ARN.
    #[test]
    fn a_replica_arn_of_a_recorded_multi_region_key_is_held() {
        let mut key = new_key(1, 0);
        key.kms_key_arn = "arn:aws:kms:us-east-1:000000000000:key/mrk-1".into();
        let ring = Keyring::empty().bootstrap(key, new_key(2, 0), 0);
        assert!(ring.holds_arn("arn:aws:kms:eu-west-1:000000000000:key/mrk-1"));
        assert!(!ring.holds_arn("arn:aws:kms:eu-west-1:000000000000:key/mrk-9"));
        assert!(
            !ring.holds_arn("arn:aws:kms:eu-west-1:000000000000:key/2"),
            "single-Region keys are regional"
        );
    }

    #[test]
    fn expired_previous_keys_move_to_the_retirement_queue() {
        let ring = Keyring::empty()
            .bootstrap(new_key(1, 0), new_key(2, 0), 0)
            .rotate(new_key(3, 100), 100)
            .rotate(new_key(4, 200), 200);
        let first_current = new_key(1, 0).kid;
        let (kept, gone) = ring.retire_expired(250, 100);
        assert_eq!(gone, vec![first_current.clone()]);
        assert_eq!(kept.keys.len(), 3);
        assert_eq!(kept.retiring.len(), 1);
        assert_eq!(kept.retiring[0].reason, RetireReason::Expired);
        assert!(kept.find(&first_current).is_none(), "gone from the JWKS");
        assert!(kept.holds_arn(&new_key(1, 0).kms_key_arn), "but still accounted for");
        kept.validate().unwrap();
        assert_eq!(Keyring::from_json(&kept.to_json()).unwrap(), kept);
        let (_, none) = ring.retire_expired(199, 100);
        assert!(none.is_empty(), "a key is kept until deactivated_at + grace");
    }

    #[test]
    fn revoking_current_promotes_next_without_waiting_for_a_new_key() {
        let ring = Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 0);
        let current = ring.current().unwrap().kid.clone();
        let next = ring.next().unwrap().kid.clone();
        let revoked = ring.revoke(&current, 50).unwrap();
        revoked.validate().unwrap();
        assert_eq!(revoked.current().unwrap().kid, next);
        assert_eq!(revoked.current().unwrap().activated_at, Some(50));
        assert!(revoked.next().is_none(), "the replacement next key comes later");
        assert!(revoked.jwks().keys.iter().all(|k| k.kid != current), "withdrawn from the JWKS at once");
        assert_eq!(revoked.retiring[0].reason, RetireReason::Revoked);
        assert!(ring.revoke("unknown", 50).is_none());
        // Revoking a previous key changes no other key.
        let rotated = ring.rotate(new_key(4, 60), 60);
        let after = rotated.revoke(&current, 70).unwrap();
        after.validate().unwrap();
        assert_eq!(after.keys.len(), 2);
        assert_eq!(after.current(), rotated.current());
    }

    #[test]
    fn revocations_in_a_row_hand_signing_to_the_longest_published_key() {
        // previous (newest first): 2, 1; current 3; no next (its replacement failed).
        let ring = Keyring::empty()
            .bootstrap(new_key(1, 0), new_key(2, 0), 0)
            .rotate(new_key(3, 100), 100)
            .rotate(new_key(9, 200), 200);
        let ring = ring.revoke(&new_key(9, 0).kid, 250).unwrap(); // the pending next goes
        assert!(ring.next().is_none());
        let current = ring.current().unwrap().kid.clone();
        assert_eq!(current, new_key(3, 0).kid);
        let after = ring.revoke(&current, 300).unwrap();
        after.validate().unwrap();
        let successor = after.current().unwrap();
        assert_eq!(
            successor.kid,
            new_key(2, 0).kid,
            "the most recently signing previous key, published since t=0"
        );
        assert_eq!((successor.activated_at, successor.deactivated_at), (Some(300), None));
        let after = after.revoke(&new_key(2, 0).kid, 310).unwrap().revoke(&new_key(1, 0).kid, 320).unwrap();
        after.validate().unwrap();
        assert!(after.keys.is_empty() && after.current().is_none(), "nothing left: a new key must be made");
        assert_eq!(after.retiring.len(), 4);
    }

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

        let mut wrong_kid = ring.clone();
        wrong_kid.keys[0].kid = "forged".into();
        assert!(matches!(Keyring::from_json(&wrong_kid.to_json()), Err(KeyringError::Inconsistent(_))));
    }
}
