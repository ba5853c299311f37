//! Peak memory (max RSS) of the sign function's release binary answering its largest accepted
//! invocations, next to a minimal one and to the largest payloads Lambda can deliver, which it
//! refuses. The figures are in BENCHMARKS.md ("Sign: peak memory"); nothing here checks them.
//!
//! ```sh
//! make localstack-up                       # or any LocalStack on loopback
//! export AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_REGION=us-east-1 \
//!        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
//! cargo build --release -p kms-jwt-sign --bin sign
//! cargo run -p kms-jwt-tests --example peak_memory -- target/release/sign [runs]
//! ```
//!
//! Each run starts the binary under `/usr/bin/time -f %M` with the environment Lambda sets,
//! serves it one event from the benches' local Lambda runtime API
//! (`kms_jwt_tests::bench::runtime_api`), records the answer, then takes the API away: the
//! runtime's next poll fails, the process exits and `time` reports its peak resident set. KMS
//! and Secrets Manager are LocalStack's, so every accepted token is really signed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kms_jwt::aws::{KmsAdapter, SecretsManagerStore};
use kms_jwt::rotate::{RotationPolicy, Rotator};
use kms_jwt::signer::{MAX_BATCH, MAX_BATCH_BYTES, MAX_CLAIMS_BYTES, MAX_REQUEST_BYTES};
use kms_jwt::SigningAlg;
use kms_jwt_tests::bench::runtime_api::{invoke_once, Ending, Outcome};
use serde_json::Value;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Lambda's limit on a synchronous invocation's payload.
const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(binary), runs) = (args.next(), args.next()) else {
        eprintln!(
            "usage: peak_memory <sign binary, e.g. target/release/sign> [runs per scenario, default 3]"
        );
        std::process::exit(2);
    };
    let runs = runs.and_then(|r| r.parse().ok()).unwrap_or(3);
    if let Err(e) = run(Path::new(&binary), runs).await {
        eprintln!("peak_memory failed: {e}");
        std::process::exit(1);
    }
}

async fn run(binary: &Path, runs: usize) -> Result<(), Error> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if !(endpoint.contains("127.0.0.1") || endpoint.contains("localhost")) {
        return Err("set AWS_ENDPOINT_URL to a LocalStack on loopback (see the doc comment)".into());
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let secret_id = format!("kms-jwt-bench/peak-memory/{}", kms_jwt::unix_now());
    eprintln!("==> bootstrapping keyring {secret_id}");
    let policy = RotationPolicy { rotation_period: 86_400, ..RotationPolicy::for_tests(SigningAlg::ES256) };
    let store = SecretsManagerStore::new(&sdk, secret_id.clone(), None);
    Rotator::new(KmsAdapter::new(&sdk), store, policy, secret_id.clone())
        .reconcile(kms_jwt::unix_now())
        .await?;
    let mut env = vec![
        ("KEYRING_SECRET_ID".to_owned(), secret_id),
        ("ISSUER".to_owned(), "https://issuer.kms-jwt.bench".to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ("MINTING_POLICY".to_owned(), kms_jwt::minting::ALLOW_ALL_POLICY.to_owned()),
    ];
    for name in ["AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_owned(), value));
        }
    }

    println!("| scenario | event bytes | answer | max RSS MiB (runs) |");
    println!("|---|---|---|---|");
    for scenario in scenarios()? {
        let mut rss = Vec::new();
        let mut outcome = String::new();
        for _ in 0..runs {
            let mut env = env.clone();
            env.push(("SIGN_TRANSPORT".to_owned(), scenario.transport.to_owned()));
            let run = run_once(binary, &env, &scenario.event).await?;
            if !(scenario.expect)(&run.outcome, &run.answer) {
                return Err(format!(
                    "{}: unexpected answer {} {}",
                    scenario.name,
                    run.outcome,
                    run.summary()
                )
                .into());
            }
            outcome = format!("{} {}", run.outcome, run.summary());
            rss.push(run.max_rss_kib as f64 / 1024.0);
        }
        let runs: Vec<String> = rss.iter().map(|r| format!("{r:.1}")).collect();
        println!("| {} | {} | {} | {} |", scenario.name, scenario.event.len(), outcome, runs.join(", "));
    }
    Ok(())
}

struct Scenario {
    name: &'static str,
    /// `SIGN_TRANSPORT`: HTTP events go to a function deployed for API Gateway.
    transport: &'static str,
    event: Vec<u8>,
    expect: fn(&str, &Value) -> bool,
}

/// `{"claims":{"ab":[0,0,...]}}` with `claims` of exactly `claims_bytes` (even) serialized,
/// padded with spaces to `request_bytes`: the most JSON values a request can hold, which is
/// what makes a parsed request largest in memory.
fn request_of_small_numbers(claims_bytes: usize, request_bytes: usize) -> String {
    let zeros = (claims_bytes - r#"{"ab":[0]}"#.len()) / 2;
    let request = format!(r#"{{"claims":{{"ab":[0{}]}}}}"#, ",0".repeat(zeros));
    format!("{request}{}", " ".repeat(request_bytes.saturating_sub(request.len())))
}

fn http_event(body: &str, base64: bool) -> Result<Vec<u8>, Error> {
    let template =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/sign-http-api.json"))?;
    let mut event: Value = serde_json::from_str(&template)?;
    event["body"] = if base64 { STANDARD.encode(body).into() } else { body.into() };
    event["isBase64Encoded"] = base64.into();
    Ok(event.to_string().into())
}

fn scenarios() -> Result<Vec<Scenario>, Error> {
    let small = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/sign.json"))?;
    let single = request_of_small_numbers(MAX_CLAIMS_BYTES, MAX_REQUEST_BYTES);
    // 100 requests at the claims limit, padded so the batch is just within its limit.
    let item_bytes = (MAX_BATCH_BYTES - r#"{"requests":[]}"#.len() - (MAX_BATCH - 1)) / MAX_BATCH;
    let items = vec![request_of_small_numbers(MAX_CLAIMS_BYTES, item_bytes); MAX_BATCH];
    let batch = format!(r#"{{"requests":[{}]}}"#, items.join(","));
    assert_len(&batch, MAX_BATCH_BYTES)?;
    // What Lambda can deliver at most, all small values.
    let flood = request_of_small_numbers(LAMBDA_PAYLOAD_LIMIT - 4096, 0);
    let flood_body = request_of_small_numbers((LAMBDA_PAYLOAD_LIMIT - 8192) / 4 * 3, 0);

    Ok(vec![
        Scenario { transport: "direct", name: "minimal: `events/sign.json`", event: small, expect: token },
        Scenario {
            transport: "direct",
            name: "largest single request: 32 KiB, claims 16 KiB of small numbers",
            event: single.into(),
            expect: token,
        },
        Scenario {
            transport: "direct",
            name: "largest batch, direct: 100 × 32 KiB, claims 16 KiB of small numbers each",
            event: batch.clone().into(),
            expect: batch_signed,
        },
        Scenario {
            transport: "api-gateway",
            name: "largest batch over HTTP API, plain body",
            event: http_event(&batch, false)?,
            expect: http_batch_signed,
        },
        Scenario {
            transport: "api-gateway",
            name: "largest batch over HTTP API, base64 body",
            event: http_event(&batch, true)?,
            expect: http_batch_signed,
        },
        Scenario {
            transport: "direct",
            name: "refused: direct, 6 MiB of small numbers",
            event: flood.into(),
            expect: too_large,
        },
        Scenario {
            transport: "api-gateway",
            name: "refused: HTTP API, 4.5 MiB body of small numbers, base64",
            event: http_event(&flood_body, true)?,
            expect: http_413,
        },
    ])
}

fn token(outcome: &str, answer: &Value) -> bool {
    outcome == "response" && answer["token"].is_string()
}

fn batch_signed(outcome: &str, answer: &Value) -> bool {
    let results = answer["results"].as_array();
    outcome == "response"
        && results.is_some_and(|r| r.len() == MAX_BATCH && r.iter().all(|t| t["token"].is_string()))
}

fn http_batch_signed(outcome: &str, answer: &Value) -> bool {
    let body = answer["body"].as_str().and_then(|b| serde_json::from_str::<Value>(b).ok());
    answer["statusCode"] == 200 && body.is_some_and(|b| batch_signed(outcome, &b))
}

fn too_large(outcome: &str, answer: &Value) -> bool {
    outcome == "error" && answer["errorType"] == "RequestTooLarge"
}

fn http_413(outcome: &str, answer: &Value) -> bool {
    outcome == "response" && answer["statusCode"] == 413
}

fn assert_len(text: &str, limit: usize) -> Result<(), Error> {
    if text.len() > limit || text.len() + 1024 < limit {
        return Err(format!("generated {} bytes, meant just under {limit}", text.len()).into());
    }
    Ok(())
}

/// One run: how the function answered and its peak resident set.
struct Run {
    outcome: String,
    answer: Value,
    max_rss_kib: u64,
}

impl Run {
    fn summary(&self) -> String {
        let body = self.answer["body"].as_str().and_then(|b| serde_json::from_str::<Value>(b).ok());
        let answer = body.as_ref().unwrap_or(&self.answer);
        match (answer["results"].as_array(), answer["errorType"].as_str(), answer["error"]["code"].as_str()) {
            (Some(results), _, _) => format!("{} results", results.len()),
            (_, Some(code), _) | (_, _, Some(code)) => code.to_owned(),
            _ if answer["token"].is_string() => "token".to_owned(),
            _ => "?".to_owned(),
        }
    }
}

async fn run_once(binary: &Path, env: &[(String, String)], event: &[u8]) -> Result<Run, Error> {
    let rss_file = temp_file();
    let mut time = tokio::process::Command::new("/usr/bin/time");
    time.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(binary);
    let run = invoke_once(
        time,
        "sign",
        env,
        event,
        Duration::from_secs(120),
        Ending::Exit(Duration::from_secs(30)),
    )
    .await?;
    let report = std::fs::read_to_string(&rss_file)?;
    let _ = std::fs::remove_file(&rss_file);
    // `time` writes "Command exited with non-zero status 1" first: the runtime's exit code.
    let max_rss_kib = report.lines().last().unwrap_or_default().trim().parse()?;
    let outcome = match run.outcome {
        Outcome::Response => "response",
        Outcome::Error => "error",
        Outcome::InitError => "init error",
    };
    let answer = serde_json::from_str(&run.body).unwrap_or(Value::Null);
    Ok(Run { outcome: outcome.to_owned(), answer, max_rss_kib })
}

fn temp_file() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("kms-jwt-peak-memory-{}-{n}.txt", std::process::id()))
}
