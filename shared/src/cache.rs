//! A per-container cache of a versioned document: the keyring (sign and jwks functions) and
//! the minting policy (sign).
//!
//! - At most one Secrets Manager read per TTL, even under concurrent requests (single-flight):
//!   requests that queue behind a refresh share its outcome, errors included.
//! - A read that returns the version already cached does not parse or rebuild anything.
//! - Stale-if-error: while the store fails, the last good value is served up to
//!   `max_staleness` past its TTL; only a container that never loaded one fails.
//! - Stale-while-refreshing: while one request refreshes, the others get the last good value
//!   at once if it is still inside that stale window (never for sign, whose window is zero).
//! - Every store read has a deadline ([`DEFAULT_REFRESH_TIMEOUT`]); overrunning it is a failed
//!   refresh.
//! - Ages are measured on two clocks and the larger reading counts: tokio's monotonic clock,
//!   and the wall clock. Lambda freezes an execution environment between invocations and the
//!   monotonic clock does not advance while it is frozen, so a container thawed hours later
//!   would otherwise sign with a keyring far older than its TTL.
//!
//! The cached value is a projection of the document (`V`), built once per version, so warm
//! requests do no JSON work at all. A document that does not parse is an error like an outage
//! (stale-if-error), except in a cache told to [keep the last valid
//! one](DocumentCache::keeping_last_valid): the minting policy's, where a broken new version
//! must neither widen nor stop signing.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::warn;

use crate::keyring::{Keyring, KeyringError};
use crate::ports::{DocumentSource, StoreError, StoredDocument};

/// How long a refresh waits for the store unless [`DocumentCache::with_refresh_timeout`] says
/// otherwise. Longer than a healthy Secrets Manager read, far shorter than a Lambda timeout.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest pause between two refresh attempts while a stale value is served, so an outage is
/// not answered with one store call per request.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);

/// Why the cache has no keyring to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The store failed, and no cached keyring may be served in its place.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored document is not a valid keyring.
    #[error("stored keyring is invalid: {0}")]
    Keyring(#[from] KeyringError),
    /// The stored document is not valid (the minting policy): every problem found.
    #[error("stored document {version} is invalid: {}", problems.join("; "))]
    Invalid {
        /// The version refused.
        version: String,
        /// What is wrong with it.
        problems: Vec<String>,
    },
    /// The store did not answer within the cache's refresh timeout.
    #[error("the keyring store did not answer within {timeout:?}")]
    RefreshTimedOut {
        /// The refresh deadline that passed.
        timeout: Duration,
    },
}

/// Timing of a [`DocumentCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a loaded keyring is used without asking the store again.
    pub ttl: Duration,
    /// How long past `ttl` the last good keyring may still be served while the store fails
    /// or another request is refreshing it. Zero: never stale (the sign function).
    pub max_staleness: Duration,
}

/// The wall clock a [`DocumentCache`] checks ages against, besides tokio's monotonic clock.
///
/// Injectable so tests and simulations can model a frozen Lambda sandbox: keep tokio's clock
/// still and move this one.
pub trait Clock: Send + Sync {
    /// The current wall-clock (Unix) time.
    fn wall_now(&self) -> SystemTime;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that moves only when told to, shared (`Arc`) between a test and its caches.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<SystemTime>,
}

#[cfg(any(test, feature = "test-util"))]
impl ManualClock {
    /// A clock that reads `start` until moved.
    pub fn new(start: SystemTime) -> Self {
        ManualClock { now: std::sync::Mutex::new(start) }
    }

    /// A clock that reads `unix_secs` seconds after the Unix epoch until moved.
    pub fn at_unix_secs(unix_secs: u64) -> Self {
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs))
    }

    /// Move the clock forward (ignored past the largest time the platform represents).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(later) = now.checked_add(by) {
            *now = later;
        }
    }

    /// Set the clock to any time, earlier ones included (an NTP step).
    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Clock for ManualClock {
    fn wall_now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A moment read on both clocks.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    monotonic: Instant,
    wall: SystemTime,
}

impl Stamp {
    /// Time from `self` to `now` by whichever clock says more; `None` when the wall clock now
    /// reads earlier than at `self` (it was stepped back), so the age is unknown.
    fn age(&self, now: &Stamp) -> Option<Duration> {
        let wall = now.wall.duration_since(self.wall).ok()?;
        Some(now.monotonic.saturating_duration_since(self.monotonic).max(wall))
    }

    /// Less than `limit` has passed since `self`; an unknown age never is.
    fn within(&self, now: &Stamp, limit: Duration) -> bool {
        self.age(now).is_some_and(|age| age < limit)
    }
}

struct Entry<V> {
    value: Arc<V>,
    version_id: Option<String>,
    fetched: Stamp,
    /// The last failed refresh; the next attempt waits a back-off after it.
    failed: Option<Stamp>,
}

struct State<V> {
    entry: Option<Entry<V>>,
    /// Refreshes finished so far: a request that queued behind a refresh sees it moved and
    /// takes `last_outcome` instead of reading the store again.
    finished_refreshes: u64,
    last_outcome: Option<Result<Arc<V>, CacheError>>,
}

/// What the cache can answer without waiting.
enum Lookup<V> {
    /// Answer without touching the store: fresh, or stale while backing off after a failure.
    Serve(Arc<V>),
    /// Past its TTL but inside the stale window: refresh, but others may be served this.
    Stale(Arc<V>),
    Missing,
}

/// How a stored document (`None`: there is none) becomes the cached value.
type Parse<V> = Box<dyn Fn(Option<&StoredDocument>) -> Result<V, CacheError> + Send + Sync>;

/// Caches `parse(document)` per container.
pub struct DocumentCache<S, V> {
    store: S,
    policy: CachePolicy,
    refresh_timeout: Duration,
    clock: Arc<dyn Clock>,
    parse: Parse<V>,
    keep_last_valid: bool,
    state: RwLock<State<V>>,
    refresh_lock: Mutex<()>,
}

/// The keyring's cache: `project(keyring)`, built once per keyring version.
pub type KeyringCache<S, V> = DocumentCache<S, V>;

impl<S: DocumentSource, V> DocumentCache<S, V> {
    /// A cold cache of `project(keyring)` over the keyring `store` (no keyring yet: the empty
    /// one), on the system wall clock, with [`DEFAULT_REFRESH_TIMEOUT`].
    pub fn new(
        store: S,
        policy: CachePolicy,
        project: impl Fn(&Keyring) -> V + Send + Sync + 'static,
    ) -> Self {
        Self::parsing(store, policy, move |doc| {
            let ring = doc.map(|d| Keyring::from_json(&d.text)).transpose()?;
            Ok(project(&ring.unwrap_or_default()))
        })
    }

    /// A cold cache of any document: `parse` turns each new version into the cached value.
    pub fn parsing(
        store: S,
        policy: CachePolicy,
        parse: impl Fn(Option<&StoredDocument>) -> Result<V, CacheError> + Send + Sync + 'static,
    ) -> Self {
        DocumentCache {
            store,
            policy,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            clock: Arc::new(SystemClock),
            parse: Box::new(parse),
            keep_last_valid: false,
            state: RwLock::new(State { entry: None, finished_refreshes: 0, last_outcome: None }),
            refresh_lock: Mutex::new(()),
        }
    }

    /// A new version that does not parse leaves the last valid value in use for as long as
    /// the store keeps answering with it (logged at each refresh), instead of counting as an
    /// outage: for documents where a mistake must change nothing (the minting policy).
    pub fn keeping_last_valid(mut self) -> Self {
        self.keep_last_valid = true;
        self
    }

    /// Measure wall-clock ages with `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Give up on a store read after `timeout`; the refresh then counts as failed.
    pub fn with_refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self
    }

    /// The store this cache reads (its tests count the reads).
    #[cfg(test)]
    fn store(&self) -> &S {
        &self.store
    }

    fn now(&self) -> Stamp {
        Stamp { monotonic: Instant::now(), wall: self.clock.wall_now() }
    }

    fn stale_window(&self) -> Duration {
        self.policy.ttl.saturating_add(self.policy.max_staleness)
    }

    fn retry_backoff(&self) -> Duration {
        self.policy.ttl.min(MAX_RETRY_BACKOFF)
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State<V>> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State<V>> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, state: &State<V>, now: &Stamp) -> Lookup<V> {
        let Some(entry) = state.entry.as_ref() else {
            return Lookup::Missing;
        };
        let fresh = entry.fetched.within(now, self.policy.ttl);
        let servable = entry.fetched.within(now, self.stale_window());
        let backing_off = entry.failed.is_some_and(|failed| failed.within(now, self.retry_backoff()));
        if fresh || (servable && backing_off) {
            Lookup::Serve(Arc::clone(&entry.value))
        } else if servable {
            Lookup::Stale(Arc::clone(&entry.value))
        } else {
            Lookup::Missing
        }
    }

    /// The cached value, refreshed if its TTL has passed. While another request is refreshing,
    /// a value still inside the stale window is answered at once; otherwise the request waits
    /// for that refresh (at most the refresh timeout) and shares its outcome.
    pub async fn get(&self) -> Result<Arc<V>, CacheError> {
        let (lookup, seen_refreshes) = {
            let state = self.read_state();
            (self.lookup(&state, &self.now()), state.finished_refreshes)
        };
        let _single_flight = match lookup {
            Lookup::Serve(value) => return Ok(value),
            Lookup::Stale(value) => match self.refresh_lock.try_lock() {
                Ok(flight) => flight,
                // Someone is reading the store already: serve the last good value rather
                // than queue behind a read that may be slow.
                Err(_) => return Ok(value),
            },
            Lookup::Missing => self.refresh_lock.lock().await,
        };
        {
            let state = self.read_state();
            if let Lookup::Serve(value) = self.lookup(&state, &self.now()) {
                return Ok(value);
            }
            // A refresh finished while we queued: share its outcome, a failure included,
            // instead of making every waiter pay for its own read.
            if state.finished_refreshes != seen_refreshes {
                if let Some(outcome) = &state.last_outcome {
                    return outcome.clone();
                }
            }
        }
        self.load_locked().await
    }

    /// Read the store now, whatever the TTL says (e.g. KMS said the cached key is disabled).
    pub async fn refresh(&self) -> Result<Arc<V>, CacheError> {
        let _single_flight = self.refresh_lock.lock().await;
        self.load_locked().await
    }

    async fn load_locked(&self) -> Result<Arc<V>, CacheError> {
        let started = self.now();
        let loaded = match tokio::time::timeout(self.refresh_timeout, self.store.load()).await {
            Ok(loaded) => loaded.map_err(CacheError::from),
            Err(_elapsed) => Err(CacheError::RefreshTimedOut { timeout: self.refresh_timeout }),
        };
        let mut state = self.write_state();
        let outcome = self.settle(&mut state.entry, started, loaded);
        state.finished_refreshes = state.finished_refreshes.wrapping_add(1);
        state.last_outcome = Some(outcome.clone());
        outcome
    }

    /// Fold the result of a store read started at `started` into the cached entry.
    fn settle(
        &self,
        slot: &mut Option<Entry<V>>,
        started: Stamp,
        loaded: Result<Option<StoredDocument>, CacheError>,
    ) -> Result<Arc<V>, CacheError> {
        let error = match loaded {
            // The keyring vanished after we had one: an operator error or an outage, not a
            // reason to stop publishing keys. Serve what we have (stale-if-error).
            Ok(None) if slot.as_ref().is_some_and(|e| e.version_id.is_some()) => {
                CacheError::Store(StoreError::unavailable("the stored document has no current version"))
            }
            Ok(doc) => {
                let version_id = doc.as_ref().map(|d| d.version_id.clone());
                // Same version: nothing to parse or render, just extend the lease.
                if let Some(entry) = slot.as_mut().filter(|e| e.version_id == version_id) {
                    entry.fetched = started;
                    entry.failed = None;
                    return Ok(Arc::clone(&entry.value));
                }
                match (self.parse)(doc.as_ref()) {
                    Ok(value) => {
                        let value = Arc::new(value);
                        *slot = Some(Entry {
                            value: Arc::clone(&value),
                            version_id,
                            fetched: started,
                            failed: None,
                        });
                        return Ok(value);
                    }
                    Err(e) => match slot.as_mut().filter(|_| self.keep_last_valid) {
                        // The store answered: the lease is renewed on the last valid version,
                        // and the refused one is read (and refused) again next TTL.
                        Some(entry) => {
                            tracing::error!(error = %e, "stored document refused; keeping the last valid version");
                            entry.fetched = started;
                            entry.failed = None;
                            return Ok(Arc::clone(&entry.value));
                        }
                        None => e,
                    },
                }
            }
            Err(e) => e,
        };
        // Stale-if-error, judged when the read gave up: a timeout takes a while.
        let now = self.now();
        match slot.as_mut() {
            Some(entry) if entry.fetched.within(&now, self.stale_window()) => {
                let stale_for_secs = entry.fetched.age(&now).map(|age| age.as_secs());
                warn!(error = %error, stale_for_secs, "refresh failed; serving the last good version");
                entry.failed = Some(now);
                Ok(Arc::clone(&entry.value))
            }
            _ => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;
    use crate::memory::MemoryStore;
    use crate::ports::KeyringStore;
    use async_trait::async_trait;
    use tokio::sync::Notify;

    fn policy() -> CachePolicy {
        CachePolicy { ttl: Duration::from_secs(60), max_staleness: Duration::from_secs(600) }
    }

    /// The sign function's policy: never stale.
    fn sign_policy() -> CachePolicy {
        CachePolicy { ttl: Duration::from_secs(60), max_staleness: Duration::ZERO }
    }

    fn kid_count(ring: &Keyring) -> usize {
        ring.keys.len()
    }

    fn two_key_ring() -> Keyring {
        Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 0)
    }

    async fn seeded() -> Arc<KeyringCache<MemoryStore, usize>> {
        let store = MemoryStore::new();
        store.compare_and_swap(None, &two_key_ring().to_json()).await.unwrap();
        Arc::new(KeyringCache::new(store, policy(), kid_count))
    }

    /// Write a new keyring version (with no keys, so the projection tells it apart).
    async fn publish_empty_version(store: &impl KeyringStore) {
        let current = KeyringStore::load(store).await.unwrap().map(|d| d.version_id);
        store.compare_and_swap(current.as_deref(), &Keyring::empty().to_json()).await.unwrap();
    }

    /// A store whose reads take `delay` of tokio time, and that says when a read starts.
    #[derive(Default)]
    struct SlowStore {
        inner: MemoryStore,
        delay: std::sync::Mutex<Duration>,
        read_started: Notify,
    }

    impl SlowStore {
        async fn seeded() -> Self {
            let store = SlowStore::default();
            store.inner.compare_and_swap(None, &two_key_ring().to_json()).await.unwrap();
            store
        }

        fn set_delay(&self, delay: Duration) {
            *self.delay.lock().unwrap() = delay;
        }

        /// Long past any refresh timeout: as good as never answering.
        fn hang(&self) {
            self.set_delay(Duration::from_secs(3_600));
        }
    }

    #[async_trait]
    impl KeyringStore for SlowStore {
        async fn load(&self) -> Result<Option<StoredDocument>, StoreError> {
            self.read_started.notify_one();
            let delay = *self.delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            KeyringStore::load(&self.inner).await
        }

        async fn compare_and_swap(&self, expected: Option<&str>, text: &str) -> Result<String, StoreError> {
            self.inner.compare_and_swap(expected, text).await
        }
    }

    /// A document of a number: anything else is refused with the text as the problem.
    fn number(doc: Option<&StoredDocument>) -> Result<u32, CacheError> {
        let doc = doc.ok_or_else(|| CacheError::Store(StoreError::unavailable("none")))?;
        doc.text.parse().map_err(|_| CacheError::Invalid {
            version: doc.version_id.clone(),
            problems: vec![format!("not a number: {}", doc.text)],
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_new_version_keeps_the_last_valid_one_only_where_asked() {
        let store = Arc::new(MemoryStore::new());
        store.compare_and_swap(None, "7").await.unwrap();
        let keeping = DocumentCache::parsing(Arc::clone(&store), sign_policy(), number).keeping_last_valid();
        let plain = DocumentCache::parsing(Arc::clone(&store), sign_policy(), number);
        assert_eq!(*keeping.get().await.unwrap(), 7);
        assert_eq!(*plain.get().await.unwrap(), 7);

        let current = KeyringStore::load(&*store).await.unwrap().map(|d| d.version_id);
        store.compare_and_swap(current.as_deref(), "seven").await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        // Long after any stale window, the last valid version is still the one in use.
        for _ in 0..3 {
            assert_eq!(*keeping.get().await.unwrap(), 7);
            tokio::time::advance(Duration::from_secs(3_600)).await;
        }
        let refused = plain.get().await.unwrap_err();
        assert!(
            matches!(&refused, CacheError::Invalid { problems, .. } if problems[0].contains("seven")),
            "{refused}"
        );

        // A valid version is taken up at the next refresh; a cold cache never serves a refused one.
        let current = KeyringStore::load(&*store).await.unwrap().map(|d| d.version_id);
        store.compare_and_swap(current.as_deref(), "8").await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(*keeping.get().await.unwrap(), 8);
        let current = KeyringStore::load(&*store).await.unwrap().map(|d| d.version_id);
        store.compare_and_swap(current.as_deref(), "x").await.unwrap();
        let cold = DocumentCache::parsing(Arc::clone(&store), sign_policy(), number).keeping_last_valid();
        assert!(matches!(cold.get().await, Err(CacheError::Invalid { .. })));
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

    // Monotonic time is paused and never advanced below: only the wall clock moves, as in a
    // Lambda sandbox frozen between invocations.
    #[tokio::test(start_paused = true)]
    async fn a_frozen_sandbox_rereads_once_the_wall_clock_passes_the_ttl() {
        let frozen_at = Instant::now();
        let clock = Arc::new(ManualClock::at_unix_secs(1_700_000_000));
        let store = MemoryStore::new();
        store.compare_and_swap(None, &two_key_ring().to_json()).await.unwrap();
        let cache = KeyringCache::new(store, sign_policy(), kid_count).with_clock(clock.clone());
        assert_eq!(*cache.get().await.unwrap(), 2);
        publish_empty_version(cache.store()).await;
        let reads = cache.store().reads();

        clock.advance(Duration::from_secs(59));
        assert_eq!(*cache.get().await.unwrap(), 2, "inside the TTL by both clocks");
        assert_eq!(cache.store().reads(), reads);

        clock.advance(Duration::from_secs(3 * 3_600));
        assert_eq!(*cache.get().await.unwrap(), 0, "the new keyring version, after a thaw hours later");
        assert_eq!(cache.store().reads(), reads + 1);
        assert_eq!(Instant::now(), frozen_at, "the monotonic clock never moved");
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_sandbox_bounds_stale_if_error_and_back_off_by_wall_time() {
        let clock = Arc::new(ManualClock::at_unix_secs(1_700_000_000));
        let store = MemoryStore::new();
        store.compare_and_swap(None, &two_key_ring().to_json()).await.unwrap();
        let cache = KeyringCache::new(store, policy(), kid_count).with_clock(clock.clone());
        cache.get().await.unwrap();
        cache.store().set_unavailable(true);

        clock.advance(Duration::from_secs(61));
        assert_eq!(*cache.get().await.unwrap(), 2, "stale value served while the store is down");
        assert_eq!(cache.store().reads(), 2);
        cache.get().await.unwrap();
        assert_eq!(cache.store().reads(), 2, "backing off");
        clock.advance(MAX_RETRY_BACKOFF);
        cache.get().await.unwrap();
        assert_eq!(cache.store().reads(), 3, "the back-off ends on wall time too");

        clock.advance(Duration::from_secs(600));
        assert!(cache.get().await.is_err(), "too stale to serve, although no monotonic time passed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_stepped_back_counts_as_expired() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = Arc::new(ManualClock::new(start));
        let store = MemoryStore::new();
        store.compare_and_swap(None, &two_key_ring().to_json()).await.unwrap();
        let cache = KeyringCache::new(store, policy(), kid_count).with_clock(clock.clone());
        cache.get().await.unwrap();

        clock.set(start - Duration::from_secs(3_600));
        cache.get().await.unwrap();
        assert_eq!(cache.store().reads(), 2, "an age that cannot be known is not fresh");
        cache.get().await.unwrap();
        assert_eq!(cache.store().reads(), 2, "the re-read starts a normal lease");
        clock.advance(Duration::from_secs(61));
        cache.get().await.unwrap();
        assert_eq!(cache.store().reads(), 3, "and that lease expires");

        cache.store().set_unavailable(true);
        clock.set(start - Duration::from_secs(7_200));
        assert!(cache.get().await.is_err(), "nor is it inside the stale window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_that_overruns_its_timeout_fails_at_the_deadline() {
        let timeout = Duration::from_secs(2);

        let warm =
            KeyringCache::new(SlowStore::seeded().await, policy(), kid_count).with_refresh_timeout(timeout);
        warm.get().await.unwrap();
        warm.store().hang();
        tokio::time::advance(Duration::from_secs(61)).await;
        let started = Instant::now();
        assert_eq!(*warm.get().await.unwrap(), 2, "stale-if-error");
        assert_eq!(started.elapsed(), timeout);

        let sign = KeyringCache::new(SlowStore::seeded().await, sign_policy(), kid_count);
        sign.get().await.unwrap();
        sign.store().hang();
        tokio::time::advance(Duration::from_secs(61)).await;
        let started = Instant::now();
        assert_eq!(sign.get().await, Err(CacheError::RefreshTimedOut { timeout: DEFAULT_REFRESH_TIMEOUT }));
        assert_eq!(started.elapsed(), DEFAULT_REFRESH_TIMEOUT, "the default deadline");

        let cold =
            KeyringCache::new(SlowStore::seeded().await, policy(), kid_count).with_refresh_timeout(timeout);
        cold.store().hang();
        let started = Instant::now();
        assert_eq!(cold.get().await, Err(CacheError::RefreshTimedOut { timeout }));
        assert_eq!(started.elapsed(), timeout);

        // A slow read that makes its deadline is not a failure.
        cold.store().set_delay(timeout - Duration::from_millis(1));
        assert_eq!(*cold.get().await.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn while_a_refresh_hangs_a_jwks_cache_answers_others_stale_at_once() {
        let timeout = Duration::from_secs(2);
        let cache = Arc::new(
            KeyringCache::new(SlowStore::seeded().await, policy(), kid_count).with_refresh_timeout(timeout),
        );
        cache.get().await.unwrap();
        cache.store().read_started.notified().await;
        cache.store().hang();
        tokio::time::advance(Duration::from_secs(61)).await;

        let started = Instant::now();
        let refreshing = tokio::spawn({
            let cache = Arc::clone(&cache);
            async move { cache.get().await }
        });
        cache.store().read_started.notified().await;
        for _ in 0..20 {
            assert_eq!(*cache.get().await.unwrap(), 2);
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "nobody waited for the hanging read");
        assert!(!refreshing.is_finished());

        assert_eq!(*refreshing.await.unwrap().unwrap(), 2, "the refresher itself falls back to stale");
        assert_eq!(started.elapsed(), timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn while_a_refresh_hangs_a_sign_cache_makes_others_wait_for_its_outcome() {
        let cache = Arc::new(KeyringCache::new(SlowStore::seeded().await, sign_policy(), kid_count));
        cache.get().await.unwrap();
        cache.store().read_started.notified().await;
        cache.store().hang();
        tokio::time::advance(Duration::from_secs(61)).await;

        let started = Instant::now();
        let spawn_get = || {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get().await })
        };
        let refreshing = spawn_get();
        cache.store().read_started.notified().await;
        let waiters: Vec<_> = (0..5).map(|_| spawn_get()).collect();
        tokio::task::yield_now().await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "no stale key to sign with: wait");

        let expected = Err(CacheError::RefreshTimedOut { timeout: DEFAULT_REFRESH_TIMEOUT });
        assert_eq!(refreshing.await.unwrap(), expected);
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), expected, "the waiters share the refresh's outcome");
        }
        assert_eq!(started.elapsed(), DEFAULT_REFRESH_TIMEOUT, "one deadline, not one per waiter");
    }
}
