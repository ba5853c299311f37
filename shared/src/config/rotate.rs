//! The rotate function's settings.

use std::time::Duration;

use super::{
    secs, show, CallTimeouts, ConfigError, EnvReader, DEFAULT_CACHE_TTL, DEFAULT_MAX_STALENESS,
    DEFAULT_ROTATION_PERIOD,
};
use crate::jose::alg::SigningAlg;
use crate::key_policy::KeyAccess;
use crate::ports::{KeyringStore, RotateKms};
use crate::rotate::{RotationPolicy, Rotator};

/// How rotate finds keys by tag (`KEY_DISCOVERY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDiscoveryMode {
    /// `tagging-api` (default): Resource Groups Tagging API, one call however many keys.
    TaggingApi,
    /// `list-keys`: list the account's keys a page at a time (LocalStack).
    ListKeys,
}

/// Settings of the rotate function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateConfig {
    /// Name or ARN of the Secrets Manager secret that holds the keyring (`KEYRING_SECRET_ID`).
    pub keyring_secret_id: String,
    /// Algorithm of the keys rotate creates (`SIGNING_ALG`, default RS256).
    pub signing_alg: SigningAlg,
    /// How long a key signs before the next one takes over (`ROTATION_PERIOD`, default 30 days).
    pub rotation_period: Duration,
    /// Longest lifetime of a token (`MAX_TOKEN_TTL`, default 1 hour): previous keys stay
    /// published at least this long.
    pub max_token_ttl: Duration,
    /// The largest `max-age` the jwks function sends (`JWKS_MAX_AGE`, default 5 minutes), part
    /// of the pre-publication time.
    pub jwks_max_age: Duration,
    /// The `stale-if-error` the jwks function sends (`JWKS_STALE_IF_ERROR`, default 15
    /// minutes), part of the pre-publication time when longer than stale-while-revalidate.
    pub jwks_stale_if_error: Duration,
    /// Allowance for verifiers' clocks (`CLOCK_SKEW`, default 60 s), added to pre-publication and
    /// to retirement grace.
    pub clock_skew: Duration,
    /// The keyring cache lifetime of the sign and jwks functions (`KEYRING_CACHE_TTL`).
    pub keyring_cache_ttl: Duration,
    /// Days KMS waits before deleting a retired key (`KEY_DELETION_WINDOW_DAYS`, 7 to 30, default 30).
    pub deletion_window_days: i32,
    /// Customer-managed key that encrypts the secret if rotate has to create it.
    pub keyring_kms_key_id: Option<String>,
    /// The jwks function's `KEYRING_MAX_STALENESS`: how old a keyring it may serve.
    pub jwks_max_staleness: Duration,
    /// Who may use the signing keys: written into each key's policy
    /// (`KEY_ADMIN_ROLE_ARN`, `KEY_USER_ROLE_ARNS`).
    pub key_access: Option<KeyAccess>,
    /// How rotate finds its keys by tag (`KEY_DISCOVERY`).
    pub key_discovery: KeyDiscoveryMode,
    /// Time limits of every AWS call (`AWS_CALL_ATTEMPT_TIMEOUT`, `AWS_CALL_TIMEOUT`).
    pub aws_timeouts: CallTimeouts,
    /// Most keys the JWKS may hold (`MAX_PUBLISHED_KEYS`, default 10: ALB's limit).
    pub max_published_keys: usize,
    /// The function's region (`AWS_REGION`, set by Lambda).
    pub region: Option<String>,
    /// Multi-region: the regions the keys and the keyring are replicated to
    /// (`REPLICA_REGIONS`, comma-separated; empty: single-region).
    pub replica_regions: Vec<String>,
    /// Multi-region: the region whose rotate writes (`HOME_REGION`, default this one). Only
    /// checked here; what stops another region's rotate from writing is the keyring's own
    /// record of its home (see `Command::TakeOver`).
    pub home_region: Option<String>,
    /// The CloudFront distribution in front of the jwks function (`JWKS_DISTRIBUTION_ID`;
    /// unset: no CDN, nothing to invalidate on revocation).
    pub jwks_distribution_id: Option<String>,
    /// Where the distribution serves the well-known paths, if not at its root
    /// (`JWKS_PATH_PREFIX`, e.g. `/auth`; default none).
    pub jwks_path_prefix: String,
    /// The EventBridge bus lifecycle events go to (`LIFECYCLE_EVENT_BUS`, name or ARN; unset:
    /// no events).
    pub lifecycle_event_bus: Option<String>,
}

/// Whether `name` looks like an AWS Region name (`us-east-1`, `ap-southeast-2`,
/// `us-gov-west-1`): lowercase words and a number, joined by hyphens.
fn is_region_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

/// Multi-region settings that cannot work: a malformed or repeated region, the home region
/// among its own replicas, replicas without a known region of our own.
fn check_regions<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>, config: &RotateConfig) {
    let mut seen = std::collections::HashSet::new();
    for region in &config.replica_regions {
        if !is_region_name(region) {
            env.problem(format!("REPLICA_REGIONS: {region:?} is not a region name"));
        } else if !seen.insert(region) {
            env.problem(format!("REPLICA_REGIONS names {region} twice"));
        }
    }
    if let Some(home) = &config.home_region {
        if !is_region_name(home) {
            env.problem(format!("HOME_REGION: {home:?} is not a region name"));
        }
    }
    if config.replica_regions.is_empty() && config.home_region.is_none() {
        return;
    }
    // The region a multi-region rotate claims as home, and the local replica it addresses.
    if config.region.is_none() {
        env.problem("REPLICA_REGIONS / HOME_REGION need AWS_REGION (set by Lambda)");
    }
    if let Some(home) = config.home_region.as_ref().or(config.region.as_ref()) {
        if config.replica_regions.contains(home) {
            env.problem(format!("REPLICA_REGIONS includes the home region {home}"));
        }
    }
}

impl RotateConfig {
    /// Whether this is a multi-region deployment: replica regions are named, or a home region
    /// is (after a fail-over a two-region deployment may have no replica left, and must still
    /// create multi-Region keys, fence and take over).
    pub fn is_multi_region(&self) -> bool {
        !self.replica_regions.is_empty() || self.home_region.is_some()
    }

    /// Read and check the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables; settings that could get a valid token
    /// rejected by a verifier are refused.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = EnvReader::new(lookup);
        let mut config = RotateConfig {
            keyring_secret_id: env.required("KEYRING_SECRET_ID"),
            signing_alg: env.alg("SIGNING_ALG", SigningAlg::RS256),
            rotation_period: env.duration("ROTATION_PERIOD", DEFAULT_ROTATION_PERIOD),
            max_token_ttl: env.duration("MAX_TOKEN_TTL", Duration::from_secs(3_600)),
            jwks_max_age: env.duration("JWKS_MAX_AGE", Duration::from_secs(300)),
            jwks_stale_if_error: env.jwks_stale_if_error(),
            clock_skew: env.duration("CLOCK_SKEW", Duration::from_secs(60)),
            keyring_cache_ttl: env.duration("KEYRING_CACHE_TTL", DEFAULT_CACHE_TTL),
            deletion_window_days: env.integer("KEY_DELETION_WINDOW_DAYS", 30, 7..=30) as i32,
            keyring_kms_key_id: env.optional("KEYRING_KMS_KEY_ID"),
            jwks_max_staleness: env.duration_or_zero("KEYRING_MAX_STALENESS", DEFAULT_MAX_STALENESS),
            key_access: None,
            key_discovery: match env.optional("KEY_DISCOVERY").as_deref() {
                None | Some("tagging-api") => KeyDiscoveryMode::TaggingApi,
                Some("list-keys") => KeyDiscoveryMode::ListKeys,
                Some(other) => {
                    env.problem(format!("KEY_DISCOVERY must be tagging-api or list-keys, not {other:?}"));
                    KeyDiscoveryMode::TaggingApi
                }
            },
            aws_timeouts: env.call_timeouts(),
            max_published_keys: usize::try_from(env.integer(
                "MAX_PUBLISHED_KEYS",
                crate::rotate::DEFAULT_MAX_PUBLISHED_KEYS as i64,
                3..=100,
            ))
            .unwrap_or(crate::rotate::DEFAULT_MAX_PUBLISHED_KEYS),
            region: env.optional("AWS_REGION"),
            replica_regions: env.list("REPLICA_REGIONS"),
            home_region: env.optional("HOME_REGION"),
            jwks_distribution_id: env.optional("JWKS_DISTRIBUTION_ID"),
            jwks_path_prefix: env.optional("JWKS_PATH_PREFIX").unwrap_or_default(),
            lifecycle_event_bus: env.optional("LIFECYCLE_EVENT_BUS"),
        };
        check_path_prefix(&mut env, &config.jwks_path_prefix);
        check_regions(&mut env, &config);
        check_key_spec(&mut env, config.signing_alg);
        config.key_access = read_key_access(&mut env);
        check_timing(&mut env, &config);
        env.finish(config)
    }

    /// The rotator the rotate function runs over `kms` and `store`: this configuration's
    /// lifecycle timing, its keyring name on every key, and one AWS call's time kept in hand
    /// per further step. Multi-region deployments add their regions
    /// ([`Rotator::with_regions`]).
    pub fn rotator<K: RotateKms, S: KeyringStore>(&self, kms: K, store: S) -> Rotator<K, S> {
        Rotator::new(kms, store, self.rotation_policy(), self.keyring_secret_id.clone())
            .with_step_reserve(self.aws_timeouts.total)
    }

    /// The paths a revocation invalidates at the CDN: the JWKS and the discovery document,
    /// under `JWKS_PATH_PREFIX`.
    pub fn invalidation_paths(&self) -> Vec<String> {
        [crate::jwks::JWKS_PATH, crate::jwks::DISCOVERY_PATH]
            .iter()
            .map(|path| format!("{}{path}", self.jwks_path_prefix))
            .collect()
    }

    /// The lifecycle timing rotate runs with, in seconds.
    pub fn rotation_policy(&self) -> RotationPolicy {
        RotationPolicy {
            alg: self.signing_alg,
            rotation_period: secs(self.rotation_period),
            prepublication: secs(self.prepublication()),
            retirement_grace: secs(self.retirement_grace()),
            deletion_window_days: self.deletion_window_days,
            max_published_keys: self.max_published_keys,
        }
    }

    /// The most keys routine rotation publishes at once: next, current, and every previous key
    /// deactivated within the retirement grace (one per rotation period at most).
    pub fn keys_published_by_schedule(&self) -> usize {
        let period = self.rotation_period.as_secs().max(1);
        let previous = self.retirement_grace().as_secs().div_ceil(period).max(1);
        2 + usize::try_from(previous).unwrap_or(usize::MAX - 2)
    }

    /// How long a next key is published before it may sign: long enough for every verifier's
    /// JWKS cache to have been refilled from a jwks container that has itself picked the key
    /// up, even one serving its last good keyring through a Secrets Manager outage
    /// (KEYRING_MAX_STALENESS past its cache TTL). A cache may use a set up to its max-age
    /// (at most JWKS_MAX_AGE: a key rotate publishes at a time the keyring did not foresee,
    /// by an operator's rotation or a revocation, reaches a verifier that fetched just before
    /// only after a full one) plus the longer of stale-while-revalidate and stale-if-error:
    /// so a verifier riding on stale-if-error through an endpoint outage still holds every
    /// key that signs.
    pub fn prepublication(&self) -> Duration {
        self.jwks_max_age
            + self.jwks_stale_window()
            + self.keyring_cache_ttl
            + self.jwks_max_staleness
            + self.clock_skew
    }

    /// How long past its max-age a verifier may use a JWKS: the longer of the
    /// stale-while-revalidate and stale-if-error the jwks function serves.
    pub fn jwks_stale_window(&self) -> Duration {
        crate::jwks::STALE_WHILE_REVALIDATE.max(self.jwks_stale_if_error)
    }

    /// How long a previous key stays published after it stopped being current: its last
    /// token may have been signed up to one sign-cache lifetime later, and lives MAX_TOKEN_TTL.
    pub fn retirement_grace(&self) -> Duration {
        self.max_token_ttl + self.clock_skew + self.keyring_cache_ttl
    }
}

/// A path prefix is empty or `/segment[/segment...]`: it is put before `/.well-known/...` as it
/// is, and CloudFront takes `*` only at the end of a path.
fn check_path_prefix<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>, prefix: &str) {
    let valid = prefix.is_empty()
        || (prefix.starts_with('/')
            && !prefix.ends_with('/')
            && prefix.bytes().all(|b| b.is_ascii_graphic() && b != b'*' && b != b'?' && b != b'#'));
    if !valid {
        env.problem(format!(
            "JWKS_PATH_PREFIX must be empty or a path such as /auth (leading /, no trailing /, no * ? #), not {prefix:?}"
        ));
    }
}

/// The KMS key spec rotate's IAM policy lets it create (the template's `KeySpec`): a
/// spec that does not match SIGNING_ALG would fail every CreateKey on AWS. LocalStack
/// does not check the pair, KMS and IAM do; so it is refused here, at cold start.
fn check_key_spec<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>, alg: SigningAlg) {
    if let Some(spec) = env.optional("KEY_SPEC") {
        if spec != alg.kms_key_spec() {
            let fits = SigningAlg::for_key_spec(&spec);
            let fits = if fits.is_empty() {
                "no JWS algorithm kms-jwt signs with".to_owned()
            } else {
                fits.iter().map(|alg| alg.as_str()).collect::<Vec<_>>().join(" or ")
            };
            env.problem(format!(
                "KEY_SPEC {spec} does not match SIGNING_ALG {} (which needs {}); {spec} keys sign {fits}",
                alg,
                alg.kms_key_spec()
            ));
        }
    }
}

/// Who may use and administer the keys, written into each key's policy; `None` after a
/// problem (recorded in `env`).
fn read_key_access<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> Option<KeyAccess> {
    let admin = env.required("KEY_ADMIN_ROLE_ARN");
    let users = env.list("KEY_USER_ROLE_ARNS");
    if users.is_empty() {
        env.problem("KEY_USER_ROLE_ARNS is required: the role ARNs (comma-separated) that may sign");
    } else if !admin.is_empty() {
        let peers = env.list("PEER_ADMIN_ROLE_ARNS");
        let policy_admins = env.list("KEY_POLICY_ADMIN_ARNS");
        let access = KeyAccess::new(&admin, &users)
            .and_then(|access| access.with_peer_admins(&peers))
            .and_then(|access| access.with_policy_admins(&policy_admins));
        match access {
            Ok(access) => return Some(access),
            Err(e) => env.problem(format!(
                "KEY_ADMIN_ROLE_ARN / KEY_USER_ROLE_ARNS / PEER_ADMIN_ROLE_ARNS / KEY_POLICY_ADMIN_ARNS: {e}"
            )),
        }
    }
    None
}

/// Settings that would let a verifier reject a valid token, or stall scheduled rotation,
/// are refused outright.
fn check_timing<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>, config: &RotateConfig) {
    if config.rotation_period < config.max_token_ttl {
        env.problem(format!(
            "ROTATION_PERIOD ({}) is shorter than MAX_TOKEN_TTL ({}): keys would pile up faster than their tokens expire",
            show(config.rotation_period),
            show(config.max_token_ttl)
        ));
    }
    if config.rotation_period < config.prepublication() {
        env.problem(format!(
            "ROTATION_PERIOD ({}) is shorter than the pre-publication time ({} = JWKS_MAX_AGE + {} (the longer of 60s stale-while-revalidate and JWKS_STALE_IF_ERROR) + KEYRING_CACHE_TTL + KEYRING_MAX_STALENESS + CLOCK_SKEW): a new key could sign before verifiers have fetched it",
            show(config.rotation_period),
            show(config.prepublication()),
            show(config.jwks_stale_window())
        ));
    }
    if config.max_published_keys < config.keys_published_by_schedule() {
        env.problem(format!(
            "MAX_PUBLISHED_KEYS ({}) is below the {} keys scheduled rotation publishes (next, current, and the previous keys of the last {} = MAX_TOKEN_TTL + CLOCK_SKEW + KEYRING_CACHE_TTL): scheduled rotations would stall",
            config.max_published_keys,
            config.keys_published_by_schedule(),
            show(config.retirement_grace())
        ));
    }
}
