//! Why a run failed.

use super::report::RotationHeld;
use crate::jose::jwk::JwkError;
use crate::keyring::KeyringError;
use crate::ports::{KmsError, StoreError};

/// Compare-and-swap conflicts a run tolerates before giving up (the next run carries on).
pub(super) const MAX_CONFLICTS: usize = 16;

/// Why a rotate run failed; [`RotateError::code`] names it for the Lambda `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The stored keyring is invalid. Nothing was written: a human must look at it.
    #[error("refusing to touch the stored keyring: {0}")]
    Keyring(#[from] KeyringError),
    /// A KMS call failed.
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// Reading or writing the keyring secret failed.
    #[error(transparent)]
    Store(StoreError),
    /// A key's public half from `GetPublicKey` is unusable (key type, curve or size).
    #[error("KMS returned a public key kms-jwt cannot use: {0}")]
    PublicKey(#[from] JwkError),
    /// Other writers kept changing the keyring; the next run carries on.
    #[error("gave up after {MAX_CONFLICTS} compare-and-swap conflicts on the keyring")]
    TooManyConflicts,
    /// A revocation named a kid that is not published.
    #[error("no published key has kid {0:?}")]
    UnknownKid(String),
    /// The run's time budget ran out before the named step; the next run carries on.
    #[error("the run's time budget ran out before {0}")]
    OutOfTime(&'static str),
    /// A rotation would publish more keys (or a larger JWKS) than verifiers accept.
    #[error("{0}")]
    TooManyPublishedKeys(RotationHeld),
    /// Multi-region: this region's rotate is not the keyring's writer (the keyring names
    /// another home, or another region's copy shows a later take-over). Nothing was written.
    #[error("this region ({own}) is not the keyring's home ({home}); only the home region rotates")]
    NotHome {
        /// The home region the keyring names.
        home: String,
        /// This rotate function's region.
        own: String,
    },
    /// Multi-region: a region's copy of the keyring could not be read, so this region cannot
    /// prove no other region took over. Nothing was changed (fencing fails closed).
    #[error("region {region}'s keyring copy cannot be read ({reason}); rotate changes nothing until it can")]
    HomeUnconfirmed {
        /// The region whose copy could not be read.
        region: String,
        /// Why.
        reason: String,
    },
    /// `take-over` was asked of a region the deployment does not name home (`HOME_REGION`).
    #[error("take-over refused: HOME_REGION is {configured}, not this region ({own}); change the stack's HomeRegion first")]
    NotConfiguredHome {
        /// The home region configured.
        configured: String,
        /// This rotate function's region.
        own: String,
    },
    /// `take-over` was asked of a rotate function that has no multi-region configuration.
    #[error("take-over needs HOME_REGION or REPLICA_REGIONS: this rotate function is single-region")]
    NotMultiRegion,
    /// The keyring is multi-region but this rotate function has no multi-region configuration
    /// (`REPLICA_REGIONS` or `HOME_REGION`). Nothing was written.
    #[error("the keyring is multi-region (home {home}); set HOME_REGION (and REPLICA_REGIONS) to rotate it")]
    MultiRegionKeyring {
        /// The home region the keyring names.
        home: String,
    },
}

impl RotateError {
    /// A stable name for the Lambda `errorType`.
    pub fn code(&self) -> &'static str {
        match self {
            RotateError::Keyring(_) => "KeyringInvalid",
            RotateError::Kms(_) => "KmsError",
            RotateError::Store(_) => "KeyringStoreError",
            RotateError::PublicKey(_) => "PublicKeyInvalid",
            RotateError::TooManyConflicts => "KeyringConflict",
            RotateError::UnknownKid(_) => "UnknownKid",
            RotateError::OutOfTime(_) => "OutOfTime",
            RotateError::TooManyPublishedKeys(_) => "TooManyPublishedKeys",
            RotateError::NotHome { .. } => "NotHome",
            RotateError::NotMultiRegion => "NotMultiRegion",
            RotateError::MultiRegionKeyring { .. } => "MultiRegionKeyring",
            RotateError::HomeUnconfirmed { .. } => "HomeUnconfirmed",
            RotateError::NotConfiguredHome { .. } => "NotConfiguredHome",
        }
    }

    /// Errors raised before anything was changed, after which a run must change nothing
    /// (no housekeeping either): an invalid keyring, or a region that is not (or cannot prove
    /// it is) the keyring's home.
    pub fn refuses_writes(&self) -> bool {
        matches!(
            self,
            RotateError::Keyring(_)
                | RotateError::NotHome { .. }
                | RotateError::MultiRegionKeyring { .. }
                | RotateError::HomeUnconfirmed { .. }
        )
    }
}
