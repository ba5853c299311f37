//! A stand-in for CloudFront's `CreateInvalidation` (LocalStack's community edition serves no
//! CloudFront): a plain-HTTP server on 127.0.0.1 that answers the REST-XML call as CloudFront
//! does, for one distribution, with CloudFront's rule for a repeated `CallerReference` (same
//! paths: the earlier invalidation is answered, none is created; other paths:
//! `InvalidationBatchAlreadyExists`). Put an [`AwsProxy`](crate::aws_proxy::AwsProxy) in front
//! of it to lose or delay its replies.
//!
//! Only what rotate sends is understood: the `CallerReference` and the `Path` items of the
//! request body, read as text. No signature is checked.

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One invalidation the stand-in created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    /// Its id.
    pub id: String,
    /// The `CallerReference` it was created with.
    pub caller_reference: String,
    /// The paths, in the order sent.
    pub paths: Vec<String>,
}

#[derive(Default)]
struct State {
    created: Vec<Invalidation>,
    requests: u64,
}

/// The running stand-in; dropping it stops it.
pub struct CloudFrontStandIn {
    port: u16,
    distribution_id: String,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CloudFrontStandIn {
    /// Serve distribution `distribution_id` on a free port of 127.0.0.1.
    pub async fn start(distribution_id: &str) -> io::Result<CloudFrontStandIn> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let server = tokio::spawn(serve(listener, distribution_id.to_owned(), Arc::clone(&state)));
        Ok(CloudFrontStandIn { port, distribution_id: distribution_id.to_owned(), state, server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The distribution it serves.
    pub fn distribution_id(&self) -> &str {
        &self.distribution_id
    }

    /// Every invalidation created, oldest first.
    pub fn invalidations(&self) -> Vec<Invalidation> {
        lock(&self.state).created.clone()
    }

    /// `CreateInvalidation` requests received (repeats included).
    pub fn requests(&self) -> u64 {
        lock(&self.state).requests
    }
}

impl Drop for CloudFrontStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, distribution_id: String, state: Arc<Mutex<State>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let (distribution_id, state) = (distribution_id.clone(), Arc::clone(&state));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                answer(request, distribution_id.clone(), Arc::clone(&state))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The text of every `<tag>...</tag>` in `xml`, in order.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>stand-in</RequestId></ErrorResponse>",
        xml_escape(message)
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/xml"));
    response
}

async fn answer(
    request: Request<Incoming>,
    distribution_id: String,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(error(StatusCode::BAD_REQUEST, "MissingBody", "unreadable body"));
    };
    let path = parts.uri.path();
    let target = format!("/2020-05-31/distribution/{distribution_id}/invalidation");
    if parts.method != Method::POST
        || !path.starts_with("/2020-05-31/distribution/")
        || !path.ends_with("/invalidation")
    {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "NotImplemented",
            "the stand-in serves CreateInvalidation only",
        ));
    }
    if path != target {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "NoSuchDistribution",
            "The specified distribution does not exist.",
        ));
    }
    let text = String::from_utf8_lossy(&body);
    let (Some(reference), paths) =
        (elements(&text, "CallerReference").first().map(|r| r.to_string()), elements(&text, "Path"))
    else {
        return Ok(error(StatusCode::BAD_REQUEST, "InvalidArgument", "CallerReference is required"));
    };
    let paths: Vec<String> = paths.into_iter().map(str::to_owned).collect();
    let quantity = elements(&text, "Quantity").first().and_then(|q| q.parse::<usize>().ok());
    if quantity != Some(paths.len()) {
        return Ok(error(StatusCode::BAD_REQUEST, "InconsistentQuantities", "Quantity does not match Items"));
    }
    let invalidation = {
        let mut state = lock(&state);
        state.requests += 1;
        match state.created.iter().find(|i| i.caller_reference == reference) {
            Some(earlier) if earlier.paths == paths => earlier.clone(),
            Some(_) => {
                return Ok(error(
                    StatusCode::CONFLICT,
                    "InvalidationBatchAlreadyExists",
                    "CallerReference was used with other paths",
                ))
            }
            None => {
                let created = Invalidation {
                    id: format!("I{:012}", state.created.len() + 1),
                    caller_reference: reference,
                    paths,
                };
                state.created.push(created.clone());
                created
            }
        }
    };
    let items: String =
        invalidation.paths.iter().map(|p| format!("<Path>{}</Path>", xml_escape(p))).collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Invalidation xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\"><Id>{id}</Id><Status>InProgress</Status><CreateTime>2026-01-01T00:00:00.000Z</CreateTime><InvalidationBatch><Paths><Quantity>{n}</Quantity><Items>{items}</Items></Paths><CallerReference>{reference}</CallerReference></InvalidationBatch></Invalidation>",
        id = invalidation.id,
        n = invalidation.paths.len(),
        reference = xml_escape(&invalidation.caller_reference),
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    headers.insert("content-type", hyper::header::HeaderValue::from_static("text/xml"));
    if let Ok(location) = hyper::header::HeaderValue::from_str(&format!(
        "https://cloudfront.amazonaws.com{target}/{}",
        invalidation.id
    )) {
        headers.insert("location", location);
    }
    Ok(response)
}
