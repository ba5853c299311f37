//! Configuration from environment variables, read and validated once at cold start.
//!
//! Each function reads only the variables it uses. Every problem is collected, so one failed
//! cold start tells the operator everything that needs fixing.

use std::fmt;
use std::time::Duration;

use crate::jose::alg::SigningAlg;

mod jwks;
mod rotate;
mod sign;

pub use jwks::JwksConfig;
pub use rotate::{KeyDiscoveryMode, RotateConfig};
pub use sign::{SignConfig, SignTransport};

/// Time limits of every AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimeouts {
    /// One HTTP attempt, connection included.
    pub attempt: Duration,
    /// The whole call, retries included.
    pub total: Duration,
}

impl Default for CallTimeouts {
    fn default() -> Self {
        CallTimeouts { attempt: Duration::from_secs(2), total: Duration::from_secs(5) }
    }
}

/// How long the sign and jwks functions may serve a keyring from memory.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

/// Default `ROTATION_PERIOD`, read by rotate (the schedule) and jwks (`max-age`).
pub const DEFAULT_ROTATION_PERIOD: Duration = Duration::from_secs(30 * 86_400);

/// How long the jwks function may serve its last good keyring while Secrets Manager fails.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(3_600);

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

    /// `JWKS_STALE_IF_ERROR`, which the jwks function serves and rotate's pre-publication
    /// covers: zero allowed, at most [`crate::jwks::MAX_STALE_IF_ERROR`] (a revoked key must
    /// not stay accepted for days while the jwks endpoint fails).
    pub fn jwks_stale_if_error(&mut self) -> Duration {
        let name = "JWKS_STALE_IF_ERROR";
        let value = self.duration_or_zero(name, crate::jwks::DEFAULT_STALE_IF_ERROR);
        if value > crate::jwks::MAX_STALE_IF_ERROR {
            self.problem(format!(
                "{name} ({}) is longer than {}: verifiers would keep a revoked key that long while the jwks endpoint fails",
                show(value),
                show(crate::jwks::MAX_STALE_IF_ERROR)
            ));
        }
        value
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

pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

pub(crate) fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests;
