//! The commands: each loads what it needs through [`Deployment`], builds a plain report (pure,
//! tested), and renders it as a table or as JSON.

pub mod act;
pub mod doctor;
pub mod jwks;
pub mod plan;
pub mod status;
pub mod verify;

use kms_jwt::config::RotateConfig;
use kms_jwt::rotate::RotationPolicy;
use kms_jwt::{Keyring, UnixTime};

use crate::args::Global;
use crate::aws::{rotate_config, Aws};
use crate::error::CliError;
use crate::render::Style;

/// What every command has: the session's clients, rotate's settings and its lifecycle timing.
pub struct Deployment {
    pub aws: Aws,
    pub config: RotateConfig,
    pub policy: RotationPolicy,
    /// The rotate function, when named.
    pub function: Option<String>,
    /// The issuer, when known (`--issuer`, or ISSUER with `--config-from-env`).
    pub issuer: Option<String>,
    pub now: UnixTime,
}

/// A loaded keyring: the document, its version, or an empty keyring if the secret has none.
pub struct LoadedKeyring {
    pub ring: Keyring,
    pub version: Option<String>,
}

impl Deployment {
    /// Connect and read rotate's settings: from its function configuration, or from this
    /// process's environment with `--config-from-env`.
    pub async fn load(global: &Global) -> Result<Deployment, CliError> {
        let aws = Aws::connect(global).await?;
        let secret = global.secret_id.as_deref();
        let config = if global.config_from_env {
            rotate_config(|name| std::env::var(name).ok(), &aws.region, secret)?
        } else {
            let Some(function) = &global.function_name else {
                return Err(CliError::BadInput(
                    "which deployment? Pass --function-name (or KMS_JWT_ROTATE_FUNCTION): the stack's rotate function, \
                     `aws cloudformation describe-stack-resource --stack-name STACK --logical-resource-id RotateFunction`; \
                     or --config-from-env to read rotate's settings from this environment"
                        .into(),
                ));
            };
            let vars = aws.function_environment(function).await?;
            rotate_config(|name| vars.get(name).cloned(), &aws.region, secret)?
        };
        let issuer = global
            .issuer
            .clone()
            .or_else(|| global.config_from_env.then(|| std::env::var("ISSUER").ok()).flatten());
        Ok(Deployment {
            policy: config.rotation_policy(),
            config,
            function: global.function_name.clone(),
            issuer,
            now: kms_jwt::unix_now(),
            aws,
        })
    }

    /// Every region the keys live in: this one first, then the replicas.
    pub fn regions(&self) -> Vec<String> {
        let mut regions = vec![self.aws.region.clone()];
        for region in &self.config.replica_regions {
            if !regions.contains(region) {
                regions.push(region.clone());
            }
        }
        regions
    }

    /// The keyring in this region; an absent secret reads as an empty keyring.
    pub async fn keyring(&self) -> Result<LoadedKeyring, CliError> {
        Ok(match self.aws.keyring(&self.config.keyring_secret_id, &self.aws.region).await? {
            Some((ring, version)) => LoadedKeyring { ring, version: Some(version) },
            None => LoadedKeyring { ring: Keyring::empty(), version: None },
        })
    }

    /// The rotate function's name, which the acting commands need.
    pub fn function(&self) -> Result<&str, CliError> {
        self.function.as_deref().ok_or_else(|| {
            CliError::BadInput(
                "this command invokes the rotate function: pass --function-name (or KMS_JWT_ROTATE_FUNCTION)"
                    .into(),
            )
        })
    }
}

/// Print a command's human text or its JSON document.
pub fn emit<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(Style) -> String,
    style: Style,
) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Io(std::io::Error::other(e)))?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", human(style))?;
    }
    Ok(())
}
