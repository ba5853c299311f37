//! `kms-jwt plan`: what the reconciler would do now and at the next transitions, from the pure
//! planner (`kms_jwt::rotate::preview`, `schedule`). Writes nothing.

use std::fmt::Write as _;

use kms_jwt::rotate::{preview, schedule, PlannedRun, PreviewAction, RotationPolicy};
use kms_jwt::{Keyring, UnixTime};
use serde::Serialize;

use super::status::describe_run;
use super::{emit, Deployment};
use crate::error::{CliError, Outcome};
use crate::render::{relative, table, timestamp, Style};

#[derive(Debug, Serialize)]
pub struct PlanReport {
    pub now: UnixTime,
    /// What a run now would do.
    pub now_run: PlannedRun,
    /// The scheduled runs after it that change something, in order.
    pub next: Vec<PlannedRun>,
}

/// The plan (pure).
pub fn build(
    ring: &Keyring,
    policy: &RotationPolicy,
    now: UnixTime,
    count: usize,
) -> Result<PlanReport, CliError> {
    let now_run = preview(ring, policy, &PreviewAction::Reconcile, now)
        .map_err(|e| CliError::Keyring(e.to_string()))?;
    let next = schedule(&now_run.keyring, policy, now, count, now_run.new_keys + 1);
    Ok(PlanReport { now, now_run, next })
}

pub fn render_runs(runs: &[PlannedRun], now: UnixTime, style: Style) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| vec![relative(r.at, now), timestamp(r.at), r.new_keys.to_string(), describe_run(r)])
        .collect();
    table(&["WHEN", "AT", "NEW KEYS", "WHAT"], &rows, style)
}

pub fn render(report: &PlanReport, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "a run now would: {}", describe_run(&report.now_run));
    if report.now_run.new_keys > 0 {
        let _ = writeln!(out, "  (creating {} KMS key(s))", report.now_run.new_keys);
    }
    out.push('\n');
    if report.next.is_empty() {
        let _ = writeln!(out, "no scheduled transition ahead");
    } else {
        let _ = writeln!(out, "scheduled runs that will change something:");
        out.push_str(&render_runs(&report.next, report.now, style));
    }
    out
}

pub async fn run(d: &Deployment, count: usize, json: bool, style: Style) -> Result<Outcome, CliError> {
    let loaded = d.keyring().await?;
    let report = build(&loaded.ring, &d.policy, d.now, count)?;
    emit(json, &report, |style| render(&report, style), style)?;
    Ok(Outcome::Fine)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::commands::status::tests::{policy, ring, T0};
    use kms_jwt::rotate::Transition;

    #[test]
    fn the_plan_shows_nothing_now_then_retirement_then_rotation() {
        let now = T0 + 86_400 + 60;
        let report = build(&ring(), &policy(), now, 2).unwrap();
        assert!(report.now_run.transitions.is_empty());
        let got: Vec<&[Transition]> = report.next.iter().map(|r| r.transitions.as_slice()).collect();
        assert_eq!(got, vec![&[Transition::Retire][..], &[Transition::Rotate][..]]);
        let text = render(&report, Style::plain());
        assert!(text.starts_with("a run now would: nothing\n"), "{text}");
        assert!(text.contains("in 1 h 1 m"), "{text}");
        assert!(
            text.contains("rotate; ") && text.contains("becomes current; publishes <new key 1>"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_keyring_plans_a_bootstrap() {
        let report = build(&Keyring::empty(), &policy(), T0, 1).unwrap();
        assert_eq!(report.now_run.transitions, vec![Transition::Bootstrap]);
        assert_eq!(report.now_run.new_keys, 2);
    }
}
