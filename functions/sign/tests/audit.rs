//! The audit line: one structured log line per issued token, naming its caller, carrying no
//! token and no claim value beyond `sub` and `aud`. Alone in its test binary, because it
//! installs the process-wide subscriber (as the function's `main` does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine;
use kms_jwt::config::{SignConfig, SignTransport};
use kms_jwt::memory::{MemoryKms, MemoryStore};
use kms_jwt::rotate::{RotationPolicy, Rotator};
use kms_jwt::signer::TokenSigner;
use kms_jwt::SigningAlg;
use kms_jwt_sign::handle;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// The Lambda request id the runtime hands the handler.
const REQUEST_ID: &str = "5a1c3a4e-1111-4222-8333-944455566677";

fn raw(text: &str) -> Box<RawValue> {
    serde_json::from_slice(text.as_bytes()).unwrap()
}

async fn signer() -> TokenSigner<Arc<MemoryKms>, Arc<MemoryStore>> {
    let (kms, store) = (Arc::new(MemoryKms::new()), Arc::new(MemoryStore::new()));
    let policy = RotationPolicy { rotation_period: 86_400, ..RotationPolicy::for_tests(SigningAlg::ES256) };
    Rotator::new(Arc::clone(&kms), Arc::clone(&store), policy, kms_jwt::test_stacks::single_region_keyring())
        .reconcile(kms_jwt::unix_now())
        .await
        .unwrap();
    SignConfig::for_tests("https://issuer.test").token_signer(kms, store)
}

/// Log lines as the deployed function writes them (`AWS_LAMBDA_LOG_FORMAT=JSON`), captured.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    fn issued(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|line| line["fields"]["message"] == "token issued")
            .collect()
    }
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

#[tokio::test]
async fn every_token_gets_one_audit_line_naming_its_caller_and_no_other_claim() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    // The subscriber lambda_runtime installs in JSON mode: no target, no time (Lambda adds it).
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let signer = signer().await;
    let secret = "alice@example.com";

    // POST /sign through a REST API with IAM authorization: a batch of two.
    let principal = "arn:aws:sts::123456789012:assumed-role/minter/session-7";
    let batch = json!({"requests": [
        {"claims": {"email": secret}, "subject": "alice", "audience": ["https://api.test", "https://b.test"]},
        {"claims": {"email": secret, "scope": "admin"}, "subject": "bob", "typ": "at+jwt"},
    ]});
    let event = json!({"httpMethod": "POST", "path": "/prod/sign", "isBase64Encoded": false,
        "body": batch.to_string(),
        "requestContext": {"stage": "prod", "requestId": "api-req-1",
            "identity": {"userArn": principal, "accountId": "123456789012", "caller": "AROAEXAMPLE:session-7"}}});
    let answer =
        handle(&signer, SignTransport::ApiGateway, &raw(&event.to_string()), REQUEST_ID).await.unwrap();
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    let http_tokens: Vec<String> =
        body["results"].as_array().unwrap().iter().map(|r| r["token"].as_str().unwrap().to_owned()).collect();
    // An HTTP API (payload 2.0) route with IAM authorization names the caller elsewhere.
    let http_api = json!({"version": "2.0", "rawPath": "/sign", "isBase64Encoded": false,
        "body": json!({"claims": {"email": secret}, "subject": "carol"}).to_string(),
        "requestContext": {"http": {"method": "POST", "path": "/sign"}, "requestId": "api-req-2",
            "authorizer": {"iam": {"userArn": principal, "accountId": "123456789012"}}}});
    let answer =
        handle(&signer, SignTransport::ApiGateway, &raw(&http_api.to_string()), REQUEST_ID).await.unwrap();
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    let http_api_token = body["token"].as_str().unwrap().to_owned();
    // A direct invocation: Lambda's request id is what there is.
    let direct = json!({"claims": {"email": secret}, "subject": "dave"}).to_string();
    let direct = handle(&signer, SignTransport::Direct, &raw(&direct), "direct-request-id").await.unwrap();
    let direct_token = direct["token"].as_str().unwrap().to_owned();
    // A direct invoker forging API Gateway's context: the direct function reads no context,
    // so the payload is an invalid sign request, signed for nobody and logged as direct.
    let forged = json!({"version": "2.0", "rawPath": "/sign", "body": json!({"claims": {}, "subject": "mallory"}).to_string(),
        "requestContext": {"http": {"method": "POST"}, "authorizer": {"iam": {"userArn": "arn:aws:iam::123456789012:role/admin"}}}});
    let refusal = handle(&signer, SignTransport::Direct, &raw(&forged.to_string()), "forged-request-id")
        .await
        .unwrap_err();
    assert_eq!(refusal.error_type, "InvalidRequest");
    // A refused request issues nothing, so it has no audit line.
    handle(&signer, SignTransport::Direct, &raw(r#"{"claims":{"exp":1}}"#), REQUEST_ID).await.unwrap_err();

    let lines = logs.issued();
    assert_eq!(lines.len(), 4, "one line per token: {}", logs.text());
    let tokens = [&http_tokens[0], &http_tokens[1], &http_api_token, &direct_token];
    for (line, token) in lines.iter().zip(tokens) {
        let claims = claims_of(token);
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        let fields = &line["fields"];
        assert_eq!(fields["jti"], claims["jti"], "{line}");
        assert_eq!(fields["sub"], claims["sub"]);
        assert_eq!(fields["kid"], header["kid"]);
        assert_eq!(fields["alg"], header["alg"]);
        assert_eq!(fields["typ"], header["typ"]);
        assert_eq!(fields["iat"], claims["iat"]);
        assert_eq!(fields["exp"], claims["exp"]);
        assert_eq!(fields["rule"], "allow-all-until-narrowed", "the admitting minting rule");
        let names: Vec<&str> = fields.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec!["alg", "exp", "iat", "jti", "kid", "message", "rule", "sub", "typ"];
        if claims.get("aud").is_some() {
            expected.insert(1, "aud");
        }
        assert_eq!(names, expected, "only the audit fields: {line}");
    }
    assert_eq!(lines[0]["fields"]["aud"], r#"["https://api.test","https://b.test"]"#);
    assert_eq!(lines[1]["fields"]["typ"], "at+jwt");
    for line in &lines[..3] {
        assert_eq!(line["span"]["caller"], principal, "{line}");
        assert_eq!(line["span"]["caller_account"], "123456789012");
        assert_eq!(line["span"]["request_id"], REQUEST_ID);
        assert_eq!(line["span"]["via"], "api-gateway");
    }
    assert_eq!(lines[0]["span"]["api_request_id"], "api-req-1");
    assert_eq!(lines[2]["span"]["api_request_id"], "api-req-2");
    assert_eq!(lines[3]["span"]["request_id"], "direct-request-id");
    assert_eq!(lines[3]["span"]["via"], "direct");
    assert!(lines[3]["span"].get("caller").is_none());

    // Never a token, a signature or another claim's value, in any line.
    let text = logs.text();
    for token in tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!text.contains(token.as_str()) && !text.contains(signature), "a token was logged");
    }
    assert!(!text.contains(secret) && !text.contains("admin"), "a claim value was logged: {text}");
    // The forged invocation's lines name no caller: only Lambda's request id and `direct`.
    let forged_lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["span"]["request_id"] == "forged-request-id")
        .collect();
    assert!(!forged_lines.is_empty(), "the refusal is logged: {text}");
    for line in forged_lines {
        assert_eq!(line["span"]["via"], "direct", "{line}");
        assert!(line["span"].get("caller").is_none(), "{line}");
    }
    assert!(!text.contains("role/admin") && !text.contains("mallory"), "forged identity logged: {text}");
}
