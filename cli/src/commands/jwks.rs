//! `kms-jwt jwks diff`: the keys verifiers hold now against those after the next transition.

use std::fmt::Write as _;

use kms_jwt::rotate::{schedule, RotationPolicy};
use kms_jwt::{Keyring, UnixTime};
use serde::Serialize;

use super::status::describe_run;
use super::{emit, Deployment};
use crate::error::{CliError, Outcome};
use crate::render::{relative, table, timestamp, Style, Tone};
use crate::verifiers::Verifier;

#[derive(Debug, Serialize)]
pub struct JwksDiff {
    pub now: UnixTime,
    /// kids in the JWKS now.
    pub now_kids: Vec<String>,
    /// When the next transition happens, and what it is.
    pub at: Option<UnixTime>,
    pub transition: Option<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub kept: Vec<String>,
    /// kids the JWKS served now lacks although the keyring publishes them (with `--issuer`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub served_missing: Vec<String>,
}

pub fn build(ring: &Keyring, policy: &RotationPolicy, now: UnixTime, served: Option<&[String]>) -> JwksDiff {
    let now_kids: Vec<String> = ring.keys.iter().map(|k| k.kid.clone()).collect();
    let next = schedule(ring, policy, now, 1, 1).into_iter().next();
    let after: Vec<String> = next
        .as_ref()
        .map_or_else(|| now_kids.clone(), |r| r.keyring.keys.iter().map(|k| k.kid.clone()).collect());
    JwksDiff {
        added: after.iter().filter(|k| !now_kids.contains(k)).cloned().collect(),
        removed: now_kids.iter().filter(|k| !after.contains(k)).cloned().collect(),
        kept: now_kids.iter().filter(|k| after.contains(k)).cloned().collect(),
        served_missing: served
            .map_or_else(Vec::new, |s| now_kids.iter().filter(|k| !s.contains(k)).cloned().collect()),
        at: next.as_ref().map(|r| r.at),
        transition: next.as_ref().map(describe_run),
        now_kids,
        now,
    }
}

pub fn render(diff: &JwksDiff, style: Style) -> String {
    let mut out = String::new();
    match (diff.at, &diff.transition) {
        (Some(at), Some(what)) => {
            let _ = writeln!(out, "next transition {} ({}): {what}", relative(at, diff.now), timestamp(at));
        }
        _ => {
            let _ = writeln!(out, "no transition ahead: verifiers keep holding the same keys");
        }
    }
    let mut rows = Vec::new();
    for kid in &diff.kept {
        rows.push(vec![kid.clone(), "held".into(), "held".into()]);
    }
    for kid in &diff.removed {
        rows.push(vec![kid.clone(), "held".into(), style.paint(Tone::Warn, "removed")]);
    }
    for kid in &diff.added {
        rows.push(vec![kid.clone(), "-".into(), style.paint(Tone::Good, "added")]);
    }
    out.push_str(&table(&["KID", "NOW", "AFTER"], &rows, style));
    if !diff.removed.is_empty() {
        let _ = writeln!(out, "removed keys stay accepted where verifiers cache them:");
        for v in Verifier::ALL {
            let _ = writeln!(out, "  {}: {}", v.name(), v.keeps_removed_key());
        }
    }
    for kid in &diff.served_missing {
        let _ = writeln!(out, "{}", style.paint(Tone::Bad, &format!("the served JWKS lacks {kid}: the jwks function's cache is stale or it reads another keyring")));
    }
    out
}

pub async fn run(d: &Deployment, json: bool, style: Style) -> Result<Outcome, CliError> {
    let loaded = d.keyring().await?;
    let served = match &d.issuer {
        Some(issuer) => Some(super::verify::fetch_documents(issuer).await?.jwks_kids()),
        None => None,
    };
    let diff = build(&loaded.ring, &d.policy, d.now, served.as_deref());
    emit(json, &diff, |style| render(&diff, style), style)?;
    Ok(if diff.served_missing.is_empty() { Outcome::Fine } else { Outcome::NeedsAttention })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::commands::status::tests::{policy, ring, T0};

    #[test]
    fn the_diff_shows_the_previous_key_leaving() {
        let ring = ring();
        let previous = ring.previous().next().unwrap().kid.clone();
        let diff = build(&ring, &policy(), T0 + 86_400 + 60, None);
        assert_eq!(diff.removed, vec![previous.clone()]);
        assert!(diff.added.is_empty());
        let text = render(&diff, Style::plain());
        assert!(text.contains(&format!("{previous}  held  removed")), "{text}");
        assert!(text.contains("aws-jwt-verify: until the process restarts"), "{text}");
    }
}
