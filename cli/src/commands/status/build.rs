//! The status report from what `status` observed (pure): each part of the report from the
//! keyring, the rotation policy and the clock.

use std::collections::HashMap;

use kms_jwt::keyring::KeyState;
use kms_jwt::rotate::{next_due, schedule, RotationPolicy, STALE_INTENT_SECS};
use kms_jwt::{Keyring, UnixTime};

use super::attention::needs_attention;
use super::model::{KeyView, Observed, PendingView, ReplicaView, RetiringView, StatusReport};
use crate::aws::KmsState;

/// The status report (pure).
pub fn build(
    observed: Observed,
    policy: &RotationPolicy,
    region: &str,
    secret: &str,
    now: UnixTime,
) -> StatusReport {
    let Observed { ring, version, kms, replicas } = observed;
    let next_transition = schedule(&ring, policy, now, 1, 1).into_iter().next();
    let mut report = StatusReport {
        now,
        region: region.to_owned(),
        keyring_secret: secret.to_owned(),
        keyring_version: version,
        signing_alg: policy.alg,
        rotation_period_seconds: policy.rotation_period,
        keys: key_views(&ring, policy, &kms),
        due_since: earliest_due(&ring, policy).filter(|&at| at <= now),
        rotation_held: next_transition.as_ref().and_then(|r| r.held.clone()),
        next_transition,
        pending: pending_views(&ring, now),
        retiring: retiring_views(&ring, &kms),
        home: ring.home.clone(),
        replicas: replica_views(&ring, replicas),
        attention: Vec::new(),
    };
    // The rules read the finished report, so they judge exactly what is shown.
    report.attention = needs_attention(&report);
    report
}

/// The earliest time something became (or becomes) due, unclamped.
fn earliest_due(ring: &Keyring, policy: &RotationPolicy) -> Option<UnixTime> {
    if ring.keys.is_empty() {
        return None;
    }
    next_due(ring, policy, UnixTime::MIN / 4)
}

/// A key's KMS state in every region; none if it could not be read.
fn kms_of(kms: &HashMap<String, Vec<KmsState>>, kid: &str) -> Vec<KmsState> {
    kms.get(kid).cloned().unwrap_or_default()
}

/// Every published key with its lifecycle times and KMS state.
fn key_views(ring: &Keyring, policy: &RotationPolicy, kms: &HashMap<String, Vec<KmsState>>) -> Vec<KeyView> {
    let multi_region = ring.is_multi_region();
    ring.keys
        .iter()
        .map(|k| {
            // Multi-region, the grace counts from when every region had moved past the key.
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
                kms: kms_of(kms, &k.kid),
            }
        })
        .collect()
}

/// The key creations under way, stale once older than a run can live.
fn pending_views(ring: &Keyring, now: UnixTime) -> Vec<PendingView> {
    ring.pending
        .iter()
        .map(|p| PendingView {
            request_id: p.request_id.clone(),
            requested_at: p.requested_at,
            stale: now - p.requested_at > STALE_INTENT_SECS,
        })
        .collect()
}

/// The keys out of the JWKS that KMS has yet to disable and schedule for deletion.
fn retiring_views(ring: &Keyring, kms: &HashMap<String, Vec<KmsState>>) -> Vec<RetiringView> {
    ring.retiring
        .iter()
        .map(|k| RetiringView {
            kid: k.kid.clone(),
            reason: k.reason,
            since: k.since,
            kms_key_arn: k.kms_key_arn.clone(),
            kms: kms_of(kms, &k.kid),
        })
        .collect()
}

/// Each replica region's keyring copy against this one.
fn replica_views(ring: &Keyring, replicas: Vec<(String, Option<Keyring>)>) -> Vec<ReplicaView> {
    replicas.into_iter().map(|(region, copy)| replica_view(ring, region, copy.as_ref())).collect()
}

/// A replica is behind when its copy is unreadable, lacks a published key or has an older epoch.
fn replica_view(ring: &Keyring, region: String, copy: Option<&Keyring>) -> ReplicaView {
    let Some(copy) = copy else {
        return ReplicaView { region, found: false, epoch: None, missing: Vec::new(), behind: true };
    };
    let missing: Vec<String> = ring
        .keys
        .iter()
        .map(|k| k.kid.as_str())
        .filter(|kid| copy.find(kid).is_none())
        .map(str::to_owned)
        .collect();
    let epoch = ring.home.as_ref().map(|h| h.epoch);
    let their_epoch = copy.home.as_ref().map(|h| h.epoch);
    ReplicaView {
        behind: !missing.is_empty() || their_epoch < epoch,
        region,
        found: true,
        epoch: their_epoch,
        missing,
    }
}
