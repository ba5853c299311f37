//! What the KMS adapter puts on the wire for each algorithm, captured beneath the SDK (no
//! network): `Sign` carries the `MessageType` each algorithm needs (DIGEST, RAW, EXTERNAL_MU)
//! and its KMS signing algorithm; `CreateKey` the key spec, and a key policy that lets the sign
//! role use only that signing algorithm. LocalStack cannot show this for Ed25519 and ML-DSA
//! (it refuses those keys), and would not refuse a wrong pair if it could.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kms_jwt::aws::KmsAdapter;
use kms_jwt::jose::jwk::PublicJwk;
use kms_jwt::jose::signing_input::InputPlan;
use kms_jwt::key_policy::KeyAccess;
use kms_jwt::ports::{KeyAdmin, KeySigner, KeyTags, SigningInput};
use kms_jwt::SigningAlg;
use serde_json::{json, Value};

const ARN: &str = "arn:aws:kms:eu-west-1:123456789012:key/0f7c1d1e-0000-4000-8000-000000000000";

/// An HTTP client that records each request (its `X-Amz-Target` and body) and answers 200
/// with a canned JSON body: the SDK's whole stack runs, nothing leaves the process. (Written
/// here rather than taken from the SDK's test utilities, which would switch serde_json to
/// insertion order for every test of the crate.)
#[derive(Debug, Clone)]
struct Capture {
    answer: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

/// `X-Amz-Target` and body of one request.
type Recorded = (String, Vec<u8>);

impl Capture {
    fn new(answer: Value) -> Self {
        Capture { answer: answer.to_string(), requests: Arc::default() }
    }

    /// The one request made: target and JSON body.
    fn only_request(&self) -> (String, Value) {
        let requests = self.requests.lock().unwrap();
        assert_eq!(requests.len(), 1, "exactly one request");
        let (target, body) = &requests[0];
        (target.clone(), serde_json::from_slice(body).unwrap())
    }
}

impl HttpConnector for Capture {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or_default().to_owned();
        let body = request.body().bytes().unwrap_or_default().to_vec();
        self.requests.lock().unwrap().push((target, body));
        let mut response = HttpResponse::new(200.try_into().unwrap(), SdkBody::from(self.answer.clone()));
        response.headers_mut().insert("content-type", "application/x-amz-json-1.1");
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for Capture {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn sdk(http: Capture) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_kms::config::SharedCredentialsProvider::new(
            aws_sdk_kms::config::Credentials::new("AKIDTEST", "secret", None, None, "test"),
        ))
        .http_client(http)
        .build()
}

/// The JSON body and `X-Amz-Target` of the one request `call` makes.
async fn captured<F, Fut>(answer: Value, call: F) -> (String, Value)
where
    F: FnOnce(KmsAdapter) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let http = Capture::new(answer);
    call(KmsAdapter::new(&sdk(http.clone()))).await;
    http.only_request()
}

async fn sign_request(alg: SigningAlg, input: SigningInput) -> Value {
    let signature = STANDARD.encode(vec![1u8; 64]);
    let (target, body) = captured(
        json!({"KeyId": ARN, "Signature": signature, "SigningAlgorithm": alg.kms_signing_algorithm()}),
        |kms| async move {
            let raw = kms.sign(ARN, alg, &input).await.unwrap();
            assert_eq!(raw, vec![1u8; 64]);
        },
    )
    .await;
    assert_eq!(target, "TrentService.Sign");
    body
}

#[tokio::test]
async fn sign_sends_the_message_type_each_algorithm_needs() {
    let message = b"eyJhbGciOiJFZERTQSJ9.e30".to_vec();
    for (alg, input, message_type) in [
        (SigningAlg::ES256K, SigningInput::Digest(vec![7; 32]), "DIGEST"),
        (SigningAlg::RS256, SigningInput::Digest(vec![7; 32]), "DIGEST"),
        (SigningAlg::EdDSA, SigningInput::Raw(message.clone()), "RAW"),
        (SigningAlg::Ed25519, SigningInput::Raw(message.clone()), "RAW"),
        (SigningAlg::MlDsa44, SigningInput::Raw(message.clone()), "RAW"),
        (SigningAlg::MlDsa87, SigningInput::ExternalMu([9; 64]), "EXTERNAL_MU"),
    ] {
        let body = sign_request(alg, input.clone()).await;
        assert_eq!(
            body,
            json!({
                "KeyId": ARN,
                "Message": STANDARD.encode(input.message()),
                "MessageType": message_type,
                "SigningAlgorithm": alg.kms_signing_algorithm(),
            }),
            "{alg}"
        );
    }
}

/// From the signer's side: a 5000-byte ML-DSA signing input goes as its μ, a short one as is.
#[tokio::test]
async fn ml_dsa_inputs_above_4096_bytes_go_as_external_mu() {
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![3u8; 1312]);
    let plan = InputPlan::for_key(SigningAlg::MlDsa44, &PublicJwk::Akp { alg: "ML-DSA-44".into(), public });
    for (len, message_type, message_len) in [(4096, "RAW", 4096), (5000, "EXTERNAL_MU", 64)] {
        let input = plan.prepare(SigningAlg::MlDsa44, &vec![b'x'; len]).unwrap();
        let body = sign_request(SigningAlg::MlDsa44, input).await;
        assert_eq!(body["MessageType"], message_type);
        assert_eq!(STANDARD.decode(body["Message"].as_str().unwrap()).unwrap().len(), message_len);
    }
}

#[tokio::test]
async fn create_key_asks_for_the_key_spec_and_pins_the_signing_algorithm() {
    let access = KeyAccess::new(
        "arn:aws:iam::123456789012:role/rotate",
        &["arn:aws:iam::123456789012:role/sign".to_owned()],
    )
    .unwrap();
    for alg in [
        SigningAlg::ES256K,
        SigningAlg::EdDSA,
        SigningAlg::Ed25519,
        SigningAlg::MlDsa44,
        SigningAlg::MlDsa65,
        SigningAlg::MlDsa87,
    ] {
        let access = access.clone();
        let (target, body) = captured(json!({"KeyMetadata": {"KeyId": "k", "Arn": ARN}}), |kms| async move {
            let tags = KeyTags { keyring: "kr".into(), request_id: "r1".into() };
            assert_eq!(kms.with_key_access(access).create_key(alg, &tags).await.unwrap(), ARN);
        })
        .await;
        assert_eq!(target, "TrentService.CreateKey");
        assert_eq!(body["KeySpec"], alg.kms_key_spec(), "{alg}");
        assert_eq!(body["KeyUsage"], "SIGN_VERIFY");
        // The key policy keeps PutKeyPolicy from rotate itself, so KMS's lockout check is
        // bypassed (the break-glass administrators it names keep PutKeyPolicy).
        assert_eq!(body["BypassPolicyLockoutSafetyCheck"], true);
        let policy: Value = serde_json::from_str(body["Policy"].as_str().unwrap()).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        let sign = statements.iter().find(|s| s["Sid"] == "SignOnlyWithTheKeyringAlgorithm").unwrap();
        assert_eq!(sign["Action"], "kms:Sign");
        assert_eq!(
            sign["Condition"]["StringEquals"]["kms:SigningAlgorithm"],
            alg.kms_signing_algorithm(),
            "{alg}"
        );
    }
}
