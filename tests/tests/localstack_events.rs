//! Lifecycle events on LocalStack, read back as a subscriber gets them: an EventBridge rule on
//! a bus of its own matches `source: kms-jwt` and targets an SQS queue; rotate bootstraps and
//! revokes against LocalStack's KMS and Secrets Manager, publishing through the EventBridge
//! adapter; the test reads the queue and checks every event's envelope and detail against the
//! documented schema (docs/events.md). A second rule with the documentation's example pattern
//! (revocations only) gets the revocation alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use kms_jwt::aws::EventBridgeEvents;
use kms_jwt::rotate::{Command, RotationPolicy};
use kms_jwt::SigningAlg;
use kms_jwt_tests::localstack::stored;
use serde_json::{json, Value};

const REGION: &str = "eu-north-1";
const T0: i64 = 1_700_000_000;

struct Subscription {
    rule: String,
    queue_url: String,
}

/// A queue that receives what `pattern` matches on `bus`.
async fn subscribe(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
    name: &str,
    pattern: &Value,
) -> Subscription {
    let queue_url = sqs.create_queue().queue_name(name).send().await.unwrap().queue_url.unwrap();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let queue_arn =
        attributes.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    let rule_arn = events
        .put_rule()
        .name(name)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap()
        .rule_arn
        .unwrap();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
        }],
    });
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder().id("queue").arn(&queue_arn).build().unwrap();
    let put = events.put_targets().rule(name).event_bus_name(bus).targets(target).send().await.unwrap();
    assert_eq!(put.failed_entry_count(), 0);
    Subscription { rule: name.to_owned(), queue_url }
}

/// The events the queue holds, waiting until `count` have come (or `patience` has passed).
async fn received(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    count: usize,
    patience: Duration,
) -> Vec<Value> {
    let mut events = Vec::new();
    let started = Instant::now();
    while events.len() < count && started.elapsed() < patience {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        for message in out.messages() {
            events.push(serde_json::from_str(message.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    events
}

/// RFC 3339 in UTC to the second: `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        let bytes = text.as_bytes();
        bytes.len() == 20 && bytes[4] == b'-' && bytes[10] == b'T' && bytes[19] == b'Z'
    })
}

#[tokio::test]
async fn lifecycle_events_reach_a_subscriber_with_the_documented_schema() {
    let sdk = kms_jwt_tests::localstack::sdk(Some(REGION)).await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let bus = format!("kms-jwt-test-{id}");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let all = subscribe(&events, &sqs, &bus, &format!("all-{id}"), &json!({"source": ["kms-jwt"]})).await;
    // The example of docs/events.md: refresh a pinned JWKS on revocation.
    let revocations = subscribe(
        &events,
        &sqs,
        &bus,
        &format!("revoked-{id}"),
        &json!({"source": ["kms-jwt"], "detail-type": ["Signing Key Revoked"]}),
    )
    .await;

    let secret_id = format!("kms-jwt-test/events/{id}");
    let policy = RotationPolicy::for_tests(SigningAlg::ES256);
    let rotator = kms_jwt_tests::localstack::rotator(&sdk, &secret_id, policy)
        .with_lifecycle_events(EventBridgeEvents::new(&sdk, bus.clone()), Some(REGION.to_owned()));
    let bootstrap = rotator.reconcile(T0).await.unwrap();
    assert_eq!(bootstrap.events_unpublished, 0, "{bootstrap:?}");
    let revoked = stored(&sdk, &secret_id).await.current().unwrap().kid.clone();
    let revocation = rotator.run(Command::Revoke { kid: revoked.clone() }, T0 + 3_600).await.unwrap();
    assert_eq!(revocation.events_unpublished, 0, "{revocation:?}");

    let got = received(&sqs, &all.queue_url, 6, Duration::from_secs(30)).await;
    let types: Vec<&str> = got.iter().map(|e| e["detail-type"].as_str().unwrap()).collect();
    let mut sorted = types.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "Signing Key Current",
            "Signing Key Current",
            "Signing Key Published",
            "Signing Key Published",
            "Signing Key Published",
            "Signing Key Revoked"
        ],
        "{got:#?}"
    );
    let ring = stored(&sdk, &secret_id).await;
    for event in &got {
        assert_eq!(event["source"], "kms-jwt");
        let detail = &event["detail"];
        assert_eq!(detail["schema_version"], 1, "{event}");
        assert_eq!(detail["keyring"], secret_id.as_str());
        assert_eq!(detail["region"], REGION);
        assert_eq!(detail["alg"], "ES256");
        assert_eq!(detail["event_id"].as_str().unwrap().len(), 32);
        assert!(rfc3339(&detail["time"]) && rfc3339(&detail["published_at"]), "{detail}");
        assert!(detail["keyring_version"].is_string(), "{detail}");
        let kid = detail["kid"].as_str().unwrap();
        let transition = detail["transition"].as_str().unwrap();
        match event["detail-type"].as_str().unwrap() {
            "Signing Key Revoked" => {
                assert_eq!((kid, transition), (revoked.as_str(), "revoked"));
                assert_eq!(detail["time"], "2023-11-14T23:13:20Z");
            }
            "Signing Key Current" => {
                assert_eq!(transition, "current");
                assert!(rfc3339(&detail["activated_at"]), "{detail}");
            }
            "Signing Key Published" => assert_eq!(transition, "published"),
            other => panic!("unexpected detail-type {other}"),
        }
        if transition != "revoked" {
            assert!(kid == revoked || ring.find(kid).is_some(), "{detail}");
        }
    }

    // Everything was delivered to the first queue by now: wait briefly for anything beyond one.
    let only_revoked = received(&sqs, &revocations.queue_url, 2, Duration::from_secs(5)).await;
    assert_eq!(only_revoked.len(), 1, "{only_revoked:#?}");
    assert_eq!(only_revoked[0]["detail"]["kid"], revoked.as_str());

    for subscription in [all, revocations] {
        let _ =
            events.remove_targets().rule(&subscription.rule).event_bus_name(&bus).ids("queue").send().await;
        let _ = events.delete_rule().name(&subscription.rule).event_bus_name(&bus).send().await;
        let _ = sqs.delete_queue().queue_url(&subscription.queue_url).send().await;
    }
    let _ = events.delete_event_bus().name(&bus).send().await;
}
