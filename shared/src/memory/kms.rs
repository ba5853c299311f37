//! The KMS twin: its keys (each with its key policy), its state and its switches.

use super::*;

pub(super) enum PrivateKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Rsa(Arc<RsaPrivateKey>),
    /// ES256K, Ed25519 and ML-DSA keys (`crate::memory_keys`).
    Extra(ExtraKey),
}

/// RSA keys generated in this process, by modulus size: the twin's one slow operation (seconds
/// for RSA-4096 even optimized), so each size's keys are made once and shared.
/// One [`MemoryKms`] never hands out the same key twice; two twins in one process may hold the
/// same RSA key material (under different ARNs).
pub(super) static RSA_KEYS: OnceLock<Mutex<HashMap<usize, Vec<Arc<RsaPrivateKey>>>>> = OnceLock::new();

/// The `index`th shared RSA key of `bits` bits, generated if no twin has needed it yet.
pub(super) fn shared_rsa_key(bits: usize, index: usize) -> Result<Arc<RsaPrivateKey>, rsa::Error> {
    // Generated under the lock: twins racing for the same key wait instead of both paying.
    let mut pool = lock(RSA_KEYS.get_or_init(Mutex::default));
    let keys = pool.entry(bits).or_default();
    while keys.len() <= index {
        keys.push(Arc::new(RsaPrivateKey::new(&mut OsRng, bits)?));
    }
    Ok(Arc::clone(&keys[index]))
}

/// Lifecycle of a fake KMS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeKeyState {
    /// Usable.
    Enabled,
    /// Disabled: `Sign` refuses it.
    Disabled,
    /// Scheduled for deletion.
    PendingDeletion {
        /// The pending window asked for, in days.
        window_days: i32,
    },
}

pub(super) struct FakeKey {
    /// KMS `KeySpec`, e.g. `ECC_NIST_P256` or `RSA_3072`.
    pub(super) key_spec: &'static str,
    /// Shared by a multi-Region key's primary and replicas: one key material.
    pub(super) private: Arc<PrivateKey>,
    pub(super) state: FakeKeyState,
    pub(super) tags: Vec<(String, String)>,
    pub(super) created: tokio::time::Instant,
    /// The key policy, as KMS stores it: per key, never synchronized between replicas.
    pub(super) policy: serde_json::Value,
}

/// KMS twin, for every algorithm kms-jwt supports: ECC_NIST_P256/P384/P521, ECC_SECG_P256K1,
/// RSA_2048/3072/4096, ECC_NIST_EDWARDS25519 and ML_DSA_44/65/87 keys. ECDSA and RSASSA
/// (PKCS #1 v1.5, and PSS with a salt as long as the hash, as KMS does) sign a digest
/// (`MessageType=DIGEST`); Ed25519 a RAW message; ML-DSA a RAW message or an external μ. The
/// AWS path is tested for the classic algorithms and ES256K against LocalStack, which has no
/// Ed25519 or ML-DSA keys.
///
/// Like KMS, it refuses a signing algorithm the key spec does not support
/// (`InvalidKeyUsageException`) and a digest whose length is not the algorithm's hash length
/// (`ValidationException`); both surface as [`KmsError::Other`], as the AWS adapter reports
/// them. It may deny access to a key for a while after creating it (eventual consistency,
/// see [`MemoryKms::deny_after_create`]); keys retired longer than their deletion window ago
/// can be made to vanish ([`MemoryKms::delete_pending`]).
///
/// Every call is authorized as KMS does it (`crate::authz`): against the key's own policy,
/// stored with the key, and the caller's IAM policies from the test stacks rendered from
/// `infra/template.yaml` ([`crate::test_stacks`]). The port implementations call as the role
/// that holds the port in the deployment: [`KeySigner`] as the sign role of the key's region,
/// [`KeyAdmin`] and [`ReplicaAdmin`] as the home region's rotate role, creating keys with the
/// key policy that role's configuration writes, as the AWS adapter does. Any other principal
/// calls through [`MemoryKms::as_principal`].
#[derive(Default)]
pub struct MemoryKms {
    pub(super) keys: Mutex<HashMap<String, FakeKey>>,
    pub(super) counter: Mutex<u64>,
    pub(super) calls: Mutex<HashMap<&'static str, u64>>,
    /// Keys that are not ours (other teams' keys in the same account), for listings.
    pub(super) foreign_keys: Mutex<u64>,
    pub(super) deny_after_create: Mutex<Option<std::time::Duration>>,
    pub(super) page_size: Mutex<Option<usize>>,
    /// Shared RSA keys this twin has taken, by size (see [`shared_rsa_key`]).
    pub(super) rsa_keys_taken: Mutex<HashMap<usize, usize>>,
    /// Length of the message of every `Sign` call, in order.
    pub(super) sign_message_sizes: Mutex<Vec<usize>>,
    /// Create multi-Region keys (`mrk-` ids).
    pub(super) multi_region: Mutex<bool>,
    /// The region `CreateKey` and key searches run in (default `us-east-1`).
    pub(super) home_region: Mutex<Option<String>>,
    /// Regions whose KMS cannot be reached.
    pub(super) down_regions: Mutex<HashSet<String>>,
    /// Every call is authorized as AWS would against the test stacks (see [`MemoryKms`]).
    pub(super) authorization: Mutex<Authorization>,
}

impl MemoryKms {
    /// An empty fake KMS.
    pub fn new() -> Self {
        Self::default()
    }

    /// Create multi-Region keys from now on (`MultiRegion=true`: `mrk-` key ids), which
    /// [`ReplicaAdmin::replicate_key`] copies to other regions with the same key material.
    pub fn create_multi_region_keys(&self) {
        *lock(&self.multi_region) = true;
        let mut authorization = lock(&self.authorization);
        authorization.deployment = Deployment::multi_region();
        if let Some(spec) = authorization.key_spec.clone() {
            authorization.deployment = authorization.deployment.clone().with_key_spec(&spec);
        }
    }

    /// Update the stacks' `KeySpec` parameter for `alg` (changing the algorithm is a stack
    /// update: rotate's IAM lets it create keys of the deployed spec only).
    pub fn redeploy_for(&self, alg: SigningAlg) {
        let mut authorization = lock(&self.authorization);
        let spec = alg.kms_key_spec();
        authorization.deployment = authorization.deployment.clone().with_key_spec(spec);
        authorization.key_spec = Some(spec.to_owned());
    }

    /// Update the stacks (a stack update: new IAM policies, a new rotate configuration); the
    /// key spec deployed stays. Key policies stay as they are, as on AWS.
    pub fn redeploy(&self, deployment: Deployment) {
        let mut authorization = lock(&self.authorization);
        authorization.deployment = match authorization.key_spec.clone() {
            Some(spec) => deployment.with_key_spec(&spec),
            None => deployment,
        };
    }

    /// Attach an IAM policy to `principal`, a principal of the account outside the stacks.
    pub fn attach_identity_policy(&self, principal: &str, policy: serde_json::Value) {
        lock(&self.authorization).attached.push((principal.to_owned(), policy));
    }

    /// The deployment calls are authorized against.
    pub fn deployment(&self) -> Deployment {
        lock(&self.authorization).deployment.clone()
    }

    /// Every call refused so far: "caller action resource: decision".
    pub fn denials(&self) -> Vec<String> {
        lock(&self.authorization).denials.clone()
    }

    /// The key policy stored on the key.
    pub fn key_policy(&self, arn: &str) -> Option<serde_json::Value> {
        lock(&self.keys).get(arn).map(|k| k.policy.clone())
    }

    /// Calls as `principal` (a role ARN, or the account root): for tests of what a role may
    /// not do.
    pub fn as_principal(self: &Arc<Self>, principal: &str) -> KmsCaller {
        KmsCaller { kms: Arc::clone(self), principal: principal.to_owned() }
    }

    /// The home region's rotate role: the caller of [`KeyAdmin`] and [`ReplicaAdmin`].
    pub fn rotate_role(&self) -> String {
        let home = self.home_region();
        lock(&self.authorization).stack(&home).map(|s| s.rotate_role().to_owned()).unwrap_or_default()
    }

    /// The sign role of `key_arn`'s region: the caller of [`KeySigner`].
    pub fn sign_role_for(&self, key_arn: &str) -> String {
        let region = arn_region(key_arn).map_or_else(|| self.home_region(), str::to_owned);
        lock(&self.authorization).stack(&region).map(|s| s.sign_role().to_owned()).unwrap_or_default()
    }

    /// Authorize `request` on the key `key_arn` (its stored policy; a key that does not exist
    /// is left to the operation, which answers as KMS does) or, without a key, on IAM alone.
    pub(super) fn authorize(
        &self,
        operation: &'static str,
        request: Request,
        key_arn: Option<&str>,
    ) -> Result<(), KmsError> {
        let policy = match key_arn {
            Some(arn) => match lock(&self.keys).get(arn) {
                Some(key) => Some(key.policy.clone()),
                None => return Ok(()),
            },
            None => None,
        };
        decide(&self.authorization, &request, policy.as_ref())
            .map_err(|_| KmsError::AccessDenied { operation })
    }

    /// The key policy and lockout bypass a rotate role's `CreateKey`/`ReplicateKey` sends, as
    /// the AWS adapter does with the role's configuration; any other caller sends none (KMS's
    /// default policy).
    pub(super) fn policy_sent_by(&self, caller: &str, alg: SigningAlg) -> (Option<serde_json::Value>, bool) {
        let authorization = lock(&self.authorization);
        let access = authorization
            .deployment
            .stacks
            .values()
            .find(|stack| stack.rotate_role() == caller)
            .and_then(test_stacks::Stack::key_access);
        match access {
            Some(access) => (Some(access.policy(alg)), true),
            None => (None, false),
        }
    }

    /// Run `CreateKey` and key searches in `region` from now on (a fail-over's new home).
    pub fn set_home_region(&self, region: &str) {
        *lock(&self.home_region) = Some(region.to_owned());
    }

    pub(super) fn home_region(&self) -> String {
        lock(&self.home_region).clone().unwrap_or_else(|| "us-east-1".to_owned())
    }

    /// Make KMS in `region` unreachable (every call fails in transit) or reachable again.
    pub fn set_region_down(&self, region: &str, down: bool) {
        let mut regions = lock(&self.down_regions);
        if down {
            regions.insert(region.to_owned());
        } else {
            regions.remove(region);
        }
    }

    pub(super) fn reachable(&self, region: &str, operation: &'static str) -> Result<(), KmsError> {
        if lock(&self.down_regions).contains(region) {
            Err(KmsError::transport(operation, format!("KMS in {region} is unreachable")))
        } else {
            Ok(())
        }
    }

    pub(super) fn reachable_arn(&self, arn: &str, operation: &'static str) -> Result<(), KmsError> {
        arn_region(arn).map_or(Ok(()), |region| self.reachable(region, operation))
    }

    /// The key's state in each region it exists in: `(arn, state)`, by ARN.
    pub fn replicas_of(&self, arn: &str) -> Vec<(String, FakeKeyState)> {
        let id = arn.rsplit(':').next().unwrap_or_default();
        let keys = lock(&self.keys);
        let mut found: Vec<(String, FakeKeyState)> =
            keys.iter().filter(|(a, _)| a.ends_with(id)).map(|(a, k)| (a.clone(), k.state)).collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// Deny `GetPublicKey`, `DisableKey` and `ScheduleKeyDeletion` on a key for `window` after
    /// its creation (measured on tokio's clock, so paused-time tests control it).
    pub fn deny_after_create(&self, window: std::time::Duration) {
        *lock(&self.deny_after_create) = Some(window);
    }

    /// Pretend the account also holds `count` keys of other owners.
    pub fn add_foreign_keys(&self, count: u64) {
        *lock(&self.foreign_keys) += count;
    }

    /// Answer key searches `size` keys of the account at a time (default: all in one page).
    pub fn set_page_size(&self, size: usize) {
        *lock(&self.page_size) = Some(size.max(1));
    }

    /// Delete every key pending deletion, as KMS does when the window has passed.
    pub fn delete_pending(&self) {
        lock(&self.keys).retain(|_, k| !matches!(k.state, FakeKeyState::PendingDeletion { .. }));
    }

    pub(super) fn denied(&self, key: &FakeKey, operation: &'static str) -> Result<(), KmsError> {
        match *lock(&self.deny_after_create) {
            Some(window) if key.created.elapsed() < window => Err(KmsError::AccessDenied { operation }),
            _ => Ok(()),
        }
    }

    pub(super) fn count(&self, op: &'static str) {
        *lock(&self.calls).entry(op).or_default() += 1;
    }

    /// Length of the message each `Sign` call was sent, in call order: what a caller really
    /// sends KMS (a digest, or a raw message KMS would cap at 4096 bytes).
    pub fn sign_message_sizes(&self) -> Vec<usize> {
        lock(&self.sign_message_sizes).clone()
    }

    /// How many times an operation (`"Sign"`, `"CreateKey"`, ...) was called.
    pub fn calls(&self, op: &str) -> u64 {
        lock(&self.calls).get(op).copied().unwrap_or(0)
    }

    /// The key's state, `None` if no such key was created.
    pub fn key_state(&self, arn: &str) -> Option<FakeKeyState> {
        lock(&self.keys).get(arn).map(|k| k.state)
    }

    /// The key's tags, as created.
    pub fn key_tags(&self, arn: &str) -> Vec<(String, String)> {
        lock(&self.keys).get(arn).map(|k| k.tags.clone()).unwrap_or_default()
    }

    /// ARNs of every key ever created, in no particular order.
    pub fn key_arns(&self) -> Vec<String> {
        lock(&self.keys).keys().cloned().collect()
    }
}
