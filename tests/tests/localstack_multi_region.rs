//! Multi-region on LocalStack, through the real AWS adapters: rotate in `us-east-1` with
//! replicas in `eu-west-1` and `ap-southeast-2`. Keys are KMS multi-Region keys replicated with
//! `ReplicateKey`; the keyring secret is created with replica regions, as the template does.
//! Each region signs through its own replica key and reads its own replica secret; every token
//! verifies against every region's JWKS in `jsonwebtoken`, `jose` and `aws-jwt-verify`.
//!
//! LocalStack serves every region from one process and replicates secrets at once (AWS does
//! it eventually), so lag is modelled on the twins (`multi_region.rs`); here a replica region
//! is made unreachable through the fault proxy, which holds rotation back until it returns.
//!
//! LocalStack 4.13.1 fails `GetSecretValue` on a replica secret (an internal error,
//! "'ReplicaSecret' object has no attribute 'kms_key_id'"), although it creates the replicas.
//! Its replicas only read through to the primary, so the replica regions' keyring reads go to
//! the primary here: what is tested on LocalStack is KMS (multi-Region keys, `ReplicateKey`,
//! signing through each region's replica) and the lifecycle; Secrets Manager lag and
//! promotion are tested on the twins.
//! Needs `scripts/node-env.sh` (the Node verifiers), like `make test` runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::types::{KeyState as KmsKeyState, MultiRegionKeyType};
use aws_sdk_secretsmanager::types::ReplicaRegionType;
use kms_jwt::arn::regional_arn;
use kms_jwt::aws::{KmsAdapter, SecretsManagerStore};
use kms_jwt::config::SignConfig;
use kms_jwt::keyring::Keyring;
use kms_jwt::regions::ReplicaRegion;
use kms_jwt::rotate::{Command, RotationPolicy, Rotator, Transition};
use kms_jwt::signer::TokenSigner;
use kms_jwt::SigningAlg;
use kms_jwt_tests::aws_proxy::AwsProxy;
use kms_jwt_tests::localstack::{sdk, stored};
use kms_jwt_tests::node::{verify_with, JwksServer, NodeVerifier};
use kms_jwt_tests::verify;
use serde_json::json;

const HOME: &str = "us-east-1";
const EU: &str = "eu-west-1";
const AP: &str = "ap-southeast-2";
const ISSUER: &str = "https://issuer.multi-region.kms-jwt.test";

fn policy() -> RotationPolicy {
    RotationPolicy {
        alg: SigningAlg::RS256,
        rotation_period: 7 * 86_400,
        prepublication: 600,
        retirement_grace: 7_200,
        deletion_window_days: 7,
        max_published_keys: kms_jwt::rotate::DEFAULT_MAX_PUBLISHED_KEYS,
    }
}

struct ThreeRegions {
    secret: String,
    home: aws_config::SdkConfig,
    /// eu-west-1 goes through a proxy the test can take down.
    eu_proxy: AwsProxy,
    eu: aws_config::SdkConfig,
    ap: aws_config::SdkConfig,
    /// eu-west-1's keyring reads: the primary (see the module docs), through eu's proxy.
    eu_secrets: aws_config::SdkConfig,
}

impl ThreeRegions {
    async fn new() -> ThreeRegions {
        let eu_proxy = AwsProxy::start_for_localstack().await.unwrap();
        let eu = eu_proxy
            .sdk_loader()
            .region(aws_config::Region::new(EU))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let eu_secrets = eu_proxy
            .sdk_loader()
            .region(aws_config::Region::new(HOME))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        ThreeRegions {
            secret: format!("kms-jwt-multi-region-{nanos}"),
            home: sdk(Some(HOME)).await,
            eu_proxy,
            eu,
            ap: sdk(Some(AP)).await,
            eu_secrets,
        }
    }

    /// Where `region`'s functions read the keyring (see the module docs).
    fn secrets_of(&self, region: &str) -> &aws_config::SdkConfig {
        if region == EU {
            &self.eu_secrets
        } else {
            &self.home
        }
    }

    fn all(&self) -> [(&'static str, &aws_config::SdkConfig); 3] {
        [(HOME, &self.home), (EU, &self.eu), (AP, &self.ap)]
    }

    fn replicas(&self) -> Vec<ReplicaRegion> {
        [(EU, &self.eu), (AP, &self.ap)]
            .into_iter()
            .map(|(name, sdk)| ReplicaRegion {
                name: name.to_owned(),
                kms: Arc::new(KmsAdapter::new(sdk)),
                keyring: Arc::new(SecretsManagerStore::new(self.secrets_of(name), &self.secret, None)),
            })
            .collect()
    }

    /// The home rotate function, as `aws::wiring::rotator` wires it with `REPLICA_REGIONS`.
    fn rotator(&self) -> Rotator<KmsAdapter, SecretsManagerStore> {
        let kms = KmsAdapter::new(&self.home).with_multi_region_keys();
        Rotator::new(kms, SecretsManagerStore::new(&self.home, &self.secret, None), policy(), &self.secret)
            .with_regions(kms_jwt::regions::Regions::new(HOME, self.replicas()))
    }

    fn signer(
        &self,
        region: &str,
        sdk: &aws_config::SdkConfig,
    ) -> TokenSigner<KmsAdapter, SecretsManagerStore> {
        SignConfig {
            keyring_cache_ttl: Duration::ZERO,
            max_token_ttl: Duration::from_secs(900),
            region: Some(region.to_owned()),
            ..SignConfig::for_tests(ISSUER)
        }
        .token_signer(
            KmsAdapter::new(sdk),
            SecretsManagerStore::new(self.secrets_of(region), &self.secret, None),
        )
    }

    async fn keyring(&self, sdk: &aws_config::SdkConfig) -> Keyring {
        stored(sdk, &self.secret).await
    }

    /// Sign in every region; verify each token against every region's JWKS with jsonwebtoken,
    /// and over HTTP with jose and aws-jwt-verify.
    async fn sign_and_verify_everywhere(&self, now: i64) {
        let mut servers = Vec::new();
        for (region, _) in self.all() {
            let jwks = kms_jwt_tests::localstack::jwks(self.secrets_of(region), &self.secret, ISSUER).await;
            servers.push((region, jwks.clone(), JwksServer::start(&jwks).unwrap()));
        }
        for (region, sdk) in self.all() {
            let signed = self
                .signer(region, sdk)
                .sign_event(json!({"claims": {"sub": region}}), now)
                .await
                .unwrap_or_else(|e| panic!("{region} signs: {e}"));
            for (verifier_region, jwks, server) in &servers {
                let claims = verify(&signed.token, jwks, ISSUER)
                    .unwrap_or_else(|e| panic!("{region}'s token in {verifier_region} (jsonwebtoken): {e}"));
                assert_eq!(claims["sub"], region);
                for verifier in [NodeVerifier::Jose, NodeVerifier::AwsJwtVerify] {
                    let payload = verify_with(verifier, &signed.token, &server.url(), ISSUER, Some("RS256"))
                        .await
                        .unwrap_or_else(|e| {
                            panic!("{region}'s token in {verifier_region} ({verifier}): {e}")
                        });
                    assert_eq!(payload["sub"], region);
                }
            }
        }
    }
}

/// (state, multi-Region key type) of the key in `region`.
async fn key_in(sdk: &aws_config::SdkConfig, arn: &str) -> (KmsKeyState, Option<MultiRegionKeyType>) {
    let meta =
        aws_sdk_kms::Client::new(sdk).describe_key().key_id(arn).send().await.unwrap().key_metadata.unwrap();
    let kind = meta.multi_region_configuration().and_then(|c| c.multi_region_key_type()).cloned();
    (meta.key_state.unwrap(), kind)
}

#[tokio::test]
async fn three_regions_sign_with_one_keyring_and_a_region_down_holds_rotation() {
    let regions = ThreeRegions::new().await;
    // The template creates the secret with its replica regions; so does the test.
    aws_sdk_secretsmanager::Client::new(&regions.home)
        .create_secret()
        .name(&regions.secret)
        .add_replica_regions(
            ReplicaRegionType::builder().region(EU).kms_key_id("alias/aws/secretsmanager").build(),
        )
        .add_replica_regions(
            ReplicaRegionType::builder().region(AP).kms_key_id("alias/aws/secretsmanager").build(),
        )
        .send()
        .await
        .unwrap();
    let rotate = regions.rotator();
    let t0 = kms_jwt::unix_now();

    let report = rotate.reconcile(t0).await.unwrap();
    assert_eq!(report.transitions, [Transition::Bootstrap], "{report:?}");
    let ring = regions.keyring(&regions.home).await;
    assert_eq!(ring.home.as_ref().map(|h| h.region.as_str()), Some(HOME));
    for key in &ring.keys {
        assert!(key.kms_key_arn.contains(":key/mrk-"), "a multi-Region key: {}", key.kms_key_arn);
        assert_eq!(
            key_in(&regions.home, &key.kms_key_arn).await,
            (KmsKeyState::Enabled, Some(MultiRegionKeyType::Primary))
        );
        for (region, sdk) in [(EU, &regions.eu), (AP, &regions.ap)] {
            let replica = regional_arn(&key.kms_key_arn, region).unwrap();
            assert_eq!(
                key_in(sdk, &replica).await,
                (KmsKeyState::Enabled, Some(MultiRegionKeyType::Replica)),
                "{region}"
            );
        }
    }
    // Every region's keyring replica has the keys (LocalStack replicates at once): the next
    // key is stamped as replicated by the next run.
    let report = rotate.reconcile(t0 + 60).await.unwrap();
    assert_eq!(report.transitions, [Transition::Replicated], "{report:?}");
    regions.sign_and_verify_everywhere(t0 + 61).await;

    // A scheduled rotation: the new current key was in every region first.
    let t1 = t0 + policy().rotation_period;
    let report = rotate.reconcile(t1).await.unwrap();
    assert_eq!(report.transitions, [Transition::Rotate], "{report:?}");
    regions.sign_and_verify_everywhere(t1 + 1).await;
    let newest = regions.keyring(&regions.home).await.next().unwrap().clone();
    assert_eq!(newest.replicated_at, None);

    // eu-west-1 becomes unreachable: its keyring copy cannot be read, so rotate cannot prove
    // it is still the home and changes nothing (fencing fails closed); the newest key is not
    // stamped and the next rotation waits; home and ap-southeast-2 keep signing.
    regions.eu_proxy.set_up(false);
    let t2 = t1 + policy().rotation_period;
    let err = rotate.reconcile(t2).await.unwrap_err();
    assert_eq!(err.code(), "HomeUnconfirmed", "{err}");
    assert!(err.to_string().contains(EU), "{err}");
    let current = regions.keyring(&regions.home).await.current().unwrap().kid.clone();
    for (region, sdk) in [(HOME, &regions.home), (AP, &regions.ap)] {
        let signed = regions.signer(region, sdk).sign_event(json!({"claims": {}}), t2).await.unwrap();
        assert_eq!(signed.kid, current, "{region} keeps signing with the current key");
    }

    // It returns: the key is stamped, waits its pre-publication, then rotates in.
    regions.eu_proxy.set_up(true);
    let report = rotate.reconcile(t2 + 60).await.unwrap();
    assert_eq!(report.transitions, [Transition::Replicated], "{report:?}");
    let report = rotate.reconcile(t2 + 60 + policy().prepublication).await.unwrap();
    assert_eq!(report.transitions, [Transition::Rotate], "{report:?}");
    assert_eq!(regions.keyring(&regions.home).await.current().unwrap().kid, newest.kid);
    regions.sign_and_verify_everywhere(t2 + 2 * 3_600).await;

    // Revocation disables the key in all three regions.
    let revoked = regions.keyring(&regions.home).await.current().unwrap().clone();
    let report = rotate.run(Command::Revoke { kid: revoked.kid.clone() }, t2 + 3 * 3_600).await.unwrap();
    assert!(report.retired.contains(&revoked.kid), "{report:?}");
    for (region, sdk) in regions.all() {
        let arn = regional_arn(&revoked.kms_key_arn, region).unwrap();
        let (state, _) = key_in(sdk, &arn).await;
        assert!(
            matches!(state, KmsKeyState::PendingDeletion | KmsKeyState::PendingReplicaDeletion),
            "{region}: {state:?}"
        );
    }
    regions.sign_and_verify_everywhere(t2 + 4 * 3_600).await;

    // A rotate function in a replica region is not the writer.
    let eu_rotate = Rotator::new(
        KmsAdapter::new(&regions.eu),
        SecretsManagerStore::new(regions.secrets_of(EU), &regions.secret, None),
        policy(),
        &regions.secret,
    )
    .with_regions(kms_jwt::regions::Regions::new(EU, Vec::new()));
    assert_eq!(eu_rotate.reconcile(t2 + 5 * 3_600).await.unwrap_err().code(), "NotHome");
}
