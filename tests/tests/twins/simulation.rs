//! A year of the key lifecycle against the in-memory twins: hourly scheduled runs plus random
//! extra runs, forced rotations and revocations, and faults injected at every external call
//! (failing before the call; after it took effect with the reply lost; or with the reply lost
//! beneath the SDK's retry layer, so the call takes effect twice). A real signer runs beside
//! the rotator in a Lambda sandbox that is frozen between ticks: its monotonic clock stands
//! still while the wall clock moves on. After every tick the invariants that keep verifiers
//! working, and KMS tidy, are checked.
//!
//! Verifiers cache the JWKS as the jwks function's `Cache-Control` says, computed at each
//! moment for the keyring a jwks container may serve then (one up to KEYRING_CACHE_TTL +
//! KEYRING_MAX_STALENESS old): for its `max-age`, then stale-while-revalidate, or
//! stale-if-error while the endpoint fails. Every token must verify with every set a verifier
//! may hold during its life, no set may be held past the publication its keyring foresaw
//! (give or take the floor), and a revoked key must be gone within the documented bound.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use kms_jwt::cache::{CachePolicy, KeyringCache, ManualClock};
use kms_jwt::config::{JwksConfig, RotateConfig};
use kms_jwt::jwks::{PublishedKeys, Site, MAX_AGE_FLOOR};
use kms_jwt::keyring::{Keyring, UnixTime};
use kms_jwt::memory::{FakeKeyState, Fault, Faulty, MemoryKms, MemoryStore};
use kms_jwt::ports::KeyTags;
use kms_jwt::rotate::{Command, RotationPolicy, Rotator, STALE_INTENT_SECS};
use kms_jwt::signer::{current_signing_key, TokenSigner};
use kms_jwt::SigningAlg;
use kms_jwt_tests::memory::stored;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const T0: UnixTime = 1_800_000_000;

// The deployed defaults, shortened to a daily rotation so a year has many of them, and
// operators' rotations rare enough that most rotations are the scheduled ones.
const ROTATION_PERIOD: i64 = DAY;
const JWKS_MAX_AGE: i64 = 300;
const STALE_WHILE_REVALIDATE: i64 = 60;
/// The default JWKS_STALE_IF_ERROR.
const STALE_IF_ERROR: i64 = 15 * MINUTE;
/// How long past its max-age a verifier may use a set: revalidating, or while the endpoint fails.
const STALE_WINDOW: i64 =
    if STALE_IF_ERROR > STALE_WHILE_REVALIDATE { STALE_IF_ERROR } else { STALE_WHILE_REVALIDATE };
const CACHE_TTL: i64 = 60;
const CLOCK_SKEW: i64 = 60;
const MAX_TOKEN_TTL: i64 = HOUR;
/// How long a jwks container serves its last good keyring while Secrets Manager fails.
const JWKS_MAX_STALENESS: i64 = HOUR;
/// How old the keyring behind a jwks answer may be: its cache lifetime, then stale-if-error.
const JWKS_KEYRING_AGE: i64 = CACHE_TTL + JWKS_MAX_STALENESS;
/// How old the key set a client verifies with may be, counted from the keyring it came from.
const CLIENT_JWKS_AGE: i64 = JWKS_KEYRING_AGE + JWKS_MAX_AGE + STALE_WINDOW;
/// How long after a revocation a verifier may still accept the key, riding on stale-if-error
/// (docs/lifecycle.md): a jwks container may serve the old keyring that long, and a verifier
/// keep what it got for its max-age and stale-if-error.
const REVOCATION_EXPOSURE: i64 = JWKS_KEYRING_AGE + JWKS_MAX_AGE + STALE_WINDOW;

/// The rotate and jwks functions' environment: the defaults but for those named above.
fn env(name: &str) -> Option<String> {
    let value = match name {
        "KEYRING_SECRET_ID" => "keyring",
        "ISSUER" => "https://issuer.sim",
        "KEY_ADMIN_ROLE_ARN" => "arn:aws:iam::000000000000:role/rotate",
        "KEY_USER_ROLE_ARNS" => "arn:aws:iam::000000000000:role/sign",
        "ROTATION_PERIOD" => "1d",
        "KEY_DELETION_WINDOW_DAYS" => "7",
        // Low, so forced rotations in a row meet it: the cap must hold and break nothing.
        "MAX_PUBLISHED_KEYS" => "4",
        _ => return None,
    };
    Some(value.to_owned())
}

/// Rotate's policy, as the rotate function computes it from its environment (pre-publication
/// included: the formula under test).
fn policy(alg: SigningAlg) -> RotationPolicy {
    let config = RotateConfig::from_lookup(env).unwrap();
    assert_eq!(config.rotation_period, Duration::from_secs(ROTATION_PERIOD as u64));
    assert_eq!(config.jwks_max_age, Duration::from_secs(JWKS_MAX_AGE as u64));
    assert_eq!(config.jwks_stale_if_error, Duration::from_secs(STALE_IF_ERROR as u64));
    assert_eq!(config.jwks_max_staleness, Duration::from_secs(JWKS_MAX_STALENESS as u64));
    RotationPolicy { alg, ..config.rotation_policy() }
}

/// The jwks function's site, from the same environment.
fn site() -> Site {
    JwksConfig::from_lookup(env).unwrap().site()
}

/// `(max-age, stale-while-revalidate, stale-if-error)` of a `Cache-Control` value.
fn cache_directives(cache_control: &str) -> (i64, i64, i64) {
    let directive = |name: &str| {
        cache_control
            .split(", ")
            .find_map(|d| d.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from {cache_control:?}"))
    };
    (directive("max-age"), directive("stale-while-revalidate"), directive("stale-if-error"))
}

/// The keyring rotate wrote at one tick, as the jwks function renders it.
struct Snapshot {
    kids: HashSet<String>,
    keys: PublishedKeys,
}

/// Until when verifiers may hold a snapshot's set.
struct Held {
    /// The last moment a jwks container may serve it.
    last_served: UnixTime,
    /// While the endpoint answers: max-age, then stale-while-revalidate.
    until: UnixTime,
    /// While it fails: max-age, then stale-if-error.
    until_on_error: UnixTime,
}

/// Until when a verifier may hold `snapshot`, which rotate's store held from `from` until
/// `to` (exclusive). A jwks container serves it while its cached copy is younger than
/// KEYRING_CACHE_TTL + KEYRING_MAX_STALENESS; a verifier fetching it at `f` keeps it for the
/// `Cache-Control` computed at `f`. `max-age` never exceeds JWKS_MAX_AGE (asserted on every
/// answer, and by the jwks unit tests), so the fetches that keep it longest are in the last
/// JWKS_MAX_AGE of its service: those are the ones evaluated, second by second.
fn held(site: &Site, snapshot: &Snapshot, from: UnixTime, to: UnixTime) -> Held {
    let last_served = to + JWKS_KEYRING_AGE - 1;
    let mut held = Held { last_served, until: UnixTime::MIN, until_on_error: UnixTime::MIN };
    if !snapshot.keys.bootstrapped {
        // Answered 503 with no-store: nobody holds an empty set.
        return held;
    }
    for fetched in (last_served - JWKS_MAX_AGE).max(from)..=last_served {
        let (max_age, swr, sie) = cache_directives(&site.cache_control(&snapshot.keys, fetched));
        assert!(
            (0..=JWKS_MAX_AGE).contains(&max_age),
            "t={fetched}: max-age={max_age} exceeds the configured {JWKS_MAX_AGE}"
        );
        assert!(swr.max(sie) <= STALE_WINDOW, "t={fetched}: stale for {swr}/{sie}s, over {STALE_WINDOW}");
        held.until = held.until.max(fetched + max_age + swr);
        held.until_on_error = held.until_on_error.max(fetched + max_age + swr.max(sie));
    }
    held
}

/// SplitMix64: small, deterministic, good enough to drive a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Token {
    kid: String,
    signed_at: UnixTime,
    expires_at: UnixTime,
}

/// What starts a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tick {
    /// The hourly schedule, or an extra run at a random time.
    Scheduled,
    /// Minutes after an extra run.
    FollowUp,
    /// One of a burst of forced rotations.
    Burst,
    /// An operator's rotation exactly one pre-publication after a key was published at a time
    /// its keyring did not foresee: the key signs as early as rotate allows.
    Boundary,
}

#[derive(Default)]
struct Tally {
    runs: u64,
    failed_runs: u64,
    rotations: u64,
    revocations: u64,
    forced: u64,
    /// Rotations refused or deferred by the published-key cap.
    held: u64,
    /// Rotations by an operator exactly one pre-publication after an unforeseen publication.
    at_boundary: u64,
}

fn published(ring: &Keyring) -> HashSet<String> {
    ring.keys.iter().map(|k| k.kid.clone()).collect()
}

fn request_tag(kms: &MemoryKms, arn: &str) -> Option<String> {
    kms.key_tags(arn).into_iter().find(|(k, _)| k == KeyTags::REQUEST).map(|(_, v)| v)
}

/// Every KMS key is accounted for: in the keyring (published or queued for retirement),
/// covered by a creation intent, or pending deletion.
fn check_kms_accounting(kms: &MemoryKms, ring: &Keyring, at: UnixTime) {
    let intents: HashSet<String> = ring.pending.iter().map(|p| p.request_id.clone()).collect();
    for arn in kms.key_arns() {
        let state = kms.key_state(&arn).unwrap();
        if matches!(state, FakeKeyState::PendingDeletion { .. }) || ring.holds_arn(&arn) {
            continue;
        }
        let tag = request_tag(kms, &arn).unwrap_or_default();
        assert!(
            intents.contains(&tag),
            "t={at}: KMS key {arn} ({state:?}) is orphaned: not in the keyring, no intent"
        );
    }
    let live = kms
        .key_arns()
        .iter()
        .filter(|arn| !matches!(kms.key_state(arn), Some(FakeKeyState::PendingDeletion { .. })))
        .count();
    assert!(live <= 10, "t={at}: {live} live KMS keys");
}

#[tokio::test]
async fn a_year_of_rotation_with_faults_never_breaks_a_verifier() {
    simulate(SigningAlg::ES256, 365, 0x5EED_CAFE).await;
}

/// The same simulation, shorter, with keys whose signing goes to KMS as the raw signing input
/// (Ed25519) or as the input or its μ (ML-DSA): nothing in the lifecycle depends on the
/// algorithm.
#[tokio::test]
async fn ninety_days_with_eddsa_keys() {
    simulate(SigningAlg::EdDSA, 90, 0xED25_5190).await;
}

#[tokio::test]
async fn sixty_days_with_ml_dsa_44_keys() {
    simulate(SigningAlg::MlDsa44, 60, 0x4D4C_4453).await;
}

/// `days` of hourly runs with `alg` keys; the year-long run's minimums, scaled to `days`.
async fn simulate(alg: SigningAlg, days: i64, seed: u64) {
    let scaled = |per_year: u64| (per_year * days as u64 / 365).max(1);
    let kms = Arc::new(MemoryKms::new());
    let store = Arc::new(MemoryStore::new());
    let rng = Arc::new(Mutex::new(Rng(seed)));
    let fault_rate = Arc::new(Mutex::new(0.08_f64));
    let decider = |rng: Arc<Mutex<Rng>>, rate: Arc<Mutex<f64>>| {
        move |op: &'static str| {
            let mut rng = rng.lock().unwrap();
            if rng.chance(*rate.lock().unwrap()) {
                match rng.below(3) {
                    0 => Fault::FailBefore,
                    1 => Fault::FailAfter,
                    // The SDK retries every call after a lost reply, except CreateKey, for
                    // which the adapter turns retries off.
                    _ if op == "CreateKey" => Fault::FailAfter,
                    _ => Fault::Repeated,
                }
            } else {
                Fault::Pass
            }
        }
    };
    let rotator = Rotator::new(
        Faulty::new(Arc::clone(&kms), decider(Arc::clone(&rng), Arc::clone(&fault_rate))),
        Faulty::new(Arc::clone(&store), decider(Arc::clone(&rng), Arc::clone(&fault_rate))),
        policy(alg),
        kms_jwt::test_stacks::single_region_keyring(),
    );
    let policy = policy(alg);
    let site = site();

    // The sign function, in a sandbox frozen between ticks: its tokio clock barely moves while
    // the wall clock follows the simulation.
    let wall = Arc::new(ManualClock::at_unix_secs(T0 as u64));
    let sign_cache = KeyringCache::new(
        Arc::clone(&store),
        CachePolicy { ttl: Duration::from_secs(CACHE_TTL as u64), max_staleness: Duration::ZERO },
        current_signing_key,
    )
    .with_clock(wall.clone());
    let signer = TokenSigner::new(
        Arc::clone(&kms),
        sign_cache,
        "https://issuer.sim".into(),
        Duration::from_secs(MAX_TOKEN_TTL as u64),
        Duration::from_secs(MAX_TOKEN_TTL as u64),
    );
    let mut signed_by_signer = 0;

    // Published keyrings over time: (from, snapshot), each valid until the next entry.
    let mut snapshots: BTreeMap<UnixTime, Snapshot> = BTreeMap::new();
    let mut revoked_at: HashMap<String, UnixTime> = HashMap::new();
    let mut first_published: HashMap<String, UnixTime> = HashMap::new();
    let mut tokens: Vec<Token> = Vec::new();
    let mut revoked: HashSet<String> = HashSet::new();
    // Keys that started signing without the full pre-publication (bootstrap, forced
    // rotation, revocation of the current key): clients may legitimately lack them at first.
    let mut early: HashSet<String> = HashSet::new();
    let mut tally = Tally::default();
    let mut bootstrapped = false;

    // (time, what kind of run)
    let mut ticks: Vec<(UnixTime, Tick)> = (0..days * 24).map(|h| (T0 + h * HOUR, Tick::Scheduled)).collect();
    {
        let mut rng = rng.lock().unwrap();
        // Random extra runs, each followed minutes later by another: the schedule may fire
        // often, and a second run must not rotate again before the new next is pre-published.
        for _ in 0..scaled(900) {
            let at = T0 + rng.below((days * DAY) as u64) as i64;
            ticks.push((at, Tick::Scheduled));
            ticks.push((at + MINUTE * (1 + rng.below(15) as i64), Tick::FollowUp));
        }
        // Bursts of forced rotations a minute apart: the published-key cap must stop them.
        for _ in 0..scaled(20).max(3) {
            let at = T0 + DAY + rng.below(((days - 1) * DAY) as u64) as i64;
            for i in 0..6 {
                ticks.push((at + i * MINUTE, Tick::Burst));
            }
        }
    }
    // Runs are taken in time order; a run may schedule a later one (at a boundary).
    let mut queue: BinaryHeap<Reverse<(UnixTime, Tick)>> = ticks.into_iter().map(Reverse).collect();
    let mut end = T0;

    while let Some(Reverse((now, tick))) = queue.pop() {
        end = now;
        let before = stored(&store);
        let command = {
            let mut rng = rng.lock().unwrap();
            if bootstrapped && tick == Tick::Boundary {
                Command::Rotate { force: false }
            } else if bootstrapped && (tick == Tick::Burst || rng.chance(0.002)) {
                Command::Rotate { force: true }
            } else if bootstrapped && rng.chance(0.002) {
                let keys: Vec<_> = before.keys.iter().map(|k| k.kid.clone()).collect();
                Command::Revoke { kid: keys[rng.below(keys.len() as u64) as usize].clone() }
            } else if rng.chance(if tick == Tick::FollowUp { 0.1 } else { 0.005 }) {
                Command::Rotate { force: false }
            } else {
                Command::Reconcile
            }
        };
        tally.runs += 1;
        let result = rotator.run(command.clone(), now).await;
        let after = stored(&store);
        after.validate().unwrap();
        let complete = result.as_ref().is_ok_and(|report| report.incomplete.is_empty());

        assert!(
            after.keys.len() <= policy.max_published_keys,
            "t={now}: {} keys published",
            after.keys.len()
        );
        match &result {
            Err(kms_jwt::rotate::RotateError::TooManyPublishedKeys(_)) => tally.held += 1,
            Ok(report) if report.rotation_held.is_some() => tally.held += 1,
            _ => {}
        }
        if let Err(e) = &result {
            tally.failed_runs += 1;
            assert_ne!(e.code(), "KeyringInvalid", "t={now}: the keyring must never be corrupted: {e}");
        }
        if after.current().is_some() {
            bootstrapped = true;
        }

        // Structure. A revocation withdraws first and replaces after; until a run completes
        // the replacement, the keyring may lack a next key.
        if bootstrapped && complete {
            assert!(after.current().is_some(), "t={now}: exactly one current key");
            assert!(after.next().is_some(), "t={now}: a next key always exists after a complete run");
        }
        if let Ok(report) = &result {
            if let Some(early) = &report.early_activation {
                assert_eq!(
                    Some(&early.kid),
                    after.current().map(|k| &k.kid),
                    "t={now}: reported early key signs"
                );
                assert!(early.published_for_seconds < early.prepublication_seconds);
            }
        }

        // What changed, and why.
        let old_current = before.current().map(|k| k.kid.clone());
        let new_current = after.current().map(|k| k.kid.clone());
        // Only a revocation removes a key before its grace has passed.
        let revoked_now: Vec<String> = match &command {
            Command::Revoke { kid } if before.find(kid).is_some() && after.find(kid).is_none() => {
                vec![kid.clone()]
            }
            _ => Vec::new(),
        };
        if !revoked_now.is_empty() {
            tally.revocations += 1;
        }
        for kid in &revoked_now {
            revoked_at.insert(kid.clone(), now);
        }

        // A new key: rotate's own schedule never publishes one before its keyring foresaw
        // (`max-age` counts on it); one published earlier by an operator's rotation or a
        // revocation is sometimes rotated to exactly one pre-publication later.
        let new_kids = published(&after).difference(&published(&before)).count();
        if new_kids > 0 && before.current().is_some() {
            let due = before.next_publication_due_at(ROTATION_PERIOD);
            let foreseen = due.is_some_and(|due| due <= now);
            if command == Command::Reconcile {
                assert!(
                    foreseen,
                    "t={now}: a scheduled run published a key before {due:?}, when its keyring said"
                );
            } else if !foreseen && rng.lock().unwrap().chance(0.25) {
                queue.push(Reverse((now + policy.prepublication, Tick::Boundary)));
            }
        }
        revoked.extend(revoked_now.iter().cloned());
        if new_current != old_current {
            if let Some(kid) = &new_current {
                let forced = matches!(command, Command::Rotate { force: true } | Command::Revoke { .. });
                if old_current.is_none() || forced || !revoked_now.is_empty() {
                    early.insert(kid.clone());
                    if matches!(command, Command::Rotate { force: true }) {
                        tally.forced += 1;
                    }
                } else {
                    if tick == Tick::Boundary {
                        tally.at_boundary += 1;
                    } else {
                        tally.rotations += 1;
                    }
                    let published_at = first_published[kid];
                    // What verifiers need, independent of the policy under test.
                    assert!(
                        now - published_at >= CLIENT_JWKS_AGE + CLOCK_SKEW,
                        "t={now}: {kid} started signing {}s after publication",
                        now - published_at
                    );
                }
            }
            // A warm sign container may keep using the old current key for one cache lifetime.
            if let Some(old) = &old_current {
                if !revoked.contains(old) {
                    let signed_at = now + CACHE_TTL;
                    tokens.push(Token { kid: old.clone(), signed_at, expires_at: signed_at + MAX_TOKEN_TTL });
                }
            }
        }

        // Publication history.
        for kid in published(&after) {
            first_published.entry(kid).or_insert(now);
        }
        snapshots
            .insert(now, Snapshot { kids: published(&after), keys: PublishedKeys::render(&site, &after) });

        // No key stays published longer than needed, after a run that succeeded.
        if result.is_ok() {
            for key in after.previous() {
                let due = key.deactivated_at.unwrap() + policy.retirement_grace;
                assert!(now < due, "t={now}: {} still published {}s after its grace", key.kid, now - due);
            }
        }

        check_kms_accounting(&kms, &after, now);

        // A token signed now, with the longest lifetime.
        if let Some(kid) = new_current {
            tokens.push(Token { kid, signed_at: now, expires_at: now + MAX_TOKEN_TTL });
        }

        // The frozen sandbox thaws for one request: it must not sign with a key its
        // monotonic clock thinks it read a moment ago.
        wall.set(std::time::UNIX_EPOCH + Duration::from_secs(now as u64));
        if let Ok(token) = signer.sign_event(serde_json::json!({"claims": {}}), now).await {
            assert!(
                published(&after).contains(&token.kid),
                "t={now}: the signer used unpublished key {}",
                token.kid
            );
            tokens.push(Token { kid: token.kid, signed_at: now, expires_at: token.expires_at });
            signed_by_signer += 1;
        }
    }

    // How long verifiers may hold each published set, by the headers served for it.
    let starts: Vec<UnixTime> = snapshots.keys().copied().collect();
    let timeline: Vec<(UnixTime, &Snapshot, Held)> = snapshots
        .iter()
        .zip(starts.iter().skip(1).copied().chain([end + 1]))
        .map(|((&from, snapshot), to)| (from, snapshot, held(&site, snapshot, from, to)))
        .collect();

    // `max-age` never reaches past the publication a keyring foresaw: a verifier drops the set
    // by then, or a floor after the last jwks container stopped serving it (once it is due,
    // verifiers come back every floor until the new keyring reaches them).
    let mut served_near_a_publication = 0;
    for (from, snapshot, held) in &timeline {
        let Some(due) = snapshot.keys.next_publication_due_at else { continue };
        let floor = MAX_AGE_FLOOR.as_secs() as i64;
        assert!(
            held.until <= (held.last_served + floor).max(due) + STALE_WHILE_REVALIDATE,
            "the keyring of t={from} is held until {} past its foreseen publication at {due}",
            held.until
        );
        if due < held.last_served + JWKS_MAX_AGE {
            served_near_a_publication += 1;
        }
    }

    // A revoked key is gone from every verifier within the documented bound, even from one
    // riding on stale-if-error.
    for (kid, at) in &revoked_at {
        for (from, _, held) in timeline.iter().filter(|(_, snapshot, _)| snapshot.kids.contains(kid)) {
            assert!(
                held.until_on_error < at + REVOCATION_EXPOSURE,
                "{kid}, revoked at {at}, is accepted until {} by a verifier holding the set of t={from}",
                held.until_on_error
            );
        }
    }

    // Every token verifies with every JWKS a verifier may hold while the token is valid, even
    // one riding on stale-if-error.
    let mut checked = 0;
    for token in tokens.iter().filter(|t| !revoked.contains(&t.kid) && t.expires_at <= end) {
        let (signed_at, expires_at) = (token.signed_at, token.expires_at);
        let fail = |t: &UnixTime| {
            format!("token of {} signed at {signed_at} (exp {expires_at}) would fail with the JWKS published at {t}", token.kid)
        };
        if early.contains(&token.kid) {
            // The snapshot in force at signing, and every later one up to expiry.
            let in_force = snapshots.range(..=signed_at).next_back().map_or(signed_at, |(t, _)| *t);
            for (t, snapshot) in snapshots.range(in_force..=expires_at) {
                assert!(snapshot.kids.contains(&token.kid), "{}", fail(t));
            }
        } else {
            // No set is held longer than CLIENT_JWKS_AGE after its keyring was replaced.
            let first =
                timeline.partition_point(|(t, _, _)| *t < signed_at - CLIENT_JWKS_AGE).saturating_sub(1);
            for (t, snapshot, held) in &timeline[first..] {
                if *t > expires_at {
                    break;
                }
                if held.until_on_error > signed_at {
                    assert!(snapshot.kids.contains(&token.kid), "{}", fail(t));
                }
            }
        }
        checked += 1;
    }

    // With the faults gone, a few runs converge: nothing queued, no intents, no orphans.
    *fault_rate.lock().unwrap() = 0.0;
    for step in 1..=3 {
        rotator.reconcile(end + step * (STALE_INTENT_SECS + MINUTE)).await.unwrap();
    }
    let ring = stored(&store);
    assert!(ring.retiring.is_empty(), "retirement queue drained: {:?}", ring.retiring);
    assert!(ring.pending.is_empty(), "creation intents cleared: {:?}", ring.pending);
    // Every call rotate and sign made in the year was authorized by the template's policies.
    assert_eq!(kms.denials(), Vec::<String>::new());
    assert_eq!(store.denials(), Vec::<String>::new());
    for arn in kms.key_arns() {
        let state = kms.key_state(&arn).unwrap();
        assert!(
            ring.keys.iter().any(|k| k.kms_key_arn == arn)
                || matches!(state, FakeKeyState::PendingDeletion { .. }),
            "after convergence {arn} is {state:?} and not in the keyring"
        );
    }

    // The simulation exercised what it claims to.
    println!(
        "{alg}, {days} days: runs={} failed={} rotations={} at_boundary={} forced={} revocations={} held_by_cap={} served_near_a_publication={served_near_a_publication} tokens_checked={checked} signer_tokens={signed_by_signer} kms_keys={}",
        tally.runs,
        tally.failed_runs,
        tally.rotations,
        tally.at_boundary,
        tally.forced,
        tally.revocations,
        tally.held,
        kms.key_arns().len()
    );
    assert!(tally.at_boundary >= scaled(10), "keys signed as soon as rotate allows");
    assert!(served_near_a_publication >= scaled(30), "keyrings were served as their publication neared");
    assert!(tally.rotations >= scaled(30), "scheduled rotations happened");
    assert!(tally.failed_runs >= scaled(100), "faults were injected and hit");
    assert!(tally.revocations >= scaled(5) && tally.forced >= scaled(5));
    assert!(tally.held >= scaled(20), "the published-key cap held back rotations in the bursts");
    assert!(checked >= scaled(9_000) as usize);
    assert!(signed_by_signer >= scaled(9_000), "the frozen signer signed {signed_by_signer} tokens");
}
