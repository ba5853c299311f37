//! The sign function's handler as Lambda drives it: the payload arrives as JSON text (what
//! `LambdaEvent<Box<RawValue>>` gives), over HTTP events and direct invocations, on the
//! in-memory twins of KMS and Secrets Manager.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kms_jwt::config::{SignConfig, SignTransport};
use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::minting::{parse_policy, ALLOW_ALL_POLICY};
use kms_jwt::ports::{KeySigner, KmsError};
use kms_jwt::rotate::{RotationPolicy, Rotator};
use kms_jwt::signer::{TokenSigner, MAX_BATCH_BYTES, MAX_REQUEST_BYTES};
use kms_jwt::SigningAlg;
use kms_jwt_sign::handle;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const ARN: &str = "arn:aws:kms:eu-west-1:123456789012:key/0f7c1d1e-0000-4000-8000-000000000000";
const API: SignTransport = SignTransport::ApiGateway;
const DIRECT: SignTransport = SignTransport::Direct;
/// The IAM principal API Gateway's IAM authorization names in the events below.
const CALLER: &str = "arn:aws:sts::123456789012:assumed-role/orders/session-1";
/// The Lambda request id the runtime hands the handler.
const REQUEST_ID: &str = "5a1c3a4e-1111-4222-8333-944455566677";

struct Twins {
    kms: Arc<MemoryKms>,
    store: Arc<MemoryStore>,
}

impl Twins {
    async fn new() -> Twins {
        let twins = Twins { kms: Arc::new(MemoryKms::new()), store: Arc::new(MemoryStore::new()) };
        let policy =
            RotationPolicy { rotation_period: 86_400, ..RotationPolicy::for_tests(SigningAlg::ES256) };
        let rotator = Rotator::new(
            Arc::clone(&twins.kms),
            Arc::clone(&twins.store),
            policy,
            kms_jwt::test_stacks::single_region_keyring(),
        );
        rotator.reconcile(kms_jwt::unix_now()).await.unwrap();
        twins
    }

    fn signer_with<K: KeySigner>(&self, kms: K) -> TokenSigner<K, Arc<MemoryStore>> {
        SignConfig::for_tests("https://issuer.test").token_signer(kms, Arc::clone(&self.store))
    }

    fn signer(&self) -> TokenSigner<Arc<MemoryKms>, Arc<MemoryStore>> {
        self.signer_with(Arc::clone(&self.kms))
    }

    /// (KMS `Sign` calls, keyring reads) so far.
    fn touched(&self) -> (u64, u64) {
        (self.kms.calls("Sign"), self.store.reads())
    }
}

/// The payload as lambda_runtime hands it over: serde_json over the bytes Lambda sent.
fn raw(text: &str) -> Box<RawValue> {
    serde_json::from_slice(text.as_bytes()).unwrap()
}

/// An HTTP API (payload 2.0) event.
fn http_event(method: &str, path: &str, body: Option<&str>) -> String {
    json!({"version": "2.0", "rawPath": path, "body": body, "isBase64Encoded": false,
           "headers": {"content-type": "application/json"},
           "requestContext": {"http": {"method": method, "path": path},
               "authorizer": {"iam": {"userArn": CALLER, "accountId": "123456789012"}}}})
    .to_string()
}

/// A REST API (payload 1.0) event with a base64 body.
fn rest_event(body_base64: &str) -> String {
    json!({"httpMethod": "POST", "path": "/prod/sign", "isBase64Encoded": true, "body": body_base64,
           "requestContext": {"stage": "prod", "identity": {"userArn": CALLER}}})
    .to_string()
}

/// Status, error code (if any) and headers of an HTTP answer.
fn http_outcome(answer: &Value) -> (u64, Option<String>, Value) {
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    let code = body["error"]["code"].as_str().map(str::to_owned);
    (answer["statusCode"].as_u64().unwrap(), code, answer["headers"].clone())
}

#[tokio::test]
async fn http_requests_get_http_answers() {
    let twins = Twins::new().await;
    let signer = twins.signer();
    let ok = handle(
        &signer,
        API,
        &raw(&http_event("POST", "/sign", Some(r#"{"claims":{"sub":"a"}}"#))),
        REQUEST_ID,
    )
    .await
    .unwrap();
    assert_eq!(ok["statusCode"], 200);
    let body: Value = serde_json::from_str(ok["body"].as_str().unwrap()).unwrap();
    assert!(body["token"].as_str().unwrap().starts_with("ey"));
    for (event, status, code) in [
        (http_event("POST", "/sign", Some("{not json")), 400, "InvalidJson"),
        (http_event("POST", "/sign", None), 400, "InvalidJson"),
        (http_event("POST", "/sign", Some(r#"{"claims":{"iat":1}}"#)), 400, "ReservedClaim"),
        (http_event("POST", "/sign", Some(r#"{"claims":{"a":1,"a":2}}"#)), 400, "DuplicateMember"),
        (
            http_event("POST", "/sign", Some(r#"{"claims":{"n":18446744073709551616}}"#)),
            400,
            "NumberOutOfRange",
        ),
        (http_event("GET", "/sign", None), 405, "MethodNotAllowed"),
        (http_event("POST", "/other", Some("{}")), 404, "NotFound"),
        (rest_event("not base64!"), 400, "InvalidJson"),
    ] {
        let answer = handle(&signer, API, &raw(&event), REQUEST_ID).await.unwrap();
        let (got_status, got_code, _) = http_outcome(&answer);
        assert_eq!((got_status, got_code.as_deref()), (status, Some(code)), "{event}");
    }
    let rest = handle(&signer, API, &raw(&rest_event(&STANDARD.encode(r#"{"claims":{}}"#))), REQUEST_ID)
        .await
        .unwrap();
    assert_eq!(rest["statusCode"], 200);
    let batch = STANDARD.encode(r#"{"requests":[{"claims":{}},{"claims":{"exp":1}}]}"#);
    let answer = handle(&signer, API, &raw(&rest_event(&batch)), REQUEST_ID).await.unwrap();
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["results"][1]["error"]["code"], "ReservedClaim");
    assert_eq!(twins.kms.calls("Sign"), 3);
}

#[tokio::test]
async fn oversize_http_bodies_get_413_without_touching_kms_or_the_keyring() {
    let twins = Twins::new().await;
    let signer = twins.signer();
    let before = twins.touched();
    // A single request one byte over its limit, plain and base64.
    let single = format!(r#"{{"claims":{{"a":"{}"}}}}"#, "x".repeat(MAX_REQUEST_BYTES - 18));
    assert_eq!(single.len(), MAX_REQUEST_BYTES + 1);
    // Over the batch limit: a body of invalid base64 whose decoded size, computed from its
    // length, is one byte over. Decoded, it would be InvalidJson; it is refused first.
    let encoded_over = "!".repeat((MAX_BATCH_BYTES + 1).div_ceil(3) * 4);
    let plain_over = format!("[{}]", "0,".repeat(MAX_BATCH_BYTES / 2));
    for event in [
        http_event("POST", "/sign", Some(&single)),
        rest_event(&STANDARD.encode(&single)),
        rest_event(&encoded_over),
        http_event("POST", "/sign", Some(&plain_over)),
        rest_event(&STANDARD.encode(&plain_over)),
    ] {
        let answer = handle(&signer, API, &raw(&event), REQUEST_ID).await.unwrap();
        let (status, code, _) = http_outcome(&answer);
        assert_eq!((status, code.as_deref()), (413, Some("RequestTooLarge")), "{}", &event[..200]);
    }
    assert_eq!(twins.touched(), before, "a refused request costs no KMS call and no keyring read");
    // Exactly at the limit (whitespace counts), a request is read and signed.
    let small = r#"{"claims":{"sub":"a"}}"#;
    let at_limit = format!("{small}{}", " ".repeat(MAX_REQUEST_BYTES - small.len()));
    for event in [http_event("POST", "/sign", Some(&at_limit)), rest_event(&STANDARD.encode(&at_limit))] {
        let answer = handle(&signer, API, &raw(&event), REQUEST_ID).await.unwrap();
        assert_eq!(http_outcome(&answer).0, 200, "{answer}");
    }
}

#[tokio::test]
async fn oversize_direct_invocations_are_refused_with_the_error_type() {
    let twins = Twins::new().await;
    let signer = twins.signer();
    let before = twins.touched();
    let single = format!(r#"{{"claims":{{"a":[{}0]}}}}"#, "0,".repeat(MAX_REQUEST_BYTES / 2));
    let batch = format!(r#"{{"requests":[{}]}}"#, vec![r#"{"claims":{"n":1}}"#; 200_000].join(","));
    for payload in [single, batch] {
        let error = handle(&signer, DIRECT, &raw(&payload), REQUEST_ID).await.unwrap_err();
        assert_eq!(error.error_type, "RequestTooLarge");
    }
    assert_eq!(twins.touched(), before);
    let signed = handle(&signer, DIRECT, &raw(r#"{"claims":{"sub":"a"}}"#), REQUEST_ID).await.unwrap();
    assert!(signed["token"].is_string());
    let refused = handle(&signer, DIRECT, &raw(r#"{"claims":{"exp":1}}"#), REQUEST_ID).await.unwrap_err();
    assert_eq!(refused.error_type, "ReservedClaim");
}

/// A KMS that fails every call the same way.
struct FailingKms(KmsError);

#[async_trait::async_trait]
impl KeySigner for FailingKms {
    async fn sign(
        &self,
        _: &str,
        _: SigningAlg,
        _: &kms_jwt::ports::SigningInput,
    ) -> Result<Vec<u8>, KmsError> {
        Err(self.0.clone())
    }
}

#[tokio::test]
async fn kms_failures_answer_retryable_or_not_and_name_no_arn() {
    let twins = Twins::new().await;
    for (error, status, code, retryable) in [
        (KmsError::Timeout { operation: "Sign" }, 503, "KmsTimeout", true),
        (KmsError::transport("Sign", format!("dispatch failure ({ARN})")), 503, "KmsUnavailable", true),
        (KmsError::Throttled, 503, "KmsThrottled", true),
        (KmsError::AccessDenied { operation: "Sign" }, 502, "KmsAccessDenied", false),
        (KmsError::NotFound(ARN.into()), 502, "KmsError", false),
        (KmsError::InvalidState(ARN.into()), 502, "KmsError", false),
    ] {
        let signer = twins.signer_with(FailingKms(error.clone()));
        let answer =
            handle(&signer, API, &raw(&http_event("POST", "/sign", Some(r#"{"claims":{}}"#))), REQUEST_ID)
                .await
                .unwrap();
        let (got_status, got_code, headers) = http_outcome(&answer);
        assert_eq!((got_status, got_code.as_deref()), (status, Some(code)), "{error}");
        assert_eq!(headers.get("retry-after").is_some(), retryable, "{error}");
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"]["retryable"], retryable);
        assert!(!answer.to_string().contains("arn:"), "{answer}");

        let direct = handle(&signer, DIRECT, &raw(r#"{"claims":{}}"#), REQUEST_ID).await.unwrap_err();
        assert_eq!(direct.error_type, code);
        assert!(!direct.error_message.contains("arn:"), "{}", direct.error_message);
    }
}

#[tokio::test]
async fn each_transport_reads_only_its_own_payloads() {
    let twins = Twins::new().await;
    let signer = twins.signer();
    let before = twins.touched();
    // An API Gateway function answers API Gateway events only.
    let error = handle(&signer, API, &raw(r#"{"claims":{"sub":"a"}}"#), REQUEST_ID).await.unwrap_err();
    assert_eq!(error.error_type, "InvalidRequest");
    // A route without IAM authorization names no caller: 403, never a direct invocation.
    let anonymous = json!({"version": "2.0", "rawPath": "/sign", "body": r#"{"claims":{}}"#,
        "requestContext": {"http": {"method": "POST", "path": "/sign"}}});
    let answer = handle(&signer, API, &raw(&anonymous.to_string()), REQUEST_ID).await.unwrap();
    assert_eq!(http_outcome(&answer).0, 403);
    assert_eq!(http_outcome(&answer).1.as_deref(), Some("NotAllowed"));
    // A direct function reads no request context: an event-shaped payload is a bad request
    // (its `headers` member is the first thing refused).
    let event = http_event("POST", "/sign", Some(r#"{"claims":{}}"#));
    let error = handle(&signer, DIRECT, &raw(&event), REQUEST_ID).await.unwrap_err();
    assert_eq!(error.error_type, "HeaderNotAllowed");
    assert_eq!(twins.touched(), before, "nothing signed, nothing read");
}

#[tokio::test]
async fn the_minting_policy_answers_403_over_http_naming_the_rule() {
    let twins = Twins::new().await;
    let policy = parse_policy(
        r#"{"version": 1, "rules": [{"id": "orders", "callers": ["arn:aws:iam::123456789012:role/orders"],
            "audiences": ["https://api.test"], "subject": "caller", "max_ttl_seconds": 60}]}"#,
    )
    .unwrap();
    let signer = twins.signer().with_minting_policy(policy);
    let ok = http_event("POST", "/sign", Some(r#"{"claims":{},"audience":"https://api.test"}"#));
    let answer = handle(&signer, API, &raw(&ok), REQUEST_ID).await.unwrap();
    assert_eq!(http_outcome(&answer).0, 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    let payload = body["token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
            .unwrap();
    assert_eq!(claims["sub"], "arn:aws:iam::123456789012:role/orders");
    let other = http_event("POST", "/sign", Some(r#"{"claims":{},"audience":"https://other.test"}"#));
    let answer = handle(&signer, API, &raw(&other), REQUEST_ID).await.unwrap();
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(http_outcome(&answer).0, 403);
    assert_eq!(
        body["error"]["message"],
        "not allowed by minting rule \"orders\": the audience is missing or not allowed"
    );
    // Direct invokers match no rule of this policy.
    let direct = handle(&signer, DIRECT, &raw(r#"{"claims":{},"audience":"https://api.test"}"#), REQUEST_ID)
        .await
        .unwrap_err();
    assert_eq!(direct.error_type, "NotAllowed");
    // The allow-all policy upgraded deployments start with signs what sign signed before.
    let open = twins.signer().with_minting_policy(parse_policy(ALLOW_ALL_POLICY).unwrap());
    assert!(handle(&open, DIRECT, &raw(r#"{"claims":{"sub":"x"}}"#), REQUEST_ID).await.is_ok());
}

#[tokio::test]
async fn a_workload_exchanges_its_identity_for_a_token_about_itself() {
    let twins = Twins::new().await;
    let policy = parse_policy(
        r#"{"version": 1, "rules": [{"id": "orders-self", "callers": ["arn:aws:iam::123456789012:role/orders"],
            "audiences": ["https://peer.test", "https://other.test"], "subject": "caller", "max_ttl_seconds": 900}]}"#,
    )
    .unwrap();
    let signer = twins.signer().with_minting_policy(policy);
    let body = r#"{"Audience": ["https://peer.test", "https://other.test"], "DurationSeconds": 600, "SigningAlgorithm": "ES256"}"#;
    let answer =
        handle(&signer, API, &raw(&http_event("POST", "/token", Some(body))), REQUEST_ID).await.unwrap();
    assert_eq!(http_outcome(&answer).0, 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert!(body["Expiration"].as_str().unwrap().ends_with('Z'), "{body}");
    let payload = body["WebIdentityToken"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
            .unwrap();
    assert_eq!(
        claims["sub"], "arn:aws:iam::123456789012:role/orders",
        "its own identity, the role without path"
    );
    assert_eq!(claims["aud"], json!(["https://peer.test", "https://other.test"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);

    let before = twins.touched().0;
    for (body, status, code) in [
        (r#"{"Audience": ["https://evil.test"]}"#, 403, "NotAllowed"),
        (r#"{"Audience": ["https://peer.test"], "DurationSeconds": 1200}"#, 403, "NotAllowed"),
        (r#"{"Audience": ["https://peer.test"], "SigningAlgorithm": "RS256"}"#, 400, "InvalidRequest"),
        (r#"{"Audience": []}"#, 400, "InvalidRequest"),
        (r#"{"Audience": ["https://peer.test"], "Subject": "admin"}"#, 400, "InvalidRequest"),
    ] {
        let answer =
            handle(&signer, API, &raw(&http_event("POST", "/token", Some(body))), REQUEST_ID).await.unwrap();
        assert_eq!(http_outcome(&answer).0, status, "{body}: {answer}");
        assert_eq!(http_outcome(&answer).1.as_deref(), Some(code), "{body}");
    }
    assert_eq!(twins.touched().0, before, "no refusal reached KMS");
}
