//! What a keyring says without changing it: its keys by state, whether it accounts for a KMS
//! key, and the JWKS verifiers are served.

use super::document::{KeyRecord, KeyState, Keyring};
use super::UnixTime;
use crate::arn::same_kms_key;
use crate::jose::jwk::{JwkSet, PublishedJwk};

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

impl Keyring {
    /// Whether the keyring is replicated to other regions (it names a home region).
    pub fn is_multi_region(&self) -> bool {
        self.home.is_some()
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

    /// The earliest time rotate publishes a new key: the scheduled rotation, `rotation_period`
    /// after the current key's activation (never earlier: the rotation also waits for the next
    /// key's pre-publication, and for a run of rotate, which can only delay it); or, with no
    /// next key (revoked, or promoted by a revocation), the moment the current key began
    /// signing, already past, as rotate adds one at its next run. `None` before bootstrap.
    /// Only an operator's rotation or revocation publishes a key earlier.
    pub fn next_publication_due_at(&self, rotation_period_secs: i64) -> Option<UnixTime> {
        let current = self.current()?;
        let since = current.activated_at.unwrap_or(current.published_at);
        if self.next().is_none() {
            return Some(since);
        }
        Some(since.saturating_add(rotation_period_secs))
    }

    /// Every key verifiers must accept: next, current and previous.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.keys.iter().map(KeyRecord::published).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;

    #[test]
    fn the_next_publication_is_due_a_period_after_activation_or_at_once_without_a_next_key() {
        let period = 7 * 86_400;
        assert_eq!(Keyring::empty().next_publication_due_at(period), None, "nothing before bootstrap");
        let ring = Keyring::empty().bootstrap(new_key(1, 100), new_key(2, 100), 100);
        assert_eq!(ring.next_publication_due_at(period), Some(100 + period));
        let rotated = ring.rotate(new_key(3, 5_000), 5_000);
        assert_eq!(rotated.next_publication_due_at(period), Some(5_000 + period));
        // Revoking the current key promotes the next: the replacement next key is due at once.
        let current = rotated.current().unwrap().kid.clone();
        let revoked = rotated.revoke(&current, 6_000).unwrap();
        assert_eq!(revoked.next_publication_due_at(period), Some(6_000));
        // Revoking the next key leaves the current one signing: its replacement is due too.
        let next = rotated.next().unwrap().kid.clone();
        assert_eq!(rotated.revoke(&next, 7_000).unwrap().next_publication_due_at(period), Some(5_000));
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
}
