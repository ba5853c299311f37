//! `kms-jwt status`: every key and its KMS state per region, the next scheduled transition,
//! held rotations, pending intents, the retirement queue, the regions. Exit 1 when something
//! needs attention.
//!
//! [`observe`] reads AWS; the rest is pure: [`build`] makes the report from what was observed,
//! its attention rules decide the exit code, [`render`] prints it for humans.

mod attention;
mod build;
mod model;
mod render;

use std::collections::HashMap;

pub use self::build::build;
pub use self::model::{Observed, StatusReport};
pub use self::render::{describe_run, render};
use super::{emit, Deployment};
use crate::error::{CliError, Outcome};
use crate::render::Style;

/// Read everything `status` shows.
pub async fn observe(d: &Deployment) -> Result<Observed, CliError> {
    let loaded = d.aws.keyring(&d.config.keyring_secret_id, &d.aws.region).await?;
    let Some((ring, version)) = loaded else {
        return Err(CliError::Keyring(format!(
            "keyring secret {} not found in {} (or it has no value yet): check --secret-id / KEYRING_SECRET_ID and --region; a new deployment is bootstrapped by rotate's first run (`kms-jwt rotate`)",
            d.config.keyring_secret_id, d.aws.region
        )));
    };
    let regions = d.regions();
    let mut kms = HashMap::new();
    let arns = ring
        .keys
        .iter()
        .map(|k| (&k.kid, &k.kms_key_arn))
        .chain(ring.retiring.iter().map(|k| (&k.kid, &k.kms_key_arn)));
    for (kid, arn) in arns {
        let mut states = Vec::new();
        for region in &regions {
            states.push(d.aws.key_state(arn, region).await);
        }
        kms.insert(kid.clone(), states);
    }
    let mut replicas = Vec::new();
    for region in regions.iter().skip(1) {
        let copy = d.aws.keyring(&d.config.keyring_secret_id, region).await.ok().flatten().map(|(r, _)| r);
        replicas.push((region.clone(), copy));
    }
    Ok(Observed { ring, version: Some(version), kms, replicas })
}

pub async fn run(d: &Deployment, json: bool, style: Style) -> Result<Outcome, CliError> {
    let observed = observe(d).await?;
    let report = build(observed, &d.policy, &d.aws.region, &d.config.keyring_secret_id, d.now);
    emit(json, &report, |style| render(&report, style), style)?;
    Ok(attention::outcome(&report))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::aws::KmsState;
    use kms_jwt::jose::jwk::PublicJwk;
    use kms_jwt::keyring::NewKey;
    use kms_jwt::rotate::{RotationPolicy, Transition};
    use kms_jwt::{Keyring, SigningAlg, UnixTime};

    pub const T0: UnixTime = 1_700_000_000;

    pub fn key(seed: u8, at: UnixTime) -> NewKey {
        use base64::Engine;
        let b = |n: u8| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([n; 32]);
        let jwk = PublicJwk::Ec { crv: "P-256".into(), x: b(seed), y: b(seed.wrapping_add(1)) };
        NewKey {
            kid: jwk.thumbprint(),
            alg: SigningAlg::ES256,
            kms_key_arn: format!("arn:aws:kms:us-east-1:000000000000:key/{seed}"),
            public_jwk: jwk,
            created_at: at,
        }
    }

    pub fn policy() -> RotationPolicy {
        RotationPolicy {
            alg: SigningAlg::ES256,
            rotation_period: 30 * 86_400,
            prepublication: 1_200,
            retirement_grace: 3_720,
            deletion_window_days: 30,
            max_published_keys: 10,
        }
    }

    pub fn ring() -> Keyring {
        Keyring::empty().bootstrap(key(1, T0), key(2, T0), T0).rotate(key(3, T0 + 86_400), T0 + 86_400)
    }

    pub fn enabled(ring: &Keyring) -> HashMap<String, Vec<KmsState>> {
        ring.keys
            .iter()
            .map(|k| {
                (
                    k.kid.clone(),
                    vec![KmsState { region: "us-east-1".into(), state: "Enabled".into(), detail: None }],
                )
            })
            .collect()
    }

    #[test]
    fn a_healthy_keyring_needs_nothing_and_names_its_next_transition() {
        let ring = ring();
        let now = T0 + 86_400 + 600;
        let observed = Observed {
            kms: enabled(&ring),
            ring: ring.clone(),
            version: Some("v1".into()),
            replicas: vec![],
        };
        let report = build(observed, &policy(), "us-east-1", "kr", now);
        assert!(report.attention.is_empty(), "{:?}", report.attention);
        let next = report.next_transition.as_ref().unwrap();
        // The previous key retires after the grace (token lifetime, skew, cache).
        assert_eq!(next.at, T0 + 86_400 + 3_720);
        assert_eq!(next.transitions, vec![Transition::Retire]);
        let text = render(&report, Style::plain());
        assert!(text.contains("next transition: in 52 m"), "{text}");
        assert!(text.contains("nothing needs attention"), "{text}");
        let header = text.lines().nth(2).unwrap();
        assert!(header.starts_with("KID") && header.contains("CURRENT SINCE"), "{text}");
        // The previous key of the rotation retires after the grace, and the table says so.
        assert!(text.contains("previous  ES256"), "{text}");
    }
}
