//! SSM Parameter Store through the SDK: the minting policy's [`DocumentSource`], one
//! `GetParameter` per read.

use async_trait::async_trait;

use super::{describe, error_code, kept};
use crate::ports::{DocumentSource, StoreError, StoredDocument};

/// One parameter, named as `GetParameter` takes it: a name, an ARN (a parameter shared from
/// another account), or either followed by `:version` or `:label` to pin what is read.
#[derive(Clone, Debug)]
pub struct SsmParameter {
    client: aws_sdk_ssm::Client,
    name: String,
}

impl SsmParameter {
    /// The parameter `name`, read with `config`'s credentials, region and time limits.
    pub fn new(config: &aws_config::SdkConfig, name: impl Into<String>) -> Self {
        SsmParameter { client: aws_sdk_ssm::Client::new(config), name: name.into() }
    }
}

#[async_trait]
impl DocumentSource for SsmParameter {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        // WithDecryption: a SecureString parameter is read as text (it needs kms:Decrypt on
        // its key); a String parameter ignores it.
        let read = self.client.get_parameter().name(&self.name).with_decryption(true).send().await;
        let parameter = match read {
            Ok(out) => {
                out.parameter.ok_or_else(|| StoreError::unavailable("GetParameter returned no parameter"))?
            }
            Err(e) if error_code(&e) == Some("ParameterNotFound") => return Ok(None),
            Err(e) => return Err(StoreError::Unavailable(describe(&e), kept(e))),
        };
        let text =
            parameter.value.ok_or_else(|| StoreError::unavailable("GetParameter returned no value"))?;
        // Every PutParameter makes a new version: the number tells a changed policy apart.
        Ok(Some(StoredDocument { version_id: parameter.version.to_string(), text }))
    }
}
