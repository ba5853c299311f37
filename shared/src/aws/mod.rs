//! AWS adapters of the ports, one per service, through the official SDK: [`KmsAdapter`]
//! (KMS, in `kms`), [`SecretsManagerStore`] (Secrets Manager, in `secrets_manager`),
//! [`SsmParameter`] (SSM Parameter Store, in `ssm`: the minting policy),
//! [`CloudFrontEdgeCache`] (CloudFront, in `cloudfront`) and [`EventBridgeEvents`]
//! (EventBridge, in `eventbridge`);
//! [`wiring`] builds each function's services from its configuration with them.
//!
//! The SDK is configured the standard way (`aws_config::defaults`), so credentials come from
//! the Lambda role and `AWS_ENDPOINT_URL` points every client at LocalStack when set. Every
//! call is bounded in time: an attempt timeout and an operation timeout (which spans the
//! SDK's retries), so a hung connection costs seconds, not the whole Lambda timeout.

use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::config::CallTimeouts;
use crate::ports::ErrorSource;

mod cloudfront;
mod eventbridge;
mod kms;
mod secrets_manager;
mod ssm;
pub mod wiring;

pub use cloudfront::CloudFrontEdgeCache;
pub use eventbridge::EventBridgeEvents;
pub use kms::{KeyDiscovery, KmsAdapter};
pub use secrets_manager::{SecretsManagerStore, STAGE_PREFIX};
pub use ssm::SsmParameter;

/// Load the SDK configuration once per cold start.
pub async fn load_sdk_config(timeouts: CallTimeouts) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.attempt)
                .operation_attempt_timeout(timeouts.attempt)
                .operation_timeout(timeouts.total)
                .build(),
        )
        .load()
        .await
}

/// `config` with its region replaced: the clients of a replica region.
pub fn regional_sdk_config(config: &aws_config::SdkConfig, region: &str) -> aws_config::SdkConfig {
    config.to_builder().region(aws_config::Region::new(region.to_owned())).build()
}

/// The keyring secret's id in `region`: a name is the same everywhere; a secret ARN names its
/// region, which a replica's ARN replaces (Secrets Manager replicas keep name and suffix).
pub fn regional_secret_id(secret_id: &str, region: &str) -> String {
    let fields: Vec<&str> = secret_id.splitn(5, ':').collect();
    match fields.as_slice() {
        ["arn", partition, "secretsmanager", _, rest] => {
            format!("arn:{partition}:secretsmanager:{region}:{rest}")
        }
        _ => secret_id.to_owned(),
    }
}

pub(crate) fn error_code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

pub(crate) fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(err).to_string()
}

/// Keep `err` as the source of the port error made from it: the message already holds its
/// text, the chain then holds the error itself (SDK error kind, service error, HTTP cause).
pub(crate) fn kept(err: impl std::error::Error + Send + Sync + 'static) -> Option<ErrorSource> {
    Some(std::sync::Arc::new(err))
}

/// Did the request reach the service without a usable answer coming back? Then it may have
/// taken effect: timeouts, lost connections, unreadable replies and 5xx answers.
pub(crate) fn outcome_unknown(
    err: &SdkError<impl ProvideErrorMetadata, aws_smithy_runtime_api::http::Response>,
) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => service.raw().status().is_server_error(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_secret_is_addressed_by_name_or_by_the_arn_in_its_region() {
        assert_eq!(regional_secret_id("kms-jwt/keyring", "eu-west-1"), "kms-jwt/keyring");
        assert_eq!(
            regional_secret_id(
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:kms-jwt/keyring-AbCdEf",
                "eu-west-1"
            ),
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:kms-jwt/keyring-AbCdEf"
        );
    }
}
