//! `kms-jwt status`: every key and its KMS state per region, the next scheduled transition,
//! held rotations, pending intents, the retirement queue, the regions. Exit 1 when something
//! needs attention.

use std::collections::HashMap;
use std::fmt::Write as _;

use kms_jwt::keyring::{Home, KeyState, RetireReason};
use kms_jwt::rotate::{
    next_due, schedule, PlannedRun, RotationHeld, RotationPolicy, Transition, STALE_INTENT_SECS,
};
use kms_jwt::{Keyring, SigningAlg, UnixTime};
use serde::Serialize;

use super::{emit, Deployment};
use crate::aws::KmsState;
use crate::error::{CliError, Outcome};
use crate::render::{duration, relative, table, timestamp, when, Style, Tone};

/// A transition this long overdue means the hourly schedule missed it twice.
pub const STALLED_AFTER: i64 = 2 * 3_600;
/// A key waiting this long for its KMS retirement is a backlog (the template's alarm).
pub const BACKLOG_AFTER: i64 = 86_400;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub now: UnixTime,
    pub region: String,
    pub keyring_secret: String,
    pub keyring_version: Option<String>,
    /// The algorithm of keys rotate creates from now on.
    pub signing_alg: SigningAlg,
    pub rotation_period_seconds: i64,
    pub keys: Vec<KeyView>,
    /// The next scheduled run that changes something (or holds a rotation).
    pub next_transition: Option<PlannedRun>,
    /// When a transition already due became due, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_since: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_held: Option<RotationHeld>,
    pub pending: Vec<PendingView>,
    pub retiring: Vec<RetiringView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<Home>,
    pub replicas: Vec<ReplicaView>,
    /// What needs a human; non-empty: exit code 1.
    pub attention: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct KeyView {
    pub kid: String,
    pub state: KeyState,
    pub alg: SigningAlg,
    pub kms_key_arn: String,
    pub created_at: UnixTime,
    pub published_at: UnixTime,
    /// Multi-region: when every region had it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_everywhere_at: Option<UnixTime>,
    pub current_since: Option<UnixTime>,
    /// Previous keys: when they leave the JWKS.
    pub retires_at: Option<UnixTime>,
    pub kms: Vec<KmsState>,
}

#[derive(Debug, Serialize)]
pub struct PendingView {
    pub request_id: String,
    pub requested_at: UnixTime,
    /// Older than a run can live: its run died; the next run sweeps its keys.
    pub stale: bool,
}

#[derive(Debug, Serialize)]
pub struct RetiringView {
    pub kid: String,
    pub reason: RetireReason,
    pub since: UnixTime,
    pub kms_key_arn: String,
    pub kms: Vec<KmsState>,
}

#[derive(Debug, Serialize)]
pub struct ReplicaView {
    pub region: String,
    /// Whether the region's keyring copy could be read.
    pub found: bool,
    pub epoch: Option<u64>,
    /// kids published here but not there.
    pub missing: Vec<String>,
    pub behind: bool,
}

/// What `status` gathered from AWS, for [`build`].
pub struct Observed {
    pub ring: Keyring,
    pub version: Option<String>,
    pub kms: HashMap<String, Vec<KmsState>>,
    pub replicas: Vec<(String, Option<Keyring>)>,
}

/// The earliest time something became (or becomes) due, unclamped.
fn earliest_due(ring: &Keyring, policy: &RotationPolicy) -> Option<UnixTime> {
    if ring.keys.is_empty() {
        return None;
    }
    next_due(ring, policy, UnixTime::MIN / 4)
}

/// The status report (pure).
pub fn build(
    observed: Observed,
    policy: &RotationPolicy,
    region: &str,
    secret: &str,
    now: UnixTime,
) -> StatusReport {
    let Observed { ring, version, kms, replicas } = observed;
    let multi_region = ring.is_multi_region();
    let mut attention = Vec::new();
    let kms_of = |kid: &str| kms.get(kid).cloned().unwrap_or_default();
    let keys: Vec<KeyView> = ring
        .keys
        .iter()
        .map(|k| {
            let superseded = if multi_region { k.superseded_everywhere_at } else { k.deactivated_at };
            KeyView {
                kid: k.kid.clone(),
                state: k.state,
                alg: k.alg,
                kms_key_arn: k.kms_key_arn.clone(),
                created_at: k.created_at,
                published_at: k.published_at,
                published_everywhere_at: if multi_region { k.replicated_at } else { None },
                current_since: k.activated_at.filter(|_| k.state == KeyState::Current),
                retires_at: superseded
                    .filter(|_| k.state == KeyState::Previous)
                    .map(|at| at.saturating_add(policy.retirement_grace)),
                kms: kms_of(&k.kid),
            }
        })
        .collect();
    if version.is_none() {
        attention.push("the keyring secret has no keyring yet: nothing can sign. `kms-jwt rotate` bootstraps it (or wait for the hourly schedule)".into());
    } else if ring.current().is_none() {
        attention.push(
            "the keyring has no current key: nothing can sign until rotate creates one (`kms-jwt rotate`)"
                .into(),
        );
    }
    for key in &keys {
        for state in key.kms.iter().filter(|s| !s.enabled()) {
            let effect = match key.state {
                KeyState::Current => "sign fails with it",
                KeyState::Next => "sign will fail once it becomes current",
                KeyState::Previous => "rotate expected it enabled until it retires",
            };
            attention.push(format!(
                "{} key {} is {} in KMS in {}: {effect}",
                state_word(key.state),
                key.kid,
                state.state,
                state.region
            ));
        }
    }
    let due_since = earliest_due(&ring, policy).filter(|&at| at <= now);
    if let Some(at) = due_since.filter(|&at| now - at >= STALLED_AFTER) {
        attention.push(format!(
            "a transition has been due for {} (since {}) and rotate has not made it: rotation is stalled. Check rotate's logs (`rotate failed` lines) and its errors alarm; `kms-jwt plan` shows what is due",
            duration(now - at),
            timestamp(at)
        ));
    }
    let runs = schedule(&ring, policy, now, 1, 1);
    let next_transition = runs.into_iter().next();
    let rotation_held = next_transition.as_ref().and_then(|r| r.held.clone());
    let pending: Vec<PendingView> = ring
        .pending
        .iter()
        .map(|p| PendingView {
            request_id: p.request_id.clone(),
            requested_at: p.requested_at,
            stale: now - p.requested_at > STALE_INTENT_SECS,
        })
        .collect();
    for p in pending.iter().filter(|p| p.stale) {
        attention.push(format!(
            "key creation {} was interrupted {} and its keys are not swept yet: the next run sweeps them (`kms-jwt plan`, then wait for the schedule)",
            p.request_id,
            relative(p.requested_at, now)
        ));
    }
    let retiring: Vec<RetiringView> = ring
        .retiring
        .iter()
        .map(|k| RetiringView {
            kid: k.kid.clone(),
            reason: k.reason,
            since: k.since,
            kms_key_arn: k.kms_key_arn.clone(),
            kms: kms_of(&k.kid),
        })
        .collect();
    for k in retiring.iter().filter(|k| now - k.since >= BACKLOG_AFTER) {
        attention.push(format!(
            "retirement backlog: key {} left the JWKS {} and KMS has not disabled it: check its key policy names rotate's role with kms:DisableKey and kms:ScheduleKeyDeletion (`kms-jwt doctor`)",
            k.kid,
            relative(k.since, now)
        ));
    }
    let published: Vec<&str> = ring.keys.iter().map(|k| k.kid.as_str()).collect();
    let epoch = ring.home.as_ref().map(|h| h.epoch);
    let replicas: Vec<ReplicaView> = replicas
        .into_iter()
        .map(|(region, copy)| {
            let view = match &copy {
                None => ReplicaView { region, found: false, epoch: None, missing: Vec::new(), behind: true },
                Some(copy) => {
                    let missing: Vec<String> = published
                        .iter()
                        .filter(|kid| copy.find(kid).is_none())
                        .map(|kid| (*kid).to_owned())
                        .collect();
                    let their_epoch = copy.home.as_ref().map(|h| h.epoch);
                    ReplicaView {
                        behind: !missing.is_empty() || their_epoch < epoch,
                        region,
                        found: true,
                        epoch: their_epoch,
                        missing,
                    }
                }
            };
            view
        })
        .collect();
    for r in replicas.iter().filter(|r| r.behind) {
        attention.push(if r.found {
            format!(
                "region {} is behind: its keyring copy lacks {} key(s) (epoch {:?}); Secrets Manager replication lags or failed: check the secret's replication status in that region",
                r.region,
                r.missing.len(),
                r.epoch
            )
        } else {
            format!("region {}: its keyring copy cannot be read: check the secret's replication to it", r.region)
        });
    }
    StatusReport {
        now,
        region: region.to_owned(),
        keyring_secret: secret.to_owned(),
        keyring_version: version,
        signing_alg: policy.alg,
        rotation_period_seconds: policy.rotation_period,
        keys,
        next_transition,
        due_since,
        rotation_held,
        pending,
        retiring,
        home: ring.home.clone(),
        replicas,
        attention,
    }
}

fn state_word(state: KeyState) -> &'static str {
    match state {
        KeyState::Next => "next",
        KeyState::Current => "current",
        KeyState::Previous => "previous",
    }
}

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

/// A planned run in one line: what it does to which keys.
pub fn describe_run(run: &PlannedRun) -> String {
    let mut parts = Vec::new();
    for t in &run.transitions {
        parts.push(
            match t {
                Transition::Bootstrap => "bootstrap (a current and a next key)",
                Transition::Rotate => "rotate",
                Transition::AddNext => "add a next key",
                Transition::Revoke => "revoke",
                Transition::Retire => "retire expired previous keys",
                Transition::Replicated => "mark keys replicated",
                Transition::TakeOver => "take over as home",
            }
            .to_owned(),
        );
    }
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

/// The human rendering (pure).
pub fn render(report: &StatusReport, style: Style) -> String {
    let now = report.now;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "keyring {} ({}), version {}, new keys {}, rotation every {}",
        report.keyring_secret,
        report.region,
        report.keyring_version.as_deref().unwrap_or("none"),
        report.signing_alg,
        duration(report.rotation_period_seconds)
    );
    let multi = !report.replicas.is_empty() || report.home.is_some();
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
    if let Some(held) = &report.rotation_held {
        let _ = writeln!(out, "{}", style.paint(Tone::Warn, &format!("rotation held: {held}")));
    }
    let _ = writeln!(
        out,
        "pending key creations: {}",
        if report.pending.is_empty() {
            "none".to_owned()
        } else {
            report
                .pending
                .iter()
                .map(|p| {
                    format!(
                        "{} ({}{})",
                        p.request_id,
                        relative(p.requested_at, now),
                        if p.stale { ", stale" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if report.retiring.is_empty() {
        let _ = writeln!(out, "retirement queue: empty");
    } else {
        let _ = writeln!(out, "retirement queue:");
        let rows: Vec<Vec<String>> = report
            .retiring
            .iter()
            .map(|k| {
                vec![
                    k.kid.clone(),
                    format!("{:?}", k.reason).to_lowercase(),
                    relative(k.since, now),
                    kms_cell(&k.kms, multi, style),
                ]
            })
            .collect();
        out.push_str(&table(&["KID", "REASON", "SINCE", "KMS"], &rows, style));
    }
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
    out.push('\n');
    if report.attention.is_empty() {
        let _ = writeln!(out, "{}", style.paint(Tone::Good, "nothing needs attention"));
    } else {
        let _ = writeln!(out, "{}", style.paint(Tone::Bad, "needs attention:"));
        for item in &report.attention {
            let _ = writeln!(out, "  - {item}");
        }
    }
    out
}

/// Read everything `status` shows.
pub async fn observe(d: &Deployment) -> Result<Observed, CliError> {
    let loaded = d.aws.keyring(&d.config.keyring_secret_id, &d.aws.region).await?;
    let Some((ring, version)) = loaded else {
        return Err(CliError::Keyring(format!(
            "keyring secret {} not found in {} (or it has no value yet): check --secret-id / KEYRING_SECRET_ID and --region; a new deployment is bootstrapped by rotate's first run (`kms-jwt rotate`)",
            d.config.keyring_secret_id, d.aws.region
        )));
    };
    let regions = d.regions();
    let mut kms = HashMap::new();
    let arns = ring
        .keys
        .iter()
        .map(|k| (&k.kid, &k.kms_key_arn))
        .chain(ring.retiring.iter().map(|k| (&k.kid, &k.kms_key_arn)));
    for (kid, arn) in arns {
        let mut states = Vec::new();
        for region in &regions {
            states.push(d.aws.key_state(arn, region).await);
        }
        kms.insert(kid.clone(), states);
    }
    let mut replicas = Vec::new();
    for region in regions.iter().skip(1) {
        let copy = d.aws.keyring(&d.config.keyring_secret_id, region).await.ok().flatten().map(|(r, _)| r);
        replicas.push((region.clone(), copy));
    }
    Ok(Observed { ring, version: Some(version), kms, replicas })
}

pub async fn run(d: &Deployment, json: bool, style: Style) -> Result<Outcome, CliError> {
    let observed = observe(d).await?;
    let report = build(observed, &d.policy, &d.aws.region, &d.config.keyring_secret_id, d.now);
    emit(json, &report, |style| render(&report, style), style)?;
    Ok(if report.attention.is_empty() { Outcome::Fine } else { Outcome::NeedsAttention })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use kms_jwt::jose::jwk::PublicJwk;
    use kms_jwt::keyring::NewKey;

    pub const T0: UnixTime = 1_700_000_000;

    pub fn key(seed: u8, at: UnixTime) -> NewKey {
        use base64::Engine;
        let b = |n: u8| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([n; 32]);
        let jwk = PublicJwk::Ec { crv: "P-256".into(), x: b(seed), y: b(seed.wrapping_add(1)) };
        NewKey {
            kid: jwk.thumbprint(),
            alg: SigningAlg::ES256,
            kms_key_arn: format!("arn:aws:kms:us-east-1:000000000000:key/{seed}"),
            public_jwk: jwk,
            created_at: at,
        }
    }

    pub fn policy() -> RotationPolicy {
        RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 30 * 86_400,
            prepublication: 1_200,
            retirement_grace: 3_720,
            deletion_window_days: 30,
            max_published_keys: 10,
        }
    }

    pub fn ring() -> Keyring {
        Keyring::empty().bootstrap(key(1, T0), key(2, T0), T0).rotate(key(3, T0 + 86_400), T0 + 86_400)
    }

    fn enabled(ring: &Keyring) -> HashMap<String, Vec<KmsState>> {
        ring.keys
            .iter()
            .map(|k| {
                (
                    k.kid.clone(),
                    vec![KmsState { region: "us-east-1".into(), state: "Enabled".into(), detail: None }],
                )
            })
            .collect()
    }

    #[test]
    fn a_healthy_keyring_needs_nothing_and_names_its_next_transition() {
        let ring = ring();
        let now = T0 + 86_400 + 600;
        let observed = Observed {
            kms: enabled(&ring),
            ring: ring.clone(),
            version: Some("v1".into()),
            replicas: vec![],
        };
        let report = build(observed, &policy(), "us-east-1", "kr", now);
        assert!(report.attention.is_empty(), "{:?}", report.attention);
        let next = report.next_transition.as_ref().unwrap();
        // The previous key retires after the grace (token lifetime, skew, cache).
        assert_eq!(next.at, T0 + 86_400 + 3_720);
        assert_eq!(next.transitions, vec![Transition::Retire]);
        let text = render(&report, Style::plain());
        assert!(text.contains("next transition: in 52 m"), "{text}");
        assert!(text.contains("nothing needs attention"), "{text}");
        let header = text.lines().nth(2).unwrap();
        assert!(header.starts_with("KID") && header.contains("CURRENT SINCE"), "{text}");
        // The previous key of the rotation retires after the grace, and the table says so.
        assert!(text.contains("previous  ES256"), "{text}");
    }

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
