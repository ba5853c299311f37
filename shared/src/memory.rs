//! In-memory twins of the AWS ports, for fast tests and long simulations.
//!
//! They follow the AWS semantics that matter to kms-jwt: KMS keys sign real ECDSA signatures
//! (DER, as KMS returns them), disabled or deleted keys refuse to sign, and the store's
//! compare-and-swap fails when the current version moved.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::rand_core::OsRng;
use p256::pkcs8::EncodePublicKey;

use crate::alg::SigningAlg;
use crate::ports::{KeyAdmin, KeySigner, KeyTags, KeyringStore, KmsError, StoreError, StoredDocument};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide the original failure.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum PrivateKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

/// Lifecycle of a fake KMS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeKeyState {
    Enabled,
    Disabled,
    PendingDeletion { window_days: i32 },
}

struct FakeKey {
    alg: SigningAlg,
    private: PrivateKey,
    state: FakeKeyState,
    tags: Vec<(String, String)>,
}

/// KMS twin. Supports ES256 and ES384 (enough for lifecycle tests; the AWS path is tested for
/// all nine algorithms against LocalStack).
#[derive(Default)]
pub struct MemoryKms {
    keys: Mutex<HashMap<String, FakeKey>>,
    counter: Mutex<u64>,
    calls: Mutex<HashMap<&'static str, u64>>,
}

impl MemoryKms {
    pub fn new() -> Self {
        Self::default()
    }

    fn count(&self, op: &'static str) {
        *lock(&self.calls).entry(op).or_default() += 1;
    }

    /// How many times an operation (`"Sign"`, `"CreateKey"`, ...) was called.
    pub fn calls(&self, op: &str) -> u64 {
        lock(&self.calls).get(op).copied().unwrap_or(0)
    }

    pub fn key_state(&self, arn: &str) -> Option<FakeKeyState> {
        lock(&self.keys).get(arn).map(|k| k.state)
    }

    pub fn key_tags(&self, arn: &str) -> Vec<(String, String)> {
        lock(&self.keys).get(arn).map(|k| k.tags.clone()).unwrap_or_default()
    }

    /// ARNs of every key ever created, in no particular order.
    pub fn key_arns(&self) -> Vec<String> {
        lock(&self.keys).keys().cloned().collect()
    }
}

#[async_trait]
impl KeySigner for MemoryKms {
    async fn sign_digest(&self, key_arn: &str, alg: SigningAlg, digest: &[u8]) -> Result<Vec<u8>, KmsError> {
        self.count("Sign");
        let keys = lock(&self.keys);
        let key = keys.get(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        if key.state != FakeKeyState::Enabled {
            return Err(KmsError::InvalidState(key_arn.to_owned()));
        }
        let invalid = |message: String| KmsError::Other { operation: "Sign", message };
        if key.alg != alg {
            return Err(invalid(format!("key is {} but {alg} was requested", key.alg)));
        }
        match &key.private {
            PrivateKey::P256(k) => {
                let sig: p256::ecdsa::Signature =
                    k.sign_prehash(digest).map_err(|e| invalid(e.to_string()))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            PrivateKey::P384(k) => {
                let sig: p384::ecdsa::Signature =
                    k.sign_prehash(digest).map_err(|e| invalid(e.to_string()))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }
}

#[async_trait]
impl KeyAdmin for MemoryKms {
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        self.count("CreateKey");
        let private = match alg {
            SigningAlg::ES256 => PrivateKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            SigningAlg::ES384 => PrivateKey::P384(p384::ecdsa::SigningKey::random(&mut OsRng)),
            other => {
                return Err(KmsError::Other {
                    operation: "CreateKey",
                    message: format!("the in-memory KMS does not implement {other}"),
                })
            }
        };
        let arn = {
            let mut counter = lock(&self.counter);
            *counter += 1;
            format!("arn:aws:kms:us-east-1:000000000000:key/memory-{:08}", *counter)
        };
        let tags = tags.pairs().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        lock(&self.keys).insert(arn.clone(), FakeKey { alg, private, state: FakeKeyState::Enabled, tags });
        Ok(arn)
    }

    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        self.count("GetPublicKey");
        let keys = lock(&self.keys);
        let key = keys.get(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        let der = match &key.private {
            PrivateKey::P256(k) => k.verifying_key().to_public_key_der(),
            PrivateKey::P384(k) => k.verifying_key().to_public_key_der(),
        };
        der.map(|d| d.as_bytes().to_vec())
            .map_err(|e| KmsError::Other { operation: "GetPublicKey", message: e.to_string() })
    }

    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError> {
        self.count("DisableKey");
        let mut keys = lock(&self.keys);
        let key = keys.get_mut(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        if key.state == FakeKeyState::Enabled {
            key.state = FakeKeyState::Disabled;
        }
        Ok(())
    }

    async fn find_keys_by_request(&self, keyring: &str, request_id: &str) -> Result<Vec<String>, KmsError> {
        self.count("FindKeysByRequest");
        let has = |tags: &[(String, String)], key: &str, value: &str| {
            tags.iter().any(|(k, v)| k == key && v == value)
        };
        Ok(lock(&self.keys)
            .iter()
            .filter(|(_, key)| {
                has(&key.tags, KeyTags::KEYRING, keyring) && has(&key.tags, KeyTags::REQUEST, request_id)
            })
            .map(|(arn, _)| arn.clone())
            .collect())
    }

    async fn schedule_deletion(&self, key_arn: &str, window_days: i32) -> Result<(), KmsError> {
        self.count("ScheduleKeyDeletion");
        let mut keys = lock(&self.keys);
        let key = keys.get_mut(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        if !matches!(key.state, FakeKeyState::PendingDeletion { .. }) {
            key.state = FakeKeyState::PendingDeletion { window_days };
        }
        Ok(())
    }
}

#[derive(Default)]
struct StoreState {
    /// (version id, text), oldest first.
    versions: Vec<(String, String)>,
    current: Option<usize>,
    unavailable: bool,
}

/// Secrets Manager twin: versioned, with compare-and-swap promotion.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<StoreState>,
    reads: Mutex<u64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose current document is `text` (for corrupted-keyring tests).
    pub fn with_document(text: &str) -> Self {
        let store = Self::default();
        {
            let mut state = lock(&store.state);
            state.versions.push(("v-seed".to_owned(), text.to_owned()));
            state.current = Some(0);
        }
        store
    }

    /// Make every call fail as if Secrets Manager were down (or back up).
    pub fn set_unavailable(&self, unavailable: bool) {
        lock(&self.state).unavailable = unavailable;
    }

    /// Remove the current version, as if the secret's value were deleted by hand.
    pub fn set_current_to_nothing(&self) {
        lock(&self.state).current = None;
    }

    pub fn reads(&self) -> u64 {
        *lock(&self.reads)
    }

    pub fn version_count(&self) -> usize {
        lock(&self.state).versions.len()
    }

    pub fn current_text(&self) -> Option<String> {
        let state = lock(&self.state);
        state.current.map(|i| state.versions[i].1.clone())
    }
}

#[async_trait]
impl KeyringStore for MemoryStore {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        *lock(&self.reads) += 1;
        let state = lock(&self.state);
        if state.unavailable {
            return Err(StoreError::Unavailable("simulated outage".into()));
        }
        Ok(state.current.map(|i| StoredDocument {
            version_id: state.versions[i].0.clone(),
            text: state.versions[i].1.clone(),
        }))
    }

    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        let mut state = lock(&self.state);
        if state.unavailable {
            return Err(StoreError::Unavailable("simulated outage".into()));
        }
        let current_id = state.current.map(|i| state.versions[i].0.as_str());
        if current_id != expected {
            return Err(StoreError::Conflict);
        }
        let id = format!("v-{}", state.versions.len() + 1);
        state.versions.push((id.clone(), text.to_owned()));
        state.current = Some(state.versions.len() - 1);
        Ok(id)
    }
}

/// What an injected fault does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// The call fails without reaching the service.
    FailBefore,
    /// The call takes effect, then its reply is lost: the caller sees an error. This is how a
    /// crash right after a step looks to the next run.
    FailAfter,
}

type Decider = Box<dyn FnMut(&'static str) -> Fault + Send>;

/// Wraps any port (in-memory twin or AWS adapter) and injects faults at chosen calls.
pub struct Faulty<T> {
    inner: T,
    decide: Mutex<Decider>,
    calls: Mutex<HashMap<&'static str, u64>>,
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

    fn fault(&self, op: &'static str) -> Fault {
        *lock(&self.calls).entry(op).or_default() += 1;
        (lock(&self.decide))(op)
    }
}

fn injected_kms(operation: &'static str) -> KmsError {
    KmsError::Other { operation, message: "injected fault".into() }
}

fn injected_store() -> StoreError {
    StoreError::Unavailable("injected fault".into())
}

/// Run `call` under the fault chosen for `op`.
macro_rules! faulty {
    ($self:ident, $op:literal, $err:expr, $call:expr) => {
        match $self.fault($op) {
            Fault::Pass => $call.await,
            Fault::FailBefore => Err($err),
            Fault::FailAfter => {
                let _ = $call.await;
                Err($err)
            }
        }
    };
}

#[async_trait]
impl<T: KeySigner> KeySigner for Faulty<T> {
    async fn sign_digest(&self, key_arn: &str, alg: SigningAlg, digest: &[u8]) -> Result<Vec<u8>, KmsError> {
        faulty!(self, "Sign", injected_kms("Sign"), self.inner.sign_digest(key_arn, alg, digest))
    }
}

#[async_trait]
impl<T: KeyAdmin> KeyAdmin for Faulty<T> {
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        faulty!(self, "CreateKey", injected_kms("CreateKey"), self.inner.create_key(alg, tags))
    }
    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        faulty!(self, "GetPublicKey", injected_kms("GetPublicKey"), self.inner.public_key_der(key_arn))
    }
    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError> {
        faulty!(self, "DisableKey", injected_kms("DisableKey"), self.inner.disable_key(key_arn))
    }
    async fn schedule_deletion(&self, key_arn: &str, days: i32) -> Result<(), KmsError> {
        faulty!(
            self,
            "ScheduleKeyDeletion",
            injected_kms("ScheduleKeyDeletion"),
            self.inner.schedule_deletion(key_arn, days)
        )
    }
    async fn find_keys_by_request(&self, keyring: &str, request_id: &str) -> Result<Vec<String>, KmsError> {
        faulty!(
            self,
            "ListKeys",
            injected_kms("ListKeys"),
            self.inner.find_keys_by_request(keyring, request_id)
        )
    }
}

#[async_trait]
impl<T: KeyringStore> KeyringStore for Faulty<T> {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        faulty!(self, "GetSecretValue", injected_store(), self.inner.load())
    }
    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        faulty!(self, "CompareAndSwap", injected_store(), self.inner.compare_and_swap(expected, text))
    }
}
