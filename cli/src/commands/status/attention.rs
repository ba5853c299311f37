//! What in a status report needs a human, one rule per kind of trouble, and the exit code
//! that follows from it.

use kms_jwt::keyring::KeyState;

use super::model::{state_word, StatusReport};
use crate::error::Outcome;
use crate::render::{duration, relative, timestamp};

/// A transition this long overdue means the hourly schedule missed it twice.
pub const STALLED_AFTER: i64 = 2 * 3_600;
/// A key waiting this long for its KMS retirement is a backlog (the template's alarm).
pub const BACKLOG_AFTER: i64 = 86_400;

/// Every line that needs a human, in the order the report shows its parts.
pub fn needs_attention(report: &StatusReport) -> Vec<String> {
    let mut attention = Vec::new();
    attention.extend(nothing_can_sign(report));
    attention.extend(keys_not_enabled(report));
    attention.extend(rotation_stalled(report));
    attention.extend(interrupted_creations(report));
    attention.extend(retirement_backlog(report));
    attention.extend(regions_behind(report));
    attention
}

/// Exit 1 when something needs attention.
pub fn outcome(report: &StatusReport) -> Outcome {
    if report.attention.is_empty() {
        Outcome::Fine
    } else {
        Outcome::NeedsAttention
    }
}

/// No keyring yet, or a keyring without a current key.
fn nothing_can_sign(report: &StatusReport) -> Option<String> {
    if report.keyring_version.is_none() {
        Some("the keyring secret has no keyring yet: nothing can sign. `kms-jwt rotate` bootstraps it (or wait for the hourly schedule)".into())
    } else if !report.keys.iter().any(|k| k.state == KeyState::Current) {
        Some(
            "the keyring has no current key: nothing can sign until rotate creates one (`kms-jwt rotate`)"
                .into(),
        )
    } else {
        None
    }
}

/// A published key that is not enabled in KMS in some region, with what that breaks.
fn keys_not_enabled(report: &StatusReport) -> Vec<String> {
    let mut out = Vec::new();
    for key in &report.keys {
        for state in key.kms.iter().filter(|s| !s.enabled()) {
            let effect = match key.state {
                KeyState::Current => "sign fails with it",
                KeyState::Next => "sign will fail once it becomes current",
                KeyState::Previous => "rotate expected it enabled until it retires",
            };
            out.push(format!(
                "{} key {} is {} in KMS in {}: {effect}",
                state_word(key.state),
                key.kid,
                state.state,
                state.region
            ));
        }
    }
    out
}

/// A transition overdue for longer than the schedule can explain.
fn rotation_stalled(report: &StatusReport) -> Option<String> {
    let now = report.now;
    report.due_since.filter(|&at| now - at >= STALLED_AFTER).map(|at| {
        format!(
            "a transition has been due for {} (since {}) and rotate has not made it: rotation is stalled. Check rotate's logs (`rotate failed` lines) and its errors alarm; `kms-jwt plan` shows what is due",
            duration(now - at),
            timestamp(at)
        )
    })
}

/// Key creations whose run died before it finished.
fn interrupted_creations(report: &StatusReport) -> Vec<String> {
    report
        .pending
        .iter()
        .filter(|p| p.stale)
        .map(|p| {
            format!(
                "key creation {} was interrupted {} and its keys are not swept yet: the next run sweeps them (`kms-jwt plan`, then wait for the schedule)",
                p.request_id,
                relative(p.requested_at, report.now)
            )
        })
        .collect()
}

/// Keys out of the JWKS that KMS has not retired within a day.
fn retirement_backlog(report: &StatusReport) -> Vec<String> {
    let now = report.now;
    report
        .retiring
        .iter()
        .filter(|k| now - k.since >= BACKLOG_AFTER)
        .map(|k| {
            format!(
                "retirement backlog: key {} left the JWKS {} and KMS has not disabled it: check its key policy names rotate's role with kms:DisableKey and kms:ScheduleKeyDeletion (`kms-jwt doctor`)",
                k.kid,
                relative(k.since, now)
            )
        })
        .collect()
}

/// Replica regions whose keyring copy is unreadable or behind this one.
fn regions_behind(report: &StatusReport) -> Vec<String> {
    report
        .replicas
        .iter()
        .filter(|r| r.behind)
        .map(|r| {
            if r.found {
                format!(
                    "region {} is behind: its keyring copy lacks {} key(s) (epoch {:?}); Secrets Manager replication lags or failed: check the secret's replication status in that region",
                    r.region,
                    r.missing.len(),
                    r.epoch
                )
            } else {
                format!("region {}: its keyring copy cannot be read: check the secret's replication to it", r.region)
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kms_jwt::Keyring;

    use crate::aws::KmsState;
    use crate::commands::status::tests::{enabled, key, policy, ring, T0};
    use crate::commands::status::{build, render, Observed};
    use crate::render::Style;

    #[test]
    fn a_disabled_key_a_stall_and_a_backlog_need_attention() {
        let ring = ring();
        let current = ring.current().unwrap().kid.clone();
        let mut kms = enabled(&ring);
        kms.insert(
            current.clone(),
            vec![KmsState { region: "us-east-1".into(), state: "Disabled".into(), detail: None }],
        );
        let revoked = ring.revoke(&ring.previous().next().unwrap().kid.clone(), T0 + 86_400 + 10).unwrap();
        // 40 days on: the rotation due at day 31 never happened, the revoked key still waits.
        let now = T0 + 40 * 86_400;
        let observed = Observed { kms, ring: revoked, version: Some("v1".into()), replicas: vec![] };
        let report = build(observed, &policy(), "us-east-1", "kr", now);
        let all = report.attention.join("\n");
        assert!(all.contains(&format!("current key {current} is Disabled")), "{all}");
        assert!(all.contains("rotation is stalled"), "{all}");
        assert!(all.contains("retirement backlog"), "{all}");
        assert!(render(&report, Style::plain()).contains("needs attention:"));
    }

    #[test]
    fn a_region_behind_needs_attention() {
        let ring = ring();
        let stale = Keyring::empty().bootstrap(key(1, T0), key(2, T0), T0);
        let observed = Observed {
            kms: enabled(&ring),
            ring,
            version: Some("v1".into()),
            replicas: vec![("eu-west-1".into(), Some(stale)), ("ap-south-1".into(), None)],
        };
        let report = build(observed, &policy(), "us-east-1", "kr", T0 + 86_400 + 600);
        assert_eq!(report.attention.len(), 2, "{:?}", report.attention);
        assert!(report.replicas[0].behind && report.replicas[0].missing.len() == 1);
    }
}
