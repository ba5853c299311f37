//! Multi-region: one keyring writer in the home region, the same KMS keys everywhere.
//!
//! [`Regions`] is everything a multi-region rotator knows of the other regions, built once
//! from `REPLICA_REGIONS` (see `aws::wiring`) and owned by the rotator, which derives every
//! cross-region step from it: keys are created as multi-Region primaries at home and
//! replicated to every replica region before anyone learns of them; retirement disables and
//! schedules deletion in every region, replicas first (KMS keeps a primary in
//! `PendingReplicaDeletion` until its replicas are gone); fencing reads every region's copy of
//! the keyring. A single-region deployment has no `Regions` at all.

use std::sync::Arc;

use crate::ports::{KeyringStore, RotateKms, StoreError, StoredDocument};

/// The regions of a multi-region deployment, as the rotator of one of them sees them.
pub struct Regions {
    own: String,
    configured_home: Option<String>,
    replicas: Vec<ReplicaRegion>,
}

impl Regions {
    /// `own` is the rotator's region; `replicas` are the others (`REPLICA_REGIONS` less `own`).
    pub fn new(own: impl Into<String>, replicas: Vec<ReplicaRegion>) -> Self {
        Regions { own: own.into(), configured_home: None, replicas }
    }

    /// `HOME_REGION` as the deployment configures it (`None`: unspecified). A take-over
    /// happens only in the region named here, so that one mistaken invocation cannot make two
    /// regions claim the keyring.
    pub fn with_configured_home(mut self, home: Option<String>) -> Self {
        self.configured_home = home;
        self
    }

    /// The rotator's own region: the home it claims, or must be named.
    pub fn own(&self) -> &str {
        &self.own
    }

    /// `HOME_REGION` as configured, if any.
    pub fn configured_home(&self) -> Option<&str> {
        self.configured_home.as_deref()
    }

    /// The other regions, in configuration order.
    pub fn replicas(&self) -> &[ReplicaRegion] {
        &self.replicas
    }
}

/// One replica region as rotate sees it: its KMS (for the replica keys) and its copy of the
/// keyring secret (read-only: Secrets Manager replicas cannot be written).
pub struct ReplicaRegion {
    /// The region's name, e.g. `eu-west-1`.
    pub name: String,
    /// KMS in that region.
    pub kms: Arc<dyn RotateKms>,
    /// The keyring secret's replica in that region.
    pub keyring: Arc<dyn KeyringStore>,
}

impl ReplicaRegion {
    /// The replica keyring document, or why it could not be read.
    pub async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        self.keyring.load().await
    }
}
