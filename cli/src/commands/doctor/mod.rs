//! `kms-jwt doctor`: check a deployment end to end and print each finding with its fix:
//! discovery and JWKS as AWS's verifiers require them, the functions' settings consistent
//! with rotate's (pre-publication and retirement are computed from them), every key enabled in
//! KMS in every region, each key's policy equal to what rotate writes today, the alarms.
//!
//! The checks are grouped by what they read: [`documents`] the served discovery and JWKS
//! (pure), [`deployment`] the functions' settings, the keys in KMS and the alarms.

mod deployment;
mod documents;

use std::fmt::Write as _;

use serde::Serialize;

use self::deployment::{
    check_alarms, check_discovery, check_functions, check_key_policies, check_key_states, rotate_timing,
};
use super::{emit, Deployment};
use crate::error::{CliError, Outcome};
use crate::render::{Style, Tone};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn finding(check: &'static str, level: Level, message: impl Into<String>, fix: Option<String>) -> Finding {
    Finding { check, level, message: message.into(), fix }
}

pub fn render(findings: &[Finding], style: Style) -> String {
    let mut out = String::new();
    for f in findings {
        let mark = match f.level {
            Level::Ok => style.paint(Tone::Good, "ok  "),
            Level::Warn => style.paint(Tone::Warn, "warn"),
            Level::Fail => style.paint(Tone::Bad, "FAIL"),
        };
        let _ = writeln!(out, "{mark}  {:<13} {}", f.check, f.message);
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "      {:<13} fix: {fix}", "");
        }
    }
    let fails = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warns = findings.iter().filter(|f| f.level == Level::Warn).count();
    let _ = writeln!(out, "\n{} checks: {fails} failed, {warns} warnings", findings.len());
    out
}

pub async fn run(
    d: &Deployment,
    jwks_function: Option<&str>,
    sign_function: Option<&str>,
    json: bool,
    style: Style,
) -> Result<Outcome, CliError> {
    let mut findings = vec![rotate_timing(d)];
    findings.extend(check_functions(d, jwks_function, sign_function).await?);
    let loaded = d.keyring().await?;
    let ring = &loaded.ring;
    if loaded.version.is_none() {
        findings.push(finding(
            "keyring",
            Level::Fail,
            format!("keyring secret {} has no keyring", d.config.keyring_secret_id),
            Some("run `kms-jwt rotate` to bootstrap it".into()),
        ));
    }
    findings.extend(check_discovery(d, ring).await);
    for key in &ring.keys {
        findings.extend(check_key_states(d, key).await);
        findings.extend(check_key_policies(d, key).await);
    }
    findings.extend(check_alarms(d).await);
    emit(json, &findings, |style| render(&findings, style), style)?;
    Ok(if findings.iter().any(|f| f.level == Level::Fail) { Outcome::NeedsAttention } else { Outcome::Fine })
}
