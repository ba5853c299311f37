//! Twins of the notification ports: a CDN that records invalidations (CloudFront's
//! `CallerReference` rule included) and an event bus that records events (and can reject
//! entries, as `PutEvents` reports a partial failure). Fault injection: wrap in [`Faulty`].

use super::*;
use crate::events::{LifecycleEvent, MAX_EVENTS_PER_CALL};
use crate::ports::{EdgeCache, LifecycleEvents, NotifyError, RejectedEvent};

/// One invalidation the CDN twin created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedInvalidation {
    /// Its id, `I1`, `I2`, ...
    pub id: String,
    /// The `CallerReference` it was created with.
    pub reference: String,
    /// The paths invalidated.
    pub paths: Vec<String>,
}

/// CloudFront twin: `CreateInvalidation` with CloudFront's rule for a repeated
/// `CallerReference` (same paths: the earlier invalidation is answered, none is created;
/// other paths: `InvalidationBatchAlreadyExists`).
#[derive(Default)]
pub struct MemoryEdgeCache {
    created: Mutex<Vec<RecordedInvalidation>>,
    calls: Mutex<u64>,
}

impl MemoryEdgeCache {
    /// A distribution with no invalidation yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every invalidation created, oldest first.
    pub fn invalidations(&self) -> Vec<RecordedInvalidation> {
        lock(&self.created).clone()
    }

    /// `CreateInvalidation` calls answered (repeats included).
    pub fn calls(&self) -> u64 {
        *lock(&self.calls)
    }
}

#[async_trait]
impl EdgeCache for MemoryEdgeCache {
    async fn invalidate(&self, reference: &str, paths: &[String]) -> Result<String, NotifyError> {
        *lock(&self.calls) += 1;
        let mut created = lock(&self.created);
        if let Some(earlier) = created.iter().find(|i| i.reference == reference) {
            return if earlier.paths == paths {
                Ok(earlier.id.clone())
            } else {
                Err(NotifyError::failed("CreateInvalidation", "InvalidationBatchAlreadyExists"))
            };
        }
        let id = format!("I{}", created.len() + 1);
        created.push(RecordedInvalidation {
            id: id.clone(),
            reference: reference.to_owned(),
            paths: paths.to_vec(),
        });
        Ok(id)
    }
}

/// EventBridge twin: a bus that keeps every accepted event, and can reject entries.
#[derive(Default)]
pub struct MemoryEventBus {
    accepted: Mutex<Vec<LifecycleEvent>>,
    /// Entries still to reject, one per entry offered.
    rejecting: Mutex<usize>,
    calls: Mutex<u64>,
}

impl MemoryEventBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event accepted, in order.
    pub fn events(&self) -> Vec<LifecycleEvent> {
        lock(&self.accepted).clone()
    }

    /// Reject the next `entries` entries offered (`InternalFailure`), as a partial failure.
    pub fn reject_entries(&self, entries: usize) {
        *lock(&self.rejecting) = entries;
    }

    /// `PutEvents` calls answered.
    pub fn calls(&self) -> u64 {
        *lock(&self.calls)
    }
}

#[async_trait]
impl LifecycleEvents for MemoryEventBus {
    async fn publish(&self, batch: &[LifecycleEvent]) -> Result<Vec<RejectedEvent>, NotifyError> {
        *lock(&self.calls) += 1;
        if batch.len() > MAX_EVENTS_PER_CALL {
            return Err(NotifyError::failed("PutEvents", "ValidationException: too many entries"));
        }
        let mut rejected = Vec::new();
        let mut rejecting = lock(&self.rejecting);
        for (index, event) in batch.iter().enumerate() {
            if *rejecting > 0 {
                *rejecting -= 1;
                rejected.push(RejectedEvent { index, code: "InternalFailure".into() });
            } else {
                lock(&self.accepted).push(event.clone());
            }
        }
        Ok(rejected)
    }
}
