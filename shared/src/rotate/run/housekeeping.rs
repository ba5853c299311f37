//! Housekeeping after the command: KMS retirement of the queue, sweeps of stale creation
//! intents, and the write that records what was finished.

use super::*;

impl<K: RotateKms, S: KeyringStore> Rotator<K, S> {
    /// Finish what earlier runs (and this one) left, as far as the time budget allows: the CDN
    /// invalidation revocations owe, KMS retirement of queued keys, then sweeps of stale creation intents; then record what was
    /// finished in one more write. Failures are logged and reported; the next run carries on.
    pub(super) async fn housekeeping(&self, now: UnixTime, run: &mut RunState) {
        let ring = match (&run.latest, run.write_uncertain) {
            (Some((ring, _)), false) => ring.clone(),
            _ => match self.read().await {
                Ok((ring, version)) => {
                    run.latest = Some((ring.clone(), version));
                    ring
                }
                Err(e) => {
                    run.incomplete.push(format!("housekeeping: {e}"));
                    return;
                }
            },
        };
        // First the CDN invalidation revocations owe: it is what verifiers behind the CDN wait for.
        self.settle_edge(now, run).await;
        for key in &ring.retiring {
            if !run.has_time_for(3) {
                run.incomplete.push(format!("KMS retirement of {}: out of time", key.kid));
                continue;
            }
            match self.retire_kms_key(&key.kms_key_arn).await {
                Ok(()) => run.retired.push(key.kid.clone()),
                Err(e) => {
                    warn!(kid = %key.kid, error = %e, "KMS retirement failed; will retry");
                    run.incomplete.push(format!("KMS retirement of {}: {e}", key.kid));
                }
            }
        }
        let own = run.request_id.clone();
        let stale =
            ring.pending.iter().filter(|p| p.request_id != own && now - p.requested_at >= STALE_INTENT_SECS);
        for intent in stale {
            match self.sweep(intent, &ring, run).await {
                Ok(SweepProgress::Done) => run.swept.push(intent.request_id.clone()),
                Ok(SweepProgress::Paused(cursor)) => {
                    run.incomplete.push(format!("sweep of intent {}: out of time", intent.request_id));
                    if cursor != intent.sweep_cursor {
                        run.sweep_cursors.push((intent.request_id.clone(), cursor));
                    }
                }
                Err(e) => {
                    warn!(request_id = %intent.request_id, error = %e, "sweep of a stale creation intent failed; kept");
                    run.incomplete.push(format!("sweep of intent {}: {e}", intent.request_id));
                }
            }
        }
        self.record_housekeeping(run).await;
    }

    /// Schedule deletion of every key a dead run created that the keyring does not hold, a
    /// page at a time, resuming where an earlier sweep of the same intent stopped.
    pub(super) async fn sweep(
        &self,
        intent: &PendingCreation,
        ring: &Keyring,
        run: &mut RunState,
    ) -> Result<SweepProgress, KmsError> {
        let mut cursor = intent.sweep_cursor.clone();
        loop {
            if !run.has_time_for(3) {
                return Ok(SweepProgress::Paused(cursor));
            }
            let search = self.find_keys_everywhere(&intent.request_id, cursor.as_deref());
            let page = match tokio::time::timeout_at(run.soft_deadline(), search).await {
                Err(_elapsed) => return Ok(SweepProgress::Paused(cursor)),
                Ok(page) => page?,
            };
            for arn in page.arns.iter().filter(|arn| !ring.holds_arn(arn)) {
                if !run.has_time_for(3) {
                    // This page is looked at again next time; retiring is idempotent.
                    return Ok(SweepProgress::Paused(cursor));
                }
                match self.retire_kms_key(arn).await {
                    Ok(()) => {
                        warn!(kms_key_arn = %arn, request_id = %intent.request_id, "deleted a key left by a crashed run");
                        run.orphans_deleted.push(arn.clone());
                    }
                    // Our keys' policy lets rotate retire them; a key that carries our tags
                    // but refuses us is somebody else's, tagged by hand. Not ours to touch.
                    Err(KmsError::AccessDenied { .. }) => {
                        warn!(kms_key_arn = %arn, "a key carries this keyring's tags but its key policy does not let rotate retire it; skipped")
                    }
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                None => return Ok(SweepProgress::Done),
                Some(next) => cursor = Some(next),
            }
        }
    }

    /// Write down what housekeeping finished: retired keys leave the queue, swept intents go,
    /// paused sweeps keep their cursor.
    pub(super) async fn record_housekeeping(&self, run: &mut RunState) {
        if run.retired.is_empty() && run.swept.is_empty() && run.sweep_cursors.is_empty() {
            return;
        }
        let known = run.latest.clone().filter(|_| !run.write_uncertain);
        let dropped = self
            .drop_settled(known, |ring| {
                let mut tidy = ring.clone();
                tidy.retiring.retain(|k| !run.retired.contains(&k.kid));
                tidy.pending.retain(|p| !run.swept.contains(&p.request_id));
                for (request_id, cursor) in &run.sweep_cursors {
                    if let Some(intent) = tidy.pending.iter_mut().find(|p| &p.request_id == request_id) {
                        intent.sweep_cursor.clone_from(cursor);
                    }
                }
                tidy
            })
            .await;
        match dropped {
            Ok(Dropped::Written(ring, version)) => run.record_tidied(ring, version),
            Ok(Dropped::Unchanged | Dropped::GaveUp) => {}
            Err(DropFailed::Read(e)) => run.incomplete.push(format!("recording housekeeping: {e}")),
            Err(DropFailed::Write(e)) => {
                warn!(error = %e, "could not record finished housekeeping; the next run repeats it (idempotent)");
                run.incomplete.push(format!("recording housekeeping: {e}"));
            }
        }
    }
}
