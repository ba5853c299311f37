//! The KMS twin's multi-Region operations, authorized as KMS documents them: the
//! [`ReplicaAdmin`] port as the home region's rotate role, and `ReplicateKey` / `DescribeKey`
//! as any principal.

use super::*;

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
