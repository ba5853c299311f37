//! Where a sign function's minting policy comes from: fixed at cold start (`MINTING_POLICY`),
//! or an SSM parameter read through a [`DocumentCache`] (`MINTING_POLICY_PARAMETER`).
//!
//! A stored policy is re-read once per TTL by at most one request per container. A new
//! version that does not validate is never used: the last valid one stays in force (logged at
//! each refresh) and a container that never had one refuses to sign. A store outage is
//! answered with the last valid policy for a bounded time, then with refusals: never with a
//! wider policy.

use std::sync::Arc;

use super::{parse_policy, MintingPolicy};
use crate::cache::{CacheError, CachePolicy, DocumentCache};
use crate::ports::{DocumentSource, StoredDocument};

/// The policy a signer checks requests against.
pub enum PolicySource {
    /// Read once, at cold start.
    Fixed(Arc<MintingPolicy>),
    /// Read from a store and cached (boxed: one per signer, and far larger than an `Arc`).
    Stored(Box<DocumentCache<Box<dyn DocumentSource>, MintingPolicy>>),
}

impl PolicySource {
    /// `policy`, for the container's lifetime.
    pub fn fixed(policy: MintingPolicy) -> Self {
        PolicySource::Fixed(Arc::new(policy))
    }

    /// The policy `store` holds, re-read as `timing` says. A store with no document yet holds
    /// the policy that refuses everything.
    pub fn stored(store: impl DocumentSource + 'static, timing: CachePolicy) -> Self {
        let store: Box<dyn DocumentSource> = Box::new(store);
        PolicySource::Stored(Box::new(
            DocumentCache::parsing(store, timing, parse_stored).keeping_last_valid(),
        ))
    }

    /// The policy in force now.
    pub async fn current(&self) -> Result<Arc<MintingPolicy>, CacheError> {
        match self {
            PolicySource::Fixed(policy) => Ok(Arc::clone(policy)),
            PolicySource::Stored(cache) => cache.get().await,
        }
    }
}

fn parse_stored(doc: Option<&StoredDocument>) -> Result<MintingPolicy, CacheError> {
    let Some(doc) = doc else {
        tracing::warn!(
            "the minting policy parameter does not exist: every sign request is refused (NotAllowed)"
        );
        return Ok(MintingPolicy::refuse_all());
    };
    let policy = parse_policy(&doc.text)
        .map_err(|e| CacheError::Invalid { version: doc.version_id.clone(), problems: e.problems })?;
    tracing::info!(version = %doc.version_id, rules = policy.rules().len(), "minting policy loaded");
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::minting::ALLOW_ALL_POLICY;
    use crate::ports::KeyringStore;

    fn timing() -> CachePolicy {
        CachePolicy { ttl: Duration::from_secs(60), max_staleness: Duration::from_secs(300) }
    }

    async fn write(store: &MemoryStore, text: &str) {
        let current = KeyringStore::load(store).await.unwrap().map(|d| d.version_id);
        store.compare_and_swap(current.as_deref(), text).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_policy_refuses_all_a_new_one_applies_after_the_ttl_a_broken_one_never() {
        let store = Arc::new(MemoryStore::new());
        let source = PolicySource::stored(Arc::clone(&store), timing());
        assert!(source.current().await.unwrap().rules().is_empty());

        write(&store, ALLOW_ALL_POLICY).await;
        assert!(source.current().await.unwrap().rules().is_empty(), "cached until its TTL passes");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(source.current().await.unwrap().rules().len(), 1);

        write(&store, r#"{"version": 1, "rules": [{"id": "x"}]}"#).await;
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(source.current().await.unwrap().rules().len(), 1, "the last valid policy stays");

        let cold = PolicySource::stored(Arc::clone(&store), timing());
        match cold.current().await {
            Err(CacheError::Invalid { problems, .. }) => assert!(!problems.is_empty()),
            Err(other) => panic!("expected the document refused, got {other}"),
            Ok(_) => panic!("a container that never had a valid policy used a broken one"),
        }
    }
}
