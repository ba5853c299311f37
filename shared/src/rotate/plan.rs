//! The pure planner: what the keyring should look like at `now`, with no I/O.

use super::error::RotateError;
use super::policy::{RotationPolicy, MAX_JWKS_BYTES};
use super::report::{EarlyActivation, RotationHeld, Transition};
use crate::keyring::{Keyring, NewKey, RetireReason, UnixTime};

/// How a run rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mode {
    Reconcile,
    RotateNow { force: bool },
}

/// What a plan could not do without more input.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Need {
    /// This many fresh keys in total.
    Keys(usize),
    /// Nothing: the rotation asked for does not fit the published-key limits.
    Refusal(RotationHeld),
}

/// The keyring a run should write, and how many fresh keys it uses.
pub(super) struct Plan {
    pub(super) transitions: Vec<Transition>,
    pub(super) keyring: Keyring,
    pub(super) used_new_keys: usize,
    /// A due scheduled rotation left for later by the published-key limits.
    pub(super) held: Option<RotationHeld>,
}

/// Pure decision: what the keyring should look like at `now`. `fresh` supplies new keys in
/// order; `Err(Need::Keys(n))` asks for `n` of them.
pub(super) fn plan(
    ring: &Keyring,
    policy: &RotationPolicy,
    mode: &Mode,
    now: UnixTime,
    fresh: &[NewKey],
) -> Result<Plan, Need> {
    let mut transitions = Vec::new();
    let mut held = None;
    let mut used = 0;
    let mut take = |n: usize| -> Result<Vec<NewKey>, Need> {
        if fresh.len() < used + n {
            return Err(Need::Keys(used + n));
        }
        used += n;
        Ok(fresh[used - n..used].to_vec())
    };
    let mut next_ring = match (ring.current(), ring.next()) {
        (None, _) => {
            let keys = take(2)?;
            transitions.push(Transition::Bootstrap);
            ring.bootstrap(keys[0].clone(), keys[1].clone(), now)
        }
        (Some(_), None) => {
            // Without a next key (after a revocation, or hand-repaired): add one and let it wait
            // its pre-publication time.
            let keys = take(1)?;
            transitions.push(Transition::AddNext);
            ring.with_next(keys[0].clone(), now)
        }
        (Some(current), Some(next)) => {
            let current_age = now - current.activated_at.unwrap_or(current.published_at);
            // Multi-region: the next key counts as published only once every region has it
            // (KMS replica enabled, keyring replica showing it); not even `force` skips that,
            // or tokens signed with it would fail in a region whose JWKS lacks it.
            let visible_since = next.published_everywhere_at(ring.is_multi_region());
            let prepublished = visible_since.is_some_and(|at| now - at >= policy.prepublication);
            let due = match mode {
                Mode::RotateNow { force } => visible_since.is_some() && (prepublished || *force),
                Mode::Reconcile => current_age >= policy.rotation_period && prepublished,
            };
            // Checked before asking for a key: a refused rotation creates nothing.
            let refusal = if due { rotation_held(ring, policy, now) } else { None };
            match (due, refusal, mode) {
                (true, None, _) => {
                    let keys = take(1)?;
                    transitions.push(Transition::Rotate);
                    ring.rotate(keys[0].clone(), now)
                }
                (true, Some(refusal), Mode::RotateNow { .. }) => return Err(Need::Refusal(refusal)),
                (true, Some(refusal), Mode::Reconcile) => {
                    held = Some(refusal);
                    ring.clone()
                }
                (false, _, _) => ring.clone(),
            }
        }
    };
    let (after_retirement, expired) = next_ring.retire_expired(now, policy.retirement_grace);
    if !expired.is_empty() {
        transitions.push(Transition::Retire);
        next_ring = after_retirement;
    }
    Ok(Plan { transitions, keyring: next_ring, used_new_keys: used, held })
}

/// Why rotating `ring` at `now` would break the published-key limits, if it would. A
/// rotation publishes one more key (of the size of the largest published one: new keys
/// follow the configured algorithm) after retiring the previous keys whose tokens expired.
pub(super) fn rotation_held(ring: &Keyring, policy: &RotationPolicy, now: UnixTime) -> Option<RotationHeld> {
    let largest_key = ring.jwks().keys.iter().map(|k| serde_json::to_string(k).map_or(0, |t| t.len())).max();
    let published_after_rotation_at = |at: UnixTime| {
        let (kept, _) = ring.retire_expired(at, policy.retirement_grace);
        let bytes = serde_json::to_string(&kept.jwks()).map_or(usize::MAX, |t| t.len());
        // One more member: a comma and the new key.
        (kept.keys.len() + 1, bytes.saturating_add(1 + largest_key.unwrap_or(0)))
    };
    let fits = |(keys, bytes): (usize, usize)| keys <= policy.max_published_keys && bytes <= MAX_JWKS_BYTES;
    let (published_keys, jwks_bytes) = published_after_rotation_at(now);
    if fits((published_keys, jwks_bytes)) {
        return None;
    }
    let mut retirements: Vec<UnixTime> = ring
        .previous()
        .filter_map(|k| k.deactivated_at.map(|at| at.saturating_add(policy.retirement_grace)))
        .filter(|&at| at > now)
        .collect();
    retirements.sort_unstable();
    let possible_at = retirements.into_iter().find(|&at| fits(published_after_rotation_at(at)));
    Some(RotationHeld {
        published_keys,
        max_published_keys: policy.max_published_keys,
        jwks_bytes,
        max_jwks_bytes: MAX_JWKS_BYTES,
        possible_at,
    })
}

/// Pure decision of a revocation: the keyring without `kid`, or `None` if it was already
/// withdrawn (revoking again is harmless).
pub(super) fn withdraw(ring: &Keyring, kid: &str, now: UnixTime) -> Result<Option<Keyring>, RotateError> {
    if ring.retiring.iter().any(|k| k.kid == kid && k.reason == RetireReason::Revoked) {
        return Ok(None);
    }
    ring.revoke(kid, now).map(Some).ok_or_else(|| RotateError::UnknownKid(kid.to_owned()))
}

/// The key a write made current, if it began signing before its pre-publication time was
/// over: verifiers holding an older JWKS reject its tokens until they refetch.
pub(super) fn early_activation(
    before: &Keyring,
    after: &Keyring,
    policy: &RotationPolicy,
    now: UnixTime,
) -> Option<EarlyActivation> {
    let current = after.current()?;
    let first_bootstrap = before.keys.is_empty() && before.retiring.is_empty();
    if first_bootstrap || before.current().is_some_and(|c| c.kid == current.kid) {
        return None;
    }
    // A key never seen in every region was published there for no time at all.
    let published_for = now - current.published_everywhere_at(after.is_multi_region()).unwrap_or(now);
    (published_for < policy.prepublication).then(|| EarlyActivation {
        kid: current.kid.clone(),
        published_for_seconds: published_for,
        prepublication_seconds: policy.prepublication,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;
    use crate::rotate::tests::{policy, DAY, HOUR};

    const T0: UnixTime = 1_700_000_000;
    /// The first scheduled rotation of a keyring bootstrapped at `T0`.
    const T1: UnixTime = T0 + 7 * DAY;

    /// What `plan` should answer.
    #[derive(Debug)]
    enum Expect {
        /// A plan: its transitions, how many fresh keys it uses, and the held rotation's
        /// `(published_keys, possible_at)` if one was held.
        Plan(Vec<Transition>, usize, Option<(usize, Option<UnixTime>)>),
        /// This many fresh keys in total, first.
        Keys(usize),
        /// A refused rotation: `(published_keys, possible_at)`.
        Refused(usize, Option<UnixTime>),
    }

    /// Next and current, both published at `T0`.
    fn bootstrapped() -> Keyring {
        Keyring::empty().bootstrap(new_key(0, T0), new_key(1, T0), T0)
    }

    /// Rotated once at `T1`: next, current and one previous key.
    fn rotated() -> Keyring {
        bootstrapped().rotate(new_key(2, T1), T1)
    }

    /// A current key whose next key was revoked at `T0 + 10`.
    fn without_next() -> Keyring {
        let ring = bootstrapped();
        let next = ring.next().map(|k| k.kid.clone()).unwrap();
        ring.revoke(&next, T0 + 10).unwrap()
    }

    #[test]
    fn plan_table() {
        let reconcile = Mode::Reconcile;
        let rotate = Mode::RotateNow { force: false };
        let force = Mode::RotateNow { force: true };
        // Three keys at most, and a grace long enough that the previous key of `rotated` is
        // still published at `T1 + 7 days`: a rotation then would publish a fourth.
        let capped = RotationPolicy { max_published_keys: 3, retirement_grace: 30 * DAY, ..policy() };
        use Expect::{Keys, Plan, Refused};
        use Transition::{AddNext, Bootstrap, Retire, Rotate};
        #[rustfmt::skip]
        let cases: Vec<(&str, Keyring, RotationPolicy, &Mode, UnixTime, usize, Expect)> = vec![
            ("an empty keyring asks for two keys", Keyring::empty(), policy(), &reconcile, T0, 0, Keys(2)),
            ("and bootstraps with them", Keyring::empty(), policy(), &reconcile, T0, 2, Plan(vec![Bootstrap], 2, None)),
            ("nothing is due within the period", bootstrapped(), policy(), &reconcile, T0 + HOUR, 2, Plan(vec![], 0, None)),
            ("a due rotation asks for one key", bootstrapped(), policy(), &reconcile, T1, 0, Keys(1)),
            ("and rotates with it", bootstrapped(), policy(), &reconcile, T1, 1, Plan(vec![Rotate], 1, None)),
            ("rotate now waits for pre-publication", bootstrapped(), policy(), &rotate, T0 + 60, 1, Plan(vec![], 0, None)),
            ("rotate now once pre-published", bootstrapped(), policy(), &rotate, T0 + HOUR, 1, Plan(vec![Rotate], 1, None)),
            ("a forced rotation does not wait", bootstrapped(), policy(), &force, T0 + 60, 1, Plan(vec![Rotate], 1, None)),
            ("a missing next key is added", without_next(), policy(), &reconcile, T0 + 20, 1, Plan(vec![AddNext], 1, None)),
            ("and asked for first", without_next(), policy(), &reconcile, T0 + 20, 0, Keys(1)),
            ("a previous key retires after the grace", rotated(), policy(), &reconcile, T1 + 2 * HOUR, 0, Plan(vec![Retire], 0, None)),
            ("not before", rotated(), policy(), &reconcile, T1 + 2 * HOUR - 1, 0, Plan(vec![], 0, None)),
            ("rotation and retirement in one run", rotated(), policy(), &reconcile, T1 + 7 * DAY, 1, Plan(vec![Rotate, Retire], 1, None)),
            ("a scheduled rotation over the cap is held, asking for no key", rotated(), capped.clone(), &reconcile, T1 + 7 * DAY, 0, Plan(vec![], 0, Some((4, Some(T1 + 30 * DAY))))),
            ("an asked-for rotation over the cap is refused", rotated(), capped.clone(), &force, T1 + 7 * DAY, 1, Refused(4, Some(T1 + 30 * DAY))),
            ("once the previous key retires, it fits", rotated(), capped, &reconcile, T1 + 30 * DAY, 1, Plan(vec![Rotate, Retire], 1, None)),
        ];
        for (name, ring, policy, mode, now, fresh, expect) in cases {
            let fresh: Vec<NewKey> = (0..fresh).map(|i| new_key(100 + i as u8, now)).collect();
            match (plan(&ring, &policy, mode, now, &fresh), &expect) {
                (Ok(got), Plan(transitions, used, held)) => {
                    assert_eq!(&got.transitions, transitions, "{name}");
                    assert_eq!(got.used_new_keys, *used, "{name}");
                    let got_held = got.held.as_ref().map(|h| (h.published_keys, h.possible_at));
                    assert_eq!(got_held, *held, "{name}");
                    assert!(got.keyring.validate().is_ok(), "{name}: the planned keyring is valid");
                    if transitions.is_empty() {
                        assert_eq!(got.keyring, ring, "{name}: nothing to write");
                    }
                }
                (Err(Need::Keys(n)), Keys(expected)) => assert_eq!(n, *expected, "{name}"),
                (Err(Need::Refusal(held)), Refused(keys, at)) => {
                    assert_eq!((held.published_keys, held.possible_at), (*keys, *at), "{name}")
                }
                (Ok(got), _) => panic!("{name}: expected {expect:?}, got a plan {:?}", got.transitions),
                (Err(need), _) => panic!("{name}: expected {expect:?}, got {need:?}"),
            }
        }
    }

    #[test]
    fn withdrawing_twice_is_harmless_and_an_unknown_kid_is_refused() {
        let ring = bootstrapped();
        let current = ring.current().map(|k| k.kid.clone()).unwrap();
        let withdrawn = withdraw(&ring, &current, T0 + 10).unwrap().unwrap();
        assert!(withdrawn.find(&current).is_none());
        assert!(withdraw(&withdrawn, &current, T0 + 20).unwrap().is_none(), "already withdrawn");
        assert!(matches!(withdraw(&ring, "nope", T0), Err(RotateError::UnknownKid(kid)) if kid == "nope"));
    }

    #[test]
    fn the_jwks_byte_limit_holds_back_a_rotation_whatever_the_key_count_cap() {
        let t0 = 1_700_000_000;
        // Keys big enough that the byte limit binds before any sensible key-count cap.
        let big = |seed: u8| {
            let mut key = new_key(seed, t0);
            if let crate::jose::jwk::PublicJwk::Ec { x, .. } = &mut key.public_jwk {
                x.push_str(&"A".repeat(20_000));
            }
            key
        };
        let mut ring = Keyring::empty().bootstrap(big(0), big(1), t0);
        let policy = RotationPolicy { max_published_keys: 100, ..policy() };
        let mut rotations = 0;
        for seed in 2..=20 {
            match rotation_held(&ring, &policy, t0 + i64::from(seed)) {
                None => {
                    ring = ring.rotate(big(seed), t0 + i64::from(seed));
                    rotations += 1;
                }
                Some(held) => {
                    assert!(held.published_keys < held.max_published_keys, "the count did not bind");
                    assert!(held.jwks_bytes > MAX_JWKS_BYTES, "{held:?}");
                    // The first previous key (deactivated at t0 + 2) retires a grace later.
                    assert_eq!(held.possible_at, Some(t0 + 2 + policy.retirement_grace));
                    break;
                }
            }
        }
        let bytes = serde_json::to_string(&ring.jwks()).unwrap().len();
        assert!(bytes <= MAX_JWKS_BYTES && rotations >= 3, "{rotations} rotations, {bytes} bytes");
        assert!(bytes + 20_000 > MAX_JWKS_BYTES, "the limit was reached: {bytes} bytes");
    }
}
