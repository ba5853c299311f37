//! Fault injection around any port.

use super::*;

/// What an injected fault does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault: the call goes through.
    Pass,
    /// The call fails without reaching the service.
    FailBefore,
    /// The call takes effect, then its reply is lost: the caller sees an error. This is how a
    /// crash right after a step looks to the next run.
    FailAfter,
    /// The reply is lost beneath the SDK's retry layer, which sends the call again: it takes
    /// effect twice and the caller sees the second answer. (The KMS adapter turns retries off
    /// for `CreateKey`, the one call where this would leak; see `aws::KmsAdapter`.)
    Repeated,
    /// The call answers only after this long (tokio time), e.g. a slow or throttled service.
    Delay(std::time::Duration),
    /// The call never answers; only a caller's timeout ends it.
    Hang,
}

pub(super) type Decider = Box<dyn FnMut(&'static str) -> Fault + Send>;

/// Wraps any port (in-memory twin or AWS adapter) and injects faults at chosen calls.
pub struct Faulty<T> {
    pub(super) inner: T,
    pub(super) decide: Mutex<Decider>,
    pub(super) calls: Mutex<HashMap<&'static str, u64>>,
}

impl<T> Faulty<T> {
    /// `decide` is asked before every call, with the operation name.
    pub fn new(inner: T, decide: impl FnMut(&'static str) -> Fault + Send + 'static) -> Self {
        Faulty { inner, decide: Mutex::new(Box::new(decide)), calls: Mutex::new(HashMap::new()) }
    }

    /// Fail the `n`th call (1-based) counted across all operations, and no other.
    pub fn fail_nth(inner: T, n: u64, fault: Fault) -> Self {
        let mut seen = 0;
        Self::new(inner, move |_| {
            seen += 1;
            if seen == n {
                fault
            } else {
                Fault::Pass
            }
        })
    }

    /// The wrapped port.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Calls made through the wrapper so far, all operations together.
    pub fn calls(&self) -> u64 {
        lock(&self.calls).values().sum()
    }

    /// Calls of one operation (`"Sign"`, `"GetSecretValue"`, ...) so far.
    pub fn calls_of(&self, op: &str) -> u64 {
        lock(&self.calls).get(op).copied().unwrap_or(0)
    }

    pub(super) fn fault(&self, op: &'static str) -> Fault {
        *lock(&self.calls).entry(op).or_default() += 1;
        (lock(&self.decide))(op)
    }
}

/// The error a caller sees for an injected fault: a refusal before the call, or a lost reply
/// after it (whose outcome the caller cannot know).
pub(super) fn injected_kms(operation: &'static str, fault: Fault) -> KmsError {
    match fault {
        Fault::FailAfter => KmsError::transport(operation, "injected: reply lost"),
        _ => KmsError::other(operation, "injected fault"),
    }
}

pub(super) fn injected_store(_fault: Fault) -> StoreError {
    StoreError::unavailable("injected fault")
}

pub(super) fn injected_notify(operation: &'static str, fault: Fault) -> crate::ports::NotifyError {
    match fault {
        Fault::FailAfter => crate::ports::NotifyError::failed(operation, "injected: reply lost"),
        _ => crate::ports::NotifyError::failed(operation, "injected fault"),
    }
}

/// Run `call` under the fault chosen for `op`.
macro_rules! faulty {
    ($self:ident, $op:literal, $err:expr, $call:expr) => {
        match $self.fault($op) {
            Fault::Pass => $call.await,
            fault @ Fault::FailBefore => Err($err(fault)),
            fault @ Fault::FailAfter => {
                let _ = $call.await;
                Err($err(fault))
            }
            Fault::Repeated => {
                let _ = $call.await;
                $call.await
            }
            Fault::Delay(by) => {
                tokio::time::sleep(by).await;
                $call.await
            }
            Fault::Hang => std::future::pending().await,
        }
    };
}

#[async_trait]
impl<T: KeySigner> KeySigner for Faulty<T> {
    async fn sign(&self, key_arn: &str, alg: SigningAlg, input: &SigningInput) -> Result<Vec<u8>, KmsError> {
        faulty!(self, "Sign", |fault| injected_kms("Sign", fault), self.inner.sign(key_arn, alg, input))
    }
}

#[async_trait]
impl<T: KeyAdmin> KeyAdmin for Faulty<T> {
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        faulty!(self, "CreateKey", |fault| injected_kms("CreateKey", fault), self.inner.create_key(alg, tags))
    }
    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        faulty!(
            self,
            "GetPublicKey",
            |fault| injected_kms("GetPublicKey", fault),
            self.inner.public_key_der(key_arn)
        )
    }
    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError> {
        faulty!(
            self,
            "DisableKey",
            |fault| injected_kms("DisableKey", fault),
            self.inner.disable_key(key_arn)
        )
    }
    async fn schedule_deletion(&self, key_arn: &str, days: i32) -> Result<(), KmsError> {
        faulty!(
            self,
            "ScheduleKeyDeletion",
            |fault| injected_kms("ScheduleKeyDeletion", fault),
            self.inner.schedule_deletion(key_arn, days)
        )
    }
    async fn find_keys_by_request(
        &self,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        faulty!(
            self,
            "FindKeys",
            |fault| injected_kms("FindKeys", fault),
            self.inner.find_keys_by_request(keyring, request_id, cursor)
        )
    }
}

#[async_trait]
impl<T: ReplicaAdmin> ReplicaAdmin for Faulty<T> {
    async fn replicate_key(
        &self,
        key_arn: &str,
        region: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<(), KmsError> {
        faulty!(
            self,
            "ReplicateKey",
            |fault| injected_kms("ReplicateKey", fault),
            self.inner.replicate_key(key_arn, region, alg, tags)
        )
    }
    async fn key_enabled(&self, key_arn: &str) -> Result<bool, KmsError> {
        faulty!(
            self,
            "DescribeKey",
            |fault| injected_kms("DescribeKey", fault),
            self.inner.key_enabled(key_arn)
        )
    }
}

#[async_trait]
impl<T: KeyringStore> KeyringStore for Faulty<T> {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        faulty!(self, "GetSecretValue", injected_store, self.inner.load())
    }
    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        faulty!(self, "CompareAndSwap", injected_store, self.inner.compare_and_swap(expected, text))
    }
}

#[async_trait]
impl<T: crate::ports::EdgeCache> crate::ports::EdgeCache for Faulty<T> {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }
    async fn invalidate(
        &self,
        reference: &str,
        paths: &[String],
    ) -> Result<String, crate::ports::NotifyError> {
        faulty!(
            self,
            "CreateInvalidation",
            |fault| injected_notify("CreateInvalidation", fault),
            self.inner.invalidate(reference, paths)
        )
    }
}

#[async_trait]
impl<T: crate::ports::LifecycleEvents> crate::ports::LifecycleEvents for Faulty<T> {
    async fn publish(
        &self,
        batch: &[crate::events::LifecycleEvent],
    ) -> Result<Vec<crate::ports::RejectedEvent>, crate::ports::NotifyError> {
        faulty!(self, "PutEvents", |fault| injected_notify("PutEvents", fault), self.inner.publish(batch))
    }
}
