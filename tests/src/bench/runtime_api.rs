//! A local Lambda runtime API, enough to time a cold start or to measure a function's process
//! through one invocation: it serves one event to the first `GET /next`, records when that
//! poll arrived (the end of the function's initialisation) and when the answer was posted (the
//! first answered event), and never serves a second event.

use std::convert::Infallible;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::Notify;
use tokio::task::JoinSet;

const REQUEST_ID: &str = "00000000-0000-4000-8000-0000000b3c4d";

/// How the function answered its first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `POST /invocation/{id}/response`.
    Response,
    /// `POST /invocation/{id}/error`: the handler returned an error.
    Error,
    /// `POST /init/error`: initialisation failed.
    InitError,
}

/// One cold start, timed from just before the process was spawned.
#[derive(Debug, Clone)]
pub struct ColdStart {
    /// Until the runtime first polled for an event: process start and initialisation.
    pub init: Duration,
    /// Until the answer to the first event was posted.
    pub first_answer: Duration,
    pub outcome: Outcome,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ColdStartError {
    #[error("runtime API: {0}")]
    Io(#[from] std::io::Error),
    #[error("the function did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the function exited before answering: {0}")]
    Exited(std::process::ExitStatus),
    #[error("the function answered without polling for an event first")]
    NoPoll,
    #[error("the function did not exit within {0:?} of its answer")]
    DidNotExit(Duration),
}

/// What becomes of the function's process once it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Killed at once.
    Kill,
    /// The runtime API goes away, so the runtime's next poll fails and the process exits by
    /// itself, within the given time: for a measurement that a wrapper program reports when
    /// the process ends (its peak memory under `/usr/bin/time`, say).
    Exit(Duration),
}

#[derive(Default)]
struct State {
    event: Bytes,
    function_name: String,
    first_poll: Mutex<Option<Instant>>,
    answer: Mutex<Option<(Instant, Outcome, Bytes)>>,
    answered: Notify,
}

/// Start `binary` as a Lambda function would be started, with `env` (and nothing else of this
/// process's environment but `PATH`), feed it `event`, and time its cold start.
pub async fn cold_start(
    binary: &Path,
    function_name: &str,
    env: &[(String, String)],
    event: &[u8],
    timeout: Duration,
) -> Result<ColdStart, ColdStartError> {
    invoke_once(Command::new(binary), function_name, env, event, timeout, Ending::Kill).await
}

/// [`cold_start`] of whatever `command` runs: the function's binary, or a program that runs
/// it and reports on it. `command` gets the environment Lambda sets; `ending` says what
/// becomes of it after its answer, which must come within `timeout`.
pub async fn invoke_once(
    mut command: Command,
    function_name: &str,
    env: &[(String, String)],
    event: &[u8],
    timeout: Duration,
    ending: Ending,
) -> Result<ColdStart, ColdStartError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let state = Arc::new(State {
        event: Bytes::copy_from_slice(event),
        function_name: function_name.to_owned(),
        ..State::default()
    });
    let server = tokio::spawn(serve(listener, Arc::clone(&state)));

    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function_name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let answer = async {
        loop {
            let notified = state.answered.notified();
            if let Some(answer) = lock(&state.answer).clone() {
                return answer;
            }
            notified.await;
        }
    };
    let waited = tokio::time::timeout(timeout, async {
        tokio::select! {
            answer = answer => Ok(answer),
            exit = child.wait() => Err(exit),
        }
    })
    .await;
    if ending == Ending::Kill {
        let _ = child.kill().await;
    }
    // Without its runtime API (and the connections to it) a function still running fails
    // its next poll and exits.
    server.abort();
    let (answered_at, outcome, body) = match waited {
        Err(_) => return Err(ColdStartError::Timeout(timeout)),
        Ok(Err(exit)) => return Err(ColdStartError::Exited(exit?)),
        Ok(Ok(answer)) => answer,
    };
    if let Ending::Exit(within) = ending {
        tokio::time::timeout(within, child.wait())
            .await
            .map_err(|_| ColdStartError::DidNotExit(within))??;
    }
    let first_poll = match (*lock(&state.first_poll), outcome) {
        (Some(at), _) => at,
        (None, Outcome::InitError) => answered_at,
        (None, _) => return Err(ColdStartError::NoPoll),
    };
    Ok(ColdStart {
        init: first_poll.duration_since(started),
        first_answer: answered_at.duration_since(started),
        outcome,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serve until aborted; aborting drops every connection too.
async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&state), request));
            // The connection ends with the function or the API; nothing to report.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = Instant::now();
    let path = request.uri().path().to_owned();
    let reply = |status: StatusCode, body: Bytes| {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response
    };
    if request.method() == Method::GET && path == "/2018-06-01/runtime/invocation/next" {
        let first = lock(&state.first_poll).get_or_insert(now) == &now;
        if !first {
            // One event per process: later polls wait until the process or the API ends.
            std::future::pending::<()>().await;
        }
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() + 30_000)
            .unwrap_or_default();
        let mut response = reply(StatusCode::OK, state.event.clone());
        let headers = response.headers_mut();
        let arn = format!("arn:aws:lambda:us-east-1:000000000000:function:{}", state.function_name);
        for (name, value) in [
            ("content-type", "application/json".to_owned()),
            ("lambda-runtime-aws-request-id", REQUEST_ID.to_owned()),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            ("lambda-runtime-invoked-function-arn", arn),
            ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned()),
        ] {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        }
        return Ok(response);
    }
    let outcome = match (request.method(), path.as_str()) {
        (&Method::POST, "/2018-06-01/runtime/init/error") => Outcome::InitError,
        (&Method::POST, p) if p == format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/response") => {
            Outcome::Response
        }
        (&Method::POST, p) if p == format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/error") => {
            Outcome::Error
        }
        _ => return Ok(reply(StatusCode::NOT_FOUND, Bytes::new())),
    };
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    lock(&state.answer).get_or_insert((now, outcome, body));
    state.answered.notify_waiters();
    Ok(reply(StatusCode::ACCEPTED, Bytes::new()))
}
