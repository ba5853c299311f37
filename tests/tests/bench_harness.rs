//! The bench harness measures the real thing: the wire-level counter sees each AWS call, and
//! the local runtime API drives a real function binary through a cold start to its answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use kms_jwt_tests::bench::counting::counted_sdk_config;
use kms_jwt_tests::bench::runtime_api::{cold_start, ColdStartError, Outcome};
use kms_jwt_tests::localstack::daily_es256_policy;
use serde_json::Value;

const ISSUER: &str = "https://issuer.kms-jwt.test";

/// A function binary as `cargo build` leaves it (`make test` builds them first).
fn function_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    let binary = target.join("debug").join(name);
    assert!(binary.is_file(), "{} missing: `cargo build -p kms-jwt-{name}` first", binary.display());
    binary
}

fn localstack_env(secret_id: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("KEYRING_SECRET_ID".to_owned(), secret_id.to_owned()),
        ("ISSUER".to_owned(), ISSUER.to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
    ];
    for name in ["AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        env.push((
            name.to_owned(),
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by make test")),
        ));
    }
    env
}

#[tokio::test]
async fn the_counter_sees_every_aws_call_on_the_wire() {
    let _ = kms_jwt_tests::localstack::sdk(None).await; // refuses anything but LocalStack
    let (sdk, calls) = counted_sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let id = format!("kms-jwt-test/bench-counter/{}", uuid::Uuid::new_v4());
    secrets.create_secret().name(&id).secret_string("{}").send().await.unwrap();
    secrets.get_secret_value().secret_id(&id).send().await.unwrap();
    let before = calls.snapshot();
    // A refused call went on the wire too, and counts.
    assert!(secrets.get_secret_value().secret_id(format!("{id}-missing")).send().await.is_err());
    aws_sdk_kms::Client::new(&sdk).list_keys().limit(1).send().await.unwrap();
    let after = calls.snapshot();
    assert_eq!(after.of("secretsmanager:CreateSecret"), 1);
    assert_eq!(after.of("secretsmanager:GetSecretValue"), 2);
    assert_eq!(after.of("kms:ListKeys"), 1);
    assert_eq!(after.total(), 4, "{}", after.describe());
    assert_eq!(after.since(&before).describe(), "kms:ListKeys=1, secretsmanager:GetSecretValue=1");
}

#[tokio::test]
async fn a_cold_start_runs_the_jwks_binary_to_its_first_answer() {
    let sdk = kms_jwt_tests::localstack::sdk(None).await;
    let secret_id = format!("kms-jwt-test/bench-cold/{}", uuid::Uuid::new_v4());
    kms_jwt_tests::localstack::rotator(&sdk, &secret_id, daily_es256_policy())
        .reconcile(kms_jwt::unix_now())
        .await
        .unwrap();
    let event = include_bytes!("../../events/jwks-http-api.json");
    let env = localstack_env(&secret_id);

    let run =
        cold_start(&function_binary("jwks"), "jwks", &env, event, Duration::from_secs(60)).await.unwrap();
    assert_eq!(run.outcome, Outcome::Response, "{}", run.body);
    assert!(run.init <= run.first_answer, "{run:?}");
    let response: Value = serde_json::from_str(&run.body).unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
    let jwks: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "current and next keys are published: {jwks}");

    // A function that cannot start (no ISSUER) is reported as such, not waited on forever.
    let broken: Vec<_> = env.into_iter().filter(|(k, _)| k != "ISSUER").collect();
    let err = cold_start(&function_binary("jwks"), "jwks", &broken, event, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, ColdStartError::Exited(status) if !status.success()), "{err}");
}
