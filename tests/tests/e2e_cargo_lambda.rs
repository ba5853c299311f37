//! End to end, the way the functions run locally: LocalStack behind, the three functions under
//! `cargo lambda watch`, invocations through the Lambda runtime API and `cargo lambda invoke`,
//! the JWKS and discovery document over real HTTP from the jwks function URL, tokens verified
//! by `jsonwebtoken` and, in Node, by `aws-jwt-verify` and `jose` fetching that URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};
use kms_jwt_tests::node::{assert_accepted, verify_with, with_claim, NodeVerifier, NodeVerifyError};
use kms_jwt_tests::{verify, VerifyError};
use serde_json::{json, Value};

/// `cargo lambda watch` in its own process group, stopped (with the functions it spawned)
/// when dropped, even if the test panics.
struct Watch {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn cargo_lambda() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("cargo-lambda")
    }
}

/// LocalStack's endpoint from the environment `make test` sets.
fn localstack_endpoint() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.contains("127.0.0.1") || endpoint.contains("localhost"),
        "this test runs against LocalStack on loopback: use `make test`"
    );
    endpoint
}

/// Every Node verifier refuses `token` because its signature does not match (or, for a
/// changed base64url character, because the payload no longer parses).
async fn node_refuses_signature(jwks_url: &str, token: &str, issuer: &str) {
    for verifier in NodeVerifier::ALL {
        let verdict = verify_with(verifier, token, jwks_url, issuer, Some("RS256")).await;
        let allowed: &[&str] = match verifier {
            NodeVerifier::AwsJwtVerify => &["JwtInvalidSignatureError", "JwtParseError"],
            NodeVerifier::Jose => &["JWSSignatureVerificationFailed", "JWSInvalid", "JWTInvalid"],
            NodeVerifier::Noble => &["NobleSignatureInvalid", "NobleParseError"],
        };
        assert!(
            matches!(&verdict, Err(NodeVerifyError::Rejected { class, .. }) if allowed.contains(&class.as_str())),
            "{verifier}: {verdict:?}"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Watch {
    /// Start the functions with `env`, talking to AWS at `endpoint`.
    async fn start(endpoint: &str, env: &[(&str, String)]) -> Watch {
        use std::os::unix::process::CommandExt;
        let dir = std::env::temp_dir().join(format!("kms-jwt-e2e-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let env_file = dir.join("watch.env");
        let mut text = String::new();
        text += &format!("AWS_ENDPOINT_URL={endpoint}\n");
        for name in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            text += &format!("{name}={}\n", std::env::var(name).unwrap_or_else(|_| "test".into()));
        }
        for (name, value) in env {
            text += &format!("{name}={value}\n");
        }
        std::fs::write(&env_file, text).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("watch.log")).unwrap();
        eprintln!("cargo lambda watch on port {port}, log in {}", dir.display());
        let child = Command::new(cargo_lambda())
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
            .arg("--env-file")
            .arg(&env_file)
            .args(["--disable-cors", "--ignore-changes"])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("cargo-lambda must be installed: `make test` installs it into .venv");
        let watch = Watch { child, port, http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "cargo lambda watch did not start listening");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        watch
    }

    /// Invoke through the Lambda runtime API, as `cargo lambda invoke` does.
    async fn invoke(&self, function: &str, payload: Value) -> Value {
        let url = format!("http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations", self.port);
        let response = self
            .http
            .post(url)
            .json(&payload)
            .timeout(Duration::from_secs(300)) // the first call may compile the function
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/lambda-url/jwks{path}", self.port)
    }
}

#[tokio::test]
async fn functions_under_cargo_lambda_watch_sign_and_serve_verifiable_tokens() {
    let secret_id = format!("kms-jwt-e2e/{}", uuid::Uuid::new_v4());
    let issuer = "https://issuer.e2e.test".to_owned();
    let watch = Watch::start(
        &localstack_endpoint(),
        &[
            ("KEYRING_SECRET_ID", secret_id.clone()),
            ("ISSUER", issuer.clone()),
            ("SIGNING_ALG", "RS256".into()),
            ("MINTING_POLICY", allow_all_policy()),
            ("JWKS_MAX_AGE", "120".into()),
            ("KEYRING_CACHE_TTL", "1".into()),
            ("RUST_LOG", "info".into()),
        ],
    )
    .await;

    // jwks before any keyring exists: 503 with Retry-After, never an empty key set.
    let cold = reqwest::get(watch.url("/.well-known/jwks.json")).await.unwrap();
    assert_eq!(cold.status(), 503);
    assert!(cold.headers().contains_key("retry-after"));

    // rotate via the real CLI, with the sample EventBridge event.
    let out = Command::new(cargo_lambda())
        .args(["lambda", "invoke", "--invoke-address", "127.0.0.1", "--invoke-port", &watch.port.to_string()])
        .args(["rotate", "--data-file", "events/rotate-scheduled.json"])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo lambda invoke rotate: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["transitions"], json!(["bootstrap"]));
    tokio::time::sleep(Duration::from_millis(1_200)).await; // jwks cache TTL is 1s

    let signed = watch.invoke("sign", json!({"claims": {"sub": "carol"}, "ttl_seconds": 600})).await;
    let token_a = signed["token"].as_str().unwrap().to_owned();

    // JWKS over HTTP.
    let response = reqwest::get(watch.url("/.well-known/jwks.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=120, stale-while-revalidate=60, stale-if-error=900"
    );
    assert_eq!(headers["access-control-allow-origin"], "*");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let jwks = response.text().await.unwrap();

    // Every kid is the RFC 7638 thumbprint, as computed by jsonwebtoken; no private members.
    let set: JwkSet = serde_json::from_str(&jwks).unwrap();
    assert_eq!(set.keys.len(), 2);
    for key in &set.keys {
        assert_eq!(
            key.common.key_id.as_deref(),
            Some(key.thumbprint(ThumbprintHash::SHA256).unwrap().as_str())
        );
    }
    let raw: Value = serde_json::from_str(&jwks).unwrap();
    for key in raw["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(key.get(private).is_none(), "private member {private} served");
        }
    }
    assert_eq!(verify(&token_a, &jwks, &issuer).unwrap()["sub"], "carol");
    // The Node verifiers fetch the JWKS from the function URL themselves.
    let jwks_url = watch.url("/.well-known/jwks.json");
    assert_accepted(&NodeVerifier::ALL, &token_a, &jwks_url, &issuer, "RS256", "carol").await;

    // Conditional GET, HEAD, 404, 405.
    let not_modified = watch
        .http
        .get(watch.url("/.well-known/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert!(not_modified.bytes().await.unwrap().is_empty());
    let head = watch.http.head(watch.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(reqwest::get(watch.url("/nope")).await.unwrap().status(), 404);
    let post = watch.http.post(watch.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");

    // Discovery.
    let discovery: Value =
        reqwest::get(watch.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(discovery["id_token_signing_alg_values_supported"], json!(["RS256"]));

    // The same function behind API Gateway: HTTP API (payload 2.0) and REST API (payload 1.0).
    for (event, route) in [("jwks-http-api.json", "jwks"), ("jwks-rest-api.json", "discovery")] {
        let text = std::fs::read_to_string(workspace_root().join("events").join(event)).unwrap();
        let answer = watch.invoke("jwks", serde_json::from_str(&text).unwrap()).await;
        assert_eq!(answer["statusCode"], 200, "{event}: {answer}");
        // Payload 2.0 answers carry `headers`; payload 1.0 answers `multiValueHeaders`.
        let headers = format!("{}{}", answer["headers"], answer["multiValueHeaders"]);
        assert!(headers.contains("max-age=120"), "{event}: {headers}");
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        match route {
            "jwks" => assert_eq!(body["keys"].as_array().unwrap().len(), 2),
            _ => assert_eq!(body["issuer"], issuer.as_str()),
        }
    }

    // A bad sign request is a typed error, not a crash.
    let refused = watch.invoke("sign", json!({"claims": {"exp": 1}})).await;
    assert_eq!(refused["errorType"], "ReservedClaim", "{refused}");

    // Rotate; new tokens carry the pre-published kid; the old token still verifies.
    let next_kid =
        report["keys"].as_array().unwrap().iter().find(|k| k["state"] == "next").unwrap()["kid"].clone();
    let rotated = watch.invoke("rotate", json!({"action": "rotate", "force": true})).await;
    assert_eq!(rotated["transitions"], json!(["rotate"]), "{rotated}");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let signed_b = watch.invoke("sign", json!({"claims": {"sub": "dave"}})).await;
    assert_eq!(signed_b["kid"], next_kid);
    let jwks = reqwest::get(watch.url("/.well-known/jwks.json")).await.unwrap().text().await.unwrap();
    assert_eq!(verify(&token_a, &jwks, &issuer).unwrap()["sub"], "carol");
    assert_eq!(verify(signed_b["token"].as_str().unwrap(), &jwks, &issuer).unwrap()["sub"], "dave");
    assert!(matches!(
        verify(&kms_jwt_tests::tamper(&token_a), &jwks, &issuer),
        Err(VerifyError::Rejected(_))
    ));
    assert_accepted(&NodeVerifier::ALL, &token_a, &jwks_url, &issuer, "RS256", "carol").await;
    assert_accepted(
        &NodeVerifier::ALL,
        signed_b["token"].as_str().unwrap(),
        &jwks_url,
        &issuer,
        "RS256",
        "dave",
    )
    .await;
    node_refuses_signature(&jwks_url, &kms_jwt_tests::tamper(&token_a), &issuer).await;
    let forged = with_claim(signed_b["token"].as_str().unwrap(), "sub", json!("mallory")).unwrap();
    for verifier in NodeVerifier::ALL {
        let verdict = verify_with(verifier, &forged, &jwks_url, &issuer, Some("RS256")).await;
        let class = verdict.as_ref().err().and_then(NodeVerifyError::rejected_class);
        assert_eq!(class, Some(verifier.bad_signature_class()), "{verifier}: {verdict:?}");
    }

    let status = watch.invoke("rotate", json!({"action": "status"})).await;
    assert_eq!(status["changed"], false);
    assert_eq!(status["keys"].as_array().unwrap().len(), 3);
}

/// A TCP proxy in front of LocalStack that can be cut, to make AWS fail for the functions
/// while the test itself keeps its own access.
struct Outage {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Outage {
    async fn start(target: &str) -> Outage {
        let target = target.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (flag, tasks) = (Arc::clone(&up), Arc::clone(&connections));
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: connection closed at once
                }
                let target = target.clone();
                tasks.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Outage { port, up, connections }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            // Cut pooled keep-alive connections too.
            for task in self.connections.lock().unwrap().drain(..) {
                task.abort();
            }
        }
    }
}

#[tokio::test]
async fn jwks_answers_503_when_cold_and_serves_stale_keys_when_secrets_manager_fails() {
    let outage = Outage::start(&localstack_endpoint()).await;
    let secret_id = format!("kms-jwt-e2e/outage/{}", uuid::Uuid::new_v4());
    let watch = Watch::start(
        &outage.endpoint(),
        &[
            ("KEYRING_SECRET_ID", secret_id.clone()),
            ("ISSUER", "https://issuer.outage.test".into()),
            ("KEYRING_CACHE_TTL", "1".into()),
            ("KEYRING_MAX_STALENESS", "10m".into()),
            ("RUST_LOG", "info".into()),
        ],
    )
    .await;
    let jwks_url = watch.url("/.well-known/jwks.json");

    // Cold container, Secrets Manager unreachable: 503 with Retry-After, no stack trace.
    let cold = reqwest::get(&jwks_url).await.unwrap();
    assert_eq!(cold.status(), 503);
    assert_eq!(cold.headers()["retry-after"], "30");
    let body = cold.text().await.unwrap();
    assert!(!body.contains("panicked") && !body.contains("at src/"), "{body}");

    // Back up: bootstrap, and the warm container serves the keys.
    outage.set_up(true);
    let report = watch.invoke("rotate", json!({})).await;
    assert_eq!(report["transitions"], json!(["bootstrap"]), "{report}");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let warm = reqwest::get(&jwks_url).await.unwrap();
    assert_eq!(warm.status(), 200);
    let etag = warm.headers()["etag"].to_str().unwrap().to_owned();
    let body = warm.text().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["keys"].as_array().unwrap().len(), 2);

    // Down again, past the cache TTL: the last good key set is still served, byte for byte.
    outage.set_up(false);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for _ in 0..3 {
        let stale = reqwest::get(&jwks_url).await.unwrap();
        assert_eq!(stale.status(), 200);
        assert_eq!(stale.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(stale.text().await.unwrap(), body);
    }
    let not_modified = watch.http.get(&jwks_url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(not_modified.status(), 304);

    // Odd requests over HTTP: never a 500.
    let long_path = format!("/{}", "x".repeat(4_000));
    for (method, path) in [
        ("GET", "/"),
        ("GET", long_path.as_str()),
        ("DELETE", "/.well-known/jwks.json"),
        ("OPTIONS", "/.well-known/openid-configuration"),
    ] {
        let response = watch
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), watch.url(path))
            .header("if-none-match", "\"unterminated")
            .header("x-oversize", "v".repeat(16_000))
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500, "{method} {path:.30}: {}", response.status());
    }
}

/// `cargo lambda invoke <function> --data-file <file>`: (succeeded, stdout, stderr).
fn invoke_cli(port: u16, function: &str, file: &Path) -> (bool, String, String) {
    let out = Command::new(cargo_lambda())
        .args(["lambda", "invoke", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .arg(function)
        .arg("--data-file")
        .arg(file)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The allow-all minting policy, as one line of a `--env-file` (single quotes: taken literally).
fn allow_all_policy() -> String {
    let policy: Value = serde_json::from_str(kms_jwt::minting::ALLOW_ALL_POLICY).unwrap();
    format!("'{policy}'")
}

/// Every sample in `events/`, through the real `cargo lambda invoke`, answers as docs/functions.md
/// says. Samples with a placeholder (a kid, an ETag) get the live value substituted.
#[tokio::test]
async fn every_sample_event_answers_as_documented() {
    let secret_id = format!("kms-jwt-e2e/samples/{}", uuid::Uuid::new_v4());
    let issuer = "https://issuer.samples.test".to_owned();
    let env = [
        ("KEYRING_SECRET_ID", secret_id.clone()),
        ("ISSUER", issuer.clone()),
        ("KEYRING_CACHE_TTL", "1".into()),
        ("MINTING_POLICY", allow_all_policy()),
        ("RUST_LOG", "info".into()),
    ];
    let watch = Watch::start(&localstack_endpoint(), &env).await;
    // `POST /sign` samples go to a sign function deployed for API Gateway, as in the template.
    let mut api_env = env.to_vec();
    api_env.push(("SIGN_TRANSPORT", "api-gateway".into()));
    let api_watch = Watch::start(&localstack_endpoint(), &api_env).await;
    let events = workspace_root().join("events");
    let scratch = std::env::temp_dir().join(format!("kms-jwt-samples-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut exercised = std::collections::BTreeSet::new();
    let mut run = |function: &str, name: &str, substitute: Option<(&str, &str)>| {
        exercised.insert(name.to_owned());
        let mut file = events.join(name);
        if let Some((placeholder, value)) = substitute {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains(placeholder), "{name} lost its placeholder");
            file = scratch.join(name);
            std::fs::write(&file, text.replace(placeholder, value)).unwrap();
        }
        let port =
            if name.ends_with("-http-api.json") && function == "sign" { api_watch.port } else { watch.port };
        let (ok, stdout, stderr) = invoke_cli(port, function, &file);
        let answer: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        (ok, answer, stderr)
    };
    let pause = || std::thread::sleep(Duration::from_millis(1_200)); // keyring cache TTL is 1s

    let (ok, boot, err) = run("rotate", "rotate-scheduled.json", None);
    assert!(ok, "{err}");
    assert_eq!(boot["transitions"], json!(["bootstrap"]));
    let (ok, again, err) = run("rotate", "rotate-scheduler.json", None);
    assert!(ok && again["changed"] == false, "{again} {err}");
    let (ok, early, err) = run("rotate", "rotate-now.json", None);
    assert!(ok && early["changed"] == false, "not pre-published yet: {early} {err}");
    let (ok, status, _) = run("rotate", "rotate-status.json", None);
    assert!(ok && status["keys"].as_array().unwrap().len() == 2);
    pause();

    let jwks_url = watch.url("/.well-known/jwks.json");
    let (ok, single, err) = run("sign", "sign.json", None);
    assert!(ok, "{err}");
    let (ok, batch, err) = run("sign", "sign-batch.json", None);
    assert!(ok, "{err}");
    let (ok, http, err) = run("sign", "sign-http-api.json", None);
    assert!(ok && http["statusCode"] == 200, "{http} {err}");
    let http_token: Value = serde_json::from_str(http["body"].as_str().unwrap()).unwrap();
    // POST /token: a token about the caller itself, its sub the role of the session.
    let (ok, exchanged, err) = run("sign", "token-http-api.json", None);
    assert!(ok && exchanged["statusCode"] == 200, "{exchanged} {err}");
    let exchanged: Value = serde_json::from_str(exchanged["body"].as_str().unwrap()).unwrap();
    let jwks = reqwest::get(&jwks_url).await.unwrap().text().await.unwrap();
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[2]["error"]["code"], "ReservedClaim");
    for token in [&single["token"], &results[0]["token"], &results[1]["token"], &http_token["token"]] {
        verify(token.as_str().unwrap(), &jwks, &issuer).unwrap();
    }
    let claims = verify(exchanged["WebIdentityToken"].as_str().unwrap(), &jwks, &issuer).unwrap();
    assert_eq!(claims["sub"], "arn:aws:iam::123456789012:role/issuer-service");
    assert_eq!(claims["aud"], json!(["https://api.example.com"]));
    for (name, code) in [
        ("sign-bad-reserved-claim.json", "ReservedClaim"),
        ("sign-bad-header.json", "HeaderNotAllowed"),
        ("sign-bad-claims-not-object.json", "ClaimsNotObject"),
    ] {
        let (ok, _, stderr) = run("sign", name, None);
        assert!(!ok && stderr.contains(code), "{name}: {stderr}");
    }

    let (ok, jwks_answer, _) = run("jwks", "jwks-http-api.json", None);
    assert!(ok && jwks_answer["statusCode"] == 200);
    let etag = jwks_answer["headers"]["etag"].as_str().unwrap().trim_matches('"').to_owned();
    let (ok, conditional, _) = run(
        "jwks",
        "jwks-http-api-if-none-match.json",
        Some(("REPLACE-WITH-THE-ETAG-OF-A-PREVIOUS-ANSWER", &etag)),
    );
    assert!(ok && conditional["statusCode"] == 304, "{conditional}");
    let (ok, discovery, _) = run("jwks", "jwks-http-api-discovery.json", None);
    assert!(ok && discovery["statusCode"] == 200);
    assert!(discovery["body"].as_str().unwrap().contains(&issuer));
    let (ok, rest, _) = run("jwks", "jwks-rest-api.json", None);
    assert!(ok && rest["statusCode"] == 200, "{rest}");

    let (ok, forced, err) = run("rotate", "rotate-force.json", None);
    assert!(ok && forced["transitions"] == json!(["rotate"]), "{forced} {err}");
    let previous = forced["keys"].as_array().unwrap().iter().find(|k| k["state"] == "previous").unwrap()
        ["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, revoked, err) =
        run("rotate", "rotate-revoke.json", Some(("REPLACE-WITH-A-KID-FROM-STATUS", &previous)));
    assert!(ok && revoked["transitions"] == json!(["revoke"]), "{revoked} {err}");
    pause();
    let jwks = reqwest::get(&jwks_url).await.unwrap().text().await.unwrap();
    assert!(!jwks.contains(&previous), "the revoked key left the JWKS");
    assert!(
        verify(single["token"].as_str().unwrap(), &jwks, &issuer).is_err(),
        "its tokens no longer verify"
    );

    let samples: std::collections::BTreeSet<String> = std::fs::read_dir(&events)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(samples, exercised, "every sample in events/ is exercised");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The policy for [`the_minting_policy_from_ssm_governs_the_http_sign_function_under_watch`]:
/// the sample events' caller (`issuer-service`) may mint for users with `act`, or for itself.
const SSM_POLICY: &str = r#"{"version": 1, "rules": [
  {"id": "issuer-service-for-users", "callers": ["arn:aws:iam::123456789012:role/issuer-service"],
   "audiences": ["https://api.example.com"], "subject": {"pattern": "user-*"},
   "claims": {"scope": {"space_delimited": ["orders:read"]}}, "max_ttl_seconds": 900, "act": true},
  {"id": "issuer-service-self", "callers": ["arn:aws:iam::123456789012:role/issuer-service"],
   "audiences": ["https://api.example.com"], "subject": "caller", "max_ttl_seconds": 900}
]}"#;

async fn put_parameter(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

fn sample(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(workspace_root().join("events").join(name)).unwrap())
        .unwrap()
}

/// As deployed: the HTTP sign function (`SIGN_TRANSPORT=api-gateway`) reads its minting policy
/// from SSM Parameter Store (`MINTING_POLICY_PARAMETER`, LocalStack), under `cargo lambda
/// watch`. The workload's `POST /token` and the backend's delegated `POST /sign` (with `act`)
/// verify in `aws-jwt-verify` and `jose`; a mint outside the policy is refused (403
/// `NotAllowed`); a new policy version is in force after the cache TTL.
#[tokio::test]
async fn the_minting_policy_from_ssm_governs_the_http_sign_function_under_watch() {
    let secret_id = format!("kms-jwt-e2e/ssm-policy/{}", uuid::Uuid::new_v4());
    let parameter = format!("/kms-jwt-e2e/{}/minting-policy", uuid::Uuid::new_v4());
    let issuer = "https://issuer.ssm-policy.test".to_owned();
    let ssm = aws_sdk_ssm::Client::new(&kms_jwt_tests::localstack::sdk(None).await);
    put_parameter(&ssm, &parameter, SSM_POLICY).await;
    let watch = Watch::start(
        &localstack_endpoint(),
        &[
            ("KEYRING_SECRET_ID", secret_id),
            ("ISSUER", issuer.clone()),
            ("SIGNING_ALG", "RS256".into()),
            // Blank: .cargo/config.toml's allow-all MINTING_POLICY must not apply.
            ("MINTING_POLICY", String::new()),
            ("MINTING_POLICY_PARAMETER", parameter.clone()),
            ("SIGN_TRANSPORT", "api-gateway".into()),
            ("KEYRING_CACHE_TTL", "1".into()),
            ("RUST_LOG", "info".into()),
        ],
    )
    .await;
    let boot = watch.invoke("rotate", sample("rotate-scheduled.json")).await;
    assert_eq!(boot["transitions"], json!(["bootstrap"]), "{boot}");
    let jwks_url = watch.url("/.well-known/jwks.json");

    let exchanged = watch.invoke("sign", sample("token-http-api.json")).await;
    assert_eq!(exchanged["statusCode"], 200, "{exchanged}");
    let body: Value = serde_json::from_str(exchanged["body"].as_str().unwrap()).unwrap();
    let own = body["WebIdentityToken"].as_str().unwrap().to_owned();
    let delegated = watch.invoke("sign", sample("sign-http-api.json")).await;
    assert_eq!(delegated["statusCode"], 200, "{delegated}");
    let body: Value = serde_json::from_str(delegated["body"].as_str().unwrap()).unwrap();
    let for_user = body["token"].as_str().unwrap().to_owned();
    // The first fetch starts the jwks function (`cargo run`), longer than a verifier waits.
    assert_eq!(reqwest::get(&jwks_url).await.unwrap().status(), 200);
    for verifier in NodeVerifier::ALL {
        let claims = verify_with(verifier, &own, &jwks_url, &issuer, Some("RS256")).await.unwrap();
        assert_eq!(claims["sub"], "arn:aws:iam::123456789012:role/issuer-service", "{verifier}");
        assert!(claims.get("act").is_none(), "{verifier}");
        let claims = verify_with(verifier, &for_user, &jwks_url, &issuer, Some("RS256")).await.unwrap();
        assert_eq!(claims["sub"], "user-123", "{verifier}");
        assert_eq!(
            claims["act"],
            json!({"sub": "arn:aws:iam::123456789012:role/issuer-service"}),
            "{verifier}"
        );
    }

    let mut outside = sample("token-http-api.json");
    outside["body"] = json!(r#"{"Audience": ["https://payments.example.com"]}"#);
    let refused = watch.invoke("sign", outside).await;
    assert_eq!(refused["statusCode"], 403, "{refused}");
    assert!(refused["body"].as_str().unwrap().contains("NotAllowed"), "{refused}");

    // The operator removes the workload's own rule: refused once the TTL has passed.
    let narrowed: Value = serde_json::from_str(SSM_POLICY).unwrap();
    let narrowed = json!({"version": 1, "rules": [narrowed["rules"][0]]});
    put_parameter(&ssm, &parameter, &narrowed.to_string()).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = watch.invoke("sign", sample("token-http-api.json")).await;
    assert_eq!(after["statusCode"], 403, "{after}");
}
