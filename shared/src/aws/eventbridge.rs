//! EventBridge through the SDK: the adapter of [`LifecycleEvents`], `PutEvents` on the
//! lifecycle event bus.

use async_trait::async_trait;
use aws_sdk_eventbridge::error::SdkError;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::{describe, kept};
use crate::events::{LifecycleEvent, EVENT_SOURCE, MAX_EVENTS_PER_CALL};
use crate::ports::{LifecycleEvents, NotifyError, RejectedEvent};

const OPERATION: &str = "PutEvents";

/// One event bus (`LIFECYCLE_EVENT_BUS`: name or ARN). Bounded in time like every client.
#[derive(Clone, Debug)]
pub struct EventBridgeEvents {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeEvents {
    /// The bus `bus` (a name or an ARN).
    pub fn new(config: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        EventBridgeEvents { client: aws_sdk_eventbridge::Client::new(config), bus: bus.into() }
    }
}

#[async_trait]
impl LifecycleEvents for EventBridgeEvents {
    async fn publish(&self, batch: &[LifecycleEvent]) -> Result<Vec<RejectedEvent>, NotifyError> {
        if batch.len() > MAX_EVENTS_PER_CALL {
            return Err(NotifyError::failed(OPERATION, format!("{} events in one call", batch.len())));
        }
        let entries = batch
            .iter()
            .map(|event| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(EVENT_SOURCE)
                    .detail_type(event.detail_type())
                    .detail(event.detail_json())
                    .build()
            })
            .collect();
        let out = match self.client.put_events().set_entries(Some(entries)).send().await {
            Ok(out) => out,
            Err(SdkError::TimeoutError(_)) => return Err(NotifyError::Timeout { operation: OPERATION }),
            Err(e) => {
                return Err(NotifyError::Failed {
                    operation: OPERATION,
                    message: describe(&e),
                    source: kept(e),
                })
            }
        };
        if out.failed_entry_count() == 0 {
            return Ok(Vec::new());
        }
        // Result entries match request entries one to one, in order; a failed one has a code.
        let mut rejected: Vec<RejectedEvent> = out
            .entries()
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                entry.error_code().map(|code| RejectedEvent { index, code: code.to_owned() })
            })
            .collect();
        if rejected.is_empty() || out.entries().len() != batch.len() {
            // A count without codes, or an answer of another length: take every entry as failed.
            rejected =
                (0..batch.len()).map(|index| RejectedEvent { index, code: "Unknown".into() }).collect();
        }
        Ok(rejected)
    }
}
