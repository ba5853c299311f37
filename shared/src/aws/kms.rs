//! KMS through the SDK: the adapter of [`KeySigner`], [`KeyAdmin`] and [`ReplicaAdmin`].

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec, Tag};
use aws_sdk_resourcegroupstagging::types::TagFilter;

use super::{describe, error_code, kept, outcome_unknown};
use crate::jose::alg::SigningAlg;
use crate::key_policy::KeyAccess;
use crate::ports::{KeyAdmin, KeyPage, KeySigner, KeyTags, KmsError, ReplicaAdmin, SigningInput};

/// Our tags, as the SDK's `Tag`s of a `CreateKey` or `ReplicateKey` request.
fn sdk_tags(tags: &KeyTags, operation: &'static str) -> Result<Vec<Tag>, KmsError> {
    tags.pairs()
        .into_iter()
        .map(|(key, value)| {
            Tag::builder().tag_key(key).tag_value(value).build().map_err(|e| KmsError::Other {
                operation,
                message: e.to_string(),
                source: kept(e),
            })
        })
        .collect()
}

/// How rotate finds the keys a crashed run created, by their `kms-jwt:request` tag.
#[derive(Clone, Debug)]
pub enum KeyDiscovery {
    /// Resource Groups Tagging API `GetResources` with tag filters: one call answers, however
    /// many keys the account holds. The default on AWS.
    TaggingApi(aws_sdk_resourcegroupstagging::Client),
    /// `ListKeys`, then `ListResourceTags` per key, a page at a time. For LocalStack (whose
    /// tagging API does not return KMS keys) and accounts that cannot grant `tag:GetResources`.
    ListKeys,
}

/// Keys per `ListKeys` page in [`KeyDiscovery::ListKeys`]: each costs one tag read, so a page
/// stays well inside a run's time budget.
const LIST_KEYS_PAGE: i32 = 100;

/// KMS through the SDK.
#[derive(Clone, Debug)]
pub struct KmsAdapter {
    client: aws_sdk_kms::Client,
    key_access: Option<KeyAccess>,
    discovery: KeyDiscovery,
    /// Create multi-Region primary keys (`MultiRegion=true`).
    multi_region: bool,
}

impl KmsAdapter {
    /// An adapter that signs, and creates keys with KMS's default key policy, discovering keys
    /// with [`KeyDiscovery::ListKeys`]. The rotate function adds [`Self::with_key_access`] and
    /// [`Self::with_discovery`].
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        KmsAdapter {
            client: aws_sdk_kms::Client::new(config),
            key_access: None,
            discovery: KeyDiscovery::ListKeys,
            multi_region: false,
        }
    }

    /// Create every key as a multi-Region primary, to be replicated (see [`crate::regions`]).
    pub fn with_multi_region_keys(mut self) -> Self {
        self.multi_region = true;
        self
    }

    /// Create every key with this key policy (see [`crate::key_policy`]).
    pub fn with_key_access(mut self, access: KeyAccess) -> Self {
        self.key_access = Some(access);
        self
    }

    /// How the crash sweep finds keys by tag (default: the tagging API).
    pub fn with_discovery(mut self, discovery: KeyDiscovery) -> Self {
        self.discovery = discovery;
        self
    }

    fn classify<E>(
        operation: &'static str,
        key: &str,
        err: SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> KmsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if matches!(err, SdkError::TimeoutError(_)) {
            return KmsError::Timeout { operation };
        }
        match error_code(&err) {
            Some("NotFoundException") => KmsError::NotFound(key.to_owned()),
            Some("DisabledException" | "KMSInvalidStateException" | "KeyUnavailableException") => {
                KmsError::InvalidState(key.to_owned())
            }
            Some("ThrottlingException" | "LimitExceededException") => KmsError::Throttled,
            Some("AccessDeniedException") => KmsError::AccessDenied { operation },
            _ if outcome_unknown(&err) => {
                KmsError::Transport { operation, message: describe(&err), source: kept(err) }
            }
            _ => KmsError::Other { operation, message: describe(&err), source: kept(err) },
        }
    }
}

#[async_trait]
impl KeySigner for KmsAdapter {
    async fn sign(&self, key_arn: &str, alg: SigningAlg, input: &SigningInput) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .sign()
            .key_id(key_arn)
            .message(Blob::new(input.message()))
            .message_type(MessageType::from(input.message_type()))
            .signing_algorithm(SigningAlgorithmSpec::from(alg.kms_signing_algorithm()))
            .send()
            .await
            .map_err(|e| Self::classify("Sign", key_arn, e))?;
        out.signature
            .map(Blob::into_inner)
            .ok_or_else(|| KmsError::other("Sign", "response had no signature"))
    }
}

#[async_trait]
impl KeyAdmin for KmsAdapter {
    async fn create_key(&self, alg: SigningAlg, tags: &KeyTags) -> Result<String, KmsError> {
        let request = self
            .client
            .create_key()
            .key_usage(KeyUsageType::SignVerify)
            .key_spec(KeySpec::from(alg.kms_key_spec()))
            .set_policy(self.key_access.as_ref().map(|access| access.policy_json(alg)))
            // Our key policy keeps kms:PutKeyPolicy from every rotate role (the break-glass
            // administrators it names keep it), which KMS's lockout check would refuse
            // (CreateKey API reference, "BypassPolicyLockoutSafetyCheck").
            .set_bypass_policy_lockout_safety_check(self.key_access.is_some().then_some(true))
            .set_multi_region(self.multi_region.then_some(true))
            .description(format!("kms-jwt {alg} signing key for keyring {}", tags.keyring))
            .set_tags(Some(sdk_tags(tags, "CreateKey")?));
        // CreateKey is not idempotent: had the SDK retried after a lost reply, KMS would hold
        // two keys and we would learn of one. One attempt; a failure whose outcome is unknown
        // leaves the run's creation intent in place for the sweep (see `rotate`).
        let out = request
            .customize()
            .config_override(aws_sdk_kms::config::Builder::default().retry_config(RetryConfig::disabled()))
            .send()
            .await
            .map_err(|e| Self::classify("CreateKey", "(new)", e))?;
        out.key_metadata
            .and_then(|m| m.arn)
            .ok_or_else(|| KmsError::other("CreateKey", "response had no key ARN"))
    }

    async fn public_key_der(&self, key_arn: &str) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .get_public_key()
            .key_id(key_arn)
            .send()
            .await
            .map_err(|e| Self::classify("GetPublicKey", key_arn, e))?;
        out.public_key
            .map(Blob::into_inner)
            .ok_or_else(|| KmsError::other("GetPublicKey", "response had no public key"))
    }

    async fn disable_key(&self, key_arn: &str) -> Result<(), KmsError> {
        match self.client.disable_key().key_id(key_arn).send().await {
            Ok(_) => Ok(()),
            // Already pending deletion: disabling is moot, and retrying a retirement must not fail.
            // Already deleted: nothing can sign with it any more, which is what retiring means;
            // otherwise its retirement-queue entry would stick forever.
            Err(e) if matches!(error_code(&e), Some("KMSInvalidStateException" | "NotFoundException")) => {
                Ok(())
            }
            Err(e) => Err(Self::classify("DisableKey", key_arn, e)),
        }
    }

    async fn find_keys_by_request(
        &self,
        keyring: &str,
        request_id: &str,
        cursor: Option<&str>,
    ) -> Result<KeyPage, KmsError> {
        match &self.discovery {
            KeyDiscovery::TaggingApi(tagging) => {
                let filter = |key: &str, value: &str| TagFilter::builder().key(key).values(value).build();
                let out = tagging
                    .get_resources()
                    .resource_type_filters("kms:key")
                    .tag_filters(filter(KeyTags::KEYRING, keyring))
                    .tag_filters(filter(KeyTags::REQUEST, request_id))
                    .set_pagination_token(cursor.map(str::to_owned))
                    .send()
                    .await
                    .map_err(|e| Self::classify("GetResources", "(tagged)", e))?;
                let arns = out
                    .resource_tag_mapping_list()
                    .iter()
                    .filter_map(|m| m.resource_arn())
                    .map(str::to_owned);
                Ok(KeyPage {
                    arns: arns.collect(),
                    next: out.pagination_token.filter(|token| !token.is_empty()),
                })
            }
            KeyDiscovery::ListKeys => {
                let page = self
                    .client
                    .list_keys()
                    .limit(LIST_KEYS_PAGE)
                    .set_marker(cursor.map(str::to_owned))
                    .send()
                    .await
                    .map_err(|e| Self::classify("ListKeys", "(all)", e))?;
                let mut arns = Vec::new();
                for arn in page.keys().iter().filter_map(|k| k.key_arn()) {
                    let tags = match self.client.list_resource_tags().key_id(arn).send().await {
                        Ok(out) => out.tags.unwrap_or_default(),
                        // Keys of other principals may not be readable (not ours), and a key
                        // deleted since the listing is not ours to clean up either. Anything
                        // else (throttling, timeouts) fails the page, so the sweep is retried.
                        Err(e)
                            if matches!(
                                error_code(&e),
                                Some("AccessDeniedException" | "NotFoundException")
                            ) =>
                        {
                            continue
                        }
                        Err(e) => return Err(Self::classify("ListResourceTags", arn, e)),
                    };
                    let has = |k: &str, v: &str| tags.iter().any(|t| t.tag_key() == k && t.tag_value() == v);
                    if has(KeyTags::KEYRING, keyring) && has(KeyTags::REQUEST, request_id) {
                        arns.push(arn.to_owned());
                    }
                }
                Ok(KeyPage { arns, next: page.next_marker.filter(|_| page.truncated) })
            }
        }
    }

    async fn schedule_deletion(&self, key_arn: &str, pending_window_days: i32) -> Result<(), KmsError> {
        match self
            .client
            .schedule_key_deletion()
            .key_id(key_arn)
            .pending_window_in_days(pending_window_days)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if matches!(error_code(&e), Some("KMSInvalidStateException" | "NotFoundException")) => {
                // Idempotent retirement: a key already pending deletion (or deleted) is what we want.
                Ok(())
            }
            Err(e) => Err(Self::classify("ScheduleKeyDeletion", key_arn, e)),
        }
    }
}

#[async_trait]
impl ReplicaAdmin for KmsAdapter {
    async fn replicate_key(
        &self,
        key_arn: &str,
        region: &str,
        alg: SigningAlg,
        tags: &KeyTags,
    ) -> Result<(), KmsError> {
        let request = self
            .client
            .replicate_key()
            .key_id(key_arn)
            .replica_region(region)
            .set_policy(self.key_access.as_ref().map(|access| access.policy_json(alg)))
            // As for CreateKey: the replica's policy keeps PutKeyPolicy from rotate.
            .set_bypass_policy_lockout_safety_check(self.key_access.is_some().then_some(true))
            .description(format!("kms-jwt {alg} signing key for keyring {} (replica)", tags.keyring))
            .set_tags(Some(sdk_tags(tags, "ReplicateKey")?));
        match request.send().await {
            Ok(_) => Ok(()),
            // A retried call (the SDK retries lost replies) finds the replica it made.
            Err(e) if error_code(&e) == Some("AlreadyExistsException") => Ok(()),
            Err(e) => Err(Self::classify("ReplicateKey", key_arn, e)),
        }
    }

    async fn key_enabled(&self, key_arn: &str) -> Result<bool, KmsError> {
        match self.client.describe_key().key_id(key_arn).send().await {
            Ok(out) => {
                Ok(out.key_metadata.and_then(|m| m.key_state) == Some(aws_sdk_kms::types::KeyState::Enabled))
            }
            // Not replicated there (yet).
            Err(e) if error_code(&e) == Some("NotFoundException") => Ok(false),
            Err(e) => Err(Self::classify("DescribeKey", key_arn, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use aws_sdk_kms::error::ErrorMetadata;
    use aws_sdk_kms::operation::get_public_key::GetPublicKeyError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    use super::*;
    use crate::ports::{ErrorSource, StoreError};

    type KmsSdkError = SdkError<GetPublicKeyError, Response>;

    fn service_error(status: u16, code: &str, message: &str) -> KmsSdkError {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(GetPublicKeyError::generic(meta), raw)
    }

    /// Every error in `err`'s source chain, outermost first, as text.
    fn chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
        let mut texts = Vec::new();
        let mut next = err.source();
        while let Some(e) = next {
            texts.push(e.to_string());
            next = e.source();
        }
        texts
    }

    /// The port error keeps the SDK error as its source: a log of the chain reaches AWS's
    /// own words, and the classification and `Display` text are as before.
    #[test]
    fn classified_kms_errors_keep_the_sdk_error_as_source() {
        let lost = KmsSdkError::dispatch_failure(ConnectorError::io("connection reset by peer".into()));
        let err = KmsAdapter::classify("GetPublicKey", "arn", lost);
        assert!(matches!(err, KmsError::Transport { operation: "GetPublicKey", .. }), "{err:?}");
        assert!(err.to_string().starts_with("KMS GetPublicKey failed in transit: dispatch failure"), "{err}");
        assert!(chain(&err).iter().any(|e| e.contains("connection reset by peer")), "{:?}", chain(&err));

        let refused = service_error(400, "ValidationException", "Digest is invalid length");
        let err = KmsAdapter::classify("Sign", "arn", refused);
        assert!(matches!(err, KmsError::Other { operation: "Sign", .. }), "{err:?}");
        assert!(err.to_string().contains("Digest is invalid length"), "{err}");
        assert_eq!(
            chain(&err),
            [
                "service error",
                "unhandled error (ValidationException)",
                r#"Error { code: "ValidationException", message: "Digest is invalid length" }"#
            ]
        );
        // The source is the shared handle; the SDK error itself is one downcast further.
        let source = err.source().and_then(|s| s.downcast_ref::<ErrorSource>());
        assert!(source.and_then(|s| s.downcast_ref::<KmsSdkError>()).is_some(), "{source:?}");

        let internal = service_error(500, "KMSInternalException", "try again");
        let err = KmsAdapter::classify("Sign", "arn", internal);
        assert!(matches!(err, KmsError::Transport { source: Some(_), .. }), "{err:?}");

        // Classified kinds carry no text of the SDK's, so nothing to keep: unchanged.
        let err = KmsAdapter::classify("Sign", "arn", service_error(400, "NotFoundException", "gone"));
        assert_eq!(err, KmsError::NotFound("arn".into()));
        assert!(err.source().is_none());
    }

    /// Equality and clones ignore the kept source, so errors compare by what they say.
    #[test]
    fn port_errors_compare_without_their_source() {
        let lost = KmsSdkError::dispatch_failure(ConnectorError::io("reset".into()));
        let err = KmsAdapter::classify("Sign", "arn", lost);
        let KmsError::Transport { message, .. } = &err else { panic!("{err:?}") };
        assert_eq!(err, KmsError::transport("Sign", message.clone()));
        assert_ne!(err, KmsError::other("Sign", message.clone()));
        assert!(err.clone().source().is_some());
        let store = StoreError::Unavailable("down".into(), kept(std::io::Error::other("timed out")));
        assert_eq!(store, StoreError::unavailable("down"));
        assert_eq!(store.to_string(), "keyring store unavailable: down");
        assert_eq!(store.source().map(ToString::to_string).as_deref(), Some("timed out"));
    }
}
