//! `status`'s human rendering (pure): the keyring's summary, the keys table, the next
//! transition, the queues, the regions and what needs attention, in that order.

use std::fmt::Write as _;

use kms_jwt::rotate::{PlannedRun, Transition};

use super::model::{state_word, StatusReport};
use crate::aws::KmsState;
use crate::render::{duration, relative, table, timestamp, when, Style, Tone};

/// The human rendering (pure).
pub fn render(report: &StatusReport, style: Style) -> String {
    // Multi-region, each KMS state names its region.
    let multi = !report.replicas.is_empty() || report.home.is_some();
    let mut out = String::new();
    write_summary(&mut out, report);
    write_keys(&mut out, report, multi, style);
    write_next_transition(&mut out, report);
    if let Some(held) = &report.rotation_held {
        let _ = writeln!(out, "{}", style.paint(Tone::Warn, &format!("rotation held: {held}")));
    }
    write_pending(&mut out, report);
    write_retirement_queue(&mut out, report, multi, style);
    write_regions(&mut out, report, style);
    write_attention(&mut out, report, style);
    out
}

/// A planned run in one line: what it does to which keys.
pub fn describe_run(run: &PlannedRun) -> String {
    let mut parts: Vec<String> = run.transitions.iter().map(|t| transition_word(t).to_owned()).collect();
    if let Some(current) = &run.new_current {
        parts.push(format!("{current} becomes current"));
    }
    if !run.published.is_empty() {
        parts.push(format!("publishes {}", run.published.join(", ")));
    }
    if !run.unpublished.is_empty() {
        parts.push(format!("unpublishes {}", run.unpublished.join(", ")));
    }
    if let Some(held) = run.held.as_ref().or(run.refused.as_ref()) {
        let verb = if run.refused.is_some() { "refused" } else { "rotation held" };
        parts.push(format!(
            "{verb}: the JWKS would hold {} keys (limit {}){}",
            held.published_keys,
            held.max_published_keys,
            held.possible_at.map_or_else(
                || ", retirement alone will not make room".to_owned(),
                |at| format!(", possible from {}", timestamp(at))
            )
        ));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join("; ")
    }
}

fn transition_word(transition: &Transition) -> &'static str {
    match transition {
        Transition::Bootstrap => "bootstrap (a current and a next key)",
        Transition::Rotate => "rotate",
        Transition::AddNext => "add a next key",
        Transition::Revoke => "revoke",
        Transition::Retire => "retire expired previous keys",
        Transition::Replicated => "mark keys replicated",
        Transition::TakeOver => "take over as home",
    }
}

/// A key's KMS states, green when enabled, red otherwise.
fn kms_cell(states: &[KmsState], multi: bool, style: Style) -> String {
    if states.is_empty() {
        return "-".into();
    }
    states
        .iter()
        .map(|s| {
            let text = if multi { format!("{}: {}", s.region, s.state) } else { s.state.clone() };
            let tone = if s.enabled() { Tone::Good } else { Tone::Bad };
            style.paint(tone, &text)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first line: which keyring, its version, and the policy rotate applies.
fn write_summary(out: &mut String, report: &StatusReport) {
    let _ = writeln!(
        out,
        "keyring {} ({}), version {}, new keys {}, rotation every {}",
        report.keyring_secret,
        report.region,
        report.keyring_version.as_deref().unwrap_or("none"),
        report.signing_alg,
        duration(report.rotation_period_seconds)
    );
}

/// The published keys, one row each, between blank lines.
fn write_keys(out: &mut String, report: &StatusReport, multi: bool, style: Style) {
    let now = report.now;
    let rows: Vec<Vec<String>> = report
        .keys
        .iter()
        .map(|k| {
            vec![
                k.kid.clone(),
                state_word(k.state).into(),
                k.alg.to_string(),
                relative(k.created_at, now),
                relative(k.published_everywhere_at.unwrap_or(k.published_at), now),
                when(k.current_since, now),
                when(k.retires_at, now),
                kms_cell(&k.kms, multi, style),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["KID", "STATE", "ALG", "CREATED", "PUBLISHED", "CURRENT SINCE", "RETIRES", "KMS"],
        &rows,
        style,
    ));
    out.push('\n');
}

/// An overdue transition first: the next scheduled run makes it; else the next planned one.
fn write_next_transition(out: &mut String, report: &StatusReport) {
    let now = report.now;
    match (&report.next_transition, report.due_since) {
        (_, Some(due)) => {
            let _ = writeln!(
                out,
                "next transition: due since {} ({}); the next scheduled run makes it",
                relative(due, now),
                timestamp(due)
            );
        }
        (Some(run), None) => {
            let _ = writeln!(
                out,
                "next transition: {} ({}): {}",
                relative(run.at, now),
                timestamp(run.at),
                describe_run(run)
            );
        }
        (None, None) => {
            let _ = writeln!(out, "next transition: none scheduled");
        }
    }
}

/// The key creations under way, on one line.
fn write_pending(out: &mut String, report: &StatusReport) {
    let pending = if report.pending.is_empty() {
        "none".to_owned()
    } else {
        report
            .pending
            .iter()
            .map(|p| {
                format!(
                    "{} ({}{})",
                    p.request_id,
                    relative(p.requested_at, report.now),
                    if p.stale { ", stale" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "pending key creations: {pending}");
}

/// The keys waiting for KMS to retire them, as a table when there are any.
fn write_retirement_queue(out: &mut String, report: &StatusReport, multi: bool, style: Style) {
    if report.retiring.is_empty() {
        let _ = writeln!(out, "retirement queue: empty");
        return;
    }
    let _ = writeln!(out, "retirement queue:");
    let rows: Vec<Vec<String>> = report
        .retiring
        .iter()
        .map(|k| {
            vec![
                k.kid.clone(),
                format!("{:?}", k.reason).to_lowercase(),
                relative(k.since, report.now),
                kms_cell(&k.kms, multi, style),
            ]
        })
        .collect();
    out.push_str(&table(&["KID", "REASON", "SINCE", "KMS"], &rows, style));
}

/// Multi-region: the home and each replica's keyring copy.
fn write_regions(out: &mut String, report: &StatusReport, style: Style) {
    if let Some(home) = &report.home {
        let _ = writeln!(out, "multi-region: home {}, epoch {}", home.region, home.epoch);
    }
    for r in &report.replicas {
        let text = if !r.found {
            "keyring copy unreadable".to_owned()
        } else if r.behind {
            format!("behind: lacks {} key(s), epoch {:?}", r.missing.len(), r.epoch)
        } else {
            "up to date".to_owned()
        };
        let _ = writeln!(
            out,
            "  {}: {}",
            r.region,
            style.paint(if r.behind { Tone::Bad } else { Tone::Good }, &text)
        );
    }
}

/// After a blank line: what needs attention, or that nothing does.
fn write_attention(out: &mut String, report: &StatusReport, style: Style) {
    out.push('\n');
    if report.attention.is_empty() {
        let _ = writeln!(out, "{}", style.paint(Tone::Good, "nothing needs attention"));
    } else {
        let _ = writeln!(out, "{}", style.paint(Tone::Bad, "needs attention:"));
        for item in &report.attention {
            let _ = writeln!(out, "  - {item}");
        }
    }
}
