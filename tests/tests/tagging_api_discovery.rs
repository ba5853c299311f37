//! The Resource Groups Tagging API path of the crash sweep (`KEY_DISCOVERY=tagging-api`, the
//! default on AWS). LocalStack's tagging API does not return KMS keys, so this test stands a
//! tiny HTTP service in for the API: it records what the adapter asks and answers two pages the
//! way `GetResources` does. The `list-keys` path is tested against LocalStack
//! (`localstack_hardening.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kms_jwt::aws::{KeyDiscovery, KmsAdapter};
use kms_jwt::ports::KeyAdmin;
use serde_json::{json, Value};

/// Serve `GetResources` pages on 127.0.0.1; returns the endpoint and the requests seen.
async fn fake_tagging_api() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let target = request.headers()["x-amz-target"].to_str().unwrap().to_owned();
                        let body: Value =
                            serde_json::from_slice(&request.into_body().collect().await.unwrap().to_bytes())
                                .unwrap();
                        let first_page = body.get("PaginationToken").is_none();
                        log.lock().unwrap().push((target, body));
                        let answer = if first_page {
                            json!({"PaginationToken": "page-2", "ResourceTagMappingList": [
                                {"ResourceARN": "arn:aws:kms:us-east-1:111122223333:key/orphan-1",
                                 "Tags": [{"Key": "kms-jwt:request", "Value": "dead-run"}]}]})
                        } else {
                            json!({"PaginationToken": "", "ResourceTagMappingList": [
                                {"ResourceARN": "arn:aws:kms:us-east-1:111122223333:key/orphan-2"}]})
                        };
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "application/x-amz-json-1.1")
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (endpoint, seen)
}

#[tokio::test]
async fn the_sweep_asks_the_tagging_api_for_both_tags_and_follows_its_pages() {
    let (endpoint, seen) = fake_tagging_api().await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let kms = KmsAdapter::new(&sdk)
        .with_discovery(KeyDiscovery::TaggingApi(aws_sdk_resourcegroupstagging::Client::new(&sdk)));

    let first = kms.find_keys_by_request("kr", "dead-run", None).await.unwrap();
    assert_eq!(first.arns, vec!["arn:aws:kms:us-east-1:111122223333:key/orphan-1".to_owned()]);
    assert_eq!(first.next.as_deref(), Some("page-2"));
    let second = kms.find_keys_by_request("kr", "dead-run", first.next.as_deref()).await.unwrap();
    assert_eq!(second.arns, vec!["arn:aws:kms:us-east-1:111122223333:key/orphan-2".to_owned()]);
    assert_eq!(second.next, None, "an empty token ends the search");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one call per page, no per-key calls");
    let (target, request) = &seen[0];
    assert_eq!(target, "ResourceGroupsTaggingAPI_20170126.GetResources");
    assert_eq!(request["ResourceTypeFilters"], json!(["kms:key"]));
    assert_eq!(
        request["TagFilters"],
        json!([{"Key": "kms-jwt:keyring", "Values": ["kr"]}, {"Key": "kms-jwt:request", "Values": ["dead-run"]}])
    );
    assert_eq!(seen[1].1["PaginationToken"], "page-2");
}
