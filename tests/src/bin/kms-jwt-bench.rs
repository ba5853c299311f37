//! Benchmarks against LocalStack: the sign function next to a raw KMS `Sign` round trip, AWS
//! calls per token, Secrets Manager reads per 10,000 JWKS requests, and cold starts of the
//! release binaries under a local Lambda runtime API. Prints a Markdown report on stdout.
//!
//! `make bench` builds everything and runs it; see BENCHMARKS.md. It measures and reports;
//! it fails only when the thing measured is broken (a token that does not verify, a function
//! that does not answer), never on a number.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use futures::stream::{self, StreamExt};
use kms_jwt::aws::{KmsAdapter, SecretsManagerStore};
use kms_jwt::config::{JwksConfig, RotateConfig, SignConfig};
use kms_jwt::jwks::JWKS_PATH;
use kms_jwt::keyring::KeyRecord;
use kms_jwt::ports::KeyringStore;
use kms_jwt::signer::{SignAnswer, TokenSigner};
use kms_jwt::{Keyring, SigningAlg};
use kms_jwt_tests::bench::counting::{counted_sdk_config, CallCounter, CallCounts};
use kms_jwt_tests::bench::runtime_api::{cold_start, Outcome};
use kms_jwt_tests::bench::stats::{median, ms, Summary};
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: kms-jwt-bench [--rounds N] [--tokens N] [--batches N] [--jwks-requests N]
                     [--cold-starts N] [--functions-dir DIR] [--alg RS256] [--regions N]
                     [--only multi-region]
Needs LocalStack (AWS_ENDPOINT_URL on loopback). --functions-dir holds the function binaries
for the cold starts, as <fn>/bootstrap (`cargo lambda build --release`) or <fn> (`cargo build`);
--cold-starts 0 skips them. --regions N (1 to 6, default 3; 0 skips) signs with 1..N regions
at once through their multi-Region replicas; --only multi-region runs that part alone.";

/// Regions of the multi-region bench, home first.
const BENCH_REGIONS: [&str; 6] =
    ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "eu-central-1", "ap-northeast-1"];

/// Batch size of the batch-signing bench: the largest batch the sign function accepts.
const BATCH: usize = 100;
/// Tokens in flight within a batch, as the signer does it.
const BATCH_CONCURRENCY: usize = 16;

struct Options {
    rounds: usize,
    tokens: usize,
    batches: usize,
    jwks_requests: usize,
    cold_starts: usize,
    functions_dir: PathBuf,
    alg: SigningAlg,
    regions: usize,
    only_multi_region: bool,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut o = Options {
            rounds: 5,
            tokens: 200,
            batches: 5,
            jwks_requests: 10_000,
            cold_starts: 20,
            functions_dir: PathBuf::from("target/lambda"),
            // The deployed default; the figures in BENCHMARKS.md name the algorithm they used.
            alg: SigningAlg::RS256,
            regions: 3,
            only_multi_region: false,
        };
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                return Err(USAGE.into());
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let count = || value.parse::<usize>().map_err(|_| format!("{flag}: not a count: {value}"));
            match flag.as_str() {
                "--rounds" => o.rounds = count()?.max(1),
                "--tokens" => o.tokens = count()?.max(1),
                "--batches" => o.batches = count()?.max(1),
                "--jwks-requests" => o.jwks_requests = count()?.max(1),
                "--cold-starts" => o.cold_starts = count()?,
                "--functions-dir" => o.functions_dir = PathBuf::from(value),
                "--alg" => o.alg = value.parse().map_err(|e| format!("--alg: {e}"))?,
                "--regions" => o.regions = count()?.min(BENCH_REGIONS.len()),
                "--only" if value == "multi-region" => o.only_multi_region = true,
                _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

/// The environment every function of this bench sees, in-process (through `from_lookup`) and
/// in the cold-start child processes alike.
fn function_env(secret_id: &str, alg: SigningAlg) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("KEYRING_SECRET_ID", secret_id.to_owned()),
        ("ISSUER", "https://issuer.kms-jwt.bench".to_owned()),
        ("SIGNING_ALG", alg.to_string()),
        ("MINTING_POLICY", kms_jwt::minting::ALLOW_ALL_POLICY.to_owned()),
        // Written into each key's policy; LocalStack enforces no IAM and has no tagging API
        // for KMS keys.
        ("KEY_ADMIN_ROLE_ARN", "arn:aws:iam::000000000000:role/kms-jwt-rotate".to_owned()),
        ("KEY_USER_ROLE_ARNS", "arn:aws:iam::000000000000:role/kms-jwt-sign".to_owned()),
        ("KEY_DISCOVERY", "list-keys".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for name in ["AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_owned(), value));
        }
    }
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    env
}

fn lookup(env: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn progress(message: &str) {
    eprintln!("==> {message}");
}

#[tokio::main]
async fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    match run(options).await {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("kms-jwt-bench failed: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(options: Options) -> Result<String, Error> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if !(endpoint.contains("127.0.0.1") || endpoint.contains("localhost")) {
        return Err("AWS_ENDPOINT_URL must point at LocalStack on loopback (`make bench` sets it)".into());
    }
    let secret_id = format!("kms-jwt-bench/{}", uuid::Uuid::new_v4());
    let env = function_env(&secret_id, options.alg);
    let mut report = String::new();
    writeln!(
        report,
        "## Against LocalStack (kms-jwt-bench)\n\n{} rounds; {} tokens per round (single), {} batches of {BATCH} per round; {}; \
         LocalStack at {endpoint}.\nFigures are the median over the rounds of each round's value.\n",
        options.rounds, options.tokens, options.batches, options.alg
    )?;

    if options.only_multi_region {
        multi_region_bench(&options, &env, &mut report).await?;
        return Ok(report);
    }
    progress("bootstrapping a keyring (rotate, in process)");
    let (admin_sdk, _) = counted_sdk_config().await;
    let rotate_config = RotateConfig::from_lookup(lookup(&env))?;
    kms_jwt_tests::localstack::rotator(&admin_sdk, &secret_id, rotate_config.rotation_policy())
        .reconcile(kms_jwt::unix_now())
        .await?;

    sign_bench(&options, &env, &mut report).await?;
    jwks_bench(&options, &env, &mut report).await?;
    if options.cold_starts > 0 {
        cold_start_bench(&options, &env, &mut report).await?;
    }
    if options.regions > 0 {
        multi_region_bench(&options, &env, &mut report).await?;
    }
    Ok(report)
}

/// A keyring of multi-Region keys bootstrapped in `regions` (home first), and one warm signer
/// per region signing through its own replica; with the JWKS and the issuer to verify by.
async fn multi_region_signers(
    regions: &[&str],
    env: &[(String, String)],
) -> Result<(Vec<TokenSigner<KmsAdapter, SecretsManagerStore>>, String, String), Error> {
    use kms_jwt::aws::regional_sdk_config;
    use kms_jwt::regions::{Regions, ReplicaRegion};
    let secret_id = format!("kms-jwt-bench-mr/{}", uuid::Uuid::new_v4());
    let env: Vec<(String, String)> =
        env.iter()
            .map(|(k, v)| {
                if k == "KEYRING_SECRET_ID" {
                    (k.clone(), secret_id.clone())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
    progress(&format!("multi-region: a keyring of multi-Region keys in {}", regions.join(", ")));
    let (base, _) = counted_sdk_config().await;
    let home = regional_sdk_config(&base, regions[0]);
    // LocalStack 4.13.1 cannot read a replica secret (GetSecretValue fails on it): every
    // region reads the primary here, once per cache TTL; the KMS calls go to each region.
    let replicas: Vec<ReplicaRegion> = regions[1..]
        .iter()
        .map(|region| ReplicaRegion {
            name: (*region).to_owned(),
            kms: Arc::new(KmsAdapter::new(&regional_sdk_config(&base, region))),
            keyring: Arc::new(SecretsManagerStore::new(&home, secret_id.clone(), None)),
        })
        .collect();
    let policy = RotateConfig::from_lookup(lookup(&env))?.rotation_policy();
    kms_jwt::rotate::Rotator::new(
        KmsAdapter::new(&home).with_multi_region_keys(),
        SecretsManagerStore::new(&home, secret_id.clone(), None),
        policy,
        secret_id.clone(),
    )
    .with_regions(Regions::new(regions[0], replicas))
    .reconcile(kms_jwt::unix_now())
    .await?;
    let config = SignConfig::from_lookup(lookup(&env))?;
    let signers: Vec<_> = regions
        .iter()
        .map(|region| {
            let regional = regional_sdk_config(&base, region);
            SignConfig { region: Some((*region).to_owned()), ..config.clone() }.token_signer(
                KmsAdapter::new(&regional),
                SecretsManagerStore::new(&home, secret_id.clone(), None),
            )
        })
        .collect();
    let jwks = kms_jwt_tests::localstack::jwks(&home, &secret_id, &config.issuer).await;
    for signer in &signers {
        // Warm: the keyring read and the connection pool.
        let token = signer.sign_event(sign_request(0), kms_jwt::unix_now()).await?;
        kms_jwt_tests::verify(&token.token, &jwks, &config.issuer)?;
    }

    Ok((signers, jwks, config.issuer))
}

/// The aggregate signing rate with 1..=N regions signing at once, each through its own replica
/// of a multi-Region key (as each region's sign function does), 16 tokens in flight per
/// region. LocalStack is one process on this machine: this shows what the code adds per region
/// (nothing shared between regions but LocalStack), not KMS's per-region quotas.
async fn multi_region_bench(
    options: &Options,
    env: &[(String, String)],
    report: &mut String,
) -> Result<(), Error> {
    const IN_FLIGHT: usize = 16;
    let regions = &BENCH_REGIONS[..options.regions.max(1)];
    let (signers, jwks, issuer) = multi_region_signers(regions, env).await?;
    writeln!(
        report,
        "### Multi-region: aggregate signing rate ({} tokens per region, {IN_FLIGHT} in flight per region)
",
        options.tokens
    )?;
    writeln!(report, "| regions signing at once | tokens | wall s (median of {}) | aggregate tokens/s | per region tokens/s |
|---|---|---|---|---|", options.rounds)?;
    for count in 1..=signers.len() {
        let mut walls = Vec::new();
        let mut tokens = Vec::new();
        for _ in 0..options.rounds {
            let started = Instant::now();
            let per_region = futures::future::join_all(signers[..count].iter().map(|signer| async move {
                let results: Vec<_> = stream::iter(0..options.tokens)
                    .map(|i| signer.sign_event(sign_request(i), kms_jwt::unix_now()))
                    .buffer_unordered(IN_FLIGHT)
                    .collect()
                    .await;
                results
            }))
            .await;
            walls.push(started.elapsed());
            for token in per_region.into_iter().flatten() {
                tokens.push(token?.token);
            }
        }
        for token in &tokens {
            kms_jwt_tests::verify(token, &jwks, &issuer)?;
        }
        let wall = median(&walls.iter().map(Duration::as_secs_f64).collect::<Vec<_>>()).ok_or("no rounds")?;
        let total = count * options.tokens;
        writeln!(
            report,
            "| {count} ({}) | {total} | {wall:.2} | {:.0} | {:.0} |",
            regions[..count].join(", "),
            total as f64 / wall,
            options.tokens as f64 / wall
        )?;
    }
    writeln!(
        report,
        "
Every token verified against the JWKS. One LocalStack process serves every region here.
"
    )?;
    Ok(())
}

/// A realistic request: the claims of `events/sign.json`.
fn sign_request(n: usize) -> Value {
    json!({"claims": {"sub": format!("user-{n}"), "aud": "https://api.example.com", "scope": "orders:read"},
           "ttl_seconds": 900})
}

/// The sign function as its main builds it, next to its baseline (the same KMS `Sign` call
/// with a digest of a token-sized message, nothing else), each with its own SDK configuration:
/// each has its own warm connection pool, neither counts the other.
struct SignBench {
    signer: TokenSigner<KmsAdapter, SecretsManagerStore>,
    /// The sign function's AWS calls, counted on the wire.
    calls: CallCounter,
    raw_kms: aws_sdk_kms::Client,
    key: KeyRecord,
    digest: Blob,
    jwks: String,
    issuer: String,
}

/// The AWS calls of one phase and the tokens it signed.
struct Phase {
    tokens: usize,
    calls: CallCounts,
}

/// Per round: the sign function's summary, then the baseline's.
type Rounds = Vec<(Summary, Summary)>;

impl SignBench {
    /// Build both, sign the container's first token (which reads the keyring: the cold phase)
    /// and warm both up.
    async fn start(env: &[(String, String)]) -> Result<(SignBench, Phase), Error> {
        let config = SignConfig::from_lookup(lookup(env))?;
        let (sign_sdk, calls) = counted_sdk_config().await;
        let signer = config.token_signer(
            KmsAdapter::new(&sign_sdk),
            SecretsManagerStore::new(&sign_sdk, config.keyring_secret_id.clone(), None),
        );
        let (raw_sdk, _) = counted_sdk_config().await;
        let cold_before = calls.snapshot();
        let first = signer.sign_event(sign_request(0), kms_jwt::unix_now()).await?;
        let cold = Phase { tokens: 1, calls: calls.snapshot().since(&cold_before) };
        let stored = SecretsManagerStore::new(&raw_sdk, config.keyring_secret_id.clone(), None);
        let keyring = Keyring::from_json(&stored.load().await?.ok_or("the keyring vanished")?.text)?;
        let key = keyring.current().ok_or("no current key")?.clone();
        let hash = key.alg.hash().ok_or("the raw-KMS baseline is measured for digest-signed algorithms")?;
        let bench = SignBench {
            signer,
            calls,
            raw_kms: aws_sdk_kms::Client::new(&raw_sdk),
            digest: Blob::new(hash.digest(&[b'x'; 400])),
            key,
            jwks: kms_jwt_tests::localstack::jwks(&raw_sdk, &config.keyring_secret_id, &config.issuer).await,
            issuer: config.issuer,
        };
        bench.verify(&first.token)?;
        for i in 0..20 {
            bench.raw_sign().await?;
            bench.signer.sign_event(sign_request(i), kms_jwt::unix_now()).await?;
        }
        Ok((bench, cold))
    }

    fn verify(&self, token: &str) -> Result<(), Error> {
        kms_jwt_tests::verify(token, &self.jwks, &self.issuer)?;
        Ok(())
    }

    /// The baseline: one KMS `Sign`.
    async fn raw_sign(&self) -> Result<(), Error> {
        self.raw_kms
            .sign()
            .key_id(&self.key.kms_key_arn)
            .message(self.digest.clone())
            .message_type(MessageType::Digest)
            .signing_algorithm(SigningAlgorithmSpec::from(self.key.alg.kms_signing_algorithm()))
            .send()
            .await?;
        Ok(())
    }

    /// `BATCH` baseline calls, `BATCH_CONCURRENCY` in flight, as the signer signs a batch.
    async fn raw_batch(&self) -> Result<Duration, Error> {
        let t = Instant::now();
        let results: Vec<_> =
            stream::iter(0..BATCH).map(|_| self.raw_sign()).buffered(BATCH_CONCURRENCY).collect().await;
        results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(t.elapsed())
    }

    /// One token at a time, interleaved with the baseline; every token verified.
    async fn single_tokens(&self, options: &Options) -> Result<(Rounds, Phase), Error> {
        let mut rounds = Vec::new();
        let before = self.calls.snapshot();
        let mut signed = 0usize;
        for round in 0..options.rounds {
            let (mut ours, mut raw) = (Vec::new(), Vec::new());
            let mut tokens = Vec::new();
            for i in 0..options.tokens {
                // Alternate which goes first, so drift and connection reuse favour neither.
                let raw_first = (i + round) % 2 == 0;
                if raw_first {
                    let t = Instant::now();
                    self.raw_sign().await?;
                    raw.push(t.elapsed());
                }
                let t = Instant::now();
                let token = self.signer.sign_event(sign_request(i), kms_jwt::unix_now()).await?;
                ours.push(t.elapsed());
                tokens.push(token);
                if !raw_first {
                    let t = Instant::now();
                    self.raw_sign().await?;
                    raw.push(t.elapsed());
                }
            }
            for token in &tokens {
                self.verify(&token.token)?;
            }
            signed += tokens.len();
            rounds.push((Summary::of(&ours).ok_or("no samples")?, Summary::of(&raw).ok_or("no samples")?));
        }
        Ok((rounds, Phase { tokens: signed, calls: self.calls.snapshot().since(&before) }))
    }

    /// Batches of `BATCH`, next to `BATCH` baseline calls with the same concurrency.
    async fn batches(&self, options: &Options) -> Result<(Rounds, Phase), Error> {
        let mut rounds = Vec::new();
        let before = self.calls.snapshot();
        let mut signed = 0usize;
        for round in 0..options.rounds {
            let (mut ours, mut raw) = (Vec::new(), Vec::new());
            for b in 0..options.batches {
                if (b + round) % 2 == 0 {
                    raw.push(self.raw_batch().await?);
                }
                let requests: Vec<Value> = (0..BATCH).map(sign_request).collect();
                let t = Instant::now();
                let answer = self.signer.invoke(json!({ "requests": requests }), kms_jwt::unix_now()).await?;
                ours.push(t.elapsed());
                if (b + round) % 2 == 1 {
                    raw.push(self.raw_batch().await?);
                }
                let SignAnswer::Batch(results) = answer else {
                    return Err("a batch answered as one token".into());
                };
                for result in &results {
                    self.verify(&result.as_ref().map_err(|e| format!("batch item failed: {e}"))?.token)?;
                }
                signed += results.len();
            }
            rounds.push((Summary::of(&ours).ok_or("no samples")?, Summary::of(&raw).ok_or("no samples")?));
        }
        Ok((rounds, Phase { tokens: signed, calls: self.calls.snapshot().since(&before) }))
    }
}

async fn sign_bench(options: &Options, env: &[(String, String)], report: &mut String) -> Result<(), Error> {
    let (bench, cold) = SignBench::start(env).await?;
    progress("signing, one token at a time, interleaved with raw KMS Sign");
    let (single_rounds, steady) = bench.single_tokens(options).await?;
    progress("signing batches of 100, next to 100 raw KMS Sign calls with the same concurrency");
    let (batch_rounds, batched) = bench.batches(options).await?;
    write_latencies(report, &single_rounds, &batch_rounds)?;
    writeln!(report, "### AWS calls per token (counted on the wire, retries included)\n")?;
    writeln!(report, "| phase | tokens | calls | per token |\n|---|---|---|---|")?;
    for (name, phase) in [
        ("first token of a container", &cold),
        ("steady state, single", &steady),
        ("steady state, batches", &batched),
    ] {
        writeln!(
            report,
            "| {name} | {} | {} | {:.3} |",
            phase.tokens,
            phase.calls.describe(),
            phase.calls.total() as f64 / phase.tokens as f64
        )?;
    }
    writeln!(report)?;
    Ok(())
}

/// The latency table and the ratios of the sign function to raw KMS `Sign`.
fn write_latencies(report: &mut String, single_rounds: &Rounds, batch_rounds: &Rounds) -> Result<(), Error> {
    let single = (Series::new(single_rounds, |r| r.0), Series::new(single_rounds, |r| r.1));
    let batch = (Series::new(batch_rounds, |r| r.0), Series::new(batch_rounds, |r| r.1));
    writeln!(report, "### Sign (in process, the sign function's handler logic and SDK clients)\n")?;
    writeln!(report, "| series | p50 ms | p99 ms | mean ms | tokens/s |\n|---|---|---|---|---|")?;
    for (name, series, tokens_per_call) in [
        ("single: sign function", &single.0, 1.0),
        ("single: raw KMS `Sign`", &single.1, 1.0),
        ("batch of 100: sign function", &batch.0, BATCH as f64),
        ("batch of 100: raw KMS `Sign` ×100, 16 in flight", &batch.1, BATCH as f64),
    ] {
        let mean = series.median(|s| s.mean_ms);
        writeln!(
            report,
            "| {name} | {:.3} | {:.3} | {mean:.3} | {:.0} |",
            series.median(|s| s.p50_ms),
            series.median(|s| s.p99_ms),
            tokens_per_call * 1_000.0 / mean
        )?;
    }
    writeln!(
        report,
        "\nRatio sign function / raw KMS `Sign`: single p50 **{:.3}**, p99 {:.3}, mean {:.3}; \
         batch p50 **{:.3}**, mean {:.3}.\n",
        single.0.ratio_to(&single.1, |s| s.p50_ms),
        single.0.ratio_to(&single.1, |s| s.p99_ms),
        single.0.ratio_to(&single.1, |s| s.mean_ms),
        batch.0.ratio_to(&batch.1, |s| s.p50_ms),
        batch.0.ratio_to(&batch.1, |s| s.mean_ms),
    )?;
    Ok(())
}

/// One measured series: a summary per round.
struct Series(Vec<Summary>);

impl Series {
    fn new(rounds: &[(Summary, Summary)], pick: impl Fn(&(Summary, Summary)) -> Summary) -> Series {
        Series(rounds.iter().map(pick).collect())
    }

    /// The median over rounds of one statistic.
    fn median(&self, stat: impl Fn(&Summary) -> f64) -> f64 {
        median(&self.0.iter().map(stat).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    }

    /// The median over rounds of this series' statistic divided by `baseline`'s in the same round.
    fn ratio_to(&self, baseline: &Series, stat: impl Fn(&Summary) -> f64) -> f64 {
        let ratios: Vec<f64> = self.0.iter().zip(&baseline.0).map(|(a, b)| stat(a) / stat(b)).collect();
        median(&ratios).unwrap_or(f64::NAN)
    }
}

async fn jwks_bench(options: &Options, env: &[(String, String)], report: &mut String) -> Result<(), Error> {
    let config = JwksConfig::from_lookup(lookup(env))?;
    writeln!(report, "### JWKS: Secrets Manager reads (counted on the wire)\n")?;
    writeln!(report, "| scenario | requests | wall time | GetSecretValue | reads allowed (1 per TTL) | handler µs/request (mean) |\n|---|---|---|---|---|---|")?;

    // A container at the default TTL, answering as fast as it can, half of them conditional.
    let (sdk, calls) = counted_sdk_config().await;
    let service = config.jwks_service(SecretsManagerStore::new(&sdk, config.keyring_secret_id.clone(), None));
    let etag = service.answer("GET", JWKS_PATH, None).await.header("etag").map(str::to_owned);
    let before = calls.snapshot();
    let started = Instant::now();
    for i in 0..options.jwks_requests {
        let answer = service.answer("GET", JWKS_PATH, etag.as_deref().filter(|_| i % 2 == 0)).await;
        if answer.status != 200 && answer.status != 304 {
            return Err(format!("jwks answered {}", answer.status).into());
        }
    }
    let elapsed = started.elapsed();
    // The cold read above happened before `before`; count it, since it is this container's.
    let reads = calls.snapshot().since(&before).of("secretsmanager:GetSecretValue") + 1;
    let handler_us = elapsed.as_secs_f64() * 1e6 / options.jwks_requests as f64;
    let scenario = "warm container, default TTL, sequential, half conditional (304)";
    row(report, &config, scenario, options.jwks_requests, elapsed, reads, &calls, Some(handler_us))?;

    // A short TTL and 8 concurrent callers spread over ~5 s: the TTL lapses many times while
    // requests are in flight; single-flight keeps it to one read per lapse.
    let short = JwksConfig { keyring_cache_ttl: Duration::from_secs(1), ..config.clone() };
    let (sdk, calls) = counted_sdk_config().await;
    let service =
        Arc::new(short.jwks_service(SecretsManagerStore::new(&sdk, short.keyring_secret_id.clone(), None)));
    let callers = 8;
    let per_caller = options.jwks_requests / callers;
    let pause = Duration::from_secs(5).div_f64(per_caller.max(1) as f64);
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let service = Arc::clone(&service);
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    let status = service.answer("GET", JWKS_PATH, None).await.status;
                    if status != 200 {
                        return Err(format!("jwks answered {status}"));
                    }
                    tokio::time::sleep(pause).await;
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let reads = calls.snapshot().of("secretsmanager:GetSecretValue");
    let scenario = "TTL 1 s, 8 concurrent callers over ~5 s";
    row(report, &short, scenario, per_caller * callers, elapsed, reads, &calls, None)?;
    writeln!(report)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn row(
    report: &mut String,
    config: &JwksConfig,
    scenario: &str,
    requests: usize,
    elapsed: Duration,
    reads: u64,
    calls: &CallCounter,
    handler_us: Option<f64>,
) -> Result<(), Error> {
    // One read per TTL window begun (the first one included).
    let allowed = (elapsed.as_secs_f64() / config.keyring_cache_ttl.as_secs_f64()).floor() as u64 + 1;
    let other = calls.snapshot().total() - calls.snapshot().of("secretsmanager:GetSecretValue");
    writeln!(
        report,
        "| {scenario} | {requests} | {:.2} s | {reads}{} | ≤ {allowed} | {} |",
        elapsed.as_secs_f64(),
        if other > 0 { format!(" (+{other} other)") } else { String::new() },
        handler_us.map_or("(paced)".to_owned(), |us| format!("{us:.2}")),
    )?;
    Ok(())
}

async fn cold_start_bench(
    options: &Options,
    env: &[(String, String)],
    report: &mut String,
) -> Result<(), Error> {
    writeln!(
        report,
        "### Cold start (binaries from {}, local runtime API on loopback, AWS = LocalStack on loopback)\n\n\
         init = process spawn → first poll for an event; first answer = spawn → answer posted \
         (includes the first keyring read and, for sign, the KMS call). {} runs each.\n",
        options.functions_dir.display(),
        options.cold_starts
    )?;
    writeln!(report, "| function | event | init p50 ms | init min–max ms | first answer p50 ms | first answer min–max ms |\n|---|---|---|---|---|---|")?;
    for (function, event_file) in
        [("rotate", "rotate-scheduled.json"), ("sign", "sign.json"), ("jwks", "jwks-http-api.json")]
    {
        // `cargo lambda build` lays binaries out as <fn>/bootstrap, `cargo build` as <fn>.
        let dir = &options.functions_dir;
        let binary = [dir.join(function).join("bootstrap"), dir.join(function)]
            .into_iter()
            .find(|path| path.is_file())
            .ok_or_else(|| {
                format!("no {function} binary in {}: run `cargo lambda build --release`", dir.display())
            })?;
        let event =
            std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events").join(event_file))?;
        progress(&format!("cold starts: {function}"));
        let (mut init, mut answer) = (Vec::new(), Vec::new());
        for _ in 0..options.cold_starts {
            let run = cold_start(&binary, function, env, &event, Duration::from_secs(30)).await?;
            if run.outcome != Outcome::Response || !answered_well(function, &run.body) {
                return Err(format!("{function} answered {:?}: {}", run.outcome, run.body).into());
            }
            init.push(run.init);
            answer.push(run.first_answer);
        }
        let (i, a) = (Summary::of(&init).ok_or("no runs")?, Summary::of(&answer).ok_or("no runs")?);
        let range = |v: &[Duration]| {
            let (lo, hi) =
                (v.iter().min().copied().unwrap_or_default(), v.iter().max().copied().unwrap_or_default());
            format!("{:.1}–{:.1}", ms(lo), ms(hi))
        };
        writeln!(
            report,
            "| {function} | `events/{event_file}` | **{:.1}** | {} | {:.1} | {} |",
            i.p50_ms,
            range(&init),
            a.p50_ms,
            range(&answer)
        )?;
    }
    writeln!(report)?;
    Ok(())
}

/// The first event was really served: not an error wrapped in a success.
fn answered_well(function: &str, body: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(body) else { return false };
    match function {
        "sign" => value["token"].is_string(),
        "jwks" => value["statusCode"] == 200,
        _ => value.get("changed").is_some(),
    }
}
