//! Multi-region steps of a run: fencing (this region must be, and be able to prove it is,
//! the keyring's home), observing the replica regions (stamping keys seen everywhere,
//! replicating keys where they are missing) and the take-over of a fail-over.

use super::*;

/// A replica region's copy of the keyring (empty before its first replication), or why it
/// cannot be read or used.
async fn read_replica(region: &ReplicaRegion) -> Result<Keyring, String> {
    match region.load().await {
        Ok(None) => Ok(Keyring::empty()),
        Ok(Some(doc)) => Keyring::from_json(&doc.text).map_err(|e| format!("keyring replica unusable: {e}")),
        Err(e) => Err(format!("keyring replica unreadable: {e}")),
    }
}

/// Does a region's copy show a home that outranks ours: a later take-over, or a rival
/// take-over at the same epoch (two regions claiming one epoch both stop, until an operator's
/// take-over settles it one epoch higher)?
fn outranks(theirs: &Home, ours: &Home) -> bool {
    theirs.epoch > ours.epoch || (theirs.epoch == ours.epoch && theirs.region != ours.region)
}

/// `key` is not (yet) seen in every region: it is not stamped this run.
fn leave_unstamped(waiting: &mut Vec<&KeyRecord>, key: &KeyRecord) {
    waiting.retain(|k| k.kid != key.kid);
}

impl<K: RotateKms, S: KeyringStore> Rotator<K, S> {
    /// Multi-region: refuse a keyring that names another home region.
    pub(super) fn check_home(&self, ring: &Keyring) -> Result<(), RotateError> {
        match (&self.regions, &ring.home) {
            (Some(regions), Some(home)) if home.region != regions.own() => {
                Err(RotateError::NotHome { home: home.region.clone(), own: regions.own().to_owned() })
            }
            _ => Ok(()),
        }
    }

    /// Multi-region: check this region is the writer (the keyring names it, or nobody yet, and
    /// every region's copy can be read and shows no home that outranks it), then stamp
    /// `replicated_at` on every key that every replica region now has: its KMS replica enabled,
    /// its kid in the region's keyring replica. Fencing fails closed: a copy that cannot be
    /// read could hold a later take-over, so the run stops before any write or KMS change.
    /// Single-region: the keyring as it is.
    pub(super) async fn observe_regions(
        &self,
        ring: &Keyring,
        now: UnixTime,
        run: &mut RunState,
    ) -> Result<Observed, RotateError> {
        let Some(regions) = &self.regions else {
            // Planned as single-region, a multi-region keyring would wait for stamps that never
            // come; and an old home configured without regions must not slip past its fence.
            if let Some(home) = &ring.home {
                return Err(RotateError::MultiRegionKeyring { home: home.region.clone() });
            }
            return Ok(Observed { keyring: ring.clone(), replicated: Vec::new() });
        };
        self.check_home(ring)?;
        let mut observed = ring.clone();
        let home =
            observed.home.get_or_insert_with(|| Home { region: regions.own().to_owned(), epoch: 0 }).clone();
        let copies = self.fence(regions, &home).await?;
        // Keys that sign or will: each must have an enabled replica everywhere.
        let in_use: Vec<&KeyRecord> = ring.keys.iter().filter(|k| k.state != KeyState::Previous).collect();
        let mut waiting: Vec<&KeyRecord> =
            in_use.iter().copied().filter(|k| k.replicated_at.is_none()).collect();
        let mut superseded: Vec<&KeyRecord> =
            ring.previous().filter(|k| k.superseded_everywhere_at.is_none()).collect();
        let mut unstamped: Vec<String> = Vec::new();
        for (region, replica) in regions.replicas().iter().zip(&copies) {
            waiting.retain(|key| replica.find(&key.kid).is_some());
            // Previous there too (or already gone from it): that region no longer signs with it.
            superseded
                .retain(|key| replica.find(&key.kid).is_none_or(|theirs| theirs.state == KeyState::Previous));
            for &key in &in_use {
                let enabled = match regional_arn(&key.kms_key_arn, &region.name) {
                    None => {
                        run.incomplete.push(format!(
                            "key {} is not a multi-Region key: it cannot sign in {}",
                            key.kid, region.name
                        ));
                        false
                    }
                    Some(arn) => match region.kms.key_enabled(&arn).await {
                        Ok(enabled) => enabled,
                        Err(e) => {
                            run.incomplete
                                .push(format!("region {}: replica of {}: {e}", region.name, key.kid));
                            leave_unstamped(&mut waiting, key);
                            continue;
                        }
                    },
                };
                if !enabled {
                    // Still `Creating`, never made there, or a region added since: (re)replicate,
                    // idempotently; a next key already stamped waits again.
                    leave_unstamped(&mut waiting, key);
                    if key.replicated_at.is_some() && key.state == KeyState::Next {
                        unstamped.push(key.kid.clone());
                    }
                    self.replicate_missing(key, &region.name, regions.own(), run).await;
                }
            }
        }
        let replicated: Vec<String> = waiting.iter().map(|k| k.kid.clone()).collect();
        let superseded: Vec<String> = superseded.iter().map(|k| k.kid.clone()).collect();
        for key in in_use.iter().filter(|k| k.replicated_at.is_none() && !replicated.contains(&k.kid)) {
            run.incomplete.push(format!("key {} awaits replication to every region", key.kid));
        }
        for key in observed.keys.iter_mut().filter(|k| unstamped.contains(&k.kid)) {
            warn!(kid = %key.kid, "the next key is missing in a region: it waits until every region has it");
            key.replicated_at = None;
        }
        let keyring = observed.mark_replicated(&replicated, now).mark_superseded(&superseded, now);
        Ok(Observed { keyring, replicated })
    }

    /// Every replica region's copy of the keyring, read before anything is changed, each
    /// checked for a home that outranks `home`. Refuses when one cannot be read.
    pub(super) async fn fence(&self, regions: &Regions, home: &Home) -> Result<Vec<Keyring>, RotateError> {
        let mut copies = Vec::with_capacity(regions.replicas().len());
        for region in regions.replicas() {
            let replica = read_replica(region).await.map_err(|reason| {
                warn!(region = %region.name, %reason, "a region's keyring copy cannot be read: this region cannot prove it is still home, so it changes nothing");
                RotateError::HomeUnconfirmed { region: region.name.clone(), reason }
            })?;
            if let Some(theirs) = replica.home.as_ref().filter(|theirs| outranks(theirs, home)) {
                warn!(region = %region.name, home = %theirs.region, epoch = theirs.epoch, "another region took over as home; this one stops rotating");
                return Err(RotateError::NotHome {
                    home: theirs.region.clone(),
                    own: regions.own().to_owned(),
                });
            }
            copies.push(replica);
        }
        Ok(copies)
    }

    /// Replicate `key` into `region`, where it is missing. Only a primary of this home region
    /// can be replicated from here (`ReplicateKey` runs in the primary's region); a key left by
    /// an earlier home is reported instead.
    pub(super) async fn replicate_missing(
        &self,
        key: &KeyRecord,
        region: &str,
        own: &str,
        run: &mut RunState,
    ) {
        if arn_region(&key.kms_key_arn) != Some(own) {
            run.incomplete.push(format!(
                "key {} has no replica in {region} and its primary is in another region: replicate it there by hand",
                key.kid
            ));
            return;
        }
        let tags = KeyTags { keyring: self.keyring_name.clone(), request_id: run.request_id.clone() };
        if let Err(e) = self.kms.replicate_key(&key.kms_key_arn, region, key.alg, &tags).await {
            run.incomplete.push(format!("replicating {} to {region}: {e}", key.kid));
        }
    }

    /// Fail-over: name this region the keyring's home, one epoch above the highest any
    /// readable copy shows (the old home's region may be down: its copy is not waited for).
    /// Refused unless the deployment names this region home (`HOME_REGION`), so that two
    /// regions cannot both be told to take over by one mistaken invocation.
    pub(super) async fn take_over(
        &self,
        now: UnixTime,
        mut run: RunState,
    ) -> Result<RotationReport, RotateError> {
        let Some(regions) = &self.regions else { return Err(RotateError::NotMultiRegion) };
        if let Some(configured) = regions.configured_home().filter(|home| *home != regions.own()) {
            return Err(RotateError::NotConfiguredHome {
                configured: configured.to_owned(),
                own: regions.own().to_owned(),
            });
        }
        let mut homes_elsewhere = Vec::new();
        for region in regions.replicas() {
            match read_replica(region).await {
                Ok(copy) => homes_elsewhere.extend(copy.home),
                Err(reason) => run.incomplete.push(format!("region {}: {reason}", region.name)),
            }
        }
        let mut conflicts = Conflicts::default();
        loop {
            let (ring, version) = self.read().await?;
            run.latest = Some((ring.clone(), version.clone()));
            let highest = ring.home.iter().chain(&homes_elsewhere).map(|home| home.epoch).max();
            let ours = ring.home.as_ref().filter(|home| home.region == regions.own());
            if ours.is_some_and(|ours| !homes_elsewhere.iter().any(|theirs| outranks(theirs, ours))) {
                // Already home, and no copy shows a rival claim: nothing to do.
                return Ok(self.conclude(Converged::default(), run, now).await);
            }
            let mut claimed = ring.clone();
            let epoch = highest.map_or(0, |epoch| epoch + 1);
            claimed.home = Some(Home { region: regions.own().to_owned(), epoch });
            match self.store.compare_and_swap(version.as_deref(), &claimed.to_json()).await {
                Ok(new_version) => {
                    warn!(home = %regions.own(), epoch, "took over as the keyring's home region");
                    run.record_written(claimed, new_version);
                    let converged =
                        Converged { transitions: vec![Transition::TakeOver], ..Converged::default() };
                    return Ok(self.conclude(converged, run, now).await);
                }
                Err(StoreError::Conflict) => conflicts.count()?,
                Err(e) => return Err(RotateError::Store(e)),
            }
        }
    }
}
