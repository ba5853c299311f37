//! Independent verification in Node, the way JavaScript consumers of kms-jwt do it: with
//! `aws-jwt-verify` and with `jose`, each fetching the JWKS from a URL over HTTP.
//!
//! Each check runs `node tests/node/verify.mjs` once (the packages come from
//! `tests/node/package-lock.json`; `scripts/node-env.sh` installs them, `make test` runs it).
//! [`JwksServer`] serves a JWKS document over HTTP on loopback for tests that build the JWKS
//! themselves rather than fetch it from the jwks function.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// The path [`JwksServer`] serves the JWKS at, as the jwks function does.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// How long one `node verify.mjs` may take (start, one JWKS fetch, one verification) on a
/// loaded machine before the check counts as broken.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// The JWS algorithms `aws-jwt-verify` 5.2.1 accepts: `supportedSignatureAlgorithms` in
/// `node_modules/aws-jwt-verify/dist/esm/jwt-verifier.js` (no PS256/PS384/PS512; a token with
/// any other alg is refused with `JwtInvalidSignatureAlgorithmError`).
pub const AWS_JWT_VERIFY_ALGORITHMS: &[&str] =
    &["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA"];

/// Algorithms `jose` 6.2.18 cannot verify on Node 20: no ES256K (not in
/// `dist/webapi/lib/jws_algorithms.js`), and ML-DSA only through WebCrypto's ML-DSA, which
/// Node 20 lacks (Node 24.7 added it).
pub const JOSE_UNSUPPORTED_ON_NODE_20: &[&str] = &["ES256K", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87"];

/// What `verify.mjs`'s `noble` verifier implements.
pub const NOBLE_ALGORITHMS: &[&str] = &["ES256K", "EdDSA", "Ed25519", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87"];

/// A Node JWT library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeVerifier {
    /// `aws-jwt-verify`'s `JwtVerifier` (AWS's library, also used for Cognito and ALB tokens).
    AwsJwtVerify,
    /// `jose`'s `jwtVerify` with `createRemoteJWKSet`.
    Jose,
    /// A JWS check in `verify.mjs` on `@noble/curves` (secp256k1, Ed25519) and
    /// `@noble/post-quantum` (ML-DSA): an implementation independent of the Rust crates, for
    /// the algorithms the two libraries do not verify on Node 20. Not in [`Self::ALL`].
    Noble,
}

impl NodeVerifier {
    pub const ALL: [NodeVerifier; 2] = [NodeVerifier::AwsJwtVerify, NodeVerifier::Jose];

    /// The package name, as `verify.mjs` takes it.
    pub fn name(self) -> &'static str {
        match self {
            NodeVerifier::AwsJwtVerify => "aws-jwt-verify",
            NodeVerifier::Jose => "jose",
            NodeVerifier::Noble => "noble",
        }
    }

    /// Whether the library implements the JWS algorithm `alg` on Node 20 (jose implements the
    /// nine classic algorithms, EdDSA and Ed25519).
    pub fn supports(self, alg: &str) -> bool {
        match self {
            NodeVerifier::AwsJwtVerify => AWS_JWT_VERIFY_ALGORITHMS.contains(&alg),
            NodeVerifier::Jose => !JOSE_UNSUPPORTED_ON_NODE_20.contains(&alg),
            NodeVerifier::Noble => NOBLE_ALGORITHMS.contains(&alg),
        }
    }

    /// The error class the library refuses a well-formed token with, whose kid is in the
    /// JWKS, when it does not implement the token's algorithm `alg`. For ML-DSA (JWK `kty`
    /// `AKP`) an earlier step fails first: `aws-jwt-verify` checks the key type before the
    /// algorithm, and `jose` hands the key to WebCrypto, which on Node 20 does not know it.
    pub fn unsupported_alg_class(self, alg: &str) -> &'static str {
        let ml_dsa = alg.starts_with("ML-DSA");
        match self {
            NodeVerifier::AwsJwtVerify if ml_dsa => "JwkInvalidKtyError",
            NodeVerifier::AwsJwtVerify => "JwtInvalidSignatureAlgorithmError",
            NodeVerifier::Jose if ml_dsa => "DOMException",
            NodeVerifier::Jose => "JOSENotSupported",
            NodeVerifier::Noble => "NobleAlgorithmMismatch",
        }
    }

    /// The error class each library throws for a signature that does not match.
    pub fn bad_signature_class(self) -> &'static str {
        match self {
            NodeVerifier::AwsJwtVerify => "JwtInvalidSignatureError",
            NodeVerifier::Jose => "JWSSignatureVerificationFailed",
            NodeVerifier::Noble => "NobleSignatureInvalid",
        }
    }
}

impl std::fmt::Display for NodeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeVerifyError {
    /// The library refused the token: `class` is its error class (`JwtInvalidSignatureError`,
    /// `JWTClaimValidationFailed`, ...).
    #[error("{class}: {message}")]
    Rejected { class: String, message: String },
    /// The check itself failed: node missing or too slow, packages not installed, an answer
    /// that is not the protocol's. Never a verdict on the token.
    #[error("node verifier did not run: {0}")]
    Harness(String),
}

impl NodeVerifyError {
    /// The library's error class, if the library refused the token.
    pub fn rejected_class(&self) -> Option<&str> {
        match self {
            NodeVerifyError::Rejected { class, .. } => Some(class),
            NodeVerifyError::Harness(_) => None,
        }
    }
}

/// `tests/node`, where `verify.mjs`, the lock file and `node_modules` are.
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Verify `token` with `verifier` against the JWKS at `jwks_uri` (fetched over HTTP by the
/// library), requiring `iss` = `issuer` and, if given, the algorithm `alg`; no audience check.
/// Returns the payload.
pub async fn verify_with(
    verifier: NodeVerifier,
    token: &str,
    jwks_uri: &str,
    issuer: &str,
    alg: Option<&str>,
) -> Result<Value, NodeVerifyError> {
    run(&json!({
        "verifier": verifier.name(),
        "token": token,
        "jwksUri": jwks_uri,
        "issuer": issuer,
        "audience": null,
        "alg": alg,
    }))
    .await
}

/// Each of `verifiers` judges `token` by the JWKS it fetches from `jwks_uri`, with the algorithm
/// pinned to `alg` and `iss` to `issuer`: one that implements `alg` must accept it, with the
/// claim `sub`; one that does not must refuse it as an algorithm it does not implement
/// ([`NodeVerifier::unsupported_alg_class`]). Returns how many accepted.
pub async fn assert_accepted(
    verifiers: &[NodeVerifier],
    token: &str,
    jwks_uri: &str,
    issuer: &str,
    alg: &str,
    sub: &str,
) -> usize {
    let mut accepted = 0;
    for &verifier in verifiers {
        let verdict = verify_with(verifier, token, jwks_uri, issuer, Some(alg)).await;
        if verifier.supports(alg) {
            let payload = verdict.unwrap_or_else(|e| panic!("{alg}, {verifier}: {e}"));
            assert_eq!(
                (payload["sub"].as_str(), payload["iss"].as_str()),
                (Some(sub), Some(issuer)),
                "{alg}, {verifier}"
            );
            accepted += 1;
        } else {
            let error = verdict
                .expect_err(&format!("{alg}, {verifier}: accepted an algorithm it does not implement"));
            assert_eq!(
                error.rejected_class(),
                Some(verifier.unsupported_alg_class(alg)),
                "{alg}, {verifier}: {error}"
            );
        }
    }
    accepted
}

/// Run `verify.mjs` with one request (see the script for the protocol).
pub async fn run(request: &Value) -> Result<Value, NodeVerifyError> {
    let harness = |what: &str, e: &dyn std::fmt::Display| NodeVerifyError::Harness(format!("{what}: {e}"));
    let dir = node_dir();
    let packages = ["aws-jwt-verify", "jose", "@noble/curves", "@noble/post-quantum"];
    if packages.iter().any(|package| !dir.join("node_modules").join(package).is_dir()) {
        return Err(NodeVerifyError::Harness(format!(
            "{}/node_modules is not installed: run scripts/node-env.sh",
            dir.display()
        )));
    }
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("verify.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| harness("cannot start node (Node 20 or newer must be on PATH)", &e))?;
    let mut stdin = child.stdin.take().ok_or_else(|| NodeVerifyError::Harness("no stdin".into()))?;
    stdin.write_all(request.to_string().as_bytes()).await.map_err(|e| harness("writing the request", &e))?;
    drop(stdin);
    let output = tokio::time::timeout(NODE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| NodeVerifyError::Harness(format!("verify.mjs took more than {NODE_TIMEOUT:?}")))?
        .map_err(|e| harness("waiting for node", &e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(NodeVerifyError::Harness(format!("verify.mjs exited with {}: {stderr}", output.status)));
    }
    let answer: Value = serde_json::from_str(stdout.trim()).map_err(|e| {
        NodeVerifyError::Harness(format!("verify.mjs answered {stdout:?} ({e}); stderr: {stderr}"))
    })?;
    match answer["ok"].as_bool() {
        Some(true) => Ok(answer["payload"].clone()),
        Some(false) => {
            let error = answer["error"].as_str().unwrap_or_default();
            let (class, message) = error.split_once(": ").unwrap_or((error, ""));
            Err(NodeVerifyError::Rejected { class: class.to_owned(), message: message.to_owned() })
        }
        None => Err(NodeVerifyError::Harness(format!("verify.mjs answered {answer} without \"ok\""))),
    }
}

/// A JWKS document served over plain HTTP on 127.0.0.1, from a thread of its own (so it
/// answers whatever the test's runtime is doing). `GET` or `HEAD` of [`JWKS_PATH`] answers
/// the current document (hyper leaves the body out of a HEAD answer); anything else 404. Stopped when dropped.
pub struct JwksServer {
    address: SocketAddr,
    shared: Arc<Served>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Served {
    jwks: Mutex<String>,
    requests: AtomicUsize,
}

impl JwksServer {
    /// Listen on a free port of 127.0.0.1 and serve `jwks`.
    pub fn start(jwks: &str) -> std::io::Result<JwksServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let shared = Arc::new(Served { jwks: Mutex::new(jwks.to_owned()), requests: AtomicUsize::new(0) });
        let (stop, stopped) = oneshot::channel();
        let served = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name(format!("jwks-server-{}", address.port())).spawn(move || {
                runtime.block_on(async move {
                    // Registering the listener with this runtime's reactor cannot fail on a
                    // freshly bound socket short of the process running out of descriptors;
                    // then the server ends and every fetch fails (never a false success).
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                    tokio::select! {
                        () = accept_connections(listener, served) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(JwksServer { address, shared, stop: Some(stop), thread: Some(thread) })
    }

    /// The JWKS URL, `http://127.0.0.1:<port>/.well-known/jwks.json`.
    pub fn url(&self) -> String {
        format!("http://{}{JWKS_PATH}", self.address)
    }

    /// Serve `jwks` from now on (after a rotation, say).
    pub fn set_jwks(&self, jwks: &str) {
        *self.shared.jwks.lock().unwrap_or_else(PoisonError::into_inner) = jwks.to_owned();
    }

    /// How many requests for the JWKS were answered 200 so far.
    pub fn jwks_requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_connections(listener: tokio::net::TcpListener, served: Arc<Served>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await; // transient (descriptors)
            continue;
        };
        let served = Arc::clone(&served);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(Arc::clone(&served), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    served: Arc<Served>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let found = request.uri().path() == JWKS_PATH && matches!(*request.method(), Method::GET | Method::HEAD);
    let response = if found {
        served.requests.fetch_add(1, Ordering::SeqCst);
        let body = served.jwks.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        response.headers_mut().insert(CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
        response
    } else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    };
    Ok(response)
}

/// `token` with the payload claim `name` set to `value` and the signature kept: a forgery
/// whose payload is still well-formed JSON, so only the signature check can refuse it. `None`
/// if `token` is not a JWS with a JSON object payload.
pub fn with_claim(token: &str, name: &str, value: Value) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.as_object_mut()?.insert(name.to_owned(), value);
    Some(format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(claims.to_string())))
}
