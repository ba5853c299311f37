//! Multi-region: one keyring writer in the home region, the same KMS keys everywhere.
//!
//! A KMS multi-Region key and its replicas share key material and key id (`mrk-…`); their
//! ARNs differ only in the Region field (KMS developer guide, "Multi-Region key identifiers").
//! The keyring records the home (primary) ARN; each region signs with its own replica, whose
//! ARN [`regional_arn`] derives. Replica key *state* is not shared: disabling or deleting a key
//! is done in every region ([`MultiRegionKms`]).

use std::sync::Arc;

use async_trait::async_trait;
use tracing::warn;

use crate::jose::alg::SigningAlg;
use crate::ports::{KeyAdmin, KeyPage, KeyTags, KeyringStore, KmsError, StoreError, StoredDocument};

/// The ARN of the same multi-Region key in `region`: `arn:PARTITION:kms:REGION:ACCOUNT:key/mrk-…`
/// with the Region field replaced. `None` for anything but a multi-Region key ARN (a
/// single-Region key exists in one region only).
pub fn regional_arn(arn: &str, region: &str) -> Option<String> {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    match fields.as_slice() {
        ["arn", partition, "kms", _, account, resource]
            if resource.starts_with("key/mrk-") && !region.is_empty() && !region.contains(':') =>
        {
            Some(format!("arn:{partition}:kms:{region}:{account}:{resource}"))
        }
        _ => None,
    }
}

/// Whether two key ARNs name the same KMS key: the same ARN, or one multi-Region key's ARNs
/// in two regions (they differ only in the Region field).
pub fn same_kms_key(a: &str, b: &str) -> bool {
    a == b || arn_region(b).and_then(|region| regional_arn(a, region)).is_some_and(|in_b| in_b == b)
}

/// The region field of an ARN, if it has one.
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|region| !region.is_empty())
}

/// The key ARN a function in `region` signs with: the local replica of a multi-Region key, or
/// the ARN itself (a single-Region key, or a multi-Region key already in `region`).
pub fn local_key_arn(arn: &str, region: Option<&str>) -> String {
    match region {
        Some(region) if arn_region(arn) != Some(region) => {
            regional_arn(arn, region).unwrap_or_else(|| arn.to_owned())
        }
        _ => arn.to_owned(),
    }
}

/// The KMS operations multi-region rotation needs beyond [`KeyAdmin`]'s, on one region's KMS.
#[async_trait]
pub trait ReplicaAdmin: Send + Sync {
    /// Replicate the multi-Region primary `key_arn` into `region`, with the key policy of a
    /// key of `alg` and `tags`. A replica that already exists is success (a retried call).
    async fn replicate_key(
        &self,
        key_arn: &str,
        region: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<(), KmsError>;
    /// Whether the key exists and is `Enabled` (a fresh replica is `Creating` for a while).
    async fn key_enabled(&self, key_arn: &str) -> Result<bool, KmsError>;
}

#[async_trait]
impl<T: ReplicaAdmin + ?Sized> ReplicaAdmin for Arc<T> {
    async fn replicate_key(
        &self,
        key_arn: &str,
        region: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<(), KmsError> {
        (**self).replicate_key(key_arn, region, alg, tags).await
    }
    async fn key_enabled(&self, key_arn: &str) -> Result<bool, KmsError> {
        (**self).key_enabled(key_arn).await
    }
}

/// One replica region as rotate sees it: its KMS (for the replica keys) and its copy of the
/// keyring secret (read-only: Secrets Manager replicas cannot be written).
pub struct ReplicaRegion {
    /// The region's name, e.g. `eu-west-1`.
    pub name: String,
    /// KMS in that region.
    pub kms: Arc<dyn RegionalKms>,
    /// The keyring secret's replica in that region.
    pub keyring: Arc<dyn KeyringStore>,
}

/// What rotate does to keys in a replica region: [`KeyAdmin`] plus [`ReplicaAdmin`].
pub trait RegionalKms: KeyAdmin + ReplicaAdmin {}
impl<T: KeyAdmin + ReplicaAdmin + ?Sized> RegionalKms for T {}

impl ReplicaRegion {
    /// The replica keyring document, or why it could not be read.
    pub async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        self.keyring.load().await
    }
}

/// KMS across regions, for rotate: keys are created as multi-Region primaries in the home
/// region and replicated to every replica region before anyone learns of them; retirement
/// disables and schedules deletion in every region, replicas first (KMS keeps a primary in
/// `PendingReplicaDeletion` until its replicas are gone).
pub struct MultiRegionKms<K> {
    home_region: String,
    home: K,
    replicas: Vec<Arc<ReplicaRegion>>,
}

impl<K> MultiRegionKms<K> {
    /// `home` is KMS in `home_region` and must create multi-Region keys; `replicas` are the
    /// other regions.
    pub fn new(home_region: impl Into<String>, home: K, replicas: Vec<Arc<ReplicaRegion>>) -> Self {
        MultiRegionKms { home_region: home_region.into(), home, replicas }
    }

    /// The home region's KMS.
    pub fn home(&self) -> &K {
        &self.home
    }

    /// The replica regions.
    pub fn replicas(&self) -> &[Arc<ReplicaRegion>] {
        &self.replicas
    }

    /// Retire the key in every replica region (its regional ARN), then in the home region;
    /// every region is tried even when one fails, and the first failure is returned (the
    /// retirement stays queued and a later run repeats it: both steps are idempotent).
    async fn in_every_region(&self, key_arn: &str, step: Retirement) -> Result<(), KmsError>
    where
        K: KeyAdmin,
    {
        let mut first_error = None;
        for region in &self.replicas {
            let Some(arn) = regional_arn(key_arn, &region.name) else { continue };
            let kms: &dyn KeyAdmin = &*region.kms;
            if let Err(e) = step.apply(kms, &arn).await {
                warn!(region = %region.name, error = %e, "KMS retirement step failed in a replica region; will retry");
                first_error.get_or_insert(e);
            }
        }
        // After a take-over, keys created by the old home keep its ARN: address the local copy.
        let home_arn = local_key_arn(key_arn, Some(&self.home_region));
        if let Err(e) = step.apply(&self.home, &home_arn).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

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

#[async_trait]
impl<K: KeyAdmin + ReplicaAdmin> KeyAdmin for MultiRegionKms<K> {
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        let arn = self.home.create_key(alg, tags).await?;
        for region in &self.replicas {
            if let Err(e) = self.home.replicate_key(&arn, &region.name, alg, tags).await {
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

    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        self.home.public_key_der(key_arn).await
    }

    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError> {
        self.in_every_region(key_arn, Retirement::Disable).await
    }

    async fn schedule_deletion(&self, key_arn: &str, pending_window_days: i32) -> Result<(), KmsError> {
        self.in_every_region(key_arn, Retirement::ScheduleDeletion { pending_window_days }).await
    }

    /// Every region's keys of the run, home first, then each replica region: a run's keys are
    /// primaries of the home it ran in, which after a fail-over is a replica region (or the
    /// old home's primary was never replicated here). The cursor names the region searched
    /// (`<index>:<that region's cursor>`); a cursor without one is the home's.
    async fn find_keys_by_request(
        &self,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        let (index, inner) = match cursor.map(|c| c.split_once(':')) {
            None => (0, None),
            Some(Some((index, inner))) if index.bytes().all(|b| b.is_ascii_digit()) && !index.is_empty() => {
                (index.parse().unwrap_or(usize::MAX), Some(inner).filter(|c| !c.is_empty()))
            }
            Some(_) => (0, cursor),
        };
        let page = match index {
            0 => self.home.find_keys_by_request(keyring, request_id, inner).await?,
            i => match self.replicas.get(i - 1) {
                Some(region) => region.kms.find_keys_by_request(keyring, request_id, inner).await?,
                None => return Ok(KeyPage::default()),
            },
        };
        let next = match page.next {
            Some(more) => Some(format!("{index}:{more}")),
            None if index < self.replicas.len() => Some(format!("{}:", index + 1)),
            None => None,
        };
        Ok(KeyPage { arns: page.arns, next })
    }

    async fn replicate_to(
        &self,
        key_arn: &str,
        region: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<(), KmsError> {
        self.home.replicate_key(key_arn, region, alg, tags).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_arns_replace_only_the_region_of_multi_region_keys() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        assert_eq!(
            regional_arn(arn, "eu-west-1").as_deref(),
            Some("arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab")
        );
        let china = "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1";
        assert_eq!(
            regional_arn(china, "cn-northwest-1").as_deref(),
            Some("arn:aws-cn:kms:cn-northwest-1:111122223333:key/mrk-1")
        );
        // A single-Region key has no replica anywhere.
        assert_eq!(regional_arn("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab", "eu-west-1"), None);
        assert_eq!(regional_arn("mrk-1234", "eu-west-1"), None);
        assert_eq!(regional_arn(arn, ""), None);
        assert_eq!(regional_arn(arn, "eu:west"), None);
    }

    #[test]
    fn local_key_arn_is_the_replica_in_the_functions_region() {
        let home = "arn:aws:kms:us-east-1:111122223333:key/mrk-1";
        assert_eq!(
            local_key_arn(home, Some("ap-southeast-2")),
            "arn:aws:kms:ap-southeast-2:111122223333:key/mrk-1"
        );
        assert_eq!(local_key_arn(home, Some("us-east-1")), home);
        assert_eq!(local_key_arn(home, None), home);
        let single = "arn:aws:kms:us-east-1:111122223333:key/1234";
        assert_eq!(local_key_arn(single, Some("eu-west-1")), single, "nothing to resolve to");
        assert_eq!(arn_region(home), Some("us-east-1"));
    }

    #[test]
    fn a_multi_region_key_is_the_same_key_in_every_region() {
        let home = "arn:aws:kms:us-east-1:111122223333:key/mrk-1";
        let eu = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1";
        assert!(same_kms_key(home, eu) && same_kms_key(eu, home) && same_kms_key(home, home));
        assert!(!same_kms_key(home, "arn:aws:kms:eu-west-1:111122223333:key/mrk-2"));
        assert!(!same_kms_key(home, "arn:aws:kms:eu-west-1:999999999999:key/mrk-1"), "another account");
        let single = "arn:aws:kms:us-east-1:111122223333:key/1234";
        assert!(
            !same_kms_key(single, "arn:aws:kms:eu-west-1:111122223333:key/1234"),
            "single-Region keys are regional"
        );
    }
}
