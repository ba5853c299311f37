//! `kms-jwt rotate | revoke KID | take-over`: show the plan, ask (unless `--yes`), invoke the
//! deployed rotate function (its IAM, audit line and fencing apply), show the result.

use std::fmt::Write as _;
use std::io::{BufRead, Write};

use kms_jwt::config::RotateConfig;
use kms_jwt::keyring::KeyState;
use kms_jwt::rotate::{preview, PlannedRun, PreviewAction, RotateError};
use kms_jwt::Keyring;
use serde::Serialize;
use serde_json::{json, Value};

use super::status::{self, describe_run};
use super::Deployment;
use crate::error::{CliError, Outcome};
use crate::render::{duration, Style, Tone};
use crate::verifiers::Verifier;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    Reconcile,
    Rotate { force: bool },
    Revoke { kid: String },
    TakeOver,
}

impl Act {
    fn payload(&self) -> Value {
        match self {
            Act::Reconcile => json!({"action": "reconcile"}),
            Act::Rotate { force } => json!({"action": "rotate", "force": force}),
            Act::Revoke { kid } => json!({"action": "revoke", "kid": kid}),
            Act::TakeOver => json!({"action": "take-over"}),
        }
    }
}

/// What the command will do, before it asks.
#[derive(Debug, Serialize)]
pub struct Intent {
    pub payload: Value,
    pub plan: PlannedRun,
    /// What verifiers will see (revocation), or the take-over's effect.
    pub notes: Vec<String>,
}

fn kid_list(ring: &Keyring) -> String {
    if ring.keys.is_empty() {
        return "none".into();
    }
    ring.keys
        .iter()
        .map(|k| format!("{} ({})", k.kid, format!("{:?}", k.state).to_lowercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What verifiers will see after revoking `kid`, and for how long (pure).
pub fn revoke_impact(was: KeyState, config: &RotateConfig) -> Vec<String> {
    let cache = config.keyring_cache_ttl.as_secs() as i64;
    let max_age = config.jwks_max_age.as_secs() as i64;
    let swr = kms_jwt::jwks::STALE_WHILE_REVALIDATE.as_secs() as i64;
    let stale_if_error = config.jwks_stale_if_error.as_secs() as i64;
    let ttl = config.max_token_ttl.as_secs() as i64;
    let mut notes = vec![
        format!("the key leaves the keyring in the run's first write, before any KMS call; jwks stops serving it within {} (KEYRING_CACHE_TTL)", duration(cache)),
        format!(
            "verifiers that honour Cache-Control drop it within {} (KEYRING_CACHE_TTL + JWKS_MAX_AGE + stale-while-revalidate), {} while the jwks origin fails (stale-if-error: JWKS_STALE_IF_ERROR)",
            duration(cache + max_age + swr),
            duration(cache + max_age + swr.max(stale_if_error))
        ),
    ];
    for v in Verifier::ALL {
        notes.push(format!("{} keeps accepting it {}", v.name(), v.keeps_removed_key()));
    }
    notes.push(format!(
        "every token it signed stays valid until its exp: up to {} (MAX_TOKEN_TTL). For the worst case deny the kid at your API until the longest window above has passed (docs/runbook.md, emergency revocation)",
        duration(ttl)
    ));
    if was == KeyState::Current {
        notes.push("it is the current key: the next key signs at once, before its pre-publication is over; verifiers holding an older JWKS refuse the new tokens until they refetch (callers should retry with a fresh token)".into());
    }
    notes
}

/// The plan and notes of `act` on `ring` (pure). An unknown kid is bad input.
pub fn intent(
    act: &Act,
    ring: &Keyring,
    d_policy: &kms_jwt::rotate::RotationPolicy,
    config: &RotateConfig,
    region: &str,
    now: kms_jwt::UnixTime,
) -> Result<Intent, CliError> {
    let action = match act {
        Act::Rotate { force } => PreviewAction::Rotate { force: *force },
        Act::Revoke { kid } => PreviewAction::Revoke { kid: kid.clone() },
        Act::TakeOver | Act::Reconcile => PreviewAction::Reconcile,
    };
    let plan = preview(ring, d_policy, &action, now).map_err(|e| match e {
        RotateError::UnknownKid(kid) => CliError::BadInput(format!(
            "unknown kid {kid}: the keyring publishes {}. A key already retired or revoked is out of the JWKS already",
            kid_list(ring)
        )),
        other => CliError::Keyring(other.to_string()),
    })?;
    let mut notes = Vec::new();
    match act {
        Act::Revoke { kid } => {
            let was = ring.find(kid).map_or(KeyState::Previous, |k| k.state);
            if ring.find(kid).is_none() {
                notes.push(format!("{kid} is already revoked: the run only reconciles"));
            } else {
                notes = revoke_impact(was, config);
            }
        }
        Act::TakeOver => {
            let (home, epoch) = ring.home.as_ref().map_or(("(none)".to_owned(), 0), |h| (h.region.clone(), h.epoch));
            notes.push(format!(
                "{region} becomes the keyring's home (now {home}, epoch {epoch} → {}); from then on the old home's rotate refuses to write (NotHome). Run this only in the new home, after its replica secret was promoted (docs/multi-region.md)",
                epoch + 1
            ));
        }
        Act::Rotate { force: true } => notes.push(
            "forced: the next key may sign before verifiers have all fetched it; their refusals last until they refetch the JWKS".into(),
        ),
        Act::Reconcile => notes.push(
            "and housekeeping the planner does not show: KMS retirement of queued keys, the sweep of interrupted key creations, multi-region replication".into(),
        ),
        Act::Rotate { force: false } => {}
    }
    Ok(Intent { payload: act.payload(), plan, notes })
}

pub fn render_intent(intent: &Intent, style: Style) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "{}", style.paint(Tone::Bold, &format!("plan: invoke rotate with {}", intent.payload)));
    let _ = writeln!(out, "  it will: {}", describe_run(&intent.plan));
    if intent.plan.new_keys > 0 {
        let _ = writeln!(out, "  creating {} KMS key(s)", intent.plan.new_keys);
    }
    for note in &intent.notes {
        let _ = writeln!(out, "  - {note}");
    }
    out
}

/// Ask on the terminal; EOF or anything but y/yes declines.
fn confirm(question: &str) -> Result<(), CliError> {
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line)?;
    if read == 0 {
        return Err(CliError::NotConfirmed(
            "no answer (standard input is closed): nothing was changed; pass --yes to act without asking"
                .into(),
        ));
    }
    match line.trim().to_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::NotConfirmed("not confirmed: nothing was changed".into())),
    }
}

#[derive(Serialize)]
struct Acted<'a> {
    plan: &'a Intent,
    report: Value,
    status: Option<status::StatusReport>,
}

fn render_report(report: &Value) -> String {
    let mut out = String::new();
    let list = |name: &str| -> Vec<String> {
        report
            .get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect())
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "rotate answered: changed {}, transitions [{}]",
        report.get("changed").and_then(Value::as_bool).unwrap_or(false),
        list("transitions").join(", ")
    );
    for (name, label) in
        [("created", "created"), ("retired", "retired in KMS"), ("incomplete", "left for the next run")]
    {
        let items = list(name);
        if !items.is_empty() {
            let _ = writeln!(out, "  {label}: {}", items.join(", "));
        }
    }
    if let Some(early) = report.get("early_activation").filter(|v| !v.is_null()) {
        let _ = writeln!(out, "  early activation: {early}");
    }
    out
}

pub async fn run(d: &Deployment, act: Act, yes: bool, json: bool, style: Style) -> Result<Outcome, CliError> {
    let function = d.function()?.to_owned();
    let loaded = d.keyring().await?;
    let intent = intent(&act, &loaded.ring, &d.policy, &d.config, &d.aws.region, d.now)?;
    // The plan goes to the terminal; with --json, stdout keeps one document.
    let plan_text = render_intent(&intent, style);
    if json {
        eprint!("{plan_text}");
    } else {
        print!("{plan_text}");
    }
    if let Some(refused) = &intent.plan.refused {
        return Err(CliError::Rotate {
            code: "TooManyPublishedKeys".into(),
            message: format!("{refused} (not invoked)"),
        });
    }
    if matches!(act, Act::Rotate { .. }) && !intent.plan.changes() {
        let msg = "nothing to do yet: the next key's pre-publication is not over (`kms-jwt plan` says when); pass --force to rotate anyway";
        if json {
            eprintln!("{msg}");
            println!("{}", json!({"plan": intent, "report": null}));
        } else {
            println!("{msg}");
        }
        return Ok(Outcome::Fine);
    }
    if !yes {
        confirm(&format!("invoke {function}?"))?;
    }
    let report = d.aws.invoke(&function, &intent.payload).await?;
    let after = status::observe(d).await.ok().map(|o| {
        status::build(o, &d.policy, &d.aws.region, &d.config.keyring_secret_id, kms_jwt::unix_now())
    });
    let incomplete = report_incomplete(&after);
    if json {
        let text = serde_json::to_string_pretty(&Acted { plan: &intent, report, status: after })
            .map_err(|e| CliError::Io(std::io::Error::other(e)))?;
        println!("{text}");
    } else {
        print!("\n{}", render_report(&report));
        if let Some(after) = &after {
            print!("\n{}", status::render(after, style));
        }
    }
    Ok(if incomplete { Outcome::NeedsAttention } else { Outcome::Fine })
}

fn report_incomplete(after: &Option<status::StatusReport>) -> bool {
    after.as_ref().is_some_and(|s| !s.attention.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::commands::status::tests::{policy, ring, T0};

    fn config() -> RotateConfig {
        crate::aws::rotate_config(
            |n| match n {
                "KEYRING_SECRET_ID" => Some("kr".into()),
                "KEY_ADMIN_ROLE_ARN" => Some("arn:aws:iam::000000000000:role/r".into()),
                "KEY_USER_ROLE_ARNS" => Some("arn:aws:iam::000000000000:role/s".into()),
                _ => None,
            },
            "us-east-1",
            None,
        )
        .unwrap()
    }

    #[test]
    fn revoking_an_unknown_kid_is_bad_input_naming_the_published_kids() {
        let ring = ring();
        let err = intent(
            &Act::Revoke { kid: "nope".into() },
            &ring,
            &policy(),
            &config(),
            "us-east-1",
            T0 + 86_400 + 60,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(&ring.keys[0].kid), "{err}");
    }

    #[test]
    fn revoking_the_current_key_says_what_verifiers_see_and_for_how_long() {
        let ring = ring();
        let current = ring.current().unwrap().kid.clone();
        let intent = intent(
            &Act::Revoke { kid: current.clone() },
            &ring,
            &policy(),
            &config(),
            "us-east-1",
            T0 + 86_400 + 60,
        )
        .unwrap();
        assert_eq!(intent.payload, json!({"action": "revoke", "kid": current}));
        let text = render_intent(&intent, Style::plain());
        assert!(text.contains("API Gateway HTTP API JWT authorizer keeps accepting it up to 2 h"), "{text}");
        assert!(text.contains("aws-jwt-verify keeps accepting it until the process restarts"), "{text}");
        assert!(text.contains("up to 1 h (MAX_TOKEN_TTL)"), "{text}");
        assert!(
            text.contains(
                "within 7 m (KEYRING_CACHE_TTL + JWKS_MAX_AGE + stale-while-revalidate), 21 m while"
            ),
            "{text}"
        );
        assert!(text.contains("it is the current key"), "{text}");
        assert!(text.contains(&format!("unpublishes {current}")), "{text}");
    }

    #[test]
    fn take_over_names_the_new_epoch() {
        let intent =
            intent(&Act::TakeOver, &ring(), &policy(), &config(), "eu-west-1", T0 + 86_400 + 60).unwrap();
        assert_eq!(intent.payload, json!({"action": "take-over"}));
        assert!(intent.notes[0].contains("eu-west-1 becomes the keyring's home"), "{:?}", intent.notes);
    }
}
