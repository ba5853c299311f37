//! The jwks service: the JWK Set and OIDC discovery document, rendered once per keyring
//! version, and the HTTP semantics around them (caching headers, ETag/304, 404/405).
//!
//! `max-age` follows the rotation: it is computed per response, at response time, from the
//! time the keyring says rotate publishes its next key, so no verifier's cache lasts past a
//! scheduled publication (docs/lifecycle.md, "Caching that follows the rotation").
//!
//! Transport-neutral: the jwks function adapts API Gateway / function URL events to
//! [`respond`], so every HTTP rule here is unit-tested without Lambda.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cache::{CachePolicy, Clock, KeyringCache, SystemClock};
use crate::keyring::{Keyring, UnixTime};
use crate::ports::KeyringStore;

/// Where the JWK Set is served, below the issuer; also the default `jwks_uri`.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Where the OIDC discovery document is served, below the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// `stale-while-revalidate` we advertise. It lengthens how old a client's JWKS may be, so
/// the rotate function's pre-publication time includes it.
pub const STALE_WHILE_REVALIDATE: Duration = Duration::from_secs(60);
/// Default `stale-if-error` (`JWKS_STALE_IF_ERROR`): while this endpoint fails, verifiers may
/// keep verifying with what they had this long past its `max-age`. Pre-publication covers it,
/// so a verifier riding on it still holds every key that signs; in exchange a revoked key
/// stays accepted that much longer while the endpoint fails (docs/lifecycle.md).
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(900);
/// The most `JWKS_STALE_IF_ERROR` may be: the one day served before it was bounded.
pub const MAX_STALE_IF_ERROR: Duration = Duration::from_secs(86_400);
/// The lowest `max-age` served (unless `JWKS_MAX_AGE` is lower), reached once a scheduled
/// publication is due. Without it, every request between the due time and rotate's run
/// would go to the origin; a jwks container sees a new keyring only once per
/// KEYRING_CACHE_TTL (default 60 s) anyway, so a shorter one would bring the key no sooner.
pub const MAX_AGE_FLOOR: Duration = Duration::from_secs(60);

/// A rendered document and its strong validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The JSON document as served.
    pub body: String,
    /// Strong `ETag`: the quoted base64url of the first 16 bytes of the body's SHA-256.
    pub etag: String,
}

impl Rendered {
    fn new(body: String) -> Self {
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&Sha256::digest(body.as_bytes())[..16]));
        Rendered { body, etag }
    }
}

/// Everything the jwks function serves for one keyring version, rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKeys {
    /// False until rotate has bootstrapped the keyring: we answer 503 rather than let clients
    /// cache an empty key set.
    pub bootstrapped: bool,
    /// When rotate publishes its next key at the earliest, by this keyring and the site's
    /// rotation period: no `max-age` reaches past it. `None`: unknown, `max-age` is the cap.
    pub next_publication_due_at: Option<UnixTime>,
    /// The JWK Set, served at [`JWKS_PATH`].
    pub jwks: Rendered,
    /// The discovery document, served at [`DISCOVERY_PATH`].
    pub discovery: Rendered,
}

impl PublishedKeys {
    /// Render both documents for `ring`, advertising the algorithms its keys use.
    pub fn render(site: &Site, ring: &Keyring) -> Self {
        let body = serde_json::to_string(&ring.jwks()).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned());
        let mut algs: Vec<String> = ring.keys.iter().map(|k| k.alg.to_string()).collect();
        algs.sort();
        algs.dedup();
        let next_publication_due_at =
            site.rotation_period.and_then(|period| ring.next_publication_due_at(crate::config::secs(period)));
        PublishedKeys {
            bootstrapped: !ring.is_empty(),
            next_publication_due_at,
            jwks: Rendered::new(body),
            discovery: site.discovery(&algs),
        }
    }
}

/// Static settings of the HTTP surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    /// The JWK Set URL the discovery document gives.
    pub jwks_uri: String,
    /// The largest `max-age` of the served documents (`JWKS_MAX_AGE`): how old a JWKS a
    /// verifier may use, before stale-while-revalidate or stale-if-error.
    pub max_age: Duration,
    /// The `stale-if-error` served (`JWKS_STALE_IF_ERROR`).
    pub stale_if_error: Duration,
    /// Rotate's `ROTATION_PERIOD`, from which the next scheduled publication is known;
    /// `None`: `max-age` is always [`Self::max_age`].
    pub rotation_period: Option<Duration>,
}

impl Site {
    /// Settings for `issuer`; `jwks_uri` defaults to the issuer followed by [`JWKS_PATH`].
    /// `max-age` is `max_age` until [`Self::with_rotation_period`] says when keys come.
    pub fn new(issuer: &str, jwks_uri: Option<&str>, max_age: Duration) -> Self {
        let issuer = issuer.trim_end_matches('/').to_owned();
        let jwks_uri = jwks_uri.map_or_else(|| format!("{issuer}{JWKS_PATH}"), str::to_owned);
        Site { issuer, jwks_uri, max_age, stale_if_error: DEFAULT_STALE_IF_ERROR, rotation_period: None }
    }

    /// `max-age` never reaches past the next publication rotate schedules with `period`.
    pub fn with_rotation_period(mut self, period: Duration) -> Self {
        self.rotation_period = Some(period);
        self
    }

    /// Serve `stale-if-error` = `stale_if_error`.
    pub fn with_stale_if_error(mut self, stale_if_error: Duration) -> Self {
        self.stale_if_error = stale_if_error;
        self
    }

    /// The `max-age` to serve at `now` for a keyring whose next publication is due at
    /// `due_at`: the time left until then, at least [`MAX_AGE_FLOOR`] and at most `max_age`
    /// (the floor never exceeds `max_age`, so pre-publication's `JWKS_MAX_AGE` term holds).
    pub fn max_age_at(&self, due_at: Option<UnixTime>, now: UnixTime) -> Duration {
        let Some(due_at) = due_at else {
            return self.max_age;
        };
        let until_due = Duration::from_secs(u64::try_from(due_at.saturating_sub(now)).unwrap_or(0));
        until_due.max(MAX_AGE_FLOOR).min(self.max_age)
    }

    /// The `Cache-Control` of `keys`' documents at `now`.
    pub fn cache_control(&self, keys: &PublishedKeys, now: UnixTime) -> String {
        format!(
            "public, max-age={}, stale-while-revalidate={}, stale-if-error={}",
            self.max_age_at(keys.next_publication_due_at, now).as_secs(),
            STALE_WHILE_REVALIDATE.as_secs(),
            self.stale_if_error.as_secs()
        )
    }

    /// OIDC Discovery 1.0 §3 metadata (required members), for the algorithms in use.
    pub fn discovery(&self, algs: &[String]) -> Rendered {
        Rendered::new(
            json!({
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri,
                "id_token_signing_alg_values_supported": algs,
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
            })
            .to_string(),
        )
    }
}

/// A transport-neutral HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status: 200, 304, 404, 405 or 503.
    pub status: u16,
    /// Header names, in lower case, and their values.
    pub headers: Vec<(&'static str, String)>,
    /// The document, or an error object; empty for `HEAD` and 304.
    pub body: String,
}

impl Answer {
    /// The value of header `name` (compared case-insensitively), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn plain(status: u16, message: &str) -> Self {
        Answer {
            status,
            headers: vec![("content-type", "application/json".into()), ("cache-control", "no-store".into())],
            body: json!({ "error": message }).to_string(),
        }
    }
}

/// Which document a path names. API Gateway stages and custom-domain base paths put a prefix
/// before the well-known path, so the suffix is what counts.
fn route(path: &str) -> Option<&'static str> {
    [JWKS_PATH, DISCOVERY_PATH].into_iter().find(|p| path == *p || path.ends_with(p))
}

/// RFC 9110 §13.1.2: `If-None-Match` uses weak comparison and may list several tags or `*`.
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// Answer one request at `now`. `keys` is `None` when no keyring could be loaded at all.
pub fn respond(
    site: &Site,
    method: &str,
    path: &str,
    if_none_match: Option<&str>,
    keys: Option<&PublishedKeys>,
    now: UnixTime,
) -> Answer {
    let Some(route) = route(path) else {
        return Answer::plain(404, "not found");
    };
    let head = method.eq_ignore_ascii_case("HEAD");
    if !head && !method.eq_ignore_ascii_case("GET") {
        let mut answer = Answer::plain(405, "method not allowed");
        answer.headers.push(("allow", "GET, HEAD".into()));
        return answer;
    }
    let keys = match keys {
        Some(keys) if keys.bootstrapped => keys,
        _ => {
            let mut answer = Answer::plain(503, "signing keys are not available yet");
            answer.headers.push(("retry-after", "30".into()));
            return answer;
        }
    };
    let doc = if route == JWKS_PATH { &keys.jwks } else { &keys.discovery };
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("cache-control", site.cache_control(keys, now)),
        ("etag", doc.etag.clone()),
        ("access-control-allow-origin", "*".to_owned()),
    ];
    if if_none_match.is_some_and(|inm| matches_etag(inm, &doc.etag)) {
        headers.retain(|(n, _)| *n != "content-type");
        return Answer { status: 304, headers, body: String::new() };
    }
    headers.push(("content-length", doc.body.len().to_string()));
    Answer { status: 200, headers, body: if head { String::new() } else { doc.body.clone() } }
}

/// What the jwks function runs per container: the site, and the keyring cache holding the
/// rendered documents (with stale-if-error, so a Secrets Manager outage does not take the
/// JWKS down).
pub struct JwksService<S> {
    site: Site,
    keys: KeyringCache<S, PublishedKeys>,
    clock: Arc<dyn Clock>,
}

impl<S: KeyringStore> JwksService<S> {
    /// Serve `site` from the keyring in `store`, cached as `policy` says.
    pub fn new(store: S, site: Site, policy: CachePolicy) -> Self {
        let render_site = site.clone();
        // Rendered once per keyring version: warm requests serialize nothing.
        let keys = KeyringCache::new(store, policy, move |ring| PublishedKeys::render(&render_site, ring));
        JwksService { site, keys, clock: Arc::new(SystemClock) }
    }

    /// Read the time, for cache ages and `max-age`, from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.keys = self.keys.with_clock(Arc::clone(&clock));
        self.clock = clock;
        self
    }

    /// Answer one HTTP request. A keyring that cannot be read (and no good copy cached) is a
    /// 503, never an empty key set.
    pub async fn answer(&self, method: &str, path: &str, if_none_match: Option<&str>) -> Answer {
        let keys = match self.keys.get().await {
            Ok(keys) => Some(keys),
            Err(e) => {
                tracing::error!(error = %e, "no keyring to serve");
                None
            }
        };
        // Before the epoch only on a broken clock: 0 serves the smallest max-age.
        let now = self.clock.wall_now().duration_since(UNIX_EPOCH).map_or(0, crate::config::secs);
        respond(&self.site, method, path, if_none_match, keys.as_deref(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::new_key;
    use crate::SigningAlg;

    fn site() -> Site {
        Site::new("https://auth.example.com/", None, Duration::from_secs(300))
    }

    fn keys() -> PublishedKeys {
        PublishedKeys::render(&site(), &Keyring::empty().bootstrap(new_key(1, 0), new_key(2, 0), 0))
    }

    #[test]
    fn jwks_is_served_with_caching_headers_and_304() {
        let keys = keys();
        let a = respond(&site(), "GET", JWKS_PATH, None, Some(&keys), 0);
        assert_eq!(a.status, 200);
        assert_eq!(
            a.header("cache-control"),
            Some("public, max-age=300, stale-while-revalidate=60, stale-if-error=900")
        );
        assert_eq!(a.header("access-control-allow-origin"), Some("*"));
        let etag = a.header("etag").unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["keys"].as_array().unwrap().len(), 2);

        let b = respond(&site(), "GET", JWKS_PATH, Some(&format!("\"x\", W/{etag}")), Some(&keys), 0);
        assert_eq!(b.status, 304);
        assert!(b.body.is_empty());
        assert_eq!(b.header("cache-control"), a.header("cache-control"), "a 304 refreshes the same way");
        assert_eq!(respond(&site(), "GET", JWKS_PATH, Some("\"other\""), Some(&keys), 0).status, 200);

        let head = respond(&site(), "HEAD", "/prod/.well-known/jwks.json", None, Some(&keys), 0);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), Some(a.body.len().to_string().as_str()));
    }

    #[test]
    fn discovery_document_points_at_the_jwks() {
        let a = respond(&site(), "GET", DISCOVERY_PATH, None, Some(&keys()), 0);
        let doc: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(doc["issuer"], "https://auth.example.com");
        assert_eq!(doc["jwks_uri"], "https://auth.example.com/.well-known/jwks.json");
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["ES256"]));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
    }

    const DAY: i64 = 86_400;
    const PERIOD: i64 = 30 * DAY;
    /// When the keyrings below were bootstrapped (their current key's activation).
    const T0: UnixTime = 1_800_000_000;

    /// The default site: `JWKS_MAX_AGE` 300 s, rotation every 30 days.
    fn scheduled_site() -> Site {
        site().with_rotation_period(Duration::from_secs(PERIOD as u64))
    }

    fn max_age_served(site: &Site, ring: &Keyring, now: UnixTime) -> Option<u64> {
        let keys = PublishedKeys::render(site, ring);
        let answer = respond(site, "GET", JWKS_PATH, None, Some(&keys), now);
        let cache_control = answer.header("cache-control")?;
        cache_control.split(", ").find_map(|d| d.strip_prefix("max-age="))?.parse().ok()
    }

    /// `max-age` across a keyring's timeline: capped far from a publication, the time left just
    /// before one, the floor once it is due (rotate not having run yet) and after a revocation
    /// left no next key, the cap again once the rotation is written.
    #[test]
    fn max_age_follows_the_keyring_timeline() {
        let bootstrapped = Keyring::empty().bootstrap(new_key(1, T0), new_key(2, T0), T0);
        let due = T0 + PERIOD;
        let rotated = bootstrapped.rotate(new_key(3, due + 1_800), due + 1_800);
        let current = rotated.current().unwrap().kid.clone();
        let revoked = rotated.revoke(&current, due + 2 * DAY).unwrap();
        let replaced = revoked.with_next(new_key(4, due + 2 * DAY + 3_600), due + 2 * DAY + 3_600);
        #[rustfmt::skip]
        let cases: Vec<(&str, &Keyring, UnixTime, u64)> = vec![
            ("just bootstrapped: capped", &bootstrapped, T0, 300),
            ("far from the publication: capped", &bootstrapped, due - DAY, 300),
            ("exactly the cap before it", &bootstrapped, due - 300, 300),
            ("just inside the cap: the time left", &bootstrapped, due - 299, 299),
            ("two minutes before", &bootstrapped, due - 120, 120),
            ("at the floor", &bootstrapped, due - 60, 60),
            ("closer: the floor", &bootstrapped, due - 10, 60),
            ("due, rotate not run yet: the floor", &bootstrapped, due, 60),
            ("long overdue (rotate failing): the floor", &bootstrapped, due + DAY, 60),
            ("the rotation written: capped again", &rotated, due + 1_800, 300),
            ("before the following one", &rotated, due + 1_800 + PERIOD - 200, 200),
            ("a revocation left no next key: the floor", &revoked, due + 2 * DAY, 60),
            ("its replacement published: capped", &replaced, due + 2 * DAY + 3_600, 300),
            ("the following publication counts from the revocation", &replaced, due + 2 * DAY + PERIOD - 100, 100),
        ];
        for (name, ring, now, expected) in cases {
            assert_eq!(max_age_served(&scheduled_site(), ring, now), Some(expected), "{name}");
        }
        // Without a rotation period the cap is all there is; a cap under the floor wins.
        assert_eq!(max_age_served(&site(), &bootstrapped, due), Some(300));
        let short = Site::new("https://auth.example.com", None, Duration::from_secs(30))
            .with_rotation_period(Duration::from_secs(PERIOD as u64));
        assert_eq!(max_age_served(&short, &bootstrapped, due), Some(30));
        assert_eq!(max_age_served(&short, &bootstrapped, due - DAY), Some(30));
    }

    /// The headers are computed per response: a rendering cached for a while serves a shorter
    /// `max-age` as the publication nears, on 200 and 304 alike, with the configured
    /// `stale-if-error`.
    #[test]
    fn headers_are_computed_at_response_time() {
        let site = scheduled_site().with_stale_if_error(Duration::from_secs(600));
        let ring = Keyring::empty().bootstrap(new_key(1, T0), new_key(2, T0), T0);
        let keys = PublishedKeys::render(&site, &ring);
        let due = T0 + PERIOD;
        let early = respond(&site, "GET", JWKS_PATH, None, Some(&keys), due - 1_000);
        let late = respond(&site, "GET", JWKS_PATH, None, Some(&keys), due - 100);
        let expected = |max_age: u64| {
            format!("public, max-age={max_age}, stale-while-revalidate=60, stale-if-error=600")
        };
        assert_eq!(early.header("cache-control"), Some(expected(300).as_str()));
        assert_eq!(late.header("cache-control"), Some(expected(100).as_str()));
        let etag = late.header("etag").unwrap().to_owned();
        let not_modified = respond(&site, "GET", JWKS_PATH, Some(&etag), Some(&keys), due - 100);
        assert_eq!(not_modified.status, 304);
        assert_eq!(not_modified.header("cache-control"), Some(expected(100).as_str()));
        let discovery = respond(&site, "HEAD", DISCOVERY_PATH, None, Some(&keys), due - 100);
        assert_eq!(discovery.header("cache-control"), Some(expected(100).as_str()));
    }

    /// Before bootstrap, or with no keyring at all, nothing may be cached.
    #[test]
    fn no_keys_is_a_503_that_no_cache_keeps() {
        let site = scheduled_site();
        let empty = PublishedKeys::render(&site, &Keyring::empty());
        assert_eq!(empty.next_publication_due_at, None);
        for keys in [Some(&empty), None] {
            let answer = respond(&site, "GET", JWKS_PATH, None, keys, T0);
            assert_eq!((answer.status, answer.header("cache-control")), (503, Some("no-store")));
        }
    }

    /// The service reads `now` from its clock: the same cached rendering, two answers.
    #[tokio::test]
    async fn the_service_computes_max_age_on_its_clock() {
        use crate::cache::ManualClock;
        use crate::memory::MemoryStore;
        let ring = Keyring::empty().bootstrap(new_key(1, T0), new_key(2, T0), T0);
        let clock = Arc::new(ManualClock::at_unix_secs((T0 + PERIOD - 1_000) as u64));
        let policy = CachePolicy { ttl: Duration::from_secs(3_600), max_staleness: Duration::ZERO };
        let service = JwksService::new(MemoryStore::with_document(&ring.to_json()), scheduled_site(), policy)
            .with_clock(clock.clone());
        let max_age = |answer: Answer| answer.header("cache-control").map(str::to_owned);
        let first = max_age(service.answer("GET", JWKS_PATH, None).await);
        clock.advance(Duration::from_secs(850));
        let second = max_age(service.answer("GET", JWKS_PATH, None).await);
        assert!(first.unwrap().contains("max-age=300,"));
        assert!(second.unwrap().contains("max-age=150,"));
    }

    proptest::proptest! {
        /// Whatever the keyring and the time: `max-age` never exceeds the cap, never reaches
        /// past a publication that is not yet due, and is never below the floor (or the cap).
        #[test]
        fn max_age_never_reaches_past_the_next_publication(
            activated_offset in 0i64..(60 * DAY),
            period in 3_600i64..(90 * DAY),
            now_offset in 0i64..(180 * DAY),
            cap in 1u64..7_200,
            with_next: bool,
        ) {
            let activated = T0 + activated_offset;
            let mut ring = Keyring::empty().bootstrap(new_key(1, activated), new_key(2, activated), activated);
            if !with_next {
                let next = ring.next().unwrap().kid.clone();
                ring = ring.revoke(&next, activated).unwrap();
            }
            let site = Site::new("https://auth.example.com", None, Duration::from_secs(cap))
                .with_rotation_period(Duration::from_secs(period as u64));
            let now = T0 + now_offset;
            let max_age = max_age_served(&site, &ring, now).unwrap();
            let due = if with_next { activated + period } else { activated };
            proptest::prop_assert!(max_age <= cap);
            proptest::prop_assert!(max_age >= cap.min(MAX_AGE_FLOOR.as_secs()));
            if due - now >= MAX_AGE_FLOOR.as_secs() as i64 {
                proptest::prop_assert!(now + max_age as i64 <= due, "reaches past {due}");
            } else {
                proptest::prop_assert_eq!(max_age, cap.min(MAX_AGE_FLOOR.as_secs()));
            }
        }
    }

    /// What API Gateway's JWT authorizers and ALB read: a discovery document whose `issuer` is
    /// the configured one and whose `jwks_uri` is an absolute https URL; a `kid` (and `kty`,
    /// `alg`, `use`) on every key; and the largest JWKS rotation allows (10 RSA-4096 keys)
    /// well under the 150,000 bytes the HTTP API authorizer and ALB accept.
    #[test]
    fn discovery_and_jwks_carry_what_aws_jwt_authorizers_read() {
        use crate::jose::jwk::PublicJwk;
        let site = Site::new("https://auth.example.com", None, Duration::from_secs(300));
        let rsa_4096 = |seed: u8| {
            let mut key = new_key(seed, 0);
            key.public_jwk = PublicJwk::Rsa {
                n: URL_SAFE_NO_PAD.encode([seed | 0x80; 512]),
                e: URL_SAFE_NO_PAD.encode([1, 0, 1]),
            };
            key.kid = key.public_jwk.thumbprint();
            key.alg = SigningAlg::RS512;
            key
        };
        let mut ring = Keyring::empty().bootstrap(rsa_4096(1), rsa_4096(2), 0);
        for seed in 3..=10 {
            ring = ring.rotate(rsa_4096(seed), i64::from(seed));
        }
        assert_eq!(ring.keys.len(), 10);
        let keys = PublishedKeys::render(&site, &ring);
        let doc: serde_json::Value = serde_json::from_str(&keys.discovery.body).unwrap();
        assert_eq!(doc["issuer"], "https://auth.example.com");
        let jwks_uri = doc["jwks_uri"].as_str().unwrap();
        assert_eq!(crate::config::check_verifier_url(jwks_uri), Ok(()), "{jwks_uri}");
        let jwks: serde_json::Value = serde_json::from_str(&keys.jwks.body).unwrap();
        for key in jwks["keys"].as_array().unwrap() {
            for member in ["kid", "kty", "alg", "use"] {
                assert!(key[member].is_string(), "{member} missing: {key}");
            }
        }
        assert!(keys.jwks.body.len() < 10_000, "{} bytes", keys.jwks.body.len());
        assert!(keys.jwks.body.len() * 15 < crate::rotate::MAX_JWKS_BYTES);
    }

    /// Odd paths, methods and headers: every answer is a deliberate 2xx/3xx/4xx/503.
    #[test]
    fn bad_input_matrix_never_answers_500() {
        let keys = keys();
        let paths = [
            "",
            "/",
            "//",
            "/.well-known",
            "/.well-known/",
            "/.WELL-KNOWN/JWKS.JSON",
            "/.well-known/jwks.json?x=1",
            "/.well-known/jwks.json%00",
            "/../.well-known/jwks.json",
            "/.well-known/jwks.json/..",
            "/é/ü",
            "\\",
            &"/a".repeat(10_000),
        ];
        let methods = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "get", "",
            "FOO BAR",
        ];
        let conditions = [None, Some(""), Some("*"), Some("W/"), Some("\"\""), Some(",,,"), Some("\u{0}")];
        for path in paths {
            for method in methods {
                for inm in conditions {
                    for ks in [Some(&keys), None] {
                        let a = respond(&site(), method, path, inm, ks, 0);
                        assert!(
                            matches!(a.status, 200 | 304 | 404 | 405 | 503),
                            "{method} {path:.40} -> {}",
                            a.status
                        );
                        assert!(!a.body.contains("panicked"));
                    }
                }
            }
        }
    }

    #[test]
    fn errors_are_clean() {
        let keys = keys();
        assert_eq!(respond(&site(), "GET", "/", None, Some(&keys), 0).status, 404);
        assert_eq!(respond(&site(), "GET", "/.well-known/jwks.json/x", None, Some(&keys), 0).status, 404);
        let post = respond(&site(), "POST", JWKS_PATH, None, Some(&keys), 0);
        assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
        let cold = respond(&site(), "GET", JWKS_PATH, None, None, 0);
        assert_eq!((cold.status, cold.header("retry-after")), (503, Some("30")));
        let empty = PublishedKeys::render(&site(), &Keyring::empty());
        assert_eq!(respond(&site(), "GET", JWKS_PATH, None, Some(&empty), 0).status, 503);
    }
}
