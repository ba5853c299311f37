//! Revocation: the withdrawal first, in a compare-and-swap of its own with no KMS call before
//! it, then the follow-up (replacement key, KMS retirement, housekeeping).

use super::*;

impl<K: RotateKms, S: KeyringStore> Rotator<K, S> {
    /// Withdraw a compromised key: one compare-and-swap with no KMS call before it, so neither
    /// a failing KMS nor a large account can keep the key published. The replacement key, the
    /// KMS retirement and sweeps follow; their failures are reported, never undo the withdrawal.
    pub(super) async fn revoke(
        &self,
        kid: &str,
        now: UnixTime,
        mut run: RunState,
    ) -> Result<RotationReport, RotateError> {
        // Already withdrawn (revoking again is harmless): only the follow-up is left.
        let mut done = self.withdraw_key(kid, now, &mut run).await?.unwrap_or_default();
        // Then tell the outside at once, before the follow-up: the CDN, and the event bus.
        self.settle_edge(now, &mut run).await;
        self.publish_events(&mut run).await;
        match self.converge(&Mode::Reconcile, now, &mut run).await {
            Ok(follow_up) => {
                done.transitions.extend(follow_up.transitions);
                done.created = follow_up.created;
                done.early_activation = done.early_activation.or(follow_up.early_activation);
                done.rotation_held = follow_up.rotation_held;
            }
            Err(e) => {
                warn!(error = %e, "revocation done; its replacement key is left for the next run");
                run.incomplete.push(format!("replacement key: {e}"));
                if e.refuses_writes() {
                    // The withdrawal stands (revocation is never blocked), and the revoked key
                    // stops signing at once: disabling it is what the operator asked for,
                    // whichever region is home. Nothing else is done (no housekeeping, no
                    // write) by a region that is not, or cannot prove it is, the home.
                    self.disable_revoked(kid, &mut run).await;
                    self.finish(&mut run).await;
                    return Ok(self.conclude(done, run, now).await);
                }
            }
        }
        self.finish(&mut run).await;
        self.housekeeping(now, &mut run).await;
        Ok(self.conclude(done, run, now).await)
    }

    /// Disable the revoked key `kid` in every region (it waits in the retirement queue, which
    /// a later run of the home settles). A failure is reported; the withdrawal stands.
    pub(super) async fn disable_revoked(&self, kid: &str, run: &mut RunState) {
        let revoked = run.latest.as_ref().and_then(|(ring, _)| ring.retiring.iter().find(|k| k.kid == kid));
        let Some(arn) = revoked.map(|k| k.kms_key_arn.clone()) else { return };
        match self.disable_everywhere(&arn).await {
            Ok(()) => warn!(kid, "revoked key disabled"),
            Err(e) => run.incomplete.push(format!("disabling revoked key {kid}: {e}")),
        }
    }

    /// The withdrawal itself: `kid` leaves the keyring in a compare-and-swap of its own.
    /// `None` if it was already withdrawn.
    pub(super) async fn withdraw_key(
        &self,
        kid: &str,
        now: UnixTime,
        run: &mut RunState,
    ) -> Result<Option<Converged>, RotateError> {
        let mut conflicts = Conflicts::default();
        loop {
            let (ring, version) = self.read().await?;
            run.latest = Some((ring.clone(), version.clone()));
            // No remote read first: a revocation never waits for another region.
            self.check_home(&ring)?;
            let Some(mut withdrawn) = withdraw(&ring, kid, now)? else { return Ok(None) };
            // The CDN invalidation is owed from this very write: a crash after it still
            // leaves the debt recorded for the next run.
            withdrawn.edge_invalidations.extend(self.owed_invalidation(kid, now));
            withdrawn.validate()?;
            match self.store.compare_and_swap(version.as_deref(), &withdrawn.to_json()).await {
                Ok(new_version) => {
                    let early_activation = early_activation(&ring, &withdrawn, &self.policy, now);
                    run.record_written(withdrawn, new_version);
                    warn!(kid, "key revoked: withdrawn from the keyring");
                    return Ok(Some(Converged {
                        transitions: vec![Transition::Revoke],
                        early_activation,
                        ..Converged::default()
                    }));
                }
                Err(StoreError::Conflict) => conflicts.count()?,
                Err(e) => return Err(RotateError::Store(e)),
            }
        }
    }
}
