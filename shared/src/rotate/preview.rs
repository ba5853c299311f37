//! What a run would do, without doing it: the pure planner ([`super::plan`]) opened to
//! operators' tools (the `kms-jwt` command line's `plan`, `status` and confirmations). No I/O,
//! no KMS key is created: where a run would create keys, the preview uses placeholders named
//! [`NEW_KEY_PREFIX`]`1`, `…2`, shaped like the largest published key (so the published-key
//! cap is checked as a run would).

use serde::Serialize;

use super::plan::{plan, withdraw, Mode, Need};
use super::policy::RotationPolicy;
use super::report::{RotationHeld, Transition};
use super::RotateError;
use crate::jose::jwk::PublicJwk;
use crate::keyring::{KeyState, Keyring, NewKey, UnixTime};

/// The kid prefix of the placeholder keys a preview creates.
pub const NEW_KEY_PREFIX: &str = "<new key ";

/// What a preview asks the planner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewAction {
    /// A scheduled run: whatever is due.
    Reconcile,
    /// `{"action":"rotate"}`, `force` or not.
    Rotate {
        /// Rotate before the next key's pre-publication time is over.
        force: bool,
    },
    /// `{"action":"revoke"}`: withdraw `kid`, then reconcile (the replacement key).
    Revoke {
        /// The key to withdraw.
        kid: String,
    },
}

/// One planned run: when, what it would do, and the keyring it would write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedRun {
    /// When the run happens (Unix seconds).
    pub at: UnixTime,
    /// The lifecycle steps it takes, in order (empty: nothing to do).
    pub transitions: Vec<Transition>,
    /// How many KMS keys it creates.
    pub new_keys: usize,
    /// kids that leave the JWKS (retired, or revoked).
    pub unpublished: Vec<String>,
    /// kids that the JWKS gains (placeholders for keys not created yet).
    pub published: Vec<String>,
    /// The kid that signs after the run, if it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_current: Option<String>,
    /// A due scheduled rotation the published-key limits hold back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<RotationHeld>,
    /// An asked-for rotation the published-key limits refuse (nothing is written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<RotationHeld>,
    /// The keyring after the run.
    #[serde(skip)]
    pub keyring: Keyring,
}

impl PlannedRun {
    /// Whether the run would write the keyring.
    pub fn changes(&self) -> bool {
        !self.transitions.is_empty()
    }
}

/// Placeholder keys for a preview, shaped like the largest published key.
fn placeholders(
    ring: &Keyring,
    policy: &RotationPolicy,
    now: UnixTime,
    first: usize,
    count: usize,
) -> Vec<NewKey> {
    let jwk = ring
        .keys
        .iter()
        .map(|k| k.public_jwk.clone())
        .max_by_key(|jwk| serde_json::to_string(jwk).map_or(0, |t| t.len()))
        .unwrap_or(PublicJwk::Ec { crv: "P-256".into(), x: String::new(), y: String::new() });
    (first..first + count)
        .map(|i| NewKey {
            kid: format!("{NEW_KEY_PREFIX}{i}>"),
            alg: policy.alg,
            kms_key_arn: String::new(),
            public_jwk: jwk.clone(),
            created_at: now,
        })
        .collect()
}

fn run_plan(ring: &Keyring, policy: &RotationPolicy, mode: &Mode, now: UnixTime, first: usize) -> PlannedRun {
    let mut fresh = Vec::new();
    // A plan asks for at most two keys (a bootstrap); three rounds always end.
    for _ in 0..3 {
        match plan(ring, policy, mode, now, &fresh) {
            Ok(planned) => {
                let before: Vec<&str> = ring.keys.iter().map(|k| k.kid.as_str()).collect();
                let after: Vec<&str> = planned.keyring.keys.iter().map(|k| k.kid.as_str()).collect();
                let current_before = ring.current().map(|k| k.kid.clone());
                let current_after = planned.keyring.current().map(|k| k.kid.clone());
                return PlannedRun {
                    at: now,
                    transitions: planned.transitions,
                    new_keys: planned.used_new_keys,
                    unpublished: before
                        .iter()
                        .filter(|k| !after.contains(k))
                        .map(|k| (*k).to_owned())
                        .collect(),
                    published: after
                        .iter()
                        .filter(|k| !before.contains(k))
                        .map(|k| (*k).to_owned())
                        .collect(),
                    new_current: current_after.filter(|after| Some(after) != current_before.as_ref()),
                    held: planned.held,
                    refused: None,
                    keyring: planned.keyring,
                };
            }
            Err(Need::Keys(n)) => fresh = placeholders(ring, policy, now, first, n),
            Err(Need::Refusal(held)) => return refused(ring, now, held),
        }
    }
    refused(
        ring,
        now,
        RotationHeld {
            published_keys: 0,
            max_published_keys: 0,
            jwks_bytes: 0,
            max_jwks_bytes: 0,
            possible_at: None,
        },
    )
}

fn refused(ring: &Keyring, now: UnixTime, held: RotationHeld) -> PlannedRun {
    PlannedRun {
        at: now,
        transitions: Vec::new(),
        new_keys: 0,
        unpublished: Vec::new(),
        published: Vec::new(),
        new_current: None,
        held: None,
        refused: Some(held),
        keyring: ring.clone(),
    }
}

/// What a run of `action` would do to `ring` at `now`. An unknown kid to revoke is refused as
/// the run refuses it ([`RotateError::UnknownKid`]).
pub fn preview(
    ring: &Keyring,
    policy: &RotationPolicy,
    action: &PreviewAction,
    now: UnixTime,
) -> Result<PlannedRun, RotateError> {
    match action {
        PreviewAction::Reconcile => Ok(run_plan(ring, policy, &Mode::Reconcile, now, 1)),
        PreviewAction::Rotate { force } => {
            Ok(run_plan(ring, policy, &Mode::RotateNow { force: *force }, now, 1))
        }
        PreviewAction::Revoke { kid } => {
            let Some(withdrawn) = withdraw(ring, kid, now)? else {
                // Already revoked: the run only reconciles.
                return Ok(run_plan(ring, policy, &Mode::Reconcile, now, 1));
            };
            let mut after = run_plan(&withdrawn, policy, &Mode::Reconcile, now, 1);
            after.transitions.insert(0, Transition::Revoke);
            if !after.unpublished.contains(kid) {
                after.unpublished.insert(0, kid.clone());
            }
            let current_before = ring.current().map(|k| k.kid.clone());
            let current_after = after.keyring.current().map(|k| k.kid.clone());
            after.new_current = current_after.filter(|c| Some(c) != current_before.as_ref());
            Ok(after)
        }
    }
}

/// When a scheduled run after `after` would first find something to do in `ring`: the current
/// key's rotation (once its period and the next key's pre-publication are both over, or when a
/// held rotation becomes possible), a previous key's retirement, a missing next key (at once).
/// `None` when nothing is ever due without outside help (a multi-region next key not yet seen
/// everywhere, a hold that retirement alone never lifts).
pub fn next_due(ring: &Keyring, policy: &RotationPolicy, after: UnixTime) -> Option<UnixTime> {
    let multi_region = ring.is_multi_region();
    let mut candidates = Vec::new();
    match (ring.current(), ring.next()) {
        (None, _) | (Some(_), None) => candidates.push(after + 1),
        (Some(current), Some(next)) => {
            let activated = current.activated_at.unwrap_or(current.published_at);
            if let Some(visible) = next.published_everywhere_at(multi_region) {
                candidates.push((activated + policy.rotation_period).max(visible + policy.prepublication));
            }
        }
    }
    for key in ring.keys.iter().filter(|k| k.state == KeyState::Previous) {
        let since = if multi_region { key.superseded_everywhere_at } else { key.deactivated_at };
        if let Some(since) = since {
            candidates.push(since.saturating_add(policy.retirement_grace));
        }
    }
    candidates.into_iter().map(|at| at.max(after + 1)).min()
}

/// The scheduled runs to come: from `now`, the next `count` times a reconciliation would find
/// something due, each planned on the keyring the one before would leave. Held rotations are
/// shown at the time they are held, then at the time they become possible. Placeholder keys
/// are numbered from `first_new_key` on, across the runs.
pub fn schedule(
    ring: &Keyring,
    policy: &RotationPolicy,
    now: UnixTime,
    count: usize,
    first_new_key: usize,
) -> Vec<PlannedRun> {
    let mut runs = Vec::new();
    let mut first = first_new_key;
    let mut ring = ring.clone();
    let mut at = now;
    while runs.len() < count {
        let Some(due) = next_due(&ring, policy, at) else { break };
        let run = run_plan(&ring, policy, &Mode::Reconcile, due, first);
        first += run.new_keys;
        at = match &run.held {
            Some(held) => match held.possible_at {
                Some(possible) if possible > due => possible - 1,
                _ => {
                    runs.push(run);
                    break;
                }
            },
            None => due,
        };
        if run.changes() || run.held.is_some() {
            ring = run.keyring.clone();
            runs.push(run);
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;
    use crate::rotate::tests::{policy, DAY, HOUR};

    const T0: UnixTime = 1_700_000_000;

    fn bootstrapped() -> Keyring {
        Keyring::empty().bootstrap(new_key(0, T0), new_key(1, T0), T0)
    }

    #[test]
    fn an_empty_keyring_previews_a_bootstrap_with_two_placeholders() {
        let run = preview(&Keyring::empty(), &policy(), &PreviewAction::Reconcile, T0).unwrap();
        assert_eq!(run.transitions, vec![Transition::Bootstrap]);
        assert_eq!(run.new_keys, 2);
        assert!(run.published.iter().all(|k| k.starts_with(NEW_KEY_PREFIX)), "{:?}", run.published);
    }

    #[test]
    fn the_schedule_rotates_at_the_period_and_retires_after_the_grace() {
        let ring = bootstrapped();
        let runs = schedule(&ring, &policy(), T0 + HOUR, 3, 1);
        let got: Vec<(UnixTime, Vec<Transition>)> =
            runs.iter().map(|r| (r.at, r.transitions.clone())).collect();
        let p = policy();
        assert_eq!(
            got,
            vec![
                (T0 + p.rotation_period, vec![Transition::Rotate]),
                (T0 + p.rotation_period + p.retirement_grace, vec![Transition::Retire]),
                (T0 + 2 * p.rotation_period, vec![Transition::Rotate]),
            ]
        );
        assert_eq!(runs[0].new_keys, 1);
        assert_eq!(runs[0].new_current.as_deref(), ring.next().map(|k| k.kid.as_str()));
        assert!(next_due(&ring, &p, T0 + HOUR).is_some_and(|at| at == T0 + 7 * DAY));
    }

    #[test]
    fn a_revocation_preview_withdraws_the_key_and_refuses_an_unknown_kid() {
        let ring = bootstrapped();
        let current = ring.current().map(|k| k.kid.clone()).unwrap();
        let run =
            preview(&ring, &policy(), &PreviewAction::Revoke { kid: current.clone() }, T0 + 60).unwrap();
        assert_eq!(run.transitions, vec![Transition::Revoke, Transition::AddNext]);
        assert_eq!(run.unpublished, vec![current]);
        assert_eq!(run.new_current.as_deref(), ring.next().map(|k| k.kid.as_str()));
        let unknown = preview(&ring, &policy(), &PreviewAction::Revoke { kid: "nope".into() }, T0);
        assert!(matches!(unknown, Err(RotateError::UnknownKid(k)) if k == "nope"));
    }

    #[test]
    fn a_rotation_over_the_cap_is_refused_not_planned() {
        let ring = bootstrapped().rotate(new_key(2, T0 + DAY), T0 + DAY);
        let capped = RotationPolicy { max_published_keys: 3, retirement_grace: 30 * DAY, ..policy() };
        let run = preview(&ring, &capped, &PreviewAction::Rotate { force: true }, T0 + 2 * DAY).unwrap();
        assert!(run.refused.is_some() && !run.changes(), "{run:?}");
    }
}
