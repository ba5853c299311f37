//! Telling the outside after committed changes: the CDN invalidation a revocation owes, and
//! the lifecycle events of the run's writes. Neither ever blocks or undoes a transition: a
//! failure is logged and reported in `incomplete`; an owed invalidation stays recorded in the
//! keyring for the next run.

use sha2::{Digest, Sha256};

use super::*;
use crate::events::{rfc3339, MAX_EVENTS_PER_CALL};
use crate::keyring::EdgeInvalidation;

/// The `CallerReference` of an invalidation: the same owed invalidations in the same phase
/// (before or after the jwks cache has expired) give the same reference, so a retry (the SDK's,
/// or the next run's) is the same invalidation at CloudFront, never a second one; an
/// invalidation for other revocations, or the one after the cache expired, is a new one.
pub(super) fn invalidation_reference(keyring: &str, owed: &[EdgeInvalidation], now: UnixTime) -> String {
    let mut hash = Sha256::new();
    hash.update(keyring.as_bytes());
    for entry in owed {
        let phase: &[u8] = if now >= entry.not_before { b"after-cache" } else { b"early" };
        hash.update([0]);
        hash.update(entry.kid.as_bytes());
        hash.update([0]);
        hash.update(entry.revoked_at.to_be_bytes());
        hash.update(phase);
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("kms-jwt-revoke-{hex}")
}

impl<K: RotateKms, S: KeyringStore> Rotator<K, S> {
    /// The invalidation a withdrawal of `kid` at `now` owes, if there is a CDN.
    pub(super) fn owed_invalidation(&self, kid: &str, now: UnixTime) -> Option<EdgeInvalidation> {
        self.edge.enabled().then(|| EdgeInvalidation {
            kid: kid.to_owned(),
            revoked_at: now,
            not_before: now.saturating_add(self.origin_cache_ttl),
        })
    }

    /// Invalidate the JWKS paths at the CDN for the revocations the keyring records as owed,
    /// once per run. Owed entries whose `not_before` has passed are dropped from the keyring
    /// once the CDN confirmed the invalidation; the others wait for a later run.
    pub(super) async fn settle_edge(&self, now: UnixTime, run: &mut RunState) {
        if run.edge_attempted {
            return;
        }
        let Some((ring, version)) = run.latest.clone() else { return };
        let owed = ring.edge_invalidations.clone();
        if owed.is_empty() {
            return;
        }
        run.edge_attempted = true;
        let kids = owed.iter().map(|o| o.kid.as_str()).collect::<Vec<_>>().join(", ");
        if !run.has_time_for(2) {
            run.incomplete
                .push(format!("CDN invalidation for revoked {kids}: out of time; the next run retries"));
            return;
        }
        let reference = invalidation_reference(&self.keyring_name, &owed, now);
        let sent =
            tokio::time::timeout_at(run.call_deadline(), self.edge.invalidate(&reference, &self.edge_paths));
        let id = match sent.await {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => {
                warn!(error = %e, revoked = %kids, "CDN invalidation failed; the next run retries");
                run.incomplete
                    .push(format!("CDN invalidation for revoked {kids}: {e}; the next run retries"));
                return;
            }
            Err(_elapsed) => {
                warn!(revoked = %kids, "CDN invalidation did not answer in time; the next run retries");
                run.incomplete.push(format!(
                    "CDN invalidation for revoked {kids}: no answer in time; the next run retries"
                ));
                return;
            }
        };
        let (done, waiting): (Vec<EdgeInvalidation>, Vec<EdgeInvalidation>) =
            owed.into_iter().partition(|o| now >= o.not_before);
        warn!(invalidation = %id, caller_reference = %reference, revoked = %kids, "CDN invalidation of the JWKS paths sent");
        if let Some(last) = waiting.iter().map(|o| o.not_before).max() {
            let kids = waiting.iter().map(|o| o.kid.as_str()).collect::<Vec<_>>().join(", ");
            run.incomplete.push(format!(
                "CDN invalidation for revoked {kids}: sent ({id}); one more is due from {} (when the jwks function's keyring cache has expired), sent by the next run",
                rfc3339(last)
            ));
        }
        if done.is_empty() {
            return;
        }
        let dropped = self
            .drop_settled(Some((ring, version)), |ring| {
                let mut settled = ring.clone();
                settled.edge_invalidations.retain(|o| !done.contains(o));
                settled
            })
            .await;
        match dropped {
            Ok(Dropped::Written(ring, version)) => run.record_tidied(ring, version),
            Ok(Dropped::Unchanged) => {}
            Ok(Dropped::GaveUp) => {
                run.incomplete.push("recording the CDN invalidation: keyring kept changing; the next run repeats it (same invalidation)".into())
            }
            Err(DropFailed::Read(e)) => run.incomplete.push(format!("recording the CDN invalidation: {e}")),
            Err(DropFailed::Write(e)) => {
                warn!(error = %e, "could not record the confirmed CDN invalidation; the next run repeats it (same invalidation)");
                run.incomplete.push(format!("recording the CDN invalidation: {e}"));
            }
        }
    }

    /// Publish the lifecycle events of the run's committed writes so far, in calls of at
    /// most [`MAX_EVENTS_PER_CALL`]; entries the bus rejects are sent once more. What is still
    /// not accepted is lost (the keyring stays the truth), logged, counted and reported.
    pub(super) async fn publish_events(&self, run: &mut RunState) {
        let events = std::mem::take(&mut run.events);
        let mut batches = events.chunks(MAX_EVENTS_PER_CALL);
        while let Some(batch) = batches.next() {
            if !run.has_time_for(1) {
                let left = batch.len() + batches.map(<[LifecycleEvent]>::len).sum::<usize>();
                self.lost_events(run, left, "out of time");
                return;
            }
            let mut pending = batch.to_vec();
            let mut reason = String::new();
            for _attempt in 0..2 {
                let call = self.events.publish(&pending);
                match tokio::time::timeout_at(run.call_deadline(), call).await {
                    Ok(Ok(rejected)) => {
                        reason = rejected.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(", ");
                        pending = rejected.iter().filter_map(|r| pending.get(r.index).cloned()).collect();
                        if pending.is_empty() {
                            break;
                        }
                    }
                    Ok(Err(e)) => {
                        reason = e.to_string();
                        break;
                    }
                    Err(_elapsed) => {
                        reason = "no answer in time".into();
                        break;
                    }
                }
            }
            if !pending.is_empty() {
                self.lost_events(run, pending.len(), &reason);
            }
        }
    }

    fn lost_events(&self, run: &mut RunState, count: usize, reason: &str) {
        warn!(count, reason, "lifecycle events not published; they are not re-sent");
        run.events_unpublished += count;
        run.incomplete.push(format!("lifecycle events: {count} not published ({reason}); not re-sent"));
    }

    /// The end of a run that did what it was asked: the held-rotation event, the events still
    /// to publish, then the report.
    pub(super) async fn conclude(
        &self,
        converged: Converged,
        mut run: RunState,
        now: UnixTime,
    ) -> RotationReport {
        if let Some(held) = &converged.rotation_held {
            let event = run.origin.rotation_held(held, now);
            run.events.push(event);
        }
        self.publish_events(&mut run).await;
        self.report(converged, run, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owed(kid: &str, revoked_at: UnixTime) -> EdgeInvalidation {
        EdgeInvalidation { kid: kid.into(), revoked_at, not_before: revoked_at + 60 }
    }

    #[test]
    fn the_reference_names_the_revocations_and_the_phase() {
        let one = [owed("a", 100)];
        let early = invalidation_reference("kr", &one, 100);
        assert_eq!(early, invalidation_reference("kr", &one, 159), "a retry is the same invalidation");
        assert!(early.starts_with("kms-jwt-revoke-") && early.len() <= 128);
        let after = invalidation_reference("kr", &one, 160);
        assert_ne!(early, after, "the one after the cache expired is another");
        assert_ne!(after, invalidation_reference("kr", &[owed("a", 100), owed("b", 120)], 200));
        assert_ne!(after, invalidation_reference("other", &one, 160));
        assert_ne!(
            after,
            invalidation_reference("kr", &[owed("a", 101)], 200),
            "a second revocation of a kid"
        );
    }
}
