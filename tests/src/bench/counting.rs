//! Counts the AWS API calls that actually go on the wire, per operation, by wrapping the SDK's
//! HTTP client. Retries count as calls: this is what AWS bills and throttles.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// Calls per operation, shared by every client built from one SDK configuration. Operations
/// are named as the JSON protocols put them in `X-Amz-Target`, shortened to
/// `service:Operation` (`kms:Sign`, `secretsmanager:GetSecretValue`).
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallCounter {
    fn record(&self, operation: String) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(operation).or_default() += 1;
    }

    /// A copy of the counts so far.
    pub fn snapshot(&self) -> CallCounts {
        CallCounts(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Calls per operation at one moment; subtract two to count what happened in between.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts(BTreeMap<String, u64>);

impl CallCounts {
    pub fn of(&self, operation: &str) -> u64 {
        self.0.get(operation).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The calls made since `earlier`.
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        CallCounts(
            self.0.iter().map(|(op, n)| (op.clone(), n - earlier.of(op))).filter(|(_, n)| *n > 0).collect(),
        )
    }

    /// `kms:Sign=100, secretsmanager:GetSecretValue=1`, or `none`.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0.iter().map(|(op, n)| format!("{op}={n}")).collect::<Vec<_>>().join(", ")
    }
}

/// `TrentService.Sign` → `kms:Sign`; `secretsmanager.GetSecretValue` → `secretsmanager:GetSecretValue`.
fn operation_name(target: &str) -> String {
    match target.split_once('.') {
        Some(("TrentService", op)) => format!("kms:{op}"),
        Some((service, op)) => format!("{service}:{op}"),
        None => target.to_owned(),
    }
}

/// An [`HttpClient`] that counts each request, then hands it to the real client.
#[derive(Debug)]
pub struct CountingHttpClient {
    inner: SharedHttpClient,
    counter: CallCounter,
}

impl CountingHttpClient {
    pub fn new(inner: SharedHttpClient, counter: CallCounter) -> Self {
        CountingHttpClient { inner, counter }
    }
}

impl HttpClient for CountingHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CountingConnector {
            inner: self.inner.http_connector(settings, components),
            counter: self.counter.clone(),
        })
    }
}

#[derive(Debug)]
struct CountingConnector {
    inner: SharedHttpConnector,
    counter: CallCounter,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = request
            .headers()
            .get("x-amz-target")
            .map(operation_name)
            .unwrap_or_else(|| format!("{} {}", request.method(), request.uri()));
        self.counter.record(operation);
        self.inner.call(request)
    }
}

/// The SDK configuration the functions load (`aws_config::load_defaults`), with every call
/// counted on the wire.
pub async fn counted_sdk_config() -> (aws_config::SdkConfig, CallCounter) {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let counter = CallCounter::default();
    let real = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(CountingHttpClient::new(real, counter.clone()))
        .load()
        .await;
    (sdk, counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_by_service() {
        assert_eq!(operation_name("TrentService.Sign"), "kms:Sign");
        assert_eq!(operation_name("secretsmanager.GetSecretValue"), "secretsmanager:GetSecretValue");
        assert_eq!(operation_name("odd"), "odd");
    }

    #[test]
    fn counts_subtract_and_describe() {
        let counter = CallCounter::default();
        counter.record("kms:Sign".into());
        let before = counter.snapshot();
        counter.record("kms:Sign".into());
        counter.record("kms:Sign".into());
        counter.record("secretsmanager:GetSecretValue".into());
        let delta = counter.snapshot().since(&before);
        assert_eq!((delta.of("kms:Sign"), delta.of("secretsmanager:GetSecretValue")), (2, 1));
        assert_eq!(delta.total(), 3);
        assert_eq!(delta.describe(), "kms:Sign=2, secretsmanager:GetSecretValue=1");
        assert_eq!(CallCounts::default().describe(), "none");
    }
}
