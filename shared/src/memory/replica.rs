//! The Secrets Manager replication twin.

use super::*;

/// Secrets Manager replication twin: a read-only copy of a primary secret in another region,
/// updated only when [`MemoryReplica::sync`] is called (real replication is eventual), until
/// promoted to a standalone, writable secret (`StopReplicationToReplica`).
pub struct MemoryReplica {
    pub(super) primary: Mutex<Arc<dyn ReplicationSource>>,
    pub(super) copy: MemoryStore,
    pub(super) promoted: Mutex<bool>,
}

/// A secret a [`MemoryReplica`] can copy from: a primary, or a promoted replica.
pub trait ReplicationSource: Send + Sync {
    /// The current document, if any.
    fn current_text(&self) -> Option<String>;
}

impl ReplicationSource for MemoryStore {
    fn current_text(&self) -> Option<String> {
        MemoryStore::current_text(self)
    }
}

impl ReplicationSource for MemoryReplica {
    fn current_text(&self) -> Option<String> {
        self.copy.current_text()
    }
}

impl MemoryReplica {
    /// A replica of `primary` that has received nothing yet.
    pub fn new(primary: Arc<dyn ReplicationSource>) -> Self {
        MemoryReplica { primary: Mutex::new(primary), copy: MemoryStore::new(), promoted: Mutex::new(false) }
    }

    /// Replicate from another primary from now on (after a fail-over, the new home's secret).
    pub fn repoint(&self, primary: Arc<dyn ReplicationSource>) {
        *lock(&self.primary) = primary;
    }

    /// Replicate: the copy takes the primary's current document (unless promoted or down).
    pub fn sync(&self) {
        if *lock(&self.promoted) || lock(&self.copy.state).unavailable {
            return;
        }
        let primary = Arc::clone(&*lock(&self.primary));
        if let Some(text) = primary.current_text() {
            if self.copy.current_text().as_deref() != Some(text.as_str()) {
                let mut state = lock(&self.copy.state);
                let id = format!("r-{}", state.versions.len() + 1);
                state.versions.push((id, text));
                state.current = Some(state.versions.len() - 1);
            }
        }
    }

    /// Make the region's Secrets Manager unreachable, or reachable again.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.copy.set_unavailable(unavailable);
    }

    /// Promote to a standalone secret: writable, no longer replicated.
    pub fn promote(&self) {
        *lock(&self.promoted) = true;
    }
}

#[async_trait]
impl KeyringStore for MemoryReplica {
    async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
        self.copy.load().await
    }

    async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
        if !*lock(&self.promoted) {
            // Secrets Manager refuses writes to a replica secret.
            return Err(StoreError::unavailable("InvalidRequestException: a replica secret is read-only"));
        }
        self.copy.compare_and_swap(expected, text).await
    }
}
