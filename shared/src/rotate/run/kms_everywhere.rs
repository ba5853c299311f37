//! KMS in every region of the deployment: where a run creates, retires and looks for keys.
//! Single-region, that is the rotator's own KMS. Multi-region ([`Regions`]), a key is created
//! as a multi-Region primary at home and replicated to every replica region before anyone
//! learns of it; it is retired in every region, replicas first (KMS keeps a primary in
//! `PendingReplicaDeletion` until its replicas are gone); and the crash sweep searches every
//! region.

use super::*;

/// One step of retiring a key, done in each region.
#[derive(Clone, Copy)]
enum Retirement {
    Disable,
    ScheduleDeletion { pending_window_days: i32 },
}

impl Retirement {
    async fn apply(self, kms: &dyn KeyAdmin, arn: &str) -> Result<(), KmsError> {
        match self {
            Retirement::Disable => kms.disable_key(arn).await,
            Retirement::ScheduleDeletion { pending_window_days } => {
                kms.schedule_deletion(arn, pending_window_days).await
            }
        }
    }
}

/// Where a search of every region's keys stands: the region (0 is home, `i` the `i`-th
/// replica region) and that region's own cursor. Written `<index>:<cursor>`; a cursor without
/// an index is the home's (a sweep paused before the deployment had replicas).
fn parse_region_cursor(cursor: Option<&str>) -> (usize, Option<&str>) {
    match cursor.map(|c| c.split_once(':')) {
        None => (0, None),
        Some(Some((index, inner))) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
            (index.parse().unwrap_or(usize::MAX), Some(inner).filter(|c| !c.is_empty()))
        }
        Some(_) => (0, cursor),
    }
}

impl<K: RotateKms, S: KeyringStore> Rotator<K, S> {
    /// Create a key of the rotation's algorithm and, multi-region, replicate it to every
    /// replica region. Returns the (home) key ARN.
    pub(super) async fn create_key_everywhere(&self, tags: &KeyTags) -> Result<String, KmsError> {
        let alg = self.policy.alg;
        let arn = self.kms.create_key(alg, tags).await?;
        for region in self.regions.iter().flat_map(Regions::replicas) {
            if let Err(e) = self.kms.replicate_key(&arn, &region.name, alg, tags).await {
                // The primary exists and carries this run's tags, but nobody will hold it: an
                // outcome-unknown error leaves the run's creation intent for the sweep, which
                // retires it (and any replica made) by tag.
                return Err(KmsError::transport(
                    "ReplicateKey",
                    format!("replicating {arn} to {}: {e}", region.name),
                ));
            }
        }
        Ok(arn)
    }

    /// Disable the key so that it signs nowhere.
    pub(super) async fn disable_everywhere(&self, key_arn: &str) -> Result<(), KmsError> {
        self.in_every_region(key_arn, Retirement::Disable).await
    }

    /// Disable the key and schedule its deletion, in every region.
    pub(super) async fn retire_kms_key(&self, key_arn: &str) -> Result<(), KmsError> {
        self.disable_everywhere(key_arn).await?;
        let pending_window_days = self.policy.deletion_window_days;
        self.in_every_region(key_arn, Retirement::ScheduleDeletion { pending_window_days }).await
    }

    /// Apply `step` to the key in every replica region (its regional ARN), then at home. Every
    /// region is tried even when one fails, and the first failure is returned: the caller
    /// repeats the whole step later, and each step is idempotent.
    async fn in_every_region(&self, key_arn: &str, step: Retirement) -> Result<(), KmsError> {
        let Some(regions) = &self.regions else { return step.apply(&self.kms, key_arn).await };
        let mut first_error = None;
        for region in regions.replicas() {
            let Some(arn) = regional_arn(key_arn, &region.name) else { continue };
            if let Err(e) = step.apply(&*region.kms, &arn).await {
                warn!(region = %region.name, error = %e, "KMS retirement step failed in a replica region; will retry");
                first_error.get_or_insert(e);
            }
        }
        // After a take-over, keys created by the old home keep its ARN: address the local copy.
        let home_arn = local_key_arn(key_arn, Some(regions.own()));
        if let Err(e) = step.apply(&self.kms, &home_arn).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One page of the keys the run `request_id` created, in any region: a run's keys are
    /// primaries of the home it ran in, which after a fail-over is a replica region (or the old
    /// home's primary was never replicated here). Home first, then each replica region; the
    /// cursor says which region to search next ([`parse_region_cursor`]), in one format for
    /// single- and multi-region deployments, so that a paused sweep resumes after either
    /// change.
    pub(super) async fn find_keys_everywhere(
        &self,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        let name = &self.keyring_name;
        let replicas = self.regions.as_ref().map_or(&[][..], Regions::replicas);
        let (index, inner) = parse_region_cursor(cursor);
        let page = match index {
            0 => self.kms.find_keys_by_request(name, request_id, inner).await?,
            i => match replicas.get(i - 1) {
                Some(region) => region.kms.find_keys_by_request(name, request_id, inner).await?,
                None => return Ok(KeyPage::default()),
            },
        };
        let next = match page.next {
            Some(more) => Some(format!("{index}:{more}")),
            None if index < replicas.len() => Some(format!("{}:", index + 1)),
            None => None,
        };
        Ok(KeyPage { arns: page.arns, next })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_region_cursor;

    #[test]
    fn a_region_cursor_names_the_region_and_its_own_cursor() {
        assert_eq!(parse_region_cursor(None), (0, None));
        assert_eq!(parse_region_cursor(Some("0:abc")), (0, Some("abc")));
        assert_eq!(parse_region_cursor(Some("2:")), (2, None));
        assert_eq!(parse_region_cursor(Some("1:a:b")), (1, Some("a:b")), "a region's cursor may hold ':'");
        // A home cursor written before the deployment had replicas.
        assert_eq!(parse_region_cursor(Some("token")), (0, Some("token")));
        assert_eq!(parse_region_cursor(Some("x:1")), (0, Some("x:1")));
        assert_eq!(parse_region_cursor(Some("99999999999999999999999:")).0, usize::MAX);
    }
}
