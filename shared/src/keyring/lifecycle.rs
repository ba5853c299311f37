//! The keyring's lifecycle transitions: bootstrap, rotation, revocation, retirement and the
//! multi-region stamps. Each takes `now` and returns a new keyring; none performs I/O.

use super::document::{KeyRecord, KeyState, Keyring, RetireReason, RetiringKey};
use super::UnixTime;
use crate::jose::alg::SigningAlg;
use crate::jose::jwk::PublicJwk;

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

impl Keyring {
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
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;
    use crate::keyring::Home;

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
}
