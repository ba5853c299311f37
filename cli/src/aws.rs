//! The AWS side of the command line, read-only except for `Invoke`: the SDK configuration as
//! the AWS CLI resolves it, rotate's settings, the keyring (through the domain's
//! `SecretsManagerStore`), each key's state and policy in every region (`DescribeKey`,
//! `GetKeyPolicy`), the alarms, and the one call that acts: invoking the rotate function.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;
use kms_jwt::config::RotateConfig;
use kms_jwt::ports::KeyringStore;
use kms_jwt::Keyring;
use serde::Serialize;

use crate::args::Global;
use crate::error::CliError;

/// One AWS call's limit (each attempt, and all retries together).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a rotate invocation may take: the function's own timeout is shorter.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The clients of one session.
pub struct Aws {
    pub sdk: aws_config::SdkConfig,
    pub region: String,
    lambda: aws_sdk_lambda::Client,
}

/// What the clear message of a failed call says: the action, the resource, and the fix.
pub fn call_error<E>(action: &str, target: &str, region: &str, err: &SdkError<E>) -> CliError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // A service's answer says it in its code and message; anything else (no credentials, no
    // connection) needs the whole chain.
    let text = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(err).to_string(),
    };
    explain(action, target, region, err.code(), &text)
}

/// [`call_error`] on its parts (pure, tested).
pub fn explain(action: &str, target: &str, region: &str, code: Option<&str>, text: &str) -> CliError {
    let lower = text.to_lowercase();
    match code {
        Some(c) if c.contains("AccessDenied") || c == "UnauthorizedOperation" || c == "AuthorizationError" => {
            CliError::Aws(format!(
                "access denied: {action} on {target} ({region}). The caller needs `{action}` on it (its IAM policy, and for a KMS key the key's own policy)"
            ))
        }
        Some("ResourceNotFoundException" | "NotFoundException" | "NotFound") => {
            CliError::Aws(format!("{target} not found in {region} ({action}): check the name and --region"))
        }
        Some(
            "UnrecognizedClientException" | "InvalidClientTokenId" | "ExpiredToken" | "ExpiredTokenException"
            | "InvalidSignatureException",
        ) => CliError::Aws(format!(
            "the AWS credentials were refused ({action}: {}): refresh them (`aws sso login --profile …`) or choose others with --profile",
            code.unwrap_or_default()
        )),
        _ if lower.contains("credential") || lower.contains("no identity") => {
            // The SDK's text lists every provider it tried, with debug dumps: keep its summary.
            let summary = text.split(" Attempted:").next().unwrap_or(text).trim_end_matches('.');
            CliError::Aws(format!(
                "no usable AWS credentials for {action}: pass --profile or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws sso login` ({summary})"
            ))
        }
        _ => CliError::Aws(format!("{action} on {target} ({region}) failed: {text}")),
    }
}

impl Aws {
    /// The SDK configuration the AWS CLI would use: `--profile`, `--region`, `--endpoint-url`
    /// over the standard environment and files.
    pub async fn connect(global: &Global) -> Result<Aws, CliError> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(CALL_TIMEOUT)
            .operation_timeout(CALL_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
        if let Some(profile) = &global.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &global.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &global.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
            CliError::Config(
                "no AWS Region: pass --region, set AWS_REGION, or give the profile a region (`aws configure set region …`)"
                    .into(),
            )
        })?;
        let mut lambda = aws_sdk_lambda::config::Builder::from(&sdk).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(INVOKE_TIMEOUT)
                .operation_timeout(INVOKE_TIMEOUT)
                .build(),
        );
        if let Some(endpoint) = &global.lambda_endpoint_url {
            lambda = lambda.endpoint_url(endpoint);
        }
        // An invocation is not retried: a rotate run that timed out on our side may still be
        // running, and the operator decides whether to run it again.
        lambda = lambda.retry_config(aws_config::retry::RetryConfig::disabled());
        Ok(Aws { region, lambda: aws_sdk_lambda::Client::from_conf(lambda.build()), sdk })
    }

    fn regional(&self, region: &str) -> aws_config::SdkConfig {
        kms_jwt::aws::regional_sdk_config(&self.sdk, region)
    }

    /// The rotate function's environment variables (GetFunctionConfiguration).
    pub async fn function_environment(&self, function: &str) -> Result<HashMap<String, String>, CliError> {
        let out = self
            .lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
            .map_err(|e| call_error("lambda:GetFunctionConfiguration", function, &self.region, &e))?;
        Ok(out.environment.and_then(|e| e.variables).unwrap_or_default())
    }

    /// The keyring document and its version; `None` when the secret has no current value.
    pub async fn keyring(
        &self,
        secret_id: &str,
        region: &str,
    ) -> Result<Option<(Keyring, String)>, CliError> {
        let store = kms_jwt::aws::SecretsManagerStore::new(
            &self.regional(region),
            kms_jwt::aws::regional_secret_id(secret_id, region),
            None,
        );
        let stored = store.load().await.map_err(|e| {
            let text = e.to_string();
            if text.contains("AccessDenied") {
                CliError::Aws(format!(
                    "access denied: secretsmanager:GetSecretValue on {secret_id} ({region}). The caller needs `secretsmanager:GetSecretValue` on the secret and `kms:Decrypt` on the key that encrypts it"
                ))
            } else {
                CliError::Keyring(format!("reading the keyring {secret_id} ({region}): {text}"))
            }
        })?;
        match stored {
            None => Ok(None),
            Some(doc) => Keyring::from_json(&doc.text).map(|ring| Some((ring, doc.version_id))).map_err(|e| {
                CliError::Keyring(format!(
                    "the keyring {secret_id} ({region}) is refused: {e}. Rotate will not touch it either: restore the last good version (docs/runbook.md, stalled-rotation alarm)"
                ))
            }),
        }
    }

    /// The key's state in `region` (`DescribeKey`), as a word: Enabled, Disabled,
    /// PendingDeletion, … or `missing` / `denied` / `error`.
    pub async fn key_state(&self, arn: &str, region: &str) -> KmsState {
        let regional_arn = kms_jwt::arn::local_key_arn(arn, Some(region));
        let client = aws_sdk_kms::Client::new(&self.regional(region));
        match client.describe_key().key_id(&regional_arn).send().await {
            Ok(out) => KmsState {
                region: region.to_owned(),
                state: out
                    .key_metadata
                    .and_then(|m| m.key_state)
                    .map_or_else(|| "unknown".to_owned(), |s| s.as_str().to_owned()),
                detail: None,
            },
            Err(e) => {
                let (state, detail) = match e.code() {
                    Some("NotFoundException") => ("missing", None),
                    Some(c) if c.contains("AccessDenied") => {
                        ("denied", Some("needs kms:DescribeKey".to_owned()))
                    }
                    _ => (
                        "error",
                        Some(e.message().map_or_else(|| DisplayErrorContext(&e).to_string(), str::to_owned)),
                    ),
                };
                KmsState { region: region.to_owned(), state: state.to_owned(), detail }
            }
        }
    }

    /// The key's `default` policy in `region`.
    pub async fn key_policy(&self, arn: &str, region: &str) -> Result<String, CliError> {
        let regional_arn = kms_jwt::arn::local_key_arn(arn, Some(region));
        let client = aws_sdk_kms::Client::new(&self.regional(region));
        let out = client
            .get_key_policy()
            .key_id(&regional_arn)
            .policy_name("default")
            .send()
            .await
            .map_err(|e| call_error("kms:GetKeyPolicy", &regional_arn, region, &e))?;
        Ok(out.policy.unwrap_or_default())
    }

    /// Alarms on `metric` of `namespace` with `dimension` = `value`.
    pub async fn alarms_for(
        &self,
        namespace: &str,
        metric: &str,
        dimension: (&str, &str),
    ) -> Result<Vec<String>, CliError> {
        let client = aws_sdk_cloudwatch::Client::new(&self.sdk);
        let out = client
            .describe_alarms_for_metric()
            .namespace(namespace)
            .metric_name(metric)
            .dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder().name(dimension.0).value(dimension.1).build(),
            )
            .send()
            .await
            .map_err(|e| call_error("cloudwatch:DescribeAlarmsForMetric", metric, &self.region, &e))?;
        Ok(out.metric_alarms.unwrap_or_default().into_iter().filter_map(|a| a.alarm_name).collect())
    }

    /// Invoke the rotate function with `payload` and wait for its report. A function error
    /// (`errorType`, `errorMessage`) becomes [`CliError::Rotate`].
    pub async fn invoke(
        &self,
        function: &str,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value, CliError> {
        let body = serde_json::to_vec(payload).map_err(|e| CliError::BadInput(e.to_string()))?;
        let out = self
            .lambda
            .invoke()
            .function_name(function)
            .payload(aws_smithy_types::Blob::new(body))
            .send()
            .await
            .map_err(|e| call_error("lambda:InvokeFunction", function, &self.region, &e))?;
        let bytes = out.payload.map(|b| b.into_inner()).unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| CliError::Rotate {
            code: "UnreadableAnswer".into(),
            message: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
        })?;
        if out.function_error.is_some() || answer.get("errorType").is_some() {
            let field = |name: &str| answer.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            return Err(CliError::Rotate { code: field("errorType"), message: field("errorMessage") });
        }
        Ok(answer)
    }
}

/// A key's KMS state in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KmsState {
    pub region: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl KmsState {
    pub fn enabled(&self) -> bool {
        self.state == "Enabled"
    }
}

/// Rotate's settings from `vars` (its Lambda environment, or this process's), with the
/// function's region where the environment lacks one.
pub fn rotate_config(
    vars: impl Fn(&str) -> Option<String>,
    region: &str,
    secret_override: Option<&str>,
) -> Result<RotateConfig, CliError> {
    let lookup = |name: &str| match name {
        "KEYRING_SECRET_ID" if secret_override.is_some() => secret_override.map(str::to_owned),
        "AWS_REGION" => vars(name).or_else(|| Some(region.to_owned())),
        _ => vars(name),
    };
    RotateConfig::from_lookup(lookup).map_err(|e| CliError::Config(format!("rotate's configuration: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn failed_calls_say_what_to_do() {
        let denied = explain("kms:DescribeKey", "arn:k", "us-east-1", Some("AccessDeniedException"), "x");
        assert!(denied.to_string().contains("needs `kms:DescribeKey`"), "{denied}");
        let missing = explain(
            "lambda:GetFunctionConfiguration",
            "rot",
            "eu-west-1",
            Some("ResourceNotFoundException"),
            "",
        );
        assert!(missing.to_string().contains("rot not found in eu-west-1"), "{missing}");
        let creds =
            explain("kms:DescribeKey", "k", "r", None, "dispatch failure: no credentials in the chain");
        assert!(creds.to_string().contains("--profile"), "{creds}");
        let chain = explain(
            "kms:DescribeKey",
            "k",
            "r",
            None,
            "no credentials found in chain. Attempted:\n  Environment: …",
        );
        assert!(!chain.to_string().contains("Attempted"), "{chain}");
        let expired = explain("kms:DescribeKey", "k", "r", Some("ExpiredTokenException"), "");
        assert!(expired.to_string().contains("aws sso login"), "{expired}");
    }

    #[test]
    fn the_config_takes_the_secret_override_and_the_region() {
        let env: HashMap<&str, &str> = [
            ("KEYRING_SECRET_ID", "from-env"),
            ("KEY_ADMIN_ROLE_ARN", "arn:aws:iam::000000000000:role/kms-jwt-rotate"),
            ("KEY_USER_ROLE_ARNS", "arn:aws:iam::000000000000:role/kms-jwt-sign"),
        ]
        .into_iter()
        .collect();
        let vars = |n: &str| env.get(n).map(|v| (*v).to_owned());
        let config = rotate_config(vars, "eu-west-1", Some("override")).unwrap();
        assert_eq!(config.keyring_secret_id, "override");
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        let refused = rotate_config(|_| None, "eu-west-1", None).unwrap_err();
        assert!(refused.to_string().contains("KEYRING_SECRET_ID"), "{refused}");
    }
}
