//! The KMS twin's key administration, each operation authorized before it acts: the
//! [`KeyAdmin`] port as the home region's rotate role, and every operation `_as` any principal
//! (key creation with its policy and the lockout check, policy and grant changes, tags,
//! public keys, disabling, deletion, the search by tag).

use super::*;

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
        self.deploy_key_spec_once(alg);
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
        let private = self.generate_private_key(alg)?;
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

    /// The stacks are "deployed" for the key spec of the first key created (the template's
    /// `KeySpec` parameter, which rotate's IAM checks); later keys must match it.
    fn deploy_key_spec_once(&self, alg: SigningAlg) {
        let mut authorization = lock(&self.authorization);
        if authorization.key_spec.is_none() {
            let spec = alg.kms_key_spec();
            authorization.deployment = authorization.deployment.clone().with_key_spec(spec);
            authorization.key_spec = Some(spec.to_owned());
        }
    }

    /// Fresh key material for `alg` (RSA from the process-wide pool, see [`shared_rsa_key`]).
    fn generate_private_key(&self, alg: SigningAlg) -> Result<PrivateKey, KmsError> {
        Ok(match alg.family() {
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
        })
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
    pub(super) fn lockout_check(
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
