//! The jwks function's settings.

use std::time::Duration;

use super::{CallTimeouts, ConfigError, EnvReader, DEFAULT_CACHE_TTL, DEFAULT_MAX_STALENESS};

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
    /// The largest `max-age` of the served documents (`JWKS_MAX_AGE`, default 5 minutes).
    pub jwks_max_age: Duration,
    /// The `stale-if-error` of the served documents (`JWKS_STALE_IF_ERROR`, default 15
    /// minutes, at most a day): rotate's pre-publication covers it, so it must be rotate's.
    pub stale_if_error: Duration,
    /// Rotate's `ROTATION_PERIOD` (default 30 days): `max-age` never reaches past the next
    /// scheduled publication. Must be rotate's: a longer one only lets `max-age` reach the
    /// cap near rotations, a shorter one only shrinks it sooner (pre-publication still covers
    /// the cap).
    pub rotation_period: Duration,
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
            stale_if_error: env.jwks_stale_if_error(),
            rotation_period: env.duration("ROTATION_PERIOD", super::DEFAULT_ROTATION_PERIOD),
            keyring_cache_ttl: env.duration("KEYRING_CACHE_TTL", DEFAULT_CACHE_TTL),
            max_staleness: env.duration_or_zero("KEYRING_MAX_STALENESS", DEFAULT_MAX_STALENESS),
            aws_timeouts: env.call_timeouts(),
        };
        env.finish(config)
    }

    /// What the served documents say and their caching headers.
    pub fn site(&self) -> crate::jwks::Site {
        crate::jwks::Site::new(&self.issuer, self.jwks_uri.as_deref(), self.jwks_max_age)
            .with_stale_if_error(self.stale_if_error)
            .with_rotation_period(self.rotation_period)
    }

    /// The jwks function's service over `store`: this configuration's site and cache policy.
    pub fn jwks_service<S: crate::ports::KeyringStore>(&self, store: S) -> crate::jwks::JwksService<S> {
        let site = self.site();
        let policy =
            crate::cache::CachePolicy { ttl: self.keyring_cache_ttl, max_staleness: self.max_staleness };
        crate::jwks::JwksService::new(store, site, policy)
    }
}
