//! Secrets Manager through the SDK: the adapter of [`KeyringStore`], a compare-and-swap on
//! the keyring secret's `AWSCURRENT` stage.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::{describe, error_code, kept};
use crate::ports::{KeyringStore, StoreError, StoredDocument};

/// Prefix of the staging label a new keyring version carries until it is promoted to
/// AWSCURRENT. Each write has its own label, so concurrent writers never move each other's;
/// labels are removed after the promotion, and leftovers of crashed writers are swept.
pub const STAGE_PREFIX: &str = "KMSJWT_";
const CURRENT_STAGE: &str = "AWSCURRENT";

/// The keyring secret in Secrets Manager.
#[derive(Clone, Debug)]
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    /// Customer-managed KMS key that encrypts the secret, used if this store creates it.
    encryption_key_id: Option<String>,
}

impl SecretsManagerStore {
    /// The store of secret `secret_id`; a secret created by the first write is encrypted
    /// with `encryption_key_id` (a KMS key id or ARN) if given, else the AWS managed key.
    pub fn new(
        config: &aws_config::SdkConfig,
        secret_id: impl Into<String>,
        encryption_key_id: Option<String>,
    ) -> Self {
        SecretsManagerStore {
            client: aws_sdk_secretsmanager::Client::new(config),
            secret_id: secret_id.into(),
            encryption_key_id,
        }
    }

    /// Idempotency token: the same change from the same base gets the same version id, so a
    /// retried write never creates a second version.
    fn request_token(expected: Option<&str>, text: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(expected.unwrap_or("").as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        let digest = hash.finalize();
        // 32 hex characters, within Secrets Manager's 32..64 character limit.
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    async fn promote(&self, version_id: &str, expected: Option<&str>) -> Result<(), StoreError> {
        self.client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(CURRENT_STAGE)
            .move_to_version_id(version_id)
            .set_remove_from_version_id(expected.map(str::to_owned))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match error_code(&e) {
                // AWSCURRENT is no longer on `expected`: somebody else won the race.
                Some("InvalidParameterException" | "InvalidRequestException") => StoreError::Conflict,
                _ => StoreError::Unavailable(describe(&e), kept(e)),
            })
    }
}

#[async_trait]
impl KeyringStore for SecretsManagerStore {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        match self.client.get_secret_value().secret_id(&self.secret_id).send().await {
            Ok(out) => {
                let version_id = out
                    .version_id
                    .ok_or_else(|| StoreError::unavailable("GetSecretValue returned no version id"))?;
                let text = out.secret_string.ok_or_else(|| {
                    StoreError::unavailable("keyring secret holds binary data, expected a JSON string")
                })?;
                Ok(Some(StoredDocument { version_id, text }))
            }
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(StoreError::Unavailable(describe(&e), kept(e))),
        }
    }

    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        let token = Self::request_token(expected, text);
        if expected.is_none() {
            // Nothing current yet. CreateSecret is atomic: exactly one concurrent creator wins.
            let created = self
                .client
                .create_secret()
                .name(&self.secret_id)
                .secret_string(text)
                .client_request_token(&token)
                .set_kms_key_id(self.encryption_key_id.clone())
                .description("kms-jwt keyring: public keys and KMS key ARNs of the JWT signing keys")
                .send()
                .await;
            match created {
                Ok(out) => return Ok(out.version_id.unwrap_or(token)),
                // The secret exists (created empty by infrastructure, or by a racing run):
                // fall through to the staged write, whose promotion fails if AWSCURRENT is taken.
                Err(e) if error_code(&e) == Some("ResourceExistsException") => {}
                Err(e) => return Err(StoreError::Unavailable(describe(&e), kept(e))),
            }
        }
        let stage = format!("{STAGE_PREFIX}{token}");
        let put = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(text)
            .client_request_token(&token)
            .version_stages(&stage)
            .send()
            .await;
        let version_id = match put {
            // The first version of an empty secret gets AWSCURRENT automatically: done.
            Ok(out) if expected.is_none() && out.version_stages().iter().any(|s| s == CURRENT_STAGE) => {
                return Ok(out.version_id.unwrap_or(token));
            }
            Ok(out) => out.version_id.unwrap_or(token),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {
                return Err(StoreError::Conflict);
            }
            Err(e) => return Err(StoreError::Unavailable(describe(&e), kept(e))),
        };
        let outcome = match self.promote(&version_id, expected).await {
            // A retry of a write that already landed (the first reply was lost): AWSCURRENT
            // is on our version, which is success, not a conflict.
            Err(StoreError::Conflict) => match self.load().await? {
                Some(current) if current.version_id == version_id => Ok(version_id),
                _ => Err(StoreError::Conflict),
            },
            other => other.map(|()| version_id),
        };
        // Our label has done its job either way. After a success, also sweep labels that
        // crashed writers left behind (Secrets Manager allows only 20 labels per secret).
        // Best effort: whatever is left is swept by the next successful write.
        if outcome.is_ok() {
            self.remove_stage_labels(|label| label.starts_with(STAGE_PREFIX)).await;
        } else {
            self.remove_stage_labels(|label| label == stage).await;
        }
        outcome
    }
}

impl SecretsManagerStore {
    /// Remove matching kms-jwt staging labels from every version that carries one.
    async fn remove_stage_labels(&self, matches: impl Fn(&str) -> bool) {
        let versions = match self.client.list_secret_version_ids().secret_id(&self.secret_id).send().await {
            Ok(out) => out.versions.unwrap_or_default(),
            Err(e) => {
                warn!(error = %describe(&e), "could not list keyring versions to tidy staging labels");
                return;
            }
        };
        for version in versions {
            let Some(version_id) = version.version_id() else { continue };
            for label in version.version_stages().iter().filter(|l| matches(l)) {
                let removed = self
                    .client
                    .update_secret_version_stage()
                    .secret_id(&self.secret_id)
                    .version_stage(label)
                    .remove_from_version_id(version_id)
                    .send()
                    .await;
                if let Err(e) = removed {
                    warn!(label, error = %describe(&e), "could not remove a staging label");
                }
            }
        }
    }
}
