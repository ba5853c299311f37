//! Views of the KMS twin: one region's endpoint, and one principal's calls.

use super::*;

/// [`MemoryKms`] as one region's KMS endpoint, called by the home region's rotate role: what
/// rotate holds for a replica region. Keys are addressed by ARN anywhere; searches are
/// regional.
pub struct RegionEndpoint {
    pub(super) kms: Arc<MemoryKms>,
    pub(super) region: String,
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
    pub(super) kms: Arc<MemoryKms>,
    pub(super) principal: String,
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
