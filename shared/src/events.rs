//! Key lifecycle events: what rotate publishes to an EventBridge bus after each transition it
//! committed, so relying parties and operators can subscribe (see `docs/events.md`, the
//! schema's reference).
//!
//! Pure: events are derived from two keyrings, the one a write was based on and the one it
//! wrote, so an event only ever describes a change that is in the stored keyring. Publishing
//! (batches, partial failures, the time budget) is the run's job (`rotate::run`).

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::jose::alg::SigningAlg;
use crate::keyring::{KeyRecord, KeyState, Keyring, RetireReason, UnixTime};
use crate::rotate::RotationHeld;

/// The `source` of every event (not `aws.`-prefixed: that namespace is AWS's own).
pub const EVENT_SOURCE: &str = "kms-jwt";
/// The version of the `detail` schema. A change that removes or retypes a field bumps it;
/// added optional fields do not.
pub const EVENT_SCHEMA_VERSION: u32 = 1;
/// EventBridge's limit of entries in one `PutEvents` call.
pub const MAX_EVENTS_PER_CALL: usize = 10;
/// EventBridge's limit on one `PutEvents` call, in bytes (256 KB). One event here is well under
/// a kilobyte; a test keeps a full batch below this.
pub const MAX_PUT_EVENTS_BYTES: usize = 256 * 1024;

/// Which transition an event reports: its `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new key entered the keyring, hence the JWKS (pre-published ahead of signing).
    Published,
    /// A key became the one that signs.
    Current,
    /// A previous key left the JWKS: every token it signed has expired.
    Retired,
    /// A key was withdrawn from the JWKS at once (compromise).
    Revoked,
    /// A due rotation waits: it would publish more keys than verifiers accept.
    RotationHeld,
    /// Multi-region: this region took over as the keyring's home.
    TakenOver,
}

impl EventKind {
    /// The EventBridge `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            EventKind::Published => "Signing Key Published",
            EventKind::Current => "Signing Key Current",
            EventKind::Retired => "Signing Key Retired",
            EventKind::Revoked => "Signing Key Revoked",
            EventKind::RotationHeld => "Rotation Held",
            EventKind::TakenOver => "Keyring Taken Over",
        }
    }
}

/// RFC 3339 (UTC, seconds) of a Unix time; times before 1970 do not occur.
pub fn rfc3339(at: UnixTime) -> String {
    let at = u64::try_from(at).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at)).to_string()
}

/// Why a rotation waits, in an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldDetail {
    /// Keys the JWKS would hold after the rotation.
    pub published_keys: usize,
    /// The key limit (`MAX_PUBLISHED_KEYS`).
    pub max_published_keys: usize,
    /// When the rotation becomes possible, RFC 3339; absent if retirement alone never makes room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub possible_at: Option<String>,
}

/// The `detail` of every event, schema version [`EVENT_SCHEMA_VERSION`]. Fields that do not
/// apply to a kind are absent (never `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventDetail {
    /// [`EVENT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Stable id of this transition: the same transition published twice (a retry) has the
    /// same id. Consumers dedupe on it.
    pub event_id: String,
    /// The transition, as snake_case (`published`, `current`, `retired`, `revoked`,
    /// `rotation_held`, `taken_over`).
    pub transition: EventKind,
    /// The keyring (its secret's name or ARN).
    pub keyring: String,
    /// The region whose rotate committed the transition (`AWS_REGION`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// When rotate committed the transition, RFC 3339.
    pub time: String,
    /// The keyring secret's version that holds the transition (absent for `rotation_held`,
    /// which writes nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyring_version: Option<String>,
    /// The key's kid (key events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The key's JWS algorithm (key events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<SigningAlg>,
    /// When the key entered the JWKS, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    /// When the key began signing, RFC 3339, if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<String>,
    /// When the key stopped signing, RFC 3339, if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<String>,
    /// `rotation_held` only: why, and until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_held: Option<HeldDetail>,
    /// `taken_over` only: the home's epoch after the take-over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_epoch: Option<u64>,
}

/// One event, ready for the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// Its kind (hence `detail-type`).
    pub kind: EventKind,
    /// Its `detail`.
    pub detail: EventDetail,
}

impl LifecycleEvent {
    /// The EventBridge `detail-type`.
    pub fn detail_type(&self) -> &'static str {
        self.kind.detail_type()
    }

    /// The `detail` as JSON text.
    pub fn detail_json(&self) -> String {
        // Plain structs with string keys: serializing cannot fail.
        serde_json::to_string(&self.detail).unwrap_or_default()
    }
}

/// Who publishes: the keyring and the region, stamped on every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventOrigin {
    /// The keyring's name (the secret id).
    pub keyring: String,
    /// `AWS_REGION`, when known.
    pub region: Option<String>,
}

impl EventOrigin {
    fn event(&self, kind: EventKind, subject: &str, now: UnixTime, version: Option<&str>) -> LifecycleEvent {
        let mut hash = Sha256::new();
        for part in [self.keyring.as_str(), kind.detail_type(), subject, version.unwrap_or("")] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let event_id = hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
        LifecycleEvent {
            kind,
            detail: EventDetail {
                schema_version: EVENT_SCHEMA_VERSION,
                event_id,
                transition: kind,
                keyring: self.keyring.clone(),
                region: self.region.clone(),
                time: rfc3339(now),
                keyring_version: version.map(str::to_owned),
                kid: None,
                alg: None,
                published_at: None,
                activated_at: None,
                deactivated_at: None,
                rotation_held: None,
                home_epoch: None,
            },
        }
    }

    fn key_event(&self, kind: EventKind, key: &KeyRecord, now: UnixTime, version: &str) -> LifecycleEvent {
        let mut event = self.event(kind, &key.kid, now, Some(version));
        event.detail.kid = Some(key.kid.clone());
        event.detail.alg = Some(key.alg);
        event.detail.published_at = Some(rfc3339(key.published_at));
        event.detail.activated_at = key.activated_at.map(rfc3339);
        event.detail.deactivated_at = key.deactivated_at.map(rfc3339);
        event
    }

    /// The events of one committed write: `before` is the keyring the write was based on,
    /// `after` the keyring it wrote, at secret version `version`. Keys that left the JWKS are
    /// found in `after`'s retirement queue, which the same write fills (see `RetiringKey`).
    pub fn changes(
        &self,
        before: &Keyring,
        after: &Keyring,
        now: UnixTime,
        version: &str,
    ) -> Vec<LifecycleEvent> {
        let mut events = Vec::new();
        for key in before.keys.iter().filter(|k| after.find(&k.kid).is_none()) {
            let Some(gone) = after.retiring.iter().find(|r| r.kid == key.kid) else { continue };
            let kind = match gone.reason {
                RetireReason::Revoked => EventKind::Revoked,
                RetireReason::Expired => EventKind::Retired,
            };
            events.push(self.key_event(kind, key, now, version));
        }
        for key in after.keys.iter().filter(|k| before.find(&k.kid).is_none()) {
            events.push(self.key_event(EventKind::Published, key, now, version));
        }
        for key in after.keys.iter().filter(|k| k.state == KeyState::Current) {
            if before.find(&key.kid).is_none_or(|was| was.state != KeyState::Current) {
                events.push(self.key_event(EventKind::Current, key, now, version));
            }
        }
        if let Some(home) =
            after.home.as_ref().filter(|home| before.home.as_ref().is_some_and(|was| was != *home))
        {
            let mut event = self.event(EventKind::TakenOver, &home.epoch.to_string(), now, Some(version));
            event.detail.region = Some(home.region.clone());
            event.detail.home_epoch = Some(home.epoch);
            events.push(event);
        }
        events
    }

    /// The event of a due rotation that waits (nothing was written).
    pub fn rotation_held(&self, held: &RotationHeld, now: UnixTime) -> LifecycleEvent {
        let subject = held.possible_at.map_or_else(|| "never".to_owned(), |at| at.to_string());
        let mut event = self.event(EventKind::RotationHeld, &format!("{subject}/{now}"), now, None);
        event.detail.rotation_held = Some(HeldDetail {
            published_keys: held.published_keys,
            max_published_keys: held.max_published_keys,
            possible_at: held.possible_at.map(rfc3339),
        });
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;
    use crate::keyring::Home;

    fn origin() -> EventOrigin {
        EventOrigin { keyring: "kms-jwt/keyring".into(), region: Some("us-east-1".into()) }
    }

    #[test]
    fn bootstrap_publishes_two_keys_and_makes_one_current() {
        let ring = Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 0);
        let events = origin().changes(&Keyring::empty(), &ring, 0, "v1");
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::Published, EventKind::Published, EventKind::Current]);
        let current = &events[2].detail;
        assert_eq!(current.kid.as_deref(), Some(ring.current().unwrap().kid.as_str()));
        assert_eq!(current.activated_at.as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(current.keyring_version.as_deref(), Some("v1"));
        // Same transition, same id; another transition, another id.
        assert_eq!(origin().changes(&Keyring::empty(), &ring, 0, "v1"), events);
        assert_ne!(events[0].detail.event_id, events[1].detail.event_id);
        assert!(origin().changes(&ring, &ring, 5, "v2").is_empty(), "no change, no event");
    }

    #[test]
    fn revocation_and_take_over_are_told_apart() {
        let ring = Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 0);
        let current = ring.current().unwrap().kid.clone();
        let revoked = ring.revoke(&current, 100).unwrap();
        let kinds: Vec<EventKind> =
            origin().changes(&ring, &revoked, 100, "v2").iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::Revoked, EventKind::Current]);

        let mut homed = ring.clone();
        homed.home = Some(Home { region: "us-east-1".into(), epoch: 0 });
        let mut taken = homed.clone();
        taken.home = Some(Home { region: "eu-west-1".into(), epoch: 1 });
        let events = origin().changes(&homed, &taken, 7, "v3");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].detail_type(), "Keyring Taken Over");
        assert_eq!(events[0].detail.home_epoch, Some(1));
        assert_eq!(events[0].detail.region.as_deref(), Some("eu-west-1"));
        // The first claim of a home is no take-over.
        assert!(origin().changes(&ring, &homed, 7, "v4").is_empty());
    }

    #[test]
    fn the_detail_follows_the_documented_schema_and_a_full_batch_fits_a_call() {
        let ring = Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 1_700_000_000);
        let event = &origin().changes(&Keyring::empty(), &ring, 1_700_000_000, "v1")[2];
        let detail: serde_json::Value = serde_json::from_str(&event.detail_json()).unwrap();
        assert_eq!(detail["schema_version"], 1);
        assert_eq!(detail["transition"], "current");
        assert_eq!(detail["keyring"], "kms-jwt/keyring");
        assert_eq!(detail["region"], "us-east-1");
        assert_eq!(detail["time"], "2023-11-14T22:13:20Z");
        assert_eq!(detail["alg"], "ES256");
        assert!(detail.get("deactivated_at").is_none(), "absent, not null: {detail}");
        assert_eq!(detail["event_id"].as_str().unwrap().len(), 32);
        let batch = event.detail_json().len() + event.detail_type().len() + EVENT_SOURCE.len() + 200;
        assert!(batch * MAX_EVENTS_PER_CALL < MAX_PUT_EVENTS_BYTES);
    }
}
