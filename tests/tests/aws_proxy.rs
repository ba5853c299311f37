//! The fault-injecting AWS proxy, exercised through the real AWS SDK against LocalStack.
//!
//! Tests that count KMS keys tag theirs with a unique description and count only those, so
//! other tests (and other runs) creating keys at the same time do not disturb the count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use kms_jwt_tests::aws_proxy::{AwsProxy, Fault};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A region of its own for the key-counting tests keeps their `ListKeys` short.
const KEY_COUNTING_REGION: &str = "sa-east-1";

async fn proxy() -> AwsProxy {
    // Also checks that AWS_ENDPOINT_URL is LocalStack on loopback.
    kms_jwt_tests::localstack::sdk(None).await;
    AwsProxy::start_for_localstack().await.unwrap()
}

/// Retries as the SDK's defaults (three attempts), but with short backoffs, to keep tests fast.
fn quick_retries() -> RetryConfig {
    RetryConfig::standard().with_initial_backoff(Duration::from_millis(10))
}

async fn kms_through(proxy: &AwsProxy, retry: RetryConfig) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&proxy.sdk_loader().retry_config(retry).load().await)
}

fn unique(what: &str) -> String {
    format!("kms-jwt-aws-proxy/{what}/{}", uuid::Uuid::new_v4())
}

/// The ARNs of the keys in `region` with this description, asked of LocalStack directly.
async fn keys_described(region: &'static str, description: &str) -> Vec<String> {
    let kms = aws_sdk_kms::Client::new(&kms_jwt_tests::localstack::sdk(Some(region)).await);
    let mut arns = Vec::new();
    let mut pages = kms.list_keys().into_paginator().send();
    while let Some(page) = pages.next().await {
        for key in page.unwrap().keys() {
            let arn = key.key_arn().unwrap();
            let meta = kms.describe_key().key_id(arn).send().await.unwrap().key_metadata.unwrap();
            if meta.description() == Some(description) {
                arns.push(arn.to_owned());
            }
        }
    }
    arns
}

/// Keys are never deleted at once; schedule it so LocalStack does not fill up across runs.
async fn schedule_deletion(region: &'static str, arns: &[String]) {
    let kms = aws_sdk_kms::Client::new(&kms_jwt_tests::localstack::sdk(Some(region)).await);
    for arn in arns {
        kms.schedule_key_deletion().key_id(arn).pending_window_in_days(7).send().await.unwrap();
    }
}

async fn create_signing_key(kms: &aws_sdk_kms::Client, description: &str) -> aws_sdk_kms::types::KeyMetadata {
    kms.create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .description(description)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
}

#[tokio::test]
async fn passes_kms_and_secrets_manager_calls_through_and_counts_them() {
    let proxy = proxy().await;
    let sdk = proxy.sdk_loader().load().await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);

    let key = create_signing_key(&kms, &unique("pass-through")).await;
    // Several calls on the SDK's pooled keep-alive connection.
    for _ in 0..3 {
        let public = kms.get_public_key().key_id(key.key_id()).send().await.unwrap();
        assert_eq!(public.key_id(), Some(key.arn().unwrap()));
    }
    kms.schedule_key_deletion().key_id(key.key_id()).pending_window_in_days(7).send().await.unwrap();

    assert_eq!(proxy.connections_accepted(), 1, "sequential KMS calls share one keep-alive connection");
    let secret_id = unique("pass-through");
    secrets.create_secret().name(&secret_id).secret_string("{\"v\":1}").send().await.unwrap();
    let value = secrets.get_secret_value().secret_id(&secret_id).send().await.unwrap();
    assert_eq!(value.secret_string(), Some("{\"v\":1}"));
    secrets.delete_secret().secret_id(&secret_id).force_delete_without_recovery(true).send().await.unwrap();

    assert_eq!((proxy.calls("CreateKey"), proxy.forwarded("CreateKey")), (1, 1));
    assert_eq!(proxy.calls("TrentService.GetPublicKey"), 3);
    assert_eq!(proxy.calls("GetSecretValue"), 1);
    assert_eq!(proxy.calls("secretsmanager.GetSecretValue"), 1);
    assert_eq!(proxy.calls("TrentService.GetSecretValue"), 0, "a full target names one service only");
    // The Secrets Manager client keeps a pool of its own.
    assert_eq!(proxy.connections_accepted(), 2);
    proxy.reset_counters();
    assert_eq!(proxy.calls("CreateKey"), 0);
}

#[tokio::test]
async fn a_lost_create_key_reply_makes_the_sdk_create_a_second_key() {
    let proxy = proxy().await;
    proxy.inject_times("CreateKey", Fault::LoseReply, 1);
    let sdk = proxy
        .sdk_loader()
        .region(aws_config::Region::new(KEY_COUNTING_REGION))
        .retry_config(quick_retries())
        .load()
        .await;
    let description = unique("lose-reply");

    // The client sees one success...
    let key = create_signing_key(&aws_sdk_kms::Client::new(&sdk), &description).await;

    // ...but the retry made a second key: the first attempt took effect, its reply was lost.
    assert_eq!((proxy.calls("CreateKey"), proxy.forwarded("CreateKey")), (2, 2));
    let keys = keys_described(KEY_COUNTING_REGION, &description).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&key.arn().unwrap().to_owned()));
    schedule_deletion(KEY_COUNTING_REGION, &keys).await;
}

#[tokio::test]
async fn a_failure_before_the_call_is_retried_and_the_call_happens_once() {
    let proxy = proxy().await;
    proxy.inject_times("TrentService.CreateKey", Fault::FailBefore, 1);
    let sdk = proxy
        .sdk_loader()
        .region(aws_config::Region::new(KEY_COUNTING_REGION))
        .retry_config(quick_retries())
        .load()
        .await;
    let description = unique("fail-before");

    create_signing_key(&aws_sdk_kms::Client::new(&sdk), &description).await;

    assert_eq!((proxy.calls("CreateKey"), proxy.forwarded("CreateKey")), (2, 1));
    let keys = keys_described(KEY_COUNTING_REGION, &description).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    schedule_deletion(KEY_COUNTING_REGION, &keys).await;

    // The rule expired after one call.
    let kms = kms_through(&proxy, quick_retries()).await;
    kms.list_keys().limit(1).send().await.unwrap();
    assert_eq!(proxy.calls("CreateKey"), 2);
}

#[tokio::test]
async fn a_lost_reply_by_closing_the_connection_is_retried() {
    let proxy = proxy().await;
    proxy.inject_times("ListKeys", Fault::LoseReplyByClosing, 1);
    let kms = kms_through(&proxy, quick_retries()).await;

    kms.list_keys().limit(1).send().await.unwrap();
    assert_eq!((proxy.calls("ListKeys"), proxy.forwarded("ListKeys")), (2, 2));

    // Without retries the client sees a dispatch failure, not an answer.
    proxy.inject_times("ListKeys", Fault::LoseReplyByClosing, 1);
    let kms = kms_through(&proxy, RetryConfig::standard().with_max_attempts(1)).await;
    let error = kms.list_keys().limit(1).send().await.unwrap_err();
    assert!(matches!(error, SdkError::DispatchFailure(_)), "{error:?}");
}

#[tokio::test]
async fn throttling_surfaces_as_throttling_exception_after_the_retries() {
    let proxy = proxy().await;
    proxy.inject("ListKeys", Fault::Throttle);
    proxy.inject("GetSecretValue", Fault::Throttle);

    let sdk = proxy.sdk_loader().retry_config(RetryConfig::standard().with_max_attempts(1)).load().await;
    let error = aws_sdk_kms::Client::new(&sdk).list_keys().send().await.unwrap_err();
    assert_eq!(error.code(), Some("ThrottlingException"), "{error:?}");
    assert_eq!(error.message(), Some("Rate exceeded"));
    let error = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(unique("throttled"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("ThrottlingException"), "{error:?}");
    assert_eq!((proxy.calls("ListKeys"), proxy.forwarded("ListKeys")), (1, 0));

    // With the default three attempts, the SDK retries throttling.
    let kms = kms_through(&proxy, quick_retries()).await;
    let error = kms.list_keys().send().await.unwrap_err();
    assert_eq!(error.code(), Some("ThrottlingException"));
    assert_eq!(proxy.calls("ListKeys"), 1 + 3);

    proxy.clear("ListKeys");
    kms.list_keys().limit(1).send().await.unwrap();
    assert_eq!(proxy.forwarded("ListKeys"), 1);
}

#[tokio::test]
async fn a_hanging_call_is_cut_by_the_sdk_operation_timeout() {
    let proxy = proxy().await;
    proxy.inject_times("ListKeys", Fault::Hang, 1);
    let sdk = proxy
        .sdk_loader()
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(1)).build())
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&sdk);

    let started = Instant::now();
    let error = kms.list_keys().send().await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, SdkError::TimeoutError(_)), "{error:?}");
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!((proxy.calls("ListKeys"), proxy.forwarded("ListKeys")), (1, 0));
    // The client gave up and closed its connection: the proxy lets go of it too.
    let deadline = Instant::now() + Duration::from_secs(2);
    while proxy.connections_open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.connections_open(), 0);

    // The rule expired; the same client works again. Its 1 s budget is tight for a loaded
    // LocalStack, so a slow answer may time out too: what matters is that one gets through.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match kms.list_keys().limit(1).send().await {
            Ok(_) => break,
            Err(SdkError::TimeoutError(_)) if attempts < 5 => continue,
            Err(other) => panic!("the client did not recover after {attempts} attempt(s): {other:?}"),
        }
    }
    assert!(proxy.forwarded("ListKeys") >= 1);
}

#[tokio::test]
async fn a_delay_holds_the_call_then_forwards_it() {
    let proxy = proxy().await;
    proxy.inject_times("ListKeys", Fault::Delay(Duration::from_millis(700)), 1);
    let kms = kms_through(&proxy, quick_retries()).await;

    let started = Instant::now();
    kms.list_keys().limit(1).send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!((proxy.calls("ListKeys"), proxy.forwarded("ListKeys")), (1, 1));
}

#[tokio::test]
async fn rules_for_one_operation_apply_in_the_order_they_were_set() {
    let proxy = proxy().await;
    proxy.inject_times("ListKeys", Fault::FailBefore, 2);
    proxy.inject("ListKeys", Fault::Throttle);
    let kms = kms_through(&proxy, quick_retries()).await;

    // Two 500s, then throttled until cleared.
    let error = kms.list_keys().send().await.unwrap_err();
    assert_eq!(error.code(), Some("ThrottlingException"));
    assert_eq!((proxy.calls("ListKeys"), proxy.forwarded("ListKeys")), (3, 0));

    proxy.clear_all();
    kms.list_keys().limit(1).send().await.unwrap();
}

#[tokio::test]
async fn deny_answers_access_denied() {
    let proxy = proxy().await;
    proxy.inject("DescribeKey", Fault::Deny);
    let kms = kms_through(&proxy, quick_retries()).await;

    let error = kms.describe_key().key_id("alias/anything").send().await.unwrap_err();
    assert_eq!(error.code(), Some("AccessDeniedException"), "{error:?}");
    assert!(error.message().unwrap().contains("is not authorized to perform: kms:DescribeKey"));
    // Not retried, never forwarded.
    assert_eq!((proxy.calls("DescribeKey"), proxy.forwarded("DescribeKey")), (1, 0));
}

#[tokio::test]
async fn a_new_key_is_denied_to_the_listed_operations_for_a_while_after_creation() {
    let proxy = proxy().await;
    let kms = kms_through(&proxy, quick_retries()).await;
    let older = create_signing_key(&kms, &unique("deny-after-create/older")).await;
    let window = Duration::from_secs(3);
    proxy.deny_after_create(&["GetPublicKey", "TrentService.DisableKey"], window);

    let key = create_signing_key(&kms, &unique("deny-after-create")).await;
    // Not before: the window starts when the proxy sees the answer.
    let created = Instant::now();
    for key_id in [key.key_id(), key.arn().unwrap()] {
        let error = kms.get_public_key().key_id(key_id).send().await.unwrap_err();
        assert_eq!(error.code(), Some("AccessDeniedException"), "{error:?}");
        assert!(error.message().unwrap().contains(key.arn().unwrap()), "{error:?}");
    }
    let error = kms.disable_key().key_id(key.key_id()).send().await.unwrap_err();
    assert_eq!(error.code(), Some("AccessDeniedException"));
    assert_eq!(proxy.forwarded("GetPublicKey"), 0);
    // Other operations, and keys created before, are not affected.
    kms.describe_key().key_id(key.key_id()).send().await.unwrap();
    kms.get_public_key().key_id(older.key_id()).send().await.unwrap();
    assert!(created.elapsed() < window, "the checks above took too long to prove anything");

    tokio::time::sleep(window.saturating_sub(created.elapsed())).await;
    kms.get_public_key().key_id(key.key_id()).send().await.unwrap();
    kms.disable_key().key_id(key.key_id()).send().await.unwrap();
    for arn in [older.arn().unwrap(), key.arn().unwrap()] {
        kms.schedule_key_deletion().key_id(arn).pending_window_in_days(7).send().await.unwrap();
    }
}

#[tokio::test]
async fn a_rewrite_answers_a_synthetic_list_keys_page() {
    let proxy = proxy().await;
    proxy.inject_times(
        "ListKeys",
        Fault::rewrite(|request, answer| {
            let asked = request["Limit"].as_u64().unwrap_or(100);
            let keys: Vec<_> = (0..asked)
                .map(|i| {
                    let id = format!("00000000-0000-0000-0000-{i:012}");
                    json!({"KeyId": id, "KeyArn": format!("arn:aws:kms:us-east-1:000000000000:key/{id}")})
                })
                .collect();
            answer["Keys"] = json!(keys);
            answer["Truncated"] = json!(true);
            answer["NextMarker"] = json!("synthetic");
        }),
        1,
    );
    let kms = kms_through(&proxy, quick_retries()).await;

    let page = kms.list_keys().limit(1000).send().await.unwrap();
    assert_eq!(page.keys().len(), 1000);
    assert_eq!(page.keys()[999].key_id(), Some("00000000-0000-0000-0000-000000000999"));
    assert!(page.truncated());
    assert_eq!(page.next_marker(), Some("synthetic"));
    assert_eq!(proxy.forwarded("ListKeys"), 1);
}

#[tokio::test]
async fn down_fails_calls_fast_and_cuts_pooled_connections_until_up_again() {
    let proxy = proxy().await;
    let sdk = proxy.sdk_loader().retry_config(RetryConfig::standard().with_max_attempts(1)).load().await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    // Leaves a keep-alive connection in the SDK's pool.
    kms.list_keys().limit(1).send().await.unwrap();

    proxy.set_up(false);
    assert!(!proxy.is_up());
    let started = Instant::now();
    let error = kms.list_keys().limit(1).send().await.unwrap_err();
    assert!(matches!(error, SdkError::DispatchFailure(_)), "{error:?}");
    let error = secrets.list_secrets().send().await.unwrap_err();
    assert!(matches!(error, SdkError::DispatchFailure(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());

    proxy.set_up(true);
    kms.list_keys().limit(1).send().await.unwrap();
    secrets.list_secrets().send().await.unwrap();
}

#[tokio::test]
async fn dropping_the_proxy_ends_hanging_connections_and_stops_listening() {
    let proxy = proxy().await;
    proxy.inject("ListKeys", Fault::Hang);
    let address = proxy.endpoint().trim_start_matches("http://").to_owned();
    let mut connection = tokio::net::TcpStream::connect(&address).await.unwrap();
    connection
        .write_all(
            b"POST / HTTP/1.1\r\nhost: kms\r\nx-amz-target: TrentService.ListKeys\r\n\
              content-type: application/x-amz-json-1.1\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_millis(300), connection.read_to_end(&mut answer)).await;
    assert!(read.is_err(), "hanging: no answer, connection open");
    assert_eq!(proxy.calls("ListKeys"), 1);

    drop(proxy);
    let read = tokio::time::timeout(Duration::from_secs(2), connection.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection ends with the proxy");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(tokio::net::TcpStream::connect(&address).await.is_err(), "still listening");
}

#[tokio::test]
async fn an_unreachable_upstream_answers_bad_gateway() {
    kms_jwt_tests::localstack::sdk(None).await;
    let vacated = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = vacated.local_addr().unwrap().port();
    drop(vacated);
    let proxy = AwsProxy::start(&format!("http://127.0.0.1:{closed_port}")).await.unwrap();
    let sdk = proxy.sdk_loader().retry_config(RetryConfig::standard().with_max_attempts(1)).load().await;

    let error = aws_sdk_kms::Client::new(&sdk).list_keys().send().await.unwrap_err();
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(502), "{error:?}");
    assert_eq!(error.code(), Some("BadGateway"));
    assert!(AwsProxy::start("https://127.0.0.1:4566").await.is_err(), "TLS upstreams are not supported");
}
