//! Converging the keyring on the plan: record the creation intent, create the keys the plan
//! needs, write with compare-and-swap (again on a conflict), and account for keys that did not
//! land.

use super::*;

/// Drop this run's creation intent from the planned keyring if every key the run created
/// lands in this write. Otherwise it stays until `finish` (or a sweep) has dealt with the
/// others.
fn drop_fulfilled_intent(plan: &mut Plan, run: &RunState) {
    if plan.used_new_keys == run.fresh.len() && !run.creation_uncertain {
        plan.keyring.pending.retain(|p| p.request_id != run.request_id);
    }
}

/// How long a run waits for a key it just created to become usable.
const NEW_KEY_PATIENCE: Duration = Duration::from_secs(10);

impl<K: RotateKms, S: KeyringStore> Rotator<K, S> {
    /// Plan, create the keys the plan needs (after recording the intent), and write; on a
    /// conflict, read and plan again, reusing the keys already created.
    pub(super) async fn converge(
        &self,
        mode: &Mode,
        now: UnixTime,
        run: &mut RunState,
    ) -> Result<Converged, RotateError> {
        let mut conflicts = Conflicts::default();
        loop {
            let (ring, version) = self.read().await?;
            run.latest = Some((ring.clone(), version.clone()));
            let Observed { keyring: observed, replicated } = self.observe_regions(&ring, now, run).await?;
            let mut plan = match plan(&observed, &self.policy, mode, now, &run.fresh) {
                Ok(plan) => plan,
                Err(Need::Keys(needed)) => {
                    match self.provide_keys(&ring, version.as_deref(), needed, now, run).await {
                        // Only recording the intent writes: plan again on the new keyring.
                        Err(RotateError::Store(StoreError::Conflict)) => conflicts.count()?,
                        other => other?,
                    }
                    continue;
                }
                Err(Need::Refusal(held)) => return Err(RotateError::TooManyPublishedKeys(held)),
            };
            drop_fulfilled_intent(&mut plan, run);
            if plan.keyring == ring {
                return Ok(Converged { rotation_held: plan.held, ..Converged::default() });
            }
            if !replicated.is_empty() {
                plan.transitions.insert(0, Transition::Replicated);
            }
            match self.write_plan(&ring, version.as_deref(), plan, now, run).await? {
                Some(converged) => return Ok(converged),
                None => conflicts.count()?,
            }
        }
    }

    /// Make `needed` fresh keys available to the plan: record this run's creation intent in
    /// the keyring first (unless it is there), then create the keys missing.
    pub(super) async fn provide_keys(
        &self,
        ring: &Keyring,
        version: Option<&str>,
        needed: usize,
        now: UnixTime,
        run: &mut RunState,
    ) -> Result<(), RotateError> {
        if !ring.pending.iter().any(|p| p.request_id == run.request_id) {
            self.declare_intent(ring, version, now, run).await?;
        }
        while run.fresh.len() < needed {
            let key = self.create_key(now, run).await?;
            run.fresh.push(key);
        }
        Ok(())
    }

    /// Write the planned keyring over `ring` (read at `version`). `None` on a conflict.
    pub(super) async fn write_plan(
        &self,
        ring: &Keyring,
        version: Option<&str>,
        plan: Plan,
        now: UnixTime,
        run: &mut RunState,
    ) -> Result<Option<Converged>, RotateError> {
        let target = plan.keyring;
        target.validate()?;
        match self.store.compare_and_swap(version, &target.to_json()).await {
            Ok(new_version) => {
                if !target.pending.iter().any(|p| p.request_id == run.request_id) {
                    run.intent_outstanding = false;
                }
                let created = run.fresh.drain(..plan.used_new_keys).map(|k| k.kid).collect();
                let early_activation = early_activation(ring, &target, &self.policy, now);
                run.record_written(target, new_version);
                Ok(Some(Converged {
                    transitions: plan.transitions,
                    created,
                    early_activation,
                    rotation_held: plan.held,
                }))
            }
            Err(StoreError::Conflict) => Ok(None),
            Err(e) => {
                run.write_uncertain = true;
                Err(RotateError::Store(e))
            }
        }
    }

    /// Record that this run is about to create keys, so a crash cannot orphan one.
    pub(super) async fn declare_intent(
        &self,
        ring: &Keyring,
        version: Option<&str>,
        now: UnixTime,
        run: &mut RunState,
    ) -> Result<(), RotateError> {
        let mut intent = ring.clone();
        intent.pending.push(PendingCreation {
            request_id: run.request_id.clone(),
            requested_at: now,
            sweep_cursor: None,
        });
        // Set before the call: a write whose reply is lost may still have landed.
        run.intent_outstanding = true;
        match self.store.compare_and_swap(version, &intent.to_json()).await {
            Ok(new_version) => {
                run.record_written(intent, new_version);
                Ok(())
            }
            Err(StoreError::Conflict) => Err(RotateError::Store(StoreError::Conflict)),
            Err(e) => {
                run.write_uncertain = true;
                Err(RotateError::Store(e))
            }
        }
    }

    /// Account for keys this run created but did not land: schedule deletion of those the
    /// keyring does not hold, then drop this run's creation intent. Whatever is uncertain (a
    /// write that may have landed with the keys, a key KMS may hold that we never learned of)
    /// is left to the stale-intent sweep of a later run, which sees the settled keyring.
    pub(super) async fn finish(&self, run: &mut RunState) {
        if run.fresh.is_empty() && !run.intent_outstanding {
            return;
        }
        if !run.fresh.is_empty() && run.write_uncertain {
            // Deleting now could disable keys a landed write just published.
            warn!(request_id = %run.request_id, "a keyring write with new keys may have landed; the stale-intent sweep will settle them");
            run.incomplete.push("new keys of an unconfirmed write: left to the stale-intent sweep".into());
            return;
        }
        let (ring, version) = match self.read().await {
            Ok(read) => read,
            Err(e) => {
                warn!(error = %e, "cannot re-read the keyring to clean up; a later run will sweep");
                return;
            }
        };
        // Every write that carried these keys conflicted: they are in no keyring.
        let mut all_retired = true;
        for key in run.fresh.iter().filter(|k| !ring.holds_arn(&k.kms_key_arn)) {
            if let Err(e) = self.retire_kms_key(&key.kms_key_arn).await {
                warn!(kms_key_arn = %key.kms_key_arn, error = %e, "could not schedule deletion of an unused new key");
                all_retired = false;
            }
        }
        if !all_retired || run.creation_uncertain {
            return;
        }
        run.fresh.clear();
        let own = run.request_id.clone();
        let dropped = self
            .drop_settled(Some((ring, version)), |ring| {
                let mut without_intent = ring.clone();
                without_intent.pending.retain(|p| p.request_id != own);
                without_intent
            })
            .await;
        match dropped {
            Ok(Dropped::Unchanged) => run.intent_outstanding = false,
            Ok(Dropped::Written(ring, version)) => {
                run.intent_outstanding = false;
                run.record_tidied(ring, version);
            }
            Ok(Dropped::GaveUp) => {}
            Err(DropFailed::Read(e)) => {
                warn!(error = %e, "cannot re-read the keyring to clean up; a later run will sweep")
            }
            Err(DropFailed::Write(e)) => {
                warn!(error = %e, "could not clear this run's creation intent; a later run will")
            }
        }
    }

    pub(super) async fn create_key(&self, now: UnixTime, run: &mut RunState) -> Result<NewKey, RotateError> {
        if !run.has_time_for(3) {
            return Err(RotateError::OutOfTime("creating a key"));
        }
        let tags = KeyTags { keyring: self.keyring_name.clone(), request_id: run.request_id.clone() };
        let mut backoff = Duration::from_millis(200);
        let arn = loop {
            match self.create_key_everywhere(&tags).await {
                Ok(arn) => break arn,
                // Throttled means refused: nothing was created, so asking again is safe.
                Err(KmsError::Throttled) if run.has_time_for(4) && backoff < Duration::from_secs(2) => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => {
                    if e.outcome_unknown() {
                        // The key may exist: only a sweep of this run's tag can tell.
                        run.creation_uncertain = true;
                    }
                    return Err(e.into());
                }
            }
        };
        let key = async {
            let der = self.await_public_key(&arn, run).await?;
            let jwk = PublicJwk::from_spki_der(&der)?;
            jwk.check_alg(self.policy.alg)?;
            Ok::<_, RotateError>(NewKey {
                kid: jwk.thumbprint(),
                alg: self.policy.alg,
                kms_key_arn: arn.clone(),
                public_jwk: jwk,
                created_at: now,
            })
        }
        .await;
        if key.is_err() {
            // The key exists in KMS but will never be in the keyring: do not leave it behind.
            if let Err(e) = self.retire_kms_key(&arn).await {
                warn!(kms_key_arn = %arn, error = %e, "could not schedule deletion of a key that failed setup; the stale-intent sweep will");
                run.creation_uncertain = true;
            }
        }
        key
    }

    /// A new key's public key. KMS is eventually consistent: for a moment after `CreateKey`
    /// the key (or its key policy) may not be visible yet, which looks like "not found" or
    /// "access denied". Wait for it, within the run's budget.
    pub(super) async fn await_public_key(&self, arn: &str, run: &RunState) -> Result<Vec<u8>, RotateError> {
        let give_up = (Instant::now() + NEW_KEY_PATIENCE).min(run.soft_deadline());
        let mut wait = Duration::from_millis(250);
        loop {
            match self.kms.public_key_der(arn).await {
                Err(KmsError::AccessDenied { .. } | KmsError::NotFound(_))
                    if Instant::now() + wait < give_up =>
                {
                    info!(kms_key_arn = %arn, "new key not usable yet; waiting for KMS");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                other => return other.map_err(RotateError::from),
            }
        }
    }
}
