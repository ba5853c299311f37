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
