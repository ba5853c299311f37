//! A fault-injecting HTTP proxy between the code under test and LocalStack.
//!
//! LocalStack never throttles, never loses a reply, never hangs and enforces no IAM; real AWS
//! does all of these. [`AwsProxy`] forwards every request to LocalStack unchanged and lets a
//! test make chosen operations misbehave: fail before or after taking effect, stall, be
//! throttled or denied, or answer with a rewritten body. It also counts the calls it sees and
//! the calls it forwards, so a test can prove whether the SDK retried.
//!
//! Operations are the AWS JSON protocols' `X-Amz-Target` (`TrentService.CreateKey`,
//! `secretsmanager.GetSecretValue`, `ResourceGroupsTaggingAPI_20170126.GetResources`), and,
//! for REST APIs the proxy knows by method and path, a name of the same form
//! (`cloudfront.CreateInvalidation`). A rule or a counter named by the full target matches
//! that service's operation only; named by the short name after the dot (`CreateKey`), it
//! matches the operation of any service. Other requests are forwarded untouched and
//! uncounted.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use kms_jwt_tests::aws_proxy::{AwsProxy, Fault};
//! let proxy = AwsProxy::start_for_localstack().await?;
//! proxy.inject_times("CreateKey", Fault::FailBefore, 1);
//! let sdk = proxy.sdk_loader().load().await;
//! aws_sdk_kms::Client::new(&sdk).create_key().send().await.unwrap(); // retried by the SDK
//! assert_eq!((proxy.calls("CreateKey"), proxy.forwarded("CreateKey")), (2, 1));
//! # Ok(())
//! # }
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How one matching call misbehaves.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer HTTP 500 `InternalFailure` without forwarding: the call did not happen, and the
    /// SDK retries it.
    FailBefore,
    /// Forward, let the call take effect, then answer HTTP 500 `InternalFailure` instead of
    /// the real answer. The SDK retries, so a non-idempotent call happens twice.
    LoseReply,
    /// Forward, let the call take effect, then close the connection without any answer.
    LoseReplyByClosing,
    /// Wait this long, then forward.
    Delay(Duration),
    /// Never answer: hold the connection until the client gives up, the proxy goes down, or
    /// the proxy is dropped. Nothing is forwarded.
    Hang,
    /// Answer HTTP 400 `ThrottlingException` ("Rate exceeded"), as KMS and Secrets Manager do.
    Throttle,
    /// Answer HTTP 400 `AccessDeniedException`, as when IAM does not allow the call.
    Deny,
    /// Forward, then rewrite the JSON answer body (see [`Rewrite`]).
    Rewrite(Rewrite),
}

impl Fault {
    /// A [`Fault::Rewrite`] from a closure; see [`Rewrite::new`].
    pub fn rewrite(edit: impl Fn(&Value, &mut Value) + Send + Sync + 'static) -> Fault {
        Fault::Rewrite(Rewrite::new(edit))
    }
}

/// Rewrites the JSON body of a forwarded call's answer, whatever its status.
///
/// The closure gets the request body and the answer body, each parsed as JSON (`Null` when
/// empty), and edits the answer in place; the status and other headers are kept. An answer
/// that is not JSON becomes a 502, since a rewrite of it would be meaningless.
#[derive(Clone)]
pub struct Rewrite(Arc<EditAnswer>);

/// `edit(request, answer)`.
type EditAnswer = dyn Fn(&Value, &mut Value) + Send + Sync;

impl Rewrite {
    /// Wrap `edit(request, answer)`.
    pub fn new(edit: impl Fn(&Value, &mut Value) + Send + Sync + 'static) -> Rewrite {
        Rewrite(Arc::new(edit))
    }
}

impl fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rewrite(..)")
    }
}

/// A plain-HTTP reverse proxy on 127.0.0.1 in front of LocalStack, with per-operation faults.
///
/// Rules are kept per operation name in a queue: each matching call consumes the rule at the
/// front; a rule limited to N calls leaves the queue after its N-th, and the next rule (or
/// plain forwarding) takes over. Rules may be added and cleared at any time while the proxy
/// serves. Dropping the proxy stops it and ends every connection it holds.
pub struct AwsProxy {
    port: u16,
    shared: Arc<Shared>,
    /// Notifies connection tasks to close; dropping it ends them all.
    cut_connections: watch::Sender<()>,
    accept_loop: JoinHandle<()>,
}

impl fmt::Debug for AwsProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsProxy")
            .field("endpoint", &self.endpoint())
            .field("upstream", &self.shared.upstream_authority)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl AwsProxy {
    /// Start a proxy, up, on a free port of 127.0.0.1, forwarding to `upstream`
    /// (`http://host:port`; plain HTTP only, any path is ignored).
    pub async fn start(upstream: &str) -> io::Result<AwsProxy> {
        let upstream: Uri = upstream.parse().map_err(|e| invalid_upstream(upstream, e))?;
        let (Some(scheme), Some(authority)) = (upstream.scheme(), upstream.authority()) else {
            return Err(invalid_upstream(upstream, "expected http://host:port"));
        };
        if *scheme != Scheme::HTTP {
            return Err(invalid_upstream(upstream, "only plain http is supported"));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream_authority: authority.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            up: AtomicBool::new(true),
            connections_accepted: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            rules: Mutex::default(),
            counts: Mutex::default(),
            creation_watch: Mutex::default(),
        });
        let (cut_connections, cut) = watch::channel(());
        let accept_loop = tokio::spawn(accept_connections(listener, Arc::clone(&shared), cut));
        Ok(AwsProxy { port, shared, cut_connections, accept_loop })
    }

    /// Start a proxy in front of `AWS_ENDPOINT_URL` (LocalStack; `http://127.0.0.1:4566` when
    /// unset).
    pub async fn start_for_localstack() -> io::Result<AwsProxy> {
        let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
        AwsProxy::start(&upstream).await
    }

    /// `http://127.0.0.1:PORT`: the endpoint URL to give the code under test.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The default SDK configuration loader, with the endpoint set to this proxy; add retry
    /// or timeout settings before `.load()`.
    pub fn sdk_loader(&self) -> aws_config::ConfigLoader {
        aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(self.endpoint())
    }

    /// Make every call to `operation` misbehave, until cleared (queued behind the rules
    /// already set for it).
    pub fn inject(&self, operation: &str, fault: Fault) {
        self.shared.push_rule(operation, Rule { fault, remaining: None });
    }

    /// Make the next `calls` calls to `operation` misbehave (after the rules already queued
    /// for it); then the rule expires. Zero calls adds nothing.
    pub fn inject_times(&self, operation: &str, fault: Fault, calls: u64) {
        if calls > 0 {
            self.shared.push_rule(operation, Rule { fault, remaining: Some(calls) });
        }
    }

    /// Drop the rules set under `operation` (exactly this name, full or short).
    pub fn clear(&self, operation: &str) {
        lock(&self.shared.rules).remove(operation);
    }

    /// Drop every rule, including [`deny_after_create`](Self::deny_after_create).
    pub fn clear_all(&self) {
        lock(&self.shared.rules).clear();
        *lock(&self.shared.creation_watch) = None;
    }

    /// Model KMS's eventual consistency after creation: for `window` after each successful
    /// `CreateKey` seen from now on, answer `AccessDeniedException` to the given operations
    /// (full or short names, e.g. `GetPublicKey`, `DisableKey`) when their request's `KeyId`
    /// names that key by id or ARN. Nothing is forwarded for a denied call. Replaces an
    /// earlier setting; keys seen under it are forgotten.
    pub fn deny_after_create(&self, operations: &[&str], window: Duration) {
        *lock(&self.shared.creation_watch) = Some(CreationWatch {
            operations: operations.iter().map(|op| (*op).to_owned()).collect(),
            window,
            created: Vec::new(),
        });
    }

    /// Stop [`deny_after_create`](Self::deny_after_create).
    pub fn clear_deny_after_create(&self) {
        *lock(&self.shared.creation_watch) = None;
    }

    /// Calls to `operation` (full or short name) that reached the proxy, faulted or not.
    pub fn calls(&self, operation: &str) -> u64 {
        self.shared.count(operation, |counts| counts.seen)
    }

    /// Calls to `operation` (full or short name) the proxy passed on to LocalStack.
    pub fn forwarded(&self, operation: &str) -> u64 {
        self.shared.count(operation, |counts| counts.forwarded)
    }

    /// Set every call counter back to zero (not the connection counters).
    pub fn reset_counters(&self) {
        lock(&self.shared.counts).clear();
    }

    /// Client connections served so far (those refused while down excluded): with
    /// keep-alive, fewer than the calls.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted.load(Ordering::SeqCst)
    }

    /// Client connections open right now.
    pub fn connections_open(&self) -> u64 {
        self.shared.connections_open.load(Ordering::SeqCst)
    }

    /// Up: serve. Down: close every open connection at once (pooled keep-alive connections
    /// of the clients included, and calls in flight) and every new one as soon as it is
    /// accepted, as an unreachable AWS would.
    pub fn set_up(&self, up: bool) {
        self.shared.up.store(up, Ordering::SeqCst);
        if !up {
            // After the flag: a connection accepted meanwhile is either refused or cut.
            self.cut_connections.send_replace(());
        }
    }

    /// Whether the proxy serves (see [`set_up`](Self::set_up)).
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        // Connection tasks end when `cut_connections` is dropped right after this.
        self.accept_loop.abort();
    }
}

/// State shared by the handle and the serving tasks.
struct Shared {
    upstream_authority: Authority,
    client: Client<HttpConnector, Full<Bytes>>,
    up: AtomicBool,
    connections_accepted: AtomicU64,
    connections_open: AtomicU64,
    rules: Mutex<HashMap<String, VecDeque<Rule>>>,
    /// Keyed by full target.
    counts: Mutex<HashMap<String, Counts>>,
    creation_watch: Mutex<Option<CreationWatch>>,
}

struct Rule {
    fault: Fault,
    /// Matching calls left; `None` for no limit.
    remaining: Option<u64>,
}

#[derive(Default)]
struct Counts {
    seen: u64,
    forwarded: u64,
}

struct CreationWatch {
    operations: Vec<String>,
    window: Duration,
    created: Vec<CreatedKey>,
}

struct CreatedKey {
    id: String,
    arn: String,
    at: Instant,
}

/// A poisoned lock only means a test panicked elsewhere; the data is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn push_rule(&self, operation: &str, rule: Rule) {
        lock(&self.rules).entry(operation.to_owned()).or_default().push_back(rule);
    }

    /// The fault for this call, consuming one use of the rule; rules under the full target
    /// take precedence over rules under the short name.
    fn take_fault(&self, operation: &Operation) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        for name in [operation.target.as_str(), operation.short_name()] {
            let Some(queue) = rules.get_mut(name) else { continue };
            let Some(rule) = queue.front_mut() else { continue };
            let fault = rule.fault.clone();
            if let Some(remaining) = rule.remaining.as_mut() {
                *remaining -= 1;
                if *remaining == 0 {
                    queue.pop_front();
                }
            }
            if queue.is_empty() {
                rules.remove(name);
            }
            return Some(fault);
        }
        None
    }

    fn record(&self, operation: &Operation, update: impl FnOnce(&mut Counts)) {
        update(lock(&self.counts).entry(operation.target.clone()).or_default());
    }

    fn count(&self, name: &str, field: impl Fn(&Counts) -> u64) -> u64 {
        let counts = lock(&self.counts);
        counts.iter().filter(|(target, _)| Operation::names(target, name)).map(|(_, c)| field(c)).sum()
    }

    /// Remember a key KMS just created, if creations are watched.
    fn watch_creation(&self, operation: &Operation, status: StatusCode, answer: &[u8]) {
        if operation.target != "TrentService.CreateKey" || !status.is_success() {
            return;
        }
        let mut watch = lock(&self.creation_watch);
        let Some(watch) = watch.as_mut() else { return };
        let Ok(answer) = serde_json::from_slice::<Value>(answer) else { return };
        let metadata = &answer["KeyMetadata"];
        if let (Some(id), Some(arn)) = (metadata["KeyId"].as_str(), metadata["Arn"].as_str()) {
            watch.created.push(CreatedKey { id: id.to_owned(), arn: arn.to_owned(), at: Instant::now() });
        }
    }

    /// The ARN of the freshly created key this call names, if the call must be denied.
    fn denied_after_creation(&self, operation: &Operation, request: &[u8]) -> Option<String> {
        let mut watch = lock(&self.creation_watch);
        let watch = watch.as_mut()?;
        if !watch.operations.iter().any(|name| operation.is_named(name)) {
            return None;
        }
        let window = watch.window;
        watch.created.retain(|key| key.at.elapsed() < window);
        let request: Value = serde_json::from_slice(request).ok()?;
        let key_id = request["KeyId"].as_str()?;
        watch.created.iter().find(|key| key.id == key_id || key.arn == key_id).map(|key| key.arn.clone())
    }
}

/// An AWS JSON-protocol operation, as named by `X-Amz-Target`.
struct Operation {
    target: String,
}

impl Operation {
    /// The REST operations the proxy knows by method and path (they carry no
    /// `X-Amz-Target`): CloudFront's `CreateInvalidation`, as `cloudfront.CreateInvalidation`.
    fn rest(method: &hyper::Method, path: &str) -> Option<Operation> {
        let distribution = path.strip_prefix("/2020-05-31/distribution/")?;
        let invalidation = distribution.strip_suffix("/invalidation")?;
        (method == hyper::Method::POST && !invalidation.is_empty() && !invalidation.contains('/'))
            .then(|| Operation { target: "cloudfront.CreateInvalidation".to_owned() })
    }

    /// `CreateKey` of `TrentService.CreateKey`.
    fn short_name(&self) -> &str {
        Self::short(&self.target)
    }

    fn short(target: &str) -> &str {
        target.rsplit_once('.').map_or(target, |(_, operation)| operation)
    }

    fn is_named(&self, name: &str) -> bool {
        Self::names(&self.target, name)
    }

    fn names(target: &str, name: &str) -> bool {
        name == target || name == Self::short(target)
    }

    /// The IAM action prefix of the service, for realistic denial messages.
    fn iam_action(&self) -> String {
        let service = match self.target.split_once('.').map_or("", |(service, _)| service) {
            "TrentService" => "kms".to_owned(),
            service if service.starts_with("ResourceGroupsTaggingAPI") => "tag".to_owned(),
            service => service.to_ascii_lowercase(),
        };
        format!("{service}:{}", self.short_name())
    }
}

async fn accept_connections(listener: TcpListener, shared: Arc<Shared>, mut cut: watch::Receiver<()>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or the like: transient, and a busy loop helps no one.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Marked seen before reading the flag, so a later `set_up(false)` still cuts it.
        cut.borrow_and_update();
        if !shared.up.load(Ordering::SeqCst) {
            continue; // dropped: the connection closes at once
        }
        let mut cut = cut.clone();
        let shared = Arc::clone(&shared);
        shared.connections_accepted.fetch_add(1, Ordering::SeqCst);
        let open = OpenConnection::new(Arc::clone(&shared));
        tokio::spawn(async move {
            let _open = open;
            let service = hyper::service::service_fn(move |request| serve(Arc::clone(&shared), request));
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                // The client's errors (resets, lost replies by closing) end the connection only.
                _ = connection => {}
                // Down, or the proxy dropped: dropping the connection closes the socket.
                _ = cut.changed() => {}
            }
        });
    }
}

/// Counts a connection as open while it lives.
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: Arc<Shared>) -> OpenConnection {
        shared.connections_open.fetch_add(1, Ordering::SeqCst);
        OpenConnection(shared)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug)]
struct CloseWithoutAnswer;

impl fmt::Display for CloseWithoutAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection closed without an answer")
    }
}

impl std::error::Error for CloseWithoutAnswer {}

async fn serve(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, CloseWithoutAnswer> {
    let (parts, body) = request.into_parts();
    // A client that vanishes mid-request gets nothing, and the call does not count.
    let body = body.collect().await.map_err(|_| CloseWithoutAnswer)?.to_bytes();
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|target| target.to_str().ok())
        .map(|target| Operation { target: target.to_owned() })
        .or_else(|| Operation::rest(&parts.method, parts.uri.path()));
    let Some(operation) = operation else {
        return Ok(match forward(&shared, parts, body).await {
            Ok(answer) => answer.into_response(),
            Err(reason) => bad_gateway(&reason),
        });
    };
    shared.record(&operation, |counts| counts.seen += 1);

    let fault = shared.take_fault(&operation);
    match &fault {
        Some(Fault::FailBefore) => return Ok(internal_failure()),
        Some(Fault::Throttle) => {
            return Ok(aws_error(StatusCode::BAD_REQUEST, "ThrottlingException", "Rate exceeded"))
        }
        Some(Fault::Deny) => return Ok(access_denied(&operation, None)),
        Some(Fault::Hang) => {
            // Ends only when the connection task is dropped (client gone, down, proxy dropped).
            let never: Infallible = std::future::pending().await;
            match never {}
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(*delay).await,
        Some(Fault::LoseReply | Fault::LoseReplyByClosing | Fault::Rewrite(_)) | None => {}
    }
    if let Some(key_arn) = shared.denied_after_creation(&operation, &body) {
        return Ok(access_denied(&operation, Some(&key_arn)));
    }

    let request_body = body.clone();
    shared.record(&operation, |counts| counts.forwarded += 1);
    let answer = match forward(&shared, parts, body).await {
        Ok(answer) => answer,
        Err(reason) => return Ok(bad_gateway(&reason)),
    };
    // From the real answer: the key exists even if the reply is then lost or rewritten.
    shared.watch_creation(&operation, answer.status, &answer.body);
    match fault {
        Some(Fault::LoseReply) => Ok(internal_failure()),
        Some(Fault::LoseReplyByClosing) => Err(CloseWithoutAnswer),
        Some(Fault::Rewrite(rewrite)) => Ok(match answer.rewritten(&request_body, &rewrite) {
            Ok(answer) => answer.into_response(),
            Err(reason) => bad_gateway(&reason),
        }),
        _ => Ok(answer.into_response()),
    }
}

/// LocalStack's answer, read in full.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn rewritten(mut self, request: &[u8], rewrite: &Rewrite) -> Result<Answer, String> {
        let request = parse_json(request).unwrap_or(Value::Null);
        let mut answer =
            parse_json(&self.body).map_err(|e| format!("rewrite: the answer is not JSON: {e}"))?;
        (rewrite.0)(&request, &mut answer);
        self.body = Bytes::from(answer.to_string());
        // hyper sets the length of the new body.
        self.headers.remove(CONTENT_LENGTH);
        Ok(self)
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

fn parse_json(body: &[u8]) -> Result<Value, serde_json::Error> {
    if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(body)
    }
}

/// Send the request on to LocalStack as it came (method, path, query, headers including Host
/// and the signature, body) and read the whole answer.
async fn forward(shared: &Shared, parts: hyper::http::request::Parts, body: Bytes) -> Result<Answer, String> {
    let path_and_query =
        parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(shared.upstream_authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| format!("upstream URI: {e}"))?;
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = end_to_end_headers(parts.headers);
    let response = shared.client.request(request).await.map_err(|e| format!("upstream request: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("upstream answer: {e}"))?.to_bytes();
    Ok(Answer { status: parts.status, headers: end_to_end_headers(parts.headers), body })
}

/// `headers` without the hop-by-hop ones, which describe one connection, not the message
/// (RFC 9110 §7.6.1). The body was read in full, so its framing is recomputed by hyper, and
/// `Expect: 100-continue` was already honoured.
fn end_to_end_headers(mut headers: HeaderMap) -> HeaderMap {
    let named_by_connection: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named_by_connection {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    ] {
        headers.remove(name);
    }
    headers
}

/// An AWS JSON-protocol error answer, as the SDK parses it (`__type` and `X-Amzn-ErrorType`).
fn aws_error(status: StatusCode, code: &'static str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({ "__type": code, "message": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
    headers.insert("x-amzn-errortype", HeaderValue::from_static(code));
    if let Ok(request_id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-requestid", request_id);
    }
    response
}

fn internal_failure() -> Response<Full<Bytes>> {
    aws_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", "injected")
}

/// IAM's wording, so code that inspects the message sees what AWS would say.
fn access_denied(operation: &Operation, resource: Option<&str>) -> Response<Full<Bytes>> {
    let action = operation.iam_action();
    let user = "arn:aws:iam::000000000000:user/test";
    let message = match resource {
        Some(resource) => format!(
            "User: {user} is not authorized to perform: {action} on resource: {resource} because no \
             resource-based policy allows the {action} action"
        ),
        None => format!(
            "User: {user} is not authorized to perform: {action} because no identity-based policy \
             allows the {action} action"
        ),
    };
    aws_error(StatusCode::BAD_REQUEST, "AccessDeniedException", &message)
}

/// A 502 (which the SDK treats as transient) for an upstream failure the proxy cannot relay.
fn bad_gateway(reason: &str) -> Response<Full<Bytes>> {
    aws_error(StatusCode::BAD_GATEWAY, "BadGateway", &format!("aws proxy: {reason}"))
}

fn invalid_upstream(upstream: impl fmt::Display, reason: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("upstream {upstream}: {reason}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn operation(target: &str) -> Operation {
        Operation { target: target.to_owned() }
    }

    #[test]
    fn operations_match_by_full_target_or_short_name() {
        let create = operation("TrentService.CreateKey");
        assert!(create.is_named("CreateKey"));
        assert!(create.is_named("TrentService.CreateKey"));
        assert!(!create.is_named("secretsmanager.CreateKey"));
        assert!(!create.is_named("Create"));
        assert_eq!(create.iam_action(), "kms:CreateKey");
        assert_eq!(
            operation("ResourceGroupsTaggingAPI_20170126.GetResources").iam_action(),
            "tag:GetResources"
        );
        assert_eq!(operation("secretsmanager.GetSecretValue").iam_action(), "secretsmanager:GetSecretValue");
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_the_rest_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("kms.us-east-1.amazonaws.com"));
        headers.insert("authorization", HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"));
        headers.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let kept = end_to_end_headers(headers);
        let mut names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "host"]);
    }
}
