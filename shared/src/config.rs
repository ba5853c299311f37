//! Configuration from environment variables, read and validated once at cold start.
//!
//! Each function reads only the variables it uses. Every problem is collected, so one failed
//! cold start tells the operator everything that needs fixing.

use std::fmt;
use std::time::Duration;

use crate::aws::CallTimeouts;
use crate::jose::alg::SigningAlg;
use crate::key_policy::KeyAccess;
use crate::rotate::RotationPolicy;

/// Everything wrong with the environment, one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// One line per problem, naming the variable.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem(s)):", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Reads variables through a lookup function, collecting problems instead of stopping.
pub struct EnvReader<F> {
    lookup: F,
    problems: Vec<String>,
}

impl EnvReader<fn(&str) -> Option<String>> {
    /// Read the process environment.
    pub fn process() -> Self {
        EnvReader::new(|name| std::env::var(name).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> EnvReader<F> {
    /// Read variables through `lookup` (name to value), e.g. a map in tests.
    pub fn new(lookup: F) -> Self {
        EnvReader { lookup, problems: Vec::new() }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// A variable that must be set; missing or blank, it is a problem and reads as empty.
    pub fn required(&mut self, name: &str) -> String {
        self.get(name).unwrap_or_else(|| {
            self.problems.push(format!("{name} is required"));
            String::new()
        })
    }

    /// A variable that may be absent; blank counts as absent.
    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.get(name)
    }

    /// [`Self::verifier_url`], required.
    pub fn required_verifier_url(&mut self, name: &str) -> String {
        if self.get(name).is_none() {
            return self.required(name);
        }
        self.verifier_url(name).unwrap_or_default()
    }

    /// A URL verifiers will fetch or compare (`ISSUER`, `JWKS_URI`); see [`check_verifier_url`].
    pub fn verifier_url(&mut self, name: &str) -> Option<String> {
        let value = self.get(name)?;
        match check_verifier_url(&value) {
            Ok(()) => Some(value),
            Err(why) => {
                self.problems.push(format!("{name} ({value:?}) {why}"));
                None
            }
        }
    }

    /// A JWS algorithm name such as `ES256`; `default` when unset.
    pub fn alg(&mut self, name: &str, default: SigningAlg) -> SigningAlg {
        match self.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|e| {
                self.problems.push(format!("{name}: {e}"));
                default
            }),
        }
    }

    /// A duration such as `30d`, `12h`, `15m`, `900s` or a plain number of seconds.
    pub fn duration(&mut self, name: &str, default: Duration) -> Duration {
        match self.get(name) {
            None => default,
            Some(v) => parse_duration(&v).unwrap_or_else(|e| {
                self.problems.push(format!("{name}: {e}"));
                default
            }),
        }
    }

    /// Like [`Self::duration`], but zero is allowed (a feature turned off).
    pub fn duration_or_zero(&mut self, name: &str, default: Duration) -> Duration {
        match self.get(name).as_deref() {
            Some("0" | "0s") => Duration::ZERO,
            _ => self.duration(name, default),
        }
    }

    /// A whole number within `range`; `default` when unset.
    pub fn integer(&mut self, name: &str, default: i64, range: std::ops::RangeInclusive<i64>) -> i64 {
        let value = match self.get(name) {
            None => return default,
            Some(v) => v.parse::<i64>(),
        };
        match value {
            Ok(n) if range.contains(&n) => n,
            _ => {
                self.problems.push(format!(
                    "{name} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ));
                default
            }
        }
    }

    /// A comma-separated list; empty items are dropped.
    pub fn list(&mut self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',').map(|item| item.trim().to_owned()).filter(|item| !item.is_empty()).collect()
            })
            .unwrap_or_default()
    }

    /// Time limits of every AWS call: `AWS_CALL_ATTEMPT_TIMEOUT` (one attempt, default 2 s)
    /// and `AWS_CALL_TIMEOUT` (the whole call with retries, default 5 s).
    pub fn call_timeouts(&mut self) -> CallTimeouts {
        let defaults = CallTimeouts::default();
        let timeouts = CallTimeouts {
            attempt: self.duration("AWS_CALL_ATTEMPT_TIMEOUT", defaults.attempt),
            total: self.duration("AWS_CALL_TIMEOUT", defaults.total),
        };
        if timeouts.attempt > timeouts.total {
            self.problem("AWS_CALL_ATTEMPT_TIMEOUT is longer than AWS_CALL_TIMEOUT");
        }
        timeouts
    }

    /// Record a cross-field problem.
    pub fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    /// `value` if nothing was wrong, else every problem recorded, in one error.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError { problems: self.problems })
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration like 30d, 12h, 15m or 900s ({e})"))?,
    };
    if parsed.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(parsed)
}

/// What AWS's JWT verifiers accept as an issuer or key set URL: absolute `https` (API Gateway's
/// REST API JWT authorizer: "an absolute https URL with no query string or fragment"; ALB: the
/// JWKS endpoint "including the HTTPS protocol"), compared with `iss` character for character,
/// so no trailing slash either (the discovery path is appended to it). Plain `http` is allowed
/// on loopback only, for local development.
pub fn check_verifier_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("is not an absolute URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err("has no host".into()),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("must be https (AWS's JWT verifiers fetch only https; http is for loopback)".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query string or fragment".into());
    }
    if text.ends_with('/') {
        return Err("must not end with a slash: verifiers compare the issuer with `iss` exactly".into());
    }
    if text.len() > 256 {
        return Err("is longer than 256 characters (ALB's limit for the issuer and JWKS endpoint)".into());
    }
    Ok(())
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// How long the sign and jwks functions may serve a keyring from memory.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

/// How rotate finds keys by tag (`KEY_DISCOVERY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDiscoveryMode {
    /// `tagging-api` (default): Resource Groups Tagging API, one call however many keys.
    TaggingApi,
    /// `list-keys`: list the account's keys a page at a time (LocalStack).
    ListKeys,
}

/// How long the jwks function may serve its last good keyring while Secrets Manager fails.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(3_600);

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
    /// The `max-age` the jwks function sends (`JWKS_MAX_AGE`, default 5 minutes), part of the
    /// pre-publication time.
    pub jwks_max_age: Duration,
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
            rotation_period: env.duration("ROTATION_PERIOD", Duration::from_secs(30 * 86_400)),
            max_token_ttl: env.duration("MAX_TOKEN_TTL", Duration::from_secs(3_600)),
            jwks_max_age: env.duration("JWKS_MAX_AGE", Duration::from_secs(300)),
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
        };
        check_regions(&mut env, &config);
        // The KMS key spec rotate's IAM policy lets it create (the template's `KeySpec`): a
        // spec that does not match SIGNING_ALG would fail every CreateKey on AWS. LocalStack
        // does not check the pair, KMS and IAM do; so it is refused here, at cold start.
        if let Some(spec) = env.optional("KEY_SPEC") {
            if spec != config.signing_alg.kms_key_spec() {
                let fits = SigningAlg::for_key_spec(&spec);
                let fits = if fits.is_empty() {
                    "no JWS algorithm kms-jwt signs with".to_owned()
                } else {
                    fits.iter().map(|alg| alg.as_str()).collect::<Vec<_>>().join(" or ")
                };
                env.problem(format!(
                    "KEY_SPEC {spec} does not match SIGNING_ALG {} (which needs {}); {spec} keys sign {fits}",
                    config.signing_alg,
                    config.signing_alg.kms_key_spec()
                ));
            }
        }
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
                Ok(access) => config.key_access = Some(access),
                Err(e) => env.problem(format!(
                    "KEY_ADMIN_ROLE_ARN / KEY_USER_ROLE_ARNS / PEER_ADMIN_ROLE_ARNS / KEY_POLICY_ADMIN_ARNS: {e}"
                )),
            }
        }
        // Settings that would let a verifier reject a valid token are refused outright.
        if config.rotation_period < config.max_token_ttl {
            env.problem(format!(
                "ROTATION_PERIOD ({}) is shorter than MAX_TOKEN_TTL ({}): keys would pile up faster than their tokens expire",
                show(config.rotation_period),
                show(config.max_token_ttl)
            ));
        }
        if config.rotation_period < config.prepublication() {
            env.problem(format!(
                "ROTATION_PERIOD ({}) is shorter than the pre-publication time ({} = JWKS_MAX_AGE + 60s stale-while-revalidate + KEYRING_CACHE_TTL + KEYRING_MAX_STALENESS + CLOCK_SKEW): a new key could sign before verifiers have fetched it",
                show(config.rotation_period),
                show(config.prepublication())
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
        env.finish(config)
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
    /// JWKS cache (max-age, stale-while-revalidate) to have been refilled from a jwks container
    /// that has itself picked the key up, even one serving its last good keyring through a
    /// Secrets Manager outage (KEYRING_MAX_STALENESS past its cache TTL).
    pub fn prepublication(&self) -> Duration {
        self.jwks_max_age
            + crate::jwks::STALE_WHILE_REVALIDATE
            + self.keyring_cache_ttl
            + self.jwks_max_staleness
            + self.clock_skew
    }

    /// How long a previous key stays published after it stopped being current: its last
    /// token may have been signed up to one sign-cache lifetime later, and lives MAX_TOKEN_TTL.
    pub fn retirement_grace(&self) -> Duration {
        self.max_token_ttl + self.clock_skew + self.keyring_cache_ttl
    }
}

/// Settings of the sign function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignConfig {
    /// Name or ARN of the Secrets Manager secret that holds the keyring (`KEYRING_SECRET_ID`).
    pub keyring_secret_id: String,
    /// The `iss` of every token (`ISSUER`); see [`check_verifier_url`].
    pub issuer: String,
    /// Longest lifetime a request may ask for (`MAX_TOKEN_TTL`, default 1 hour).
    pub max_token_ttl: Duration,
    /// Lifetime of a token whose request names none (`DEFAULT_TOKEN_TTL`, default 15 minutes or
    /// `MAX_TOKEN_TTL` if shorter).
    pub default_token_ttl: Duration,
    /// How long the current key is taken from memory before the keyring is read again
    /// (`KEYRING_CACHE_TTL`, default 60 s).
    pub keyring_cache_ttl: Duration,
    /// Time limits of every AWS call (`AWS_CALL_ATTEMPT_TIMEOUT`, `AWS_CALL_TIMEOUT`).
    pub aws_timeouts: CallTimeouts,
    /// The function's region (`AWS_REGION`, set by Lambda): a multi-Region key signs through
    /// its replica here.
    pub region: Option<String>,
}

impl SignConfig {
    /// Read and check the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = EnvReader::new(lookup);
        let max_token_ttl = env.duration("MAX_TOKEN_TTL", Duration::from_secs(3_600));
        let config = SignConfig {
            keyring_secret_id: env.required("KEYRING_SECRET_ID"),
            issuer: env.required_verifier_url("ISSUER"),
            default_token_ttl: env.duration("DEFAULT_TOKEN_TTL", Duration::from_secs(900).min(max_token_ttl)),
            max_token_ttl,
            keyring_cache_ttl: env.duration("KEYRING_CACHE_TTL", DEFAULT_CACHE_TTL),
            aws_timeouts: env.call_timeouts(),
            region: env.optional("AWS_REGION"),
        };
        if config.default_token_ttl > config.max_token_ttl {
            env.problem("DEFAULT_TOKEN_TTL is longer than MAX_TOKEN_TTL");
        }
        env.finish(config)
    }

    /// The signer the sign function runs: tokens from `ISSUER`, `DEFAULT_TOKEN_TTL` long unless
    /// a request asks for up to `MAX_TOKEN_TTL`; the keyring cached for `KEYRING_CACHE_TTL` and
    /// never served stale, because signing with a retired key would mint unverifiable tokens.
    pub fn token_signer<K, S>(&self, kms: K, store: S) -> crate::signer::TokenSigner<K, S>
    where
        K: crate::ports::KeySigner,
        S: crate::ports::KeyringStore,
    {
        use crate::cache::{CachePolicy, KeyringCache};
        use crate::signer::{signing_key_in, TokenSigner};
        let keyring = KeyringCache::new(
            store,
            CachePolicy { ttl: self.keyring_cache_ttl, max_staleness: Duration::ZERO },
            signing_key_in(self.region.clone()),
        );
        TokenSigner::new(kms, keyring, self.issuer.clone(), self.default_token_ttl, self.max_token_ttl)
    }
}

/// Settings of the jwks function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    /// Name or ARN of the Secrets Manager secret that holds the keyring (`KEYRING_SECRET_ID`).
    pub keyring_secret_id: String,
    /// The issuer the discovery document names (`ISSUER`): the sign function's, character for
    /// character.
    pub issuer: String,
    /// Overrides the `jwks_uri` of the discovery document (default: ISSUER + well-known path).
    pub jwks_uri: Option<String>,
    /// The `max-age` of the served documents (`JWKS_MAX_AGE`, default 5 minutes).
    pub jwks_max_age: Duration,
    /// How long the rendered documents are served from memory before the keyring is read again
    /// (`KEYRING_CACHE_TTL`, default 60 s).
    pub keyring_cache_ttl: Duration,
    /// How long the last good keyring may be served while Secrets Manager fails.
    pub max_staleness: Duration,
    /// Time limits of every AWS call (`AWS_CALL_ATTEMPT_TIMEOUT`, `AWS_CALL_TIMEOUT`).
    pub aws_timeouts: CallTimeouts,
}

impl JwksConfig {
    /// Read and check the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = EnvReader::new(lookup);
        let config = JwksConfig {
            keyring_secret_id: env.required("KEYRING_SECRET_ID"),
            issuer: env.required_verifier_url("ISSUER"),
            jwks_uri: env.verifier_url("JWKS_URI"),
            jwks_max_age: env.duration("JWKS_MAX_AGE", Duration::from_secs(300)),
            keyring_cache_ttl: env.duration("KEYRING_CACHE_TTL", DEFAULT_CACHE_TTL),
            max_staleness: env.duration_or_zero("KEYRING_MAX_STALENESS", DEFAULT_MAX_STALENESS),
            aws_timeouts: env.call_timeouts(),
        };
        env.finish(config)
    }

    /// The jwks function's service over `store`: this configuration's site and cache policy.
    pub fn jwks_service<S: crate::ports::KeyringStore>(&self, store: S) -> crate::jwks::JwksService<S> {
        let site = crate::jwks::Site::new(&self.issuer, self.jwks_uri.as_deref(), self.jwks_max_age);
        let policy =
            crate::cache::CachePolicy { ttl: self.keyring_cache_ttl, max_staleness: self.max_staleness };
        crate::jwks::JwksService::new(store, site, policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    const ROLES: [(&str, &str); 2] = [
        ("KEY_ADMIN_ROLE_ARN", "arn:aws:iam::123456789012:role/rotate"),
        ("KEY_USER_ROLE_ARNS", "arn:aws:iam::123456789012:role/sign, arn:aws:iam::123456789012:role/sign2"),
    ];

    /// A rotate environment: the roles plus `pairs`.
    fn rotate_env(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let mut all = ROLES.to_vec();
        all.extend_from_slice(pairs);
        lookup(&all)
    }

    #[test]
    fn defaults_apply_and_durations_parse() {
        let c =
            RotateConfig::from_lookup(rotate_env(&[("KEYRING_SECRET_ID", "kr"), ("ROTATION_PERIOD", "7d")]))
                .unwrap();
        // RS256 is the one algorithm every AWS verifier accepts (API Gateway HTTP API JWT
        // authorizers and ALB take RSA only).
        assert_eq!(c.signing_alg, SigningAlg::RS256);
        assert_eq!(c.rotation_period, Duration::from_secs(7 * 86_400));
        assert_eq!(c.deletion_window_days, 30);
        assert_eq!(
            c.prepublication(),
            Duration::from_secs(300 + 60 + 60 + 3_600 + 60),
            "max-age + stale-while-revalidate + cache TTL + jwks max staleness + clock skew"
        );
        assert_eq!(c.key_discovery, KeyDiscoveryMode::TaggingApi);
        assert_eq!(c.aws_timeouts, CallTimeouts::default());
        let policy = c.key_access.unwrap().policy(SigningAlg::ES256).to_string();
        assert!(policy.contains("role/sign2"), "{policy}");
        let c = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("MAX_TOKEN_TTL", "900"),
            ("KEYRING_MAX_STALENESS", "0"),
            ("KEY_DISCOVERY", "list-keys"),
            ("AWS_CALL_ATTEMPT_TIMEOUT", "1"),
            ("AWS_CALL_TIMEOUT", "3s"),
        ]))
        .unwrap();
        assert_eq!(c.max_token_ttl, Duration::from_secs(900));
        assert_eq!(c.prepublication(), Duration::from_secs(300 + 60 + 60 + 60));
        assert_eq!(c.key_discovery, KeyDiscoveryMode::ListKeys);
        assert_eq!(
            c.aws_timeouts,
            CallTimeouts { attempt: Duration::from_secs(1), total: Duration::from_secs(3) }
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = RotateConfig::from_lookup(lookup(&[
            ("SIGNING_ALG", "HS256"),
            ("ROTATION_PERIOD", "soon"),
            ("KEY_DELETION_WINDOW_DAYS", "3"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 6, "{text}");
        for needle in [
            "KEYRING_SECRET_ID",
            "SIGNING_ALG",
            "ROTATION_PERIOD",
            "KEY_DELETION_WINDOW_DAYS",
            "KEY_ADMIN_ROLE_ARN",
            "KEY_USER_ROLE_ARNS",
        ] {
            assert!(text.contains(needle), "{needle} missing from: {text}");
        }
    }

    #[test]
    fn key_roles_and_timeouts_are_validated() {
        let err = RotateConfig::from_lookup(lookup(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("KEY_ADMIN_ROLE_ARN", "arn:aws:iam::123456789012:user/alice"),
            ("KEY_USER_ROLE_ARNS", "arn:aws:iam::123456789012:role/sign"),
            ("KEY_DISCOVERY", "scan"),
            ("AWS_CALL_ATTEMPT_TIMEOUT", "10s"),
            ("AWS_CALL_TIMEOUT", "5s"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        for needle in ["not an IAM role ARN", "KEY_DISCOVERY", "AWS_CALL_ATTEMPT_TIMEOUT is longer"] {
            assert!(text.contains(needle), "{needle} missing from: {text}");
        }
    }

    #[test]
    fn issuer_and_jwks_uri_are_urls_aws_verifiers_accept() {
        for good in [
            "https://auth.example.com",
            "https://auth.example.com/tenant-a",
            "http://127.0.0.1:9000/lambda-url/jwks",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            assert_eq!(check_verifier_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("auth.example.com", "absolute URL"),
            ("http://auth.example.com", "must be https"),
            ("ftp://auth.example.com", "must be https"),
            ("https://auth.example.com/", "slash"),
            ("https://auth.example.com/t/", "slash"),
            ("https://auth.example.com?tenant=a", "query"),
            ("https://auth.example.com#a", "fragment"),
            ("https://user:pw@auth.example.com", "credentials"),
        ] {
            let err = check_verifier_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long = format!("https://auth.example.com/{}", "a".repeat(240));
        assert!(check_verifier_url(&long).unwrap_err().contains("256"));
        let err = JwksConfig::from_lookup(lookup(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("ISSUER", "https://auth.example.com/"),
            ("JWKS_URI", "http://keys.example.com/jwks.json"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        let err = SignConfig::from_lookup(lookup(&[("KEYRING_SECRET_ID", "kr")])).unwrap_err();
        assert_eq!(err.problems, vec!["ISSUER is required".to_string()]);
    }

    #[test]
    fn replica_regions_are_optional_and_checked() {
        let single = RotateConfig::from_lookup(rotate_env(&[("KEYRING_SECRET_ID", "kr")])).unwrap();
        assert!(!single.is_multi_region());
        let multi = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("AWS_REGION", "us-east-1"),
            ("REPLICA_REGIONS", "eu-west-1, ap-southeast-2"),
        ]))
        .unwrap();
        assert_eq!(multi.replica_regions, ["eu-west-1", "ap-southeast-2"]);
        for (regions, problem) in [
            ("eu-west-1,eu-west-1", "names eu-west-1 twice"),
            ("us-east-1", "includes the home region us-east-1"),
            ("EU-WEST-1", "is not a region name"),
            ("eu-west", "is not a region name"),
        ] {
            let err = RotateConfig::from_lookup(rotate_env(&[
                ("KEYRING_SECRET_ID", "kr"),
                ("AWS_REGION", "us-east-1"),
                ("REPLICA_REGIONS", regions),
            ]))
            .unwrap_err();
            assert!(err.to_string().contains(problem), "{regions}: {err}");
        }
        let err = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("REPLICA_REGIONS", "eu-west-1"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("need AWS_REGION"), "{err}");
        // A home region alone (a two-region deployment after a fail-over) is multi-region too.
        let home_only = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("AWS_REGION", "eu-west-1"),
            ("HOME_REGION", "eu-west-1"),
        ]))
        .unwrap();
        assert!(home_only.is_multi_region());
    }

    #[test]
    fn the_published_key_cap_defaults_to_albs_and_must_leave_room_for_scheduled_rotation() {
        let c = RotateConfig::from_lookup(rotate_env(&[("KEYRING_SECRET_ID", "kr")])).unwrap();
        assert_eq!(c.max_published_keys, 10);
        assert_eq!(c.keys_published_by_schedule(), 3, "next, current, one previous");
        // Daily rotation with day-long tokens: the grace (1d + 2m) spans two periods, so two
        // previous keys are published at once.
        let day =
            rotate_env(&[("KEYRING_SECRET_ID", "kr"), ("ROTATION_PERIOD", "1d"), ("MAX_TOKEN_TTL", "1d")]);
        let c = RotateConfig::from_lookup(day).unwrap();
        assert_eq!(c.keys_published_by_schedule(), 4, "grace = 1d + 2m spans two rotation periods");
        for (value, problem) in [("2", "from 3 to 100"), ("101", "from 3 to 100"), ("ten", "from 3 to 100")] {
            let err = RotateConfig::from_lookup(rotate_env(&[
                ("KEYRING_SECRET_ID", "kr"),
                ("MAX_PUBLISHED_KEYS", value),
            ]))
            .unwrap_err();
            assert!(err.to_string().contains(problem), "{value}: {err}");
        }
        let err = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("ROTATION_PERIOD", "1d"),
            ("MAX_TOKEN_TTL", "1d"),
            ("MAX_PUBLISHED_KEYS", "3"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("below the 4 keys scheduled rotation publishes"), "{err}");
    }

    #[test]
    fn settings_that_break_verifiers_are_refused() {
        let err = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("ROTATION_PERIOD", "30m"),
            ("MAX_TOKEN_TTL", "1h"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("shorter than MAX_TOKEN_TTL"), "{err}");
        let err = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("ROTATION_PERIOD", "1h"),
            ("MAX_TOKEN_TTL", "5m"),
            ("JWKS_MAX_AGE", "2h"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("pre-publication"), "{err}");
        // The jwks function's stale window counts: a key must not sign while a jwks container
        // may still serve a keyring without it.
        let err = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("ROTATION_PERIOD", "2h"),
            ("MAX_TOKEN_TTL", "5m"),
            ("KEYRING_MAX_STALENESS", "3h"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("KEYRING_MAX_STALENESS"), "{err}");
    }

    #[test]
    fn new_algorithms_are_accepted_and_key_spec_must_match() {
        for (alg, spec) in [
            ("ES256K", "ECC_SECG_P256K1"),
            ("EdDSA", "ECC_NIST_EDWARDS25519"),
            ("Ed25519", "ECC_NIST_EDWARDS25519"),
            ("ML-DSA-44", "ML_DSA_44"),
            ("ML-DSA-65", "ML_DSA_65"),
            ("ML-DSA-87", "ML_DSA_87"),
        ] {
            let c = RotateConfig::from_lookup(rotate_env(&[
                ("KEYRING_SECRET_ID", "kr"),
                ("SIGNING_ALG", alg),
                ("KEY_SPEC", spec),
            ]))
            .unwrap();
            assert_eq!((c.signing_alg.as_str(), c.signing_alg.kms_key_spec()), (alg, spec));
        }
        for (alg, spec, problem) in [
            ("EdDSA", "ECC_NIST_P256", "KEY_SPEC ECC_NIST_P256 does not match SIGNING_ALG EdDSA (which needs ECC_NIST_EDWARDS25519); ECC_NIST_P256 keys sign ES256"),
            ("ML-DSA-65", "ML_DSA_44", "ML_DSA_44 keys sign ML-DSA-44"),
            ("ES256K", "ECC_NIST_P256", "which needs ECC_SECG_P256K1"),
            ("RS256", "RSA_3072", "RSA_3072 keys sign RS384 or PS384"),
            ("ES256", "SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT keys sign no JWS algorithm"),
        ] {
            let err = RotateConfig::from_lookup(rotate_env(&[
                ("KEYRING_SECRET_ID", "kr"),
                ("SIGNING_ALG", alg),
                ("KEY_SPEC", spec),
            ]))
            .unwrap_err();
            assert!(err.to_string().contains(problem), "{alg}/{spec}: {err}");
        }
        let err = RotateConfig::from_lookup(rotate_env(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("SIGNING_ALG", "ML-DSA-42"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("ML-DSA-44, ML-DSA-65, ML-DSA-87"), "{err}");
    }

    #[test]
    fn sign_and_jwks_need_an_issuer() {
        let err = SignConfig::from_lookup(lookup(&[("KEYRING_SECRET_ID", "kr")])).unwrap_err();
        assert_eq!(err.problems, vec!["ISSUER is required".to_string()]);
        let err = JwksConfig::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(err.problems.len(), 2);
        let c = SignConfig::from_lookup(lookup(&[
            ("KEYRING_SECRET_ID", "kr"),
            ("ISSUER", "https://i"),
            ("MAX_TOKEN_TTL", "5m"),
        ]))
        .unwrap();
        assert_eq!(c.default_token_ttl, Duration::from_secs(300), "default TTL is capped by the maximum");
    }
}
