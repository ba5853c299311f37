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

    /// Every key verifiers must accept: next, current and previous.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.keys.iter().map(KeyRecord::published).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;

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
