//! A per-container keyring cache shared by the sign and jwks functions.
//!
//! - At most one Secrets Manager read per TTL, even under concurrent requests (single-flight).
//! - A read that returns the version already cached does not parse or rebuild anything.
//! - Stale-if-error: while the store fails, the last good value is served up to
//!   `max_staleness` past its TTL; only a container that never loaded one fails.
//!
//! The cached value is a projection of the keyring (`V`), built once per keyring version, so
//! warm requests do no JSON work at all.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::warn;

use crate::keyring::{Keyring, KeyringError};
use crate::ports::{KeyringStore, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored keyring is invalid: {0}")]
    Keyring(#[from] KeyringError),
}

/// Timing of a [`KeyringCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub max_staleness: Duration,
}

struct Entry<V> {
    value: Arc<V>,
    version_id: Option<String>,
    fetched_at: Instant,
    /// After a failed refresh, the next attempt waits until then, so an outage is not
    /// answered with one store call per request.
    retry_at: Option<Instant>,
}

/// Caches `project(keyring)` per container.
pub struct KeyringCache<S, V> {
    store: S,
    policy: CachePolicy,
    project: Box<dyn Fn(&Keyring) -> V + Send + Sync>,
    entry: RwLock<Option<Entry<V>>>,
    refresh_lock: Mutex<()>,
}

impl<S: KeyringStore, V> KeyringCache<S, V> {
    pub fn new(
        store: S,
        policy: CachePolicy,
        project: impl Fn(&Keyring) -> V + Send + Sync + 'static,
    ) -> Self {
        KeyringCache {
            store,
            policy,
            project: Box::new(project),
            entry: RwLock::new(None),
            refresh_lock: Mutex::new(()),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn cached(&self, now: Instant) -> Option<Arc<V>> {
        let guard = self.entry.read().unwrap_or_else(|p| p.into_inner());
        let entry = guard.as_ref()?;
        let fresh = now.duration_since(entry.fetched_at) < self.policy.ttl;
        let backing_off = entry.retry_at.is_some_and(|at| now < at)
            && now.duration_since(entry.fetched_at) < self.policy.ttl + self.policy.max_staleness;
        (fresh || backing_off).then(|| Arc::clone(&entry.value))
    }

    /// The cached value, refreshed if its TTL has passed.
    pub async fn get(&self) -> Result<Arc<V>, CacheError> {
        if let Some(value) = self.cached(Instant::now()) {
            return Ok(value);
        }
        let _single_flight = self.refresh_lock.lock().await;
        // Another task may have refreshed while we waited for the lock.
        if let Some(value) = self.cached(Instant::now()) {
            return Ok(value);
        }
        self.load_locked().await
    }

    /// Read the store now, whatever the TTL says (e.g. KMS said the cached key is disabled).
    pub async fn refresh(&self) -> Result<Arc<V>, CacheError> {
        let _single_flight = self.refresh_lock.lock().await;
        self.load_locked().await
    }

    async fn load_locked(&self) -> Result<Arc<V>, CacheError> {
        let started = Instant::now();
        let loaded = self.store.load().await;
        let mut guard = self.entry.write().unwrap_or_else(|p| p.into_inner());
        let result = match loaded {
            // The keyring vanished after we had one: an operator error or an outage, not a
            // reason to stop publishing keys. Serve what we have (stale-if-error).
            Ok(None) if guard.as_ref().is_some_and(|e| e.version_id.is_some()) => {
                CacheError::Store(StoreError::Unavailable("the keyring secret has no current version".into()))
            }
            Ok(doc) => {
                let version_id = doc.as_ref().map(|d| d.version_id.clone());
                match guard.as_mut() {
                    // Same version: nothing to parse or render, just extend the lease.
                    Some(entry) if entry.version_id == version_id => {
                        entry.fetched_at = started;
                        entry.retry_at = None;
                        return Ok(Arc::clone(&entry.value));
                    }
                    _ => {}
                }
                match doc.map(|d| Keyring::from_json(&d.text)).transpose() {
                    Ok(ring) => {
                        let value = Arc::new((self.project)(&ring.unwrap_or_default()));
                        *guard = Some(Entry {
                            value: Arc::clone(&value),
                            version_id,
                            fetched_at: started,
                            retry_at: None,
                        });
                        return Ok(value);
                    }
                    Err(e) => CacheError::from(e),
                }
            }
            Err(e) => CacheError::from(e),
        };
        // Stale-if-error.
        match guard.as_mut() {
            Some(entry)
                if started.duration_since(entry.fetched_at) < self.policy.ttl + self.policy.max_staleness =>
            {
                warn!(error = %result, stale_for_secs = started.duration_since(entry.fetched_at).as_secs(), "keyring refresh failed; serving the last good keyring");
                entry.retry_at = Some(started + self.policy.ttl.min(Duration::from_secs(5)));
                Ok(Arc::clone(&entry.value))
            }
            _ => Err(result),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;
    use crate::memory::MemoryStore;

    fn policy() -> CachePolicy {
        CachePolicy { ttl: Duration::from_secs(60), max_staleness: Duration::from_secs(600) }
    }

    fn kid_count(ring: &Keyring) -> usize {
        ring.keys.len()
    }

    async fn seeded() -> Arc<KeyringCache<MemoryStore, usize>> {
        let store = MemoryStore::new();
        let ring = Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 0);
        store.compare_and_swap(None, &ring.to_json()).await.unwrap();
        Arc::new(KeyringCache::new(store, policy(), kid_count))
    }

    #[tokio::test(start_paused = true)]
    async fn one_read_per_ttl_even_when_concurrent() {
        let cache = seeded().await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let c = Arc::clone(&cache);
                tokio::spawn(async move { *c.get().await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 2);
        }
        assert_eq!(cache.store().reads(), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        cache.get().await.unwrap();
        assert_eq!(cache.store().reads(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.get().await.unwrap();
        assert_eq!(cache.store().reads(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_keyring_that_vanishes_while_warm_is_served_stale() {
        let cache = seeded().await;
        cache.get().await.unwrap();
        cache.store().set_current_to_nothing();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(*cache.get().await.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_if_error_is_bounded_and_cold_failure_is_an_error() {
        let cache = seeded().await;
        cache.get().await.unwrap();
        cache.store().set_unavailable(true);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(*cache.get().await.unwrap(), 2, "stale value served while the store is down");
        let reads = cache.store().reads();
        cache.get().await.unwrap();
        assert_eq!(cache.store().reads(), reads, "no retry storm while backing off");
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(cache.get().await.is_err(), "too stale to serve");

        let cold = KeyringCache::new(MemoryStore::new(), policy(), kid_count);
        assert_eq!(*cold.get().await.unwrap(), 0, "no keyring yet is an empty keyring, not an error");
        let cold = KeyringCache::new(MemoryStore::new(), policy(), kid_count);
        cold.store().set_unavailable(true);
        assert!(matches!(cold.get().await, Err(CacheError::Store(_))));
    }
}
