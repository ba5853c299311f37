//! The sign function's settings.

use std::time::Duration;

use super::{CallTimeouts, ConfigError, EnvReader, DEFAULT_CACHE_TTL};

/// How long past its TTL a stored minting policy stays in force while SSM fails, unless
/// `MINTING_POLICY_MAX_STALENESS` says otherwise: long enough to ride out a throttling burst
/// or a short outage, short enough that a narrowed policy is not held off for long.
pub const DEFAULT_POLICY_MAX_STALENESS: Duration = Duration::from_secs(300);
use crate::minting::{parse_policy, MintingPolicy};

/// How requests reach a sign function, fixed per deployment (`SIGN_TRANSPORT`): it decides
/// where the caller's identity may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignTransport {
    /// `direct` (the default): Lambda `Invoke` by trusted backends. The payload is a sign
    /// request and nothing else; no request context is read, so none can be forged.
    #[default]
    Direct,
    /// `api-gateway`: only API Gateway invokes the function (its resource policy names the
    /// API), and the caller is the IAM principal API Gateway's IAM authorization attests.
    ApiGateway,
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
    /// Who may mint what, fixed at cold start (`MINTING_POLICY`, a policy document;
    /// docs/minting.md). A document that does not validate stops the cold start.
    pub minting_policy: Option<MintingPolicy>,
    /// Or the SSM parameter holding the policy (`MINTING_POLICY_PARAMETER`: a name, an ARN, or
    /// either with `:version` to pin one), re-read once per `KEYRING_CACHE_TTL`. At most one
    /// of the two is set; neither: no rule, every request is refused.
    pub minting_policy_parameter: Option<String>,
    /// How long past its TTL a stored policy may stay in force while SSM fails
    /// (`MINTING_POLICY_MAX_STALENESS`, default 5 minutes; `0`: refuse at once).
    pub minting_policy_max_staleness: Duration,
    /// How requests arrive (`SIGN_TRANSPORT`: `direct` or `api-gateway`).
    pub transport: SignTransport,
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
        let minting_policy = env.optional("MINTING_POLICY").and_then(|text| match parse_policy(&text) {
            Ok(policy) => Some(policy),
            Err(e) => {
                e.problems.iter().for_each(|p| env.problem(format!("MINTING_POLICY: {p}")));
                None
            }
        });
        let minting_policy_parameter = env.optional("MINTING_POLICY_PARAMETER");
        if minting_policy.is_some() && minting_policy_parameter.is_some() {
            env.problem(
                "MINTING_POLICY and MINTING_POLICY_PARAMETER are both set: choose one home for the policy",
            );
        }
        let transport = match env.optional("SIGN_TRANSPORT").as_deref() {
            None | Some("direct") => SignTransport::Direct,
            Some("api-gateway") => SignTransport::ApiGateway,
            Some(other) => {
                env.problem(format!("SIGN_TRANSPORT ({other:?}) must be direct or api-gateway"));
                SignTransport::Direct
            }
        };
        let config = SignConfig {
            keyring_secret_id: env.required("KEYRING_SECRET_ID"),
            issuer: env.required_verifier_url("ISSUER"),
            default_token_ttl: env.duration("DEFAULT_TOKEN_TTL", Duration::from_secs(900).min(max_token_ttl)),
            max_token_ttl,
            keyring_cache_ttl: env.duration("KEYRING_CACHE_TTL", DEFAULT_CACHE_TTL),
            aws_timeouts: env.call_timeouts(),
            region: env.optional("AWS_REGION"),
            minting_policy,
            minting_policy_parameter,
            minting_policy_max_staleness: env
                .duration_or_zero("MINTING_POLICY_MAX_STALENESS", DEFAULT_POLICY_MAX_STALENESS),
            transport,
        };
        if config.default_token_ttl > config.max_token_ttl {
            env.problem("DEFAULT_TOKEN_TTL is longer than MAX_TOKEN_TTL");
        }
        env.finish(config)
    }

    /// The signer the sign function runs with the policy of `MINTING_POLICY` (nothing is
    /// allowed when it is unset): see [`Self::token_signer_with_policy`].
    pub fn token_signer<K, S>(&self, kms: K, store: S) -> crate::signer::TokenSigner<K, S>
    where
        K: crate::ports::KeySigner,
        S: crate::ports::KeyringStore,
    {
        let policy = self.minting_policy.clone().unwrap_or_else(|| {
            if self.minting_policy_parameter.is_some() {
                tracing::error!("MINTING_POLICY_PARAMETER is set but no parameter store was wired: every sign request is refused");
            } else {
                tracing::warn!("MINTING_POLICY is not set: every sign request is refused (NotAllowed)");
            }
            crate::minting::MintingPolicy::refuse_all()
        });
        self.signer_with(kms, store, crate::minting::PolicySource::fixed(policy))
    }

    /// The signer of a deployment whose policy is stored (`MINTING_POLICY_PARAMETER`):
    /// `policy_store` read once per `KEYRING_CACHE_TTL`, the last valid version kept when a
    /// new one does not validate, and kept through a store outage for
    /// `MINTING_POLICY_MAX_STALENESS` at most.
    pub fn token_signer_with_policy<K, S, P>(
        &self,
        kms: K,
        store: S,
        policy_store: P,
    ) -> crate::signer::TokenSigner<K, S>
    where
        K: crate::ports::KeySigner,
        S: crate::ports::KeyringStore,
        P: crate::ports::DocumentSource + 'static,
    {
        let timing = crate::cache::CachePolicy {
            ttl: self.keyring_cache_ttl,
            max_staleness: self.minting_policy_max_staleness,
        };
        self.signer_with(kms, store, crate::minting::PolicySource::stored(policy_store, timing))
    }

    /// Tokens from `ISSUER`, `DEFAULT_TOKEN_TTL` long unless a request asks for up to
    /// `MAX_TOKEN_TTL`, only what `policy` allows; the keyring cached for `KEYRING_CACHE_TTL`
    /// and never served stale, because signing with a retired key would mint unverifiable
    /// tokens.
    fn signer_with<K, S>(
        &self,
        kms: K,
        store: S,
        policy: crate::minting::PolicySource,
    ) -> crate::signer::TokenSigner<K, S>
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
            .with_policy_source(policy)
    }
}

/// The configuration tests start from (`test-util` only), as `RotationPolicy::for_tests` is
/// for rotation: tests build their signers with the code the deployed function runs
/// ([`SignConfig::token_signer`]), so a test signer is wired like the deployed one.
#[cfg(any(test, feature = "test-util"))]
impl SignConfig {
    /// The sign function's configuration with `ISSUER` = `issuer`, the single-Region test
    /// stack's keyring, the allow-all minting policy and every other setting at its default
    /// (direct transport): tokens 15 minutes long unless a
    /// request asks for up to an hour, the keyring cached 60 s and never served stale, no
    /// region. Tests override one value with struct update syntax where they are about it
    /// (`keyring_cache_ttl: Duration::ZERO` reads the keyring afresh for every token).
    ///
    /// Panics if the sign function would refuse `issuer`: a mistake in the test.
    #[allow(clippy::expect_used)]
    pub fn for_tests(issuer: &str) -> SignConfig {
        let keyring = crate::test_stacks::single_region_keyring();
        SignConfig::from_lookup(|name| match name {
            "KEYRING_SECRET_ID" => Some(keyring.clone()),
            "ISSUER" => Some(issuer.to_owned()),
            // What sign did before minting policies; tests about the policy set their own.
            "MINTING_POLICY" => Some(crate::minting::ALLOW_ALL_POLICY.to_owned()),
            _ => None,
        })
        .expect("an ISSUER the sign function accepts")
    }
}
