//! In-memory twins of the AWS ports, for fast tests and long simulations.
//!
//! They follow the AWS semantics that matter to kms-jwt: KMS keys of every key spec kms-jwt
//! uses sign real signatures over the digest they are sent (ECDSA as DER, RSASSA as the plain
//! octet string, as KMS returns them), `GetPublicKey` answers DER `SubjectPublicKeyInfo`,
//! disabled or deleted keys refuse to sign, and the store's compare-and-swap fails when the
//! current version moved.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use async_trait::async_trait;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::rand_core::OsRng;
use p256::pkcs8::EncodePublicKey;
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey};
use sha2::{Sha256, Sha384, Sha512};

use crate::alg::{Curve, KeyFamily, SigningAlg};
use crate::authz::{self, Decision, Request};
use crate::memory_keys::{check_sign_request, ExtraKey};
use crate::ports::{
    KeyAdmin, KeyPage, KeySigner, KeyTags, KeyringStore, KmsError, SigningInput, StoreError, StoredDocument,
};
use crate::regions::{arn_region, regional_arn, ReplicaAdmin};
use crate::test_stacks::{self, Deployment};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide the original failure.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum PrivateKey {
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
static RSA_KEYS: OnceLock<Mutex<HashMap<usize, Vec<Arc<RsaPrivateKey>>>>> = OnceLock::new();

/// The `index`th shared RSA key of `bits` bits, generated if no twin has needed it yet.
fn shared_rsa_key(bits: usize, index: usize) -> Result<Arc<RsaPrivateKey>, rsa::Error> {
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

struct FakeKey {
    /// KMS `KeySpec`, e.g. `ECC_NIST_P256` or `RSA_3072`.
    key_spec: &'static str,
    /// Shared by a multi-Region key's primary and replicas: one key material.
    private: Arc<PrivateKey>,
    state: FakeKeyState,
    tags: Vec<(String, String)>,
    created: tokio::time::Instant,
    /// The key policy, as KMS stores it: per key, never synchronized between replicas.
    policy: serde_json::Value,
}

/// KMS's default key policy (`CreateKey` without `Policy`): the account, through IAM.
fn default_key_policy() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": { "AWS": test_stacks::account_root() },
            "Action": "kms:*",
            "Resource": "*",
        }],
    })
}

/// What the twins authorize calls against: a deployment of the template (its roles' IAM
/// policies), the key spec its stacks were deployed with, and what was refused.
struct Authorization {
    deployment: Deployment,
    /// The template's `KeySpec` parameter as deployed: set by the first `CreateKey` (the test
    /// deployed the stack for the algorithm it rotates with), changed by
    /// [`MemoryKms::redeploy_for`] as a stack update would.
    key_spec: Option<String>,
    /// Every refusal: "caller action resource: decision".
    denials: Vec<String>,
    /// IAM policies of principals outside the stacks (an administrator, a PowerUser).
    attached: Vec<(String, serde_json::Value)>,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization {
            deployment: Deployment::single_region(),
            key_spec: None,
            denials: Vec::new(),
            attached: Vec::new(),
        }
    }
}

impl Authorization {
    /// The deployment's stack in `region`, else the home's.
    fn stack(&self, region: &str) -> Option<&test_stacks::Stack> {
        self.deployment.stack(region).or_else(|| self.deployment.stack(&self.deployment.home))
    }

    fn identity_policies(&self, principal: &str) -> Vec<serde_json::Value> {
        if principal == test_stacks::account_root() {
            // The root user: every permission, which no IAM policy can narrow.
            return vec![serde_json::json!({"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})];
        }
        let mut policies = self.deployment.identity_policies(principal);
        policies.extend(self.attached.iter().filter(|(p, _)| p == principal).map(|(_, doc)| doc.clone()));
        policies
    }
}

/// Authorize `request` (on a key with `key_policy`, or IAM alone) against `authorization`.
/// A refusal is `Err` with the decision's text; a policy the evaluator does not understand
/// fails the test: it must never allow, nor pass for a refusal.
fn decide(
    authorization: &Mutex<Authorization>,
    request: &Request,
    key_policy: Option<&serde_json::Value>,
) -> Result<(), String> {
    let mut authorization = lock(authorization);
    let identity = authorization.identity_policies(&request.principal);
    let decision = if request.action.starts_with("kms:") {
        authz::authorize_kms(request, key_policy, &identity)
    } else {
        authz::authorize_identity(request, &identity)
    };
    match decision {
        Ok(Decision::Allow) => Ok(()),
        Ok(refused) => {
            let line = format!("{} {} {}: {refused}", request.principal, request.action, request.resource);
            authorization.denials.push(line.clone());
            Err(line)
        }
        // A test twin: an unknown operator or condition key stops the test here.
        #[allow(clippy::panic)]
        Err(e) => panic!("authorization of {} {} cannot be evaluated: {e}", request.action, request.resource),
    }
}

/// The request-context keys of tags sent with a request.
fn with_request_tags(mut request: Request, tags: &[(String, String)]) -> Request {
    for (key, value) in tags {
        request = request.with(format!("aws:RequestTag/{key}"), value.as_str());
    }
    request.with("aws:TagKeys", tags.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())
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
    keys: Mutex<HashMap<String, FakeKey>>,
    counter: Mutex<u64>,
    calls: Mutex<HashMap<&'static str, u64>>,
    /// Keys that are not ours (other teams' keys in the same account), for listings.
    foreign_keys: Mutex<u64>,
    deny_after_create: Mutex<Option<std::time::Duration>>,
    page_size: Mutex<Option<usize>>,
    /// Shared RSA keys this twin has taken, by size (see [`shared_rsa_key`]).
    rsa_keys_taken: Mutex<HashMap<usize, usize>>,
    /// Length of the message of every `Sign` call, in order.
    sign_message_sizes: Mutex<Vec<usize>>,
    /// Create multi-Region keys (`mrk-` ids).
    multi_region: Mutex<bool>,
    /// The region `CreateKey` and key searches run in (default `us-east-1`).
    home_region: Mutex<Option<String>>,
    /// Regions whose KMS cannot be reached.
    down_regions: Mutex<HashSet<String>>,
    /// Every call is authorized as AWS would against the test stacks (see [`MemoryKms`]).
    authorization: Mutex<Authorization>,
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
    fn authorize(
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
    fn policy_sent_by(&self, caller: &str, alg: SigningAlg) -> (Option<serde_json::Value>, bool) {
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

    fn home_region(&self) -> String {
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

    fn reachable(&self, region: &str, operation: &'static str) -> Result<(), KmsError> {
        if lock(&self.down_regions).contains(region) {
            Err(KmsError::transport(operation, format!("KMS in {region} is unreachable")))
        } else {
            Ok(())
        }
    }

    fn reachable_arn(&self, arn: &str, operation: &'static str) -> Result<(), KmsError> {
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

    fn denied(&self, key: &FakeKey, operation: &'static str) -> Result<(), KmsError> {
        match *lock(&self.deny_after_create) {
            Some(window) if key.created.elapsed() < window => Err(KmsError::AccessDenied { operation }),
            _ => Ok(()),
        }
    }

    fn count(&self, op: &'static str) {
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

#[async_trait]
impl KeySigner for MemoryKms {
    async fn sign(&self, key_arn: &str, alg: SigningAlg, input: &SigningInput) -> Result<Vec<u8>, KmsError> {
        self.sign_as(&self.sign_role_for(key_arn), key_arn, alg, input)
    }
}

impl MemoryKms {
    /// `Sign` as `caller`.
    pub fn sign_as(
        &self,
        caller: &str,
        key_arn: &str,
        alg: SigningAlg,
        input: &SigningInput,
    ) -> Result<Vec<u8>, KmsError> {
        self.count("Sign");
        self.reachable_arn(key_arn, "Sign")?;
        let request = Request::new(caller, "kms:Sign", key_arn)
            .with("kms:SigningAlgorithm", alg.kms_signing_algorithm());
        self.authorize("Sign", request, Some(key_arn))?;
        self.count(match input {
            SigningInput::Digest(_) => "Sign/DIGEST",
            SigningInput::Raw(_) => "Sign/RAW",
            SigningInput::ExternalMu(_) => "Sign/EXTERNAL_MU",
        });
        lock(&self.sign_message_sizes).push(input.message().len());
        let keys = lock(&self.keys);
        let key = keys.get(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        if key.state != FakeKeyState::Enabled {
            return Err(KmsError::InvalidState(key_arn.to_owned()));
        }
        let refused = |message: String| KmsError::other("Sign", message);
        check_sign_request(key.key_spec, alg, input).map_err(refused)?;
        let kms_alg = alg.kms_signing_algorithm();
        let failed = |e: &dyn std::fmt::Display| refused(format!("{kms_alg}: {e}"));
        let digest = match (key.private.as_ref(), input) {
            (PrivateKey::Extra(k), input) => return k.sign(input).map_err(refused),
            (_, SigningInput::Digest(digest)) => digest.clone(),
            // ECDSA and RSASSA with RAW: KMS hashes the message itself.
            (_, input) => alg.hash().map(|h| h.digest(input.message())).unwrap_or_default(),
        };
        let digest = digest.as_slice();
        // `check_sign_request` saw the digest is exactly the hash's length: PSS salts are that long.
        let hash_len = digest.len();
        match key.private.as_ref() {
            PrivateKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign_prehash(digest).map_err(|e| failed(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            PrivateKey::P384(k) => {
                let sig: p384::ecdsa::Signature = k.sign_prehash(digest).map_err(|e| failed(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            PrivateKey::P521(k) => {
                let sig: p521::ecdsa::Signature = k.sign_prehash(digest).map_err(|e| failed(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            PrivateKey::Rsa(k) => {
                use SigningAlg::*;
                let signed = match alg {
                    RS256 => k.sign(Pkcs1v15Sign::new::<Sha256>(), digest),
                    RS384 => k.sign(Pkcs1v15Sign::new::<Sha384>(), digest),
                    RS512 => k.sign(Pkcs1v15Sign::new::<Sha512>(), digest),
                    PS256 => k.sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha256>(hash_len), digest),
                    PS384 => k.sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha384>(hash_len), digest),
                    PS512 => k.sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha512>(hash_len), digest),
                    _ => return Err(failed(&"not an RSA algorithm")),
                };
                signed.map_err(|e| failed(&e))
            }
            PrivateKey::Extra(_) => Err(failed(&"extra keys sign above")),
        }
    }
}

#[async_trait]
impl KeyAdmin for MemoryKms {
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        self.create_key_as(&self.rotate_role(), alg, tags)
    }
    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        self.public_key_der_as(&self.rotate_role(), key_arn)
    }
    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError> {
        self.disable_key_as(&self.rotate_role(), key_arn)
    }
    async fn schedule_deletion(&self, key_arn: &str, window_days: i32) -> Result<(), KmsError> {
        self.schedule_deletion_as(&self.rotate_role(), key_arn, window_days)
    }
    async fn find_keys_by_request(
        &self,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        self.find_keys_as(&self.rotate_role(), keyring, request_id, cursor)
    }
}

impl MemoryKms {
    /// `CreateKey` as `caller`, with the key policy and lockout bypass it sends (a rotate
    /// role: its configured policy, bypassing; anyone else: KMS's default policy).
    pub fn create_key_as(&self, caller: &str, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        let (policy, bypass) = self.policy_sent_by(caller, alg);
        self.create_key_with(caller, alg, tags, policy, bypass)
    }

    /// `CreateKey` as `caller` with `policy` (`None`: KMS's default) and
    /// `BypassPolicyLockoutSafetyCheck`. Authorized as KMS does: `kms:CreateKey` and, for
    /// the tags, `kms:TagResource` in the caller's IAM policies (no key policy exists yet),
    /// then the lockout check unless bypassed.
    pub fn create_key_with(
        &self,
        caller: &str,
        alg: SigningAlg,
        tags: &KeyTags,
        policy: Option<serde_json::Value>,
        bypass_lockout_check: bool,
    ) -> Result<String, KmsError> {
        self.count("CreateKey");
        {
            let mut authorization = lock(&self.authorization);
            if authorization.key_spec.is_none() {
                let spec = alg.kms_key_spec();
                authorization.deployment = authorization.deployment.clone().with_key_spec(spec);
                authorization.key_spec = Some(spec.to_owned());
            }
        }
        let region = self.home_region();
        let multi_region = *lock(&self.multi_region);
        let tag_pairs: Vec<(String, String)> =
            tags.pairs().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let mut create = Request::new(caller, "kms:CreateKey", "*")
            .with("kms:KeySpec", alg.kms_key_spec())
            .with("kms:KeyUsage", "SIGN_VERIFY")
            .with("kms:MultiRegion", multi_region)
            .with("kms:BypassPolicyLockoutSafetyCheck", bypass_lockout_check)
            .with("aws:RequestedRegion", region.as_str());
        if multi_region {
            create = create.with("kms:MultiRegionKeyType", "PRIMARY");
        }
        self.authorize("CreateKey", with_request_tags(create, &tag_pairs), None)?;
        let tag = Request::new(caller, "kms:TagResource", "*").with("aws:RequestedRegion", region.as_str());
        self.authorize("CreateKey", with_request_tags(tag, &tag_pairs), None)?;
        let policy = policy.unwrap_or_else(default_key_policy);
        self.lockout_check(caller, "CreateKey", &policy, bypass_lockout_check)?;
        let private = match alg.family() {
            KeyFamily::Ec { curve: Curve::P256 } => {
                PrivateKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng))
            }
            KeyFamily::Ec { curve: Curve::P384 } => {
                PrivateKey::P384(p384::ecdsa::SigningKey::random(&mut OsRng))
            }
            KeyFamily::Ec { curve: Curve::P521 } => {
                PrivateKey::P521(p521::ecdsa::SigningKey::random(&mut OsRng))
            }
            KeyFamily::Rsa { min_bits } => {
                let index = {
                    let mut taken = lock(&self.rsa_keys_taken);
                    let taken = taken.entry(min_bits).or_default();
                    *taken += 1;
                    *taken - 1
                };
                let key = shared_rsa_key(min_bits, index).map_err(|e| {
                    KmsError::other("CreateKey", format!("RSA-{min_bits} key generation: {e}"))
                })?;
                PrivateKey::Rsa(key)
            }
            _ => match ExtraKey::generate(alg) {
                Some(key) => PrivateKey::Extra(key),
                None => {
                    return Err(KmsError::other(
                        "CreateKey",
                        format!("the in-memory KMS does not implement {alg}"),
                    ))
                }
            },
        };
        let region = self.home_region();
        self.reachable(&region, "CreateKey")?;
        let arn = {
            let mut counter = lock(&self.counter);
            *counter += 1;
            let prefix = if *lock(&self.multi_region) { "mrk-" } else { "" };
            format!("arn:aws:kms:{region}:000000000000:key/{prefix}memory-{:08}", *counter)
        };
        let created = tokio::time::Instant::now();
        let key_spec = alg.kms_key_spec();
        let private = Arc::new(private);
        let key =
            FakeKey { key_spec, private, state: FakeKeyState::Enabled, tags: tag_pairs, created, policy };
        lock(&self.keys).insert(arn.clone(), key);
        Ok(arn)
    }

    /// A key whose policy lets `caller` do anything with it, created as `caller` with the
    /// stacks redeployed for `alg`. KMS authorizes before it checks a key's usage: tests of
    /// the key-spec rules reach them through such a key ([`Self::sign_as`] the same caller).
    pub fn create_unrestricted_key(
        &self,
        caller: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<String, KmsError> {
        self.redeploy_for(alg);
        let everything = serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": caller}, "Action": "kms:*", "Resource": "*"}]});
        self.create_key_with(caller, alg, tags, Some(everything), false)
    }

    /// KMS's policy lockout safety check: unless bypassed, the caller must be able to change
    /// the new policy later (`MalformedPolicyDocumentException` otherwise).
    fn lockout_check(
        &self,
        caller: &str,
        operation: &'static str,
        policy: &serde_json::Value,
        bypassed: bool,
    ) -> Result<(), KmsError> {
        if bypassed {
            return Ok(());
        }
        let identity = lock(&self.authorization).identity_policies(caller);
        let key = format!("arn:aws:kms:{}:{}:key/new", self.home_region(), test_stacks::account());
        match authz::passes_lockout_check(caller, &key, policy, &identity) {
            Ok(true) => Ok(()),
            Ok(false) => Err(KmsError::other(
                operation,
                "MalformedPolicyDocumentException: the new key policy will not allow you to update the key policy in the future",
            )),
            #[allow(clippy::panic)]
            Err(e) => panic!("lockout check cannot be evaluated: {e}"),
        }
    }

    /// `PutKeyPolicy` as `caller` (no function calls it: break-glass administrators do).
    pub fn put_key_policy_as(
        &self,
        caller: &str,
        key_arn: &str,
        policy: serde_json::Value,
        bypass_lockout_check: bool,
    ) -> Result<(), KmsError> {
        self.count("PutKeyPolicy");
        let request = Request::new(caller, "kms:PutKeyPolicy", key_arn)
            .with("kms:BypassPolicyLockoutSafetyCheck", bypass_lockout_check);
        self.authorize("PutKeyPolicy", request, Some(key_arn))?;
        self.lockout_check(caller, "PutKeyPolicy", &policy, bypass_lockout_check)?;
        let mut keys = lock(&self.keys);
        let key = keys.get_mut(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        key.policy = policy;
        Ok(())
    }

    /// `CreateGrant` as `caller`: authorization only (a grant would give its grantee the
    /// operations it names; the twin keeps no grants).
    pub fn create_grant_as(&self, caller: &str, key_arn: &str) -> Result<(), KmsError> {
        self.count("CreateGrant");
        self.authorize("CreateGrant", Request::new(caller, "kms:CreateGrant", key_arn), Some(key_arn))
    }

    /// `TagResource` as `caller`: the tags sent and the key's own tags are in the context.
    pub fn tag_resource_as(
        &self,
        caller: &str,
        key_arn: &str,
        tags: &[(String, String)],
    ) -> Result<(), KmsError> {
        self.count("TagResource");
        let existing = self.key_tags(key_arn);
        let mut request = with_request_tags(Request::new(caller, "kms:TagResource", key_arn), tags);
        for (key, value) in &existing {
            request = request.with(format!("aws:ResourceTag/{key}"), value.as_str());
        }
        self.authorize("TagResource", request, Some(key_arn))?;
        let mut keys = lock(&self.keys);
        let key = keys.get_mut(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        for (k, v) in tags {
            key.tags.retain(|(old, _)| old != k);
            key.tags.push((k.clone(), v.clone()));
        }
        Ok(())
    }

    /// `GetPublicKey` as `caller`.
    pub fn public_key_der_as(&self, caller: &str, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        self.count("GetPublicKey");
        self.reachable_arn(key_arn, "GetPublicKey")?;
        self.authorize("GetPublicKey", Request::new(caller, "kms:GetPublicKey", key_arn), Some(key_arn))?;
        let keys = lock(&self.keys);
        let key = keys.get(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        self.denied(key, "GetPublicKey")?;
        // SubjectPublicKeyInfo, as KMS answers: id-ecPublicKey with the named curve and an
        // uncompressed point, or rsaEncryption with a PKCS #1 RSAPublicKey.
        let der = match key.private.as_ref() {
            PrivateKey::P256(k) => k.verifying_key().to_public_key_der(),
            PrivateKey::P384(k) => k.verifying_key().to_public_key_der(),
            // p521 0.13's `SigningKey::verifying_key` sits behind a feature it does not define.
            PrivateKey::P521(k) => {
                p521::PublicKey::from_secret_scalar(k.as_nonzero_scalar()).to_public_key_der()
            }
            PrivateKey::Rsa(k) => k.to_public_key().to_public_key_der(),
            PrivateKey::Extra(k) => {
                return k.public_key_der().map_err(|message| KmsError::other("GetPublicKey", message))
            }
        };
        der.map(|d| d.as_bytes().to_vec()).map_err(|e| KmsError::other("GetPublicKey", e.to_string()))
    }

    /// `DisableKey` as `caller`.
    pub fn disable_key_as(&self, caller: &str, key_arn: &str) -> Result<(), KmsError> {
        self.count("DisableKey");
        self.reachable_arn(key_arn, "DisableKey")?;
        self.authorize("DisableKey", Request::new(caller, "kms:DisableKey", key_arn), Some(key_arn))?;
        let mut keys = lock(&self.keys);
        // A key that no longer exists is as retired as it gets (the port's contract).
        let Some(key) = keys.get_mut(key_arn) else { return Ok(()) };
        self.denied(key, "DisableKey")?;
        if key.state == FakeKeyState::Enabled {
            key.state = FakeKeyState::Disabled;
        }
        Ok(())
    }

    /// The tag search rotate's sweep runs (`tag:GetResources`), as `caller`, in the home region.
    pub fn find_keys_as(
        &self,
        caller: &str,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        self.find_keys_in(caller, &self.home_region(), keyring, request_id, cursor)
    }

    /// The tag search in `region` (the tagging API is regional), as `caller`.
    pub fn find_keys_in(
        &self,
        caller: &str,
        region: &str,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        self.count("FindKeysByRequest");
        let search = Request::new(caller, "tag:GetResources", "*").with("aws:RequestedRegion", region);
        self.authorize("FindKeys", search, None)?;
        let has = |tags: &[(String, String)], key: &str, value: &str| {
            tags.iter().any(|(k, v)| k == key && v == value)
        };
        // The account's keys in a stable order: foreign ones first (as a listing of a busy
        // account would mostly show), then ours by ARN.
        self.reachable(region, "FindKeys")?;
        let keys = lock(&self.keys);
        // A regional search, like the tagging API's and ListKeys': the region's keys.
        let mut ours: Vec<(&String, &FakeKey)> =
            keys.iter().filter(|(arn, _)| arn_region(arn) == Some(region)).collect();
        ours.sort_by(|a, b| a.0.cmp(b.0));
        let foreign = usize::try_from(*lock(&self.foreign_keys)).unwrap_or(usize::MAX);
        let total = foreign.saturating_add(ours.len());
        let start: usize = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| KmsError::other("FindKeys", format!("bad cursor {c}")))?,
        };
        let end = lock(&self.page_size).map_or(total, |size| start.saturating_add(size).min(total));
        let arns = (start..end)
            .filter(|&i| i >= foreign)
            .map(|i| ours[i - foreign])
            .filter(|(_, key)| {
                has(&key.tags, KeyTags::KEYRING, keyring) && has(&key.tags, KeyTags::REQUEST, request_id)
            })
            .map(|(arn, _)| arn.clone())
            .collect();
        Ok(KeyPage { arns, next: (end < total).then(|| end.to_string()) })
    }

    /// `ScheduleKeyDeletion` as `caller`.
    pub fn schedule_deletion_as(
        &self,
        caller: &str,
        key_arn: &str,
        window_days: i32,
    ) -> Result<(), KmsError> {
        self.count("ScheduleKeyDeletion");
        self.reachable_arn(key_arn, "ScheduleKeyDeletion")?;
        let request = Request::new(caller, "kms:ScheduleKeyDeletion", key_arn);
        self.authorize("ScheduleKeyDeletion", request, Some(key_arn))?;
        let mut keys = lock(&self.keys);
        let Some(key) = keys.get_mut(key_arn) else { return Ok(()) };
        self.denied(key, "ScheduleKeyDeletion")?;
        if !matches!(key.state, FakeKeyState::PendingDeletion { .. }) {
            key.state = FakeKeyState::PendingDeletion { window_days };
        }
        Ok(())
    }
}

#[async_trait]
impl ReplicaAdmin for MemoryKms {
    async fn replicate_key(
        &self,
        key_arn: &str,
        region: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<(), KmsError> {
        self.replicate_key_as(&self.rotate_role(), key_arn, region, alg, tags)
    }

    async fn key_enabled(&self, key_arn: &str) -> Result<bool, KmsError> {
        self.key_enabled_as(&self.rotate_role(), key_arn)
    }
}

impl MemoryKms {
    /// `ReplicateKey` as `caller`, with the policy it sends ([`Self::create_key_as`]).
    /// Authorized as KMS documents ("Multi-Region keys: controlling access"): `kms:ReplicateKey`
    /// on the primary (its key policy and the caller's IAM, `kms:ReplicaRegion`), and
    /// `kms:CreateKey` and `kms:TagResource` in the caller's IAM for the replica's Region.
    pub fn replicate_key_as(
        &self,
        caller: &str,
        key_arn: &str,
        region: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<(), KmsError> {
        self.count("ReplicateKey");
        self.reachable_arn(key_arn, "ReplicateKey")?;
        self.reachable(region, "ReplicateKey")?;
        let (policy, bypass) = self.policy_sent_by(caller, alg);
        let replicate = Request::new(caller, "kms:ReplicateKey", key_arn)
            .with("kms:ReplicaRegion", region)
            .with("kms:BypassPolicyLockoutSafetyCheck", bypass);
        self.authorize("ReplicateKey", replicate, Some(key_arn))?;
        let tag_pairs: Vec<(String, String)> =
            tags.pairs().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let create = Request::new(caller, "kms:CreateKey", "*")
            .with("kms:MultiRegion", true)
            .with("kms:MultiRegionKeyType", "REPLICA")
            .with("kms:KeySpec", alg.kms_key_spec())
            .with("kms:KeyUsage", "SIGN_VERIFY")
            .with("kms:BypassPolicyLockoutSafetyCheck", bypass)
            .with("aws:RequestedRegion", region);
        self.authorize("ReplicateKey", with_request_tags(create, &tag_pairs), None)?;
        let tag = Request::new(caller, "kms:TagResource", "*").with("aws:RequestedRegion", region);
        self.authorize("ReplicateKey", with_request_tags(tag, &tag_pairs), None)?;
        let policy = policy.unwrap_or_else(default_key_policy);
        self.lockout_check(caller, "ReplicateKey", &policy, bypass)?;
        let replica_arn = regional_arn(key_arn, region)
            .ok_or_else(|| KmsError::other("ReplicateKey", format!("{key_arn} is not a multi-Region key")))?;
        let mut keys = lock(&self.keys);
        let primary = keys.get(key_arn).ok_or_else(|| KmsError::NotFound(key_arn.to_owned()))?;
        if primary.state != FakeKeyState::Enabled {
            return Err(KmsError::InvalidState(key_arn.to_owned()));
        }
        let replica = FakeKey {
            key_spec: primary.key_spec,
            private: Arc::clone(&primary.private),
            state: FakeKeyState::Enabled,
            tags: tag_pairs,
            created: tokio::time::Instant::now(),
            policy,
        };
        // A replica that exists already is what a retried call finds.
        keys.entry(replica_arn).or_insert(replica);
        Ok(())
    }

    /// `DescribeKey` as `caller`: whether the key exists and is enabled.
    pub fn key_enabled_as(&self, caller: &str, key_arn: &str) -> Result<bool, KmsError> {
        self.count("DescribeKey");
        self.reachable_arn(key_arn, "DescribeKey")?;
        self.authorize("DescribeKey", Request::new(caller, "kms:DescribeKey", key_arn), Some(key_arn))?;
        Ok(lock(&self.keys).get(key_arn).is_some_and(|k| k.state == FakeKeyState::Enabled))
    }
}

/// [`MemoryKms`] as one region's KMS endpoint, called by the home region's rotate role: what
/// rotate holds for a replica region. Keys are addressed by ARN anywhere; searches are
/// regional.
pub struct RegionEndpoint {
    kms: Arc<MemoryKms>,
    region: String,
}

impl MemoryKms {
    /// This twin as `region`'s endpoint.
    pub fn in_region(self: &Arc<Self>, region: &str) -> RegionEndpoint {
        RegionEndpoint { kms: Arc::clone(self), region: region.to_owned() }
    }
}

#[async_trait]
impl KeyAdmin for RegionEndpoint {
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        self.kms.create_key(alg, tags).await
    }
    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        self.kms.public_key_der(key_arn).await
    }
    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError> {
        self.kms.disable_key(key_arn).await
    }
    async fn schedule_deletion(&self, key_arn: &str, window_days: i32) -> Result<(), KmsError> {
        self.kms.schedule_deletion(key_arn, window_days).await
    }
    async fn find_keys_by_request(
        &self,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        self.kms.find_keys_in(&self.kms.rotate_role(), &self.region, keyring, request_id, cursor)
    }
}

#[async_trait]
impl ReplicaAdmin for RegionEndpoint {
    async fn replicate_key(
        &self,
        key_arn: &str,
        region: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<(), KmsError> {
        self.kms.replicate_key(key_arn, region, alg, tags).await
    }
    async fn key_enabled(&self, key_arn: &str) -> Result<bool, KmsError> {
        self.kms.key_enabled(key_arn).await
    }
}

/// [`MemoryKms`] called by one principal: every port, as that principal.
pub struct KmsCaller {
    kms: Arc<MemoryKms>,
    principal: String,
}

impl KmsCaller {
    /// The twin behind this caller.
    pub fn kms(&self) -> &MemoryKms {
        &self.kms
    }

    /// The caller's ARN.
    pub fn principal(&self) -> &str {
        &self.principal
    }
}

#[async_trait]
impl KeySigner for KmsCaller {
    async fn sign(&self, key_arn: &str, alg: SigningAlg, input: &SigningInput) -> Result<Vec<u8>, KmsError> {
        self.kms.sign_as(&self.principal, key_arn, alg, input)
    }
}

#[async_trait]
impl KeyAdmin for KmsCaller {
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        self.kms.create_key_as(&self.principal, alg, tags)
    }
    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        self.kms.public_key_der_as(&self.principal, key_arn)
    }
    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError> {
        self.kms.disable_key_as(&self.principal, key_arn)
    }
    async fn schedule_deletion(&self, key_arn: &str, window_days: i32) -> Result<(), KmsError> {
        self.kms.schedule_deletion_as(&self.principal, key_arn, window_days)
    }
    async fn find_keys_by_request(
        &self,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        self.kms.find_keys_as(&self.principal, keyring, request_id, cursor)
    }
}

#[async_trait]
impl ReplicaAdmin for KmsCaller {
    async fn replicate_key(
        &self,
        key_arn: &str,
        region: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<(), KmsError> {
        self.kms.replicate_key_as(&self.principal, key_arn, region, alg, tags)
    }
    async fn key_enabled(&self, key_arn: &str) -> Result<bool, KmsError> {
        self.kms.key_enabled_as(&self.principal, key_arn)
    }
}

/// Secrets Manager replication twin: a read-only copy of a primary secret in another region,
/// updated only when [`MemoryReplica::sync`] is called (real replication is eventual), until
/// promoted to a standalone, writable secret (`StopReplicationToReplica`).
pub struct MemoryReplica {
    primary: Mutex<Arc<dyn ReplicationSource>>,
    copy: MemoryStore,
    promoted: Mutex<bool>,
}

/// A secret a [`MemoryReplica`] can copy from: a primary, or a promoted replica.
pub trait ReplicationSource: Send + Sync {
    /// The current document, if any.
    fn current_text(&self) -> Option<String>;
}

impl ReplicationSource for MemoryStore {
    fn current_text(&self) -> Option<String> {
        MemoryStore::current_text(self)
    }
}

impl ReplicationSource for MemoryReplica {
    fn current_text(&self) -> Option<String> {
        self.copy.current_text()
    }
}

impl MemoryReplica {
    /// A replica of `primary` that has received nothing yet.
    pub fn new(primary: Arc<dyn ReplicationSource>) -> Self {
        MemoryReplica { primary: Mutex::new(primary), copy: MemoryStore::new(), promoted: Mutex::new(false) }
    }

    /// Replicate from another primary from now on (after a fail-over, the new home's secret).
    pub fn repoint(&self, primary: Arc<dyn ReplicationSource>) {
        *lock(&self.primary) = primary;
    }

    /// Replicate: the copy takes the primary's current document (unless promoted or down).
    pub fn sync(&self) {
        if *lock(&self.promoted) || lock(&self.copy.state).unavailable {
            return;
        }
        let primary = Arc::clone(&*lock(&self.primary));
        if let Some(text) = primary.current_text() {
            if self.copy.current_text().as_deref() != Some(text.as_str()) {
                let mut state = lock(&self.copy.state);
                let id = format!("r-{}", state.versions.len() + 1);
                state.versions.push((id, text));
                state.current = Some(state.versions.len() - 1);
            }
        }
    }

    /// Make the region's Secrets Manager unreachable, or reachable again.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.copy.set_unavailable(unavailable);
    }

    /// Promote to a standalone secret: writable, no longer replicated.
    pub fn promote(&self) {
        *lock(&self.promoted) = true;
    }
}

#[async_trait]
impl KeyringStore for MemoryReplica {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        self.copy.load().await
    }

    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        if !*lock(&self.promoted) {
            // Secrets Manager refuses writes to a replica secret.
            return Err(StoreError::unavailable("InvalidRequestException: a replica secret is read-only"));
        }
        self.copy.compare_and_swap(expected, text).await
    }
}

#[derive(Default)]
struct StoreState {
    /// (version id, text), oldest first.
    versions: Vec<(String, String)>,
    current: Option<usize>,
    unavailable: bool,
    /// The last successful write (expected version, text, new version): like the
    /// ClientRequestToken of the real store, repeating it answers the same version.
    last_write: Option<(Option<String>, String, String)>,
    /// Reads still to answer with the version before the current one (replication lag).
    lagging_reads: usize,
}

/// Which secret a [`MemoryStore`] is, and whom its calls are authorized as.
struct SecretAccess {
    authorization: Mutex<Authorization>,
    secret_arn: String,
    /// The caller of the port methods: the single-Region stack's rotate role, the one role
    /// that both reads and writes the keyring.
    caller: String,
}

impl Default for SecretAccess {
    fn default() -> Self {
        let authorization = Authorization::default();
        let (secret_arn, caller) = authorization
            .stack("us-east-1")
            .map(|stack| (stack.keyring_secret_arn.clone(), stack.rotate_role().to_owned()))
            .unwrap_or_default();
        SecretAccess { authorization: Mutex::new(authorization), secret_arn, caller }
    }
}

/// Secrets Manager twin: versioned, with compare-and-swap promotion.
///
/// It is the keyring secret of the single-Region test stack ([`crate::test_stacks`]); every
/// call is authorized against the caller's IAM policies (the secret has no resource policy).
/// The port methods call as that stack's rotate role; [`MemoryStore::as_principal`] calls as
/// another. Reads of the secret's KMS data key through Secrets Manager are not modelled.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<StoreState>,
    reads: Mutex<u64>,
    access: SecretAccess,
}

impl MemoryStore {
    /// A store holding no secret yet.
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

    /// Answer the next `reads` loads with the version before the current one, as a read that
    /// does not see a write yet (eventual consistency).
    pub fn lag_reads(&self, reads: usize) {
        lock(&self.state).lagging_reads = reads;
    }

    /// How many loads were answered.
    pub fn reads(&self) -> u64 {
        *lock(&self.reads)
    }

    /// How many versions were written (a repeated identical write adds none).
    pub fn version_count(&self) -> usize {
        lock(&self.state).versions.len()
    }

    /// The current document, if any.
    pub fn current_text(&self) -> Option<String> {
        let state = lock(&self.state);
        state.current.map(|i| state.versions[i].1.clone())
    }
}

impl MemoryStore {
    /// Calls as `principal` (a role ARN): for tests of what a role may not do.
    pub fn as_principal(self: &Arc<Self>, principal: &str) -> StoreCaller {
        StoreCaller { store: Arc::clone(self), principal: principal.to_owned() }
    }

    /// The secret's ARN.
    pub fn secret_arn(&self) -> &str {
        &self.access.secret_arn
    }

    /// Every call refused so far.
    pub fn denials(&self) -> Vec<String> {
        lock(&self.access.authorization).denials.clone()
    }

    fn authorize(&self, caller: &str, actions: &[&str]) -> Result<(), StoreError> {
        for action in actions {
            let request = Request::new(caller, *action, self.access.secret_arn.as_str());
            decide(&self.access.authorization, &request, None)
                .map_err(|refused| StoreError::unavailable(format!("AccessDeniedException: {refused}")))?;
        }
        Ok(())
    }

    /// `GetSecretValue` as `caller`.
    pub fn load_as(&self, caller: &str) -> Result<Option<StoredDocument>, StoreError> {
        self.authorize(caller, &["secretsmanager:GetSecretValue"])?;
        self.load_unchecked()
    }

    /// `PutSecretValue` and `UpdateSecretVersionStage` (the adapter's compare-and-swap) as
    /// `caller`.
    pub fn compare_and_swap_as(
        &self,
        caller: &str,
        expected: Option<&str>,
        text: &str,
    ) -> Result<String, StoreError> {
        self.authorize(
            caller,
            &["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"],
        )?;
        self.compare_and_swap_unchecked(expected, text)
    }
}

#[async_trait]
impl KeyringStore for MemoryStore {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        self.load_as(&self.access.caller)
    }

    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        self.compare_and_swap_as(&self.access.caller, expected, text)
    }
}

/// [`MemoryStore`] called by one principal.
pub struct StoreCaller {
    store: Arc<MemoryStore>,
    principal: String,
}

#[async_trait]
impl KeyringStore for StoreCaller {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        self.store.load_as(&self.principal)
    }

    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        self.store.compare_and_swap_as(&self.principal, expected, text)
    }
}

impl MemoryStore {
    fn load_unchecked(&self) -> Result<Option<StoredDocument>, StoreError> {
        *lock(&self.reads) += 1;
        let mut state = lock(&self.state);
        if state.unavailable {
            return Err(StoreError::unavailable("simulated outage"));
        }
        if state.lagging_reads > 0 {
            state.lagging_reads -= 1;
            let behind = state.current.and_then(|i| i.checked_sub(1));
            return Ok(behind.map(|i| StoredDocument {
                version_id: state.versions[i].0.clone(),
                text: state.versions[i].1.clone(),
            }));
        }
        Ok(state.current.map(|i| StoredDocument {
            version_id: state.versions[i].0.clone(),
            text: state.versions[i].1.clone(),
        }))
    }

    fn compare_and_swap_unchecked(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        let mut state = lock(&self.state);
        if state.unavailable {
            return Err(StoreError::unavailable("simulated outage"));
        }
        let current_id = state.current.map(|i| state.versions[i].0.clone());
        if let Some((last_expected, last_text, last_id)) = &state.last_write {
            let repeat = last_expected.as_deref() == expected && last_text == text;
            if repeat && current_id.as_deref() == Some(last_id.as_str()) {
                return Ok(last_id.clone());
            }
        }
        if current_id.as_deref() != expected {
            return Err(StoreError::Conflict);
        }
        let id = format!("v-{}", state.versions.len() + 1);
        state.versions.push((id.clone(), text.to_owned()));
        state.current = Some(state.versions.len() - 1);
        state.last_write = Some((expected.map(str::to_owned), text.to_owned(), id.clone()));
        Ok(id)
    }
}

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

    fn fault(&self, op: &'static str) -> Fault {
        *lock(&self.calls).entry(op).or_default() += 1;
        (lock(&self.decide))(op)
    }
}

/// The error a caller sees for an injected fault: a refusal before the call, or a lost reply
/// after it (whose outcome the caller cannot know).
fn injected_kms(operation: &'static str, fault: Fault) -> KmsError {
    match fault {
        Fault::FailAfter => KmsError::transport(operation, "injected: reply lost"),
        _ => KmsError::other(operation, "injected fault"),
    }
}

fn injected_store(_fault: Fault) -> StoreError {
    StoreError::unavailable("injected fault")
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
impl<T: KeyringStore> KeyringStore for Faulty<T> {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        faulty!(self, "GetSecretValue", injected_store, self.inner.load())
    }
    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        faulty!(self, "CompareAndSwap", injected_store, self.inner.compare_and_swap(expected, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::PublicJwk;

    fn tags() -> KeyTags {
        KeyTags { keyring: crate::test_stacks::single_region_keyring(), request_id: "r1".into() }
    }

    /// KMS's rule: an ECC key signs with its own curve's ECDSA only, an RSA key with any of the
    /// six RSASSA algorithms, Ed25519 and ML-DSA keys with their one algorithm; anything else is
    /// `InvalidKeyUsageException`, not a signature.
    #[tokio::test]
    async fn sign_refuses_algorithms_the_key_spec_does_not_support() {
        let kms = MemoryKms::new();
        // What is refused here is refused by the key spec, after authorization passed.
        let rotate = kms.rotate_role();
        for key_alg in SigningAlg::ALL {
            let arn = kms.create_unrestricted_key(&rotate, key_alg, &tags()).unwrap();
            let jwk = PublicJwk::from_spki_der(&kms.public_key_der(&arn).await.unwrap()).unwrap();
            assert_eq!(jwk.check_alg(key_alg), Ok(()), "{key_alg}");
            for alg in SigningAlg::ALL {
                let input = match alg.hash() {
                    Some(hash) => SigningInput::Digest(hash.digest(b"message")),
                    None => SigningInput::Raw(b"message".to_vec()),
                };
                let signed = kms.sign_as(&rotate, &arn, alg, &input);
                let rsa = |a: SigningAlg| matches!(a.family(), KeyFamily::Rsa { .. });
                // KMS sees only the signing algorithm: ECDSA_SHA_256 is valid for a P-256 and a
                // secp256k1 key, ML_DSA_SHAKE_256 for every ML-DSA key, ED25519_SHA_512 serves
                // EdDSA and Ed25519.
                let same_kms_alg = alg.kms_signing_algorithm() == key_alg.kms_signing_algorithm();
                let allowed = (rsa(key_alg) && rsa(alg)) || (!rsa(key_alg) && same_kms_alg);
                match signed {
                    Ok(signature) => assert!(allowed && !signature.is_empty(), "{key_alg} key signed {alg}"),
                    Err(e) => {
                        assert!(!allowed, "{key_alg} key refused {alg}: {e}");
                        assert!(matches!(e, KmsError::Other { operation: "Sign", .. }), "{e:?}");
                        assert!(e.to_string().contains("InvalidKeyUsageException"), "{e}");
                    }
                }
            }
        }
    }

    /// The message is a digest (`MessageType=DIGEST`) of exactly the hash's length, so a token
    /// of any size costs one 32–64-byte `Sign` request; a raw message is refused.
    #[tokio::test]
    async fn sign_takes_a_digest_of_the_hash_length_only() {
        let kms = MemoryKms::new();
        let arn = kms.create_key(SigningAlg::ES384, &tags()).await.unwrap();
        for len in [0, 32, 47, 49, 64, 4_096, 4_097] {
            let digest = SigningInput::Digest(vec![7; len]);
            let err = kms.sign(&arn, SigningAlg::ES384, &digest).await.unwrap_err();
            assert!(err.to_string().contains("ValidationException"), "{len}: {err}");
        }
        assert!(kms.sign(&arn, SigningAlg::ES384, &SigningInput::Digest(vec![7; 48])).await.is_ok());
        assert_eq!(kms.calls("Sign"), 8);
    }

    /// Each twin's RSA keys are distinct; twins share the process's generated keys.
    #[tokio::test]
    async fn rsa_keys_are_distinct_within_a_twin_and_shared_across_twins() {
        async fn kid(kms: &MemoryKms, alg: SigningAlg) -> String {
            let arn = kms.create_key(alg, &tags()).await.unwrap();
            let der = kms.public_key_der(&arn).await.unwrap();
            PublicJwk::from_spki_der(&der).unwrap().thumbprint()
        }
        let (a, b) = (MemoryKms::new(), MemoryKms::new());
        let (a1, a2) = (kid(&a, SigningAlg::PS256).await, kid(&a, SigningAlg::RS256).await);
        let b1 = kid(&b, SigningAlg::RS256).await;
        assert_ne!(a1, a2);
        assert_eq!(a1, b1);
    }
}
