//! The two external services kms-jwt talks to, as small traits. Each has one AWS adapter
//! (`crate::aws`) and one in-memory twin (`crate::memory`, behind the `test-util` feature).
//!
//! Ports are split by who needs them: the sign function only gets [`KeySigner`], so it cannot
//! create or disable keys even by mistake.

use std::sync::Arc;

use async_trait::async_trait;

use crate::jose::alg::SigningAlg;
pub use crate::jose::signing_input::SigningInput;

/// The error a port error was made from (the AWS SDK's), kept as its
/// [`source`](std::error::Error::source) so that logging the error chain shows AWS's cause.
/// Shared, so that port errors stay `Clone`; never compared (see their `PartialEq`). The
/// `source()` is this handle: downcast it to `ErrorSource`, then to the SDK's error type.
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Failure of a KMS operation, classified by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KmsError {
    /// The key (ARN given) does not exist, or no longer does.
    #[error("KMS key {0} was not found")]
    NotFound(String),
    /// The key (ARN given) exists but is disabled or pending deletion: it cannot sign.
    #[error("KMS key {0} is disabled or pending deletion")]
    InvalidState(String),
    /// KMS's request quota was exceeded, and the SDK's retries did not get through.
    #[error("KMS throttled the request after retries")]
    Throttled,
    /// The caller may not do this to this key. Right after `CreateKey` this can be KMS's
    /// eventual consistency rather than a real denial.
    #[error("KMS denied {operation}")]
    AccessDenied {
        /// The KMS operation, e.g. `Sign`.
        operation: &'static str,
    },
    /// No answer within the configured time. The call may or may not have taken effect.
    #[error("KMS {operation} did not answer in time")]
    Timeout {
        /// The KMS operation, e.g. `Sign`.
        operation: &'static str,
    },
    /// The request was sent but no usable answer came back (connection lost, 5xx after
    /// retries): the call may have taken effect.
    #[error("KMS {operation} failed in transit: {message}")]
    Transport {
        /// The KMS operation, e.g. `Sign`.
        operation: &'static str,
        /// What the SDK said, for logs (may name AWS resources).
        message: String,
        /// The SDK's error, when there was one.
        #[source]
        source: Option<ErrorSource>,
    },
    /// Any other refusal or fault (validation, a key of the wrong usage, an unexpected answer).
    #[error("KMS {operation} failed: {message}")]
    Other {
        /// The KMS operation, e.g. `Sign`.
        operation: &'static str,
        /// What the SDK said, for logs (may name AWS resources).
        message: String,
        /// The SDK's error, when there was one.
        #[source]
        source: Option<ErrorSource>,
    },
}

/// Equal when they say the same thing: the kept source is left out (SDK errors have no
/// equality, and tests compare errors made without one).
impl PartialEq for KmsError {
    fn eq(&self, other: &Self) -> bool {
        use KmsError::*;
        match (self, other) {
            (NotFound(a), NotFound(b)) | (InvalidState(a), InvalidState(b)) => a == b,
            (Throttled, Throttled) => true,
            (AccessDenied { operation: a }, AccessDenied { operation: b })
            | (Timeout { operation: a }, Timeout { operation: b }) => a == b,
            (Transport { operation: a, message: m, .. }, Transport { operation: b, message: n, .. })
            | (Other { operation: a, message: m, .. }, Other { operation: b, message: n, .. }) => {
                a == b && m == n
            }
            _ => false,
        }
    }
}

impl Eq for KmsError {}

impl KmsError {
    /// [`KmsError::Other`] with no underlying error to keep.
    pub fn other(operation: &'static str, message: impl Into<String>) -> Self {
        KmsError::Other { operation, message: message.into(), source: None }
    }

    /// [`KmsError::Transport`] with no underlying error to keep.
    pub fn transport(operation: &'static str, message: impl Into<String>) -> Self {
        KmsError::Transport { operation, message: message.into(), source: None }
    }

    /// True when the call may have taken effect although it reported failure: a retry could
    /// repeat it, and a created key may exist that nobody learned about.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, KmsError::Timeout { .. } | KmsError::Transport { .. })
    }
}

/// Tags every key we create carries: which keyring it belongs to, and which rotate run
/// created it, so a crashed run's keys can be found later (see `Keyring::pending`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTags {
    /// The keyring's name (the secret id), value of `kms-jwt:keyring`.
    pub keyring: String,
    /// The creating run's id, value of `kms-jwt:request`.
    pub request_id: String,
}

impl KeyTags {
    /// Tag key naming the keyring a key belongs to.
    pub const KEYRING: &'static str = "kms-jwt:keyring";
    /// Tag key marking keys kms-jwt created (value `kms-jwt`).
    pub const MANAGED_BY: &'static str = "kms-jwt:managed-by";
    /// Tag key naming the rotate run that created the key.
    pub const REQUEST: &'static str = "kms-jwt:request";

    /// The three tags as (key, value) pairs, in the order `CreateKey` sends them.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (Self::MANAGED_BY, "kms-jwt".to_owned()),
            (Self::KEYRING, self.keyring.clone()),
            (Self::REQUEST, self.request_id.clone()),
        ]
    }
}

/// A page of a key search, and where the next page starts (`None`: this was the last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// ARNs of the matching keys on this page.
    pub arns: Vec<String>,
    /// Opaque cursor of the next page, if any.
    pub next: Option<String>,
}

/// Signs with a KMS key. The only KMS capability the sign function holds.
#[async_trait]
pub trait KeySigner: Send + Sync {
    /// Sign `input` (a digest, a raw message or an ML-DSA μ, each sent with its `MessageType`).
    /// Returns KMS's raw signature: DER for ECDSA, the plain octet string otherwise.
    async fn sign(&self, key_arn: &str, alg: SigningAlg, input: &SigningInput) -> Result<Vec<u8>, KmsError>;
}

/// Creates, reads and retires KMS keys. Held by the rotate function only.
#[async_trait]
pub trait KeyAdmin: Send + Sync {
    /// Create an asymmetric `SIGN_VERIFY` key for `alg`; returns its ARN.
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError>;
    /// DER `SubjectPublicKeyInfo` of the key.
    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError>;
    /// Disable the key so that it can no longer sign (already disabled or deleted: `Ok`).
    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError>;
    /// Schedule the key's deletion after `pending_window_days` (7 to 30; already scheduled or
    /// deleted: `Ok`).
    async fn schedule_deletion(&self, key_arn: &str, pending_window_days: i32) -> Result<(), KmsError>;
    /// One page of the ARNs of the keys of `keyring` that the rotate run `request_id` created,
    /// starting at `cursor` (`None`: the first page). Called only to clean up after a run that
    /// may have left keys behind, never routinely.
    async fn find_keys_by_request(
        &self,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError>;
}

/// Replicates multi-Region keys and checks their replicas: the multi-region part of key
/// administration, held by the rotate function only. Called on the KMS of the region the
/// primary key is in (`ReplicateKey` runs there) and on each replica region's KMS.
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

/// All that rotate does to keys in one region: [`KeyAdmin`] and [`ReplicaAdmin`].
pub trait RotateKms: KeyAdmin + ReplicaAdmin {}
impl<T: KeyAdmin + ReplicaAdmin + ?Sized> RotateKms for T {}

/// Failure of a keyring store operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Somebody else changed the keyring since we read it: re-read and plan again.
    #[error("the keyring changed since it was read")]
    Conflict,
    /// The store could not be read or written; the text says why, the source (if any) is the
    /// SDK's error.
    #[error("keyring store unavailable: {0}")]
    Unavailable(String, #[source] Option<ErrorSource>),
}

/// Equal when they say the same thing; the kept source is left out, as for [`KmsError`].
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StoreError::Conflict, StoreError::Conflict) => true,
            (StoreError::Unavailable(a, _), StoreError::Unavailable(b, _)) => a == b,
            _ => false,
        }
    }
}

impl Eq for StoreError {}

impl StoreError {
    /// [`StoreError::Unavailable`] with no underlying error to keep.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable(message.into(), None)
    }
}

/// A stored document (the keyring, the minting policy) and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    /// The version read: a secret's version id (to compare-and-swap against), a parameter's
    /// version number.
    pub version_id: String,
    /// The JSON document.
    pub text: String,
}

/// The keyring secret: read the current version, or replace it only if it is still the
/// version we read (compare-and-swap). There is no unconditional write.
#[async_trait]
pub trait KeyringStore: Send + Sync {
    /// The current document, or `None` when the secret or its current value does not exist.
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError>;

    /// Make `text` the current document if the current version is still `expected`
    /// (`None`: there is no current version yet). Returns the new version id. Retrying the
    /// same call after a crash or timeout is safe: it is idempotent.
    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError>;
}

/// A versioned document read whole: the keyring secret, or the minting policy's parameter.
/// What [`crate::cache::DocumentCache`] reads.
#[async_trait]
pub trait DocumentSource: Send + Sync {
    /// The current version, or `None` when the document does not exist.
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError>;
}

/// Every keyring store is a document source (its reads are the cache's reads).
#[async_trait]
impl<T: KeyringStore + ?Sized> DocumentSource for T {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        KeyringStore::load(self).await
    }
}

/// A source chosen at run time (the policy's store is the SSM adapter in Lambda, a twin in
/// tests).
#[async_trait]
impl DocumentSource for Box<dyn DocumentSource> {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        (**self).load().await
    }
}

// Shared handles: one twin (or adapter) can serve several services, like two Lambda
// functions sharing one AWS account.
#[async_trait]
impl<T: KeySigner + ?Sized> KeySigner for std::sync::Arc<T> {
    async fn sign(&self, key_arn: &str, alg: SigningAlg, input: &SigningInput) -> Result<Vec<u8>, KmsError> {
        (**self).sign(key_arn, alg, input).await
    }
}

#[async_trait]
impl<T: KeyAdmin + ?Sized> KeyAdmin for std::sync::Arc<T> {
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        (**self).create_key(alg, tags).await
    }
    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        (**self).public_key_der(key_arn).await
    }
    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError> {
        (**self).disable_key(key_arn).await
    }
    async fn schedule_deletion(&self, key_arn: &str, pending_window_days: i32) -> Result<(), KmsError> {
        (**self).schedule_deletion(key_arn, pending_window_days).await
    }
    async fn find_keys_by_request(
        &self,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        (**self).find_keys_by_request(keyring, request_id, cursor).await
    }
}

#[async_trait]
impl<T: ReplicaAdmin + ?Sized> ReplicaAdmin for std::sync::Arc<T> {
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

#[async_trait]
impl<T: KeyringStore + ?Sized> KeyringStore for std::sync::Arc<T> {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        (**self).load().await
    }
    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        (**self).compare_and_swap(expected, text).await
    }
}

/// Failure of a notification port ([`EdgeCache`], [`LifecycleEvents`]). Never fatal to a run:
/// the caller reports it and carries on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotifyError {
    /// No answer within the configured time. The call may or may not have taken effect.
    #[error("{operation} did not answer in time")]
    Timeout {
        /// The AWS operation, e.g. `CreateInvalidation`.
        operation: &'static str,
    },
    /// Refused, or no usable answer (the text says which); the source is the SDK's error.
    #[error("{operation} failed: {message}")]
    Failed {
        /// The AWS operation, e.g. `PutEvents`.
        operation: &'static str,
        /// What the SDK said, for logs (may name AWS resources).
        message: String,
        /// The SDK's error, when there was one.
        #[source]
        source: Option<ErrorSource>,
    },
}

impl PartialEq for NotifyError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (NotifyError::Timeout { operation: a }, NotifyError::Timeout { operation: b }) => a == b,
            (
                NotifyError::Failed { operation: a, message: m, .. },
                NotifyError::Failed { operation: b, message: n, .. },
            ) => a == b && m == n,
            _ => false,
        }
    }
}

impl Eq for NotifyError {}

impl NotifyError {
    /// [`NotifyError::Failed`] with no underlying error to keep.
    pub fn failed(operation: &'static str, message: impl Into<String>) -> Self {
        NotifyError::Failed { operation, message: message.into(), source: None }
    }
}

/// The CDN in front of the jwks function (CloudFront): rotate invalidates the JWKS and
/// discovery paths after a revocation, so edges stop serving the withdrawn key before their
/// TTL runs out. Held by the rotate function only.
#[async_trait]
pub trait EdgeCache: Send + Sync {
    /// Whether there is a CDN at all. `false` only for [`NoEdgeCache`]: then no invalidation
    /// is ever owed.
    fn enabled(&self) -> bool {
        true
    }
    /// Invalidate `paths`. `reference` names this invalidation: sending the same reference and
    /// paths again (a retry) is the same invalidation, never a second one. Returns the CDN's
    /// id of the invalidation.
    async fn invalidate(&self, reference: &str, paths: &[String]) -> Result<String, NotifyError>;
}

/// No CDN (`JWKS_DISTRIBUTION_ID` unset): nothing to invalidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEdgeCache;

#[async_trait]
impl EdgeCache for NoEdgeCache {
    fn enabled(&self) -> bool {
        false
    }
    async fn invalidate(&self, _reference: &str, _paths: &[String]) -> Result<String, NotifyError> {
        Ok(String::new())
    }
}

/// An event entry the bus did not accept, by its index in the batch sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEvent {
    /// Index of the entry in the batch.
    pub index: usize,
    /// The bus's error code (e.g. `ThrottlingException`, `InternalFailure`).
    pub code: String,
}

/// Where rotate publishes key lifecycle events (an EventBridge bus; see
/// [`crate::events`]). Held by the rotate function only.
#[async_trait]
pub trait LifecycleEvents: Send + Sync {
    /// Publish up to [`crate::events::MAX_EVENTS_PER_CALL`] events in one call. `Ok` lists the
    /// entries the bus rejected (a partial failure); the others were accepted.
    async fn publish(
        &self,
        batch: &[crate::events::LifecycleEvent],
    ) -> Result<Vec<RejectedEvent>, NotifyError>;
}

/// No event bus (`LIFECYCLE_EVENT_BUS` unset): every event is dropped, as accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLifecycleEvents;

#[async_trait]
impl LifecycleEvents for NoLifecycleEvents {
    async fn publish(
        &self,
        _batch: &[crate::events::LifecycleEvent],
    ) -> Result<Vec<RejectedEvent>, NotifyError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl<T: EdgeCache + ?Sized> EdgeCache for std::sync::Arc<T> {
    fn enabled(&self) -> bool {
        (**self).enabled()
    }
    async fn invalidate(&self, reference: &str, paths: &[String]) -> Result<String, NotifyError> {
        (**self).invalidate(reference, paths).await
    }
}

#[async_trait]
impl<T: LifecycleEvents + ?Sized> LifecycleEvents for std::sync::Arc<T> {
    async fn publish(
        &self,
        batch: &[crate::events::LifecycleEvent],
    ) -> Result<Vec<RejectedEvent>, NotifyError> {
        (**self).publish(batch).await
    }
}
