//! The `kms-jwt` command line end to end: LocalStack behind, the three functions under `cargo
//! lambda watch` (which serves the Lambda Invoke API the CLI's acting commands call), the CLI
//! run as a process the way an operator runs it. Bootstrap, status, plan, rotate, revoke with
//! and without confirmation, verify, and doctor finding a drifted key policy and a disabled key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// `cargo lambda watch` in its own process group, stopped with its functions when dropped.
struct Watch {
    child: Child,
    port: u16,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn cargo_lambda() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("cargo-lambda")
    }
}

/// The `kms-jwt` binary next to this test's own target directory, built first (a no-op when
/// `make test` built it already).
fn cli_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "kms-jwt-cli"])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(status.success(), "building kms-jwt-cli");
    // target/debug/deps/<this test> → target/debug/kms-jwt
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("kms-jwt")
}

fn localstack_endpoint() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.contains("127.0.0.1") || endpoint.contains("localhost"),
        "this test runs against LocalStack on loopback: use `make test`"
    );
    endpoint
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The deployment's settings, as rotate's environment and the CLI's `--config-from-env`.
fn settings(secret_id: &str, issuer: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KEYRING_SECRET_ID", secret_id.to_owned()),
        ("ISSUER", issuer.to_owned()),
        ("SIGNING_ALG", "RS256".into()),
        ("KEYRING_CACHE_TTL", "1".into()),
        ("KEY_ADMIN_ROLE_ARN", "arn:aws:iam::000000000000:role/kms-jwt-rotate".into()),
        ("KEY_USER_ROLE_ARNS", "arn:aws:iam::000000000000:role/kms-jwt-sign".into()),
        ("KEY_DISCOVERY", "list-keys".into()),
        ("RUST_LOG", "info".into()),
    ]
}

fn start_watch(endpoint: &str, port: u16, env: &[(&str, String)]) -> Watch {
    use std::os::unix::process::CommandExt;
    let dir = std::env::temp_dir().join(format!("kms-jwt-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("watch.env");
    let mut text = format!("AWS_ENDPOINT_URL={endpoint}\n");
    for name in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        text += &format!("{name}={}\n", std::env::var(name).unwrap_or_else(|_| "test".into()));
    }
    for (name, value) in env {
        text += &format!("{name}={value}\n");
    }
    std::fs::write(&env_file, text).unwrap();
    let log = std::fs::File::create(dir.join("watch.log")).unwrap();
    eprintln!("cargo lambda watch on port {port}, log in {}", dir.display());
    let child = Command::new(cargo_lambda())
        .args(["lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .arg("--env-file")
        .arg(&env_file)
        .args(["--disable-cors", "--ignore-changes"])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("cargo-lambda must be installed: `make test` installs it into .venv");
    let watch = Watch { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "cargo lambda watch did not start listening");
        std::thread::sleep(Duration::from_millis(200));
    }
    watch
}

/// Runs the CLI with the deployment's settings in its environment.
struct Cli {
    binary: PathBuf,
    env: Vec<(&'static str, String)>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn run_with_input(&self, args: &[&str], input: Option<&str>) -> Run {
        let mut command = Command::new(&self.binary);
        command
            .args(["--config-from-env", "--color", "never"])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        {
            let mut stdin = child.stdin.take().unwrap();
            if let Some(input) = input {
                stdin.write_all(input.as_bytes()).unwrap();
            }
        }
        let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        // Tokens are shown by their length only.
        let shown: Vec<String> = args
            .iter()
            .map(|a| if a.len() > 100 { format!("<{} characters>", a.len()) } else { (*a).to_owned() })
            .collect();
        eprintln!("$ kms-jwt {}\n{}{}(exit {})", shown.join(" "), run.stdout, run.stderr, run.code);
        run
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with_input(args, None)
    }

    fn status_json(&self) -> Value {
        let run = self.run(&["status", "--json"]);
        serde_json::from_str(&run.stdout).unwrap()
    }
}

fn kid_in_state(status: &Value, state: &str) -> String {
    status["keys"].as_array().unwrap().iter().find(|k| k["state"] == state).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn arn_of(status: &Value, kid: &str) -> String {
    status["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap()["kms_key_arn"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// GET `url` until the function behind it answers (its first call starts it).
async fn warm(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(answer) = reqwest::Client::new().get(url).timeout(Duration::from_secs(60)).send().await {
            if answer.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_command_line_operates_a_deployment() {
    let endpoint = localstack_endpoint();
    let binary = cli_binary();
    let secret_id = format!("kms-jwt-cli/{}", uuid::Uuid::new_v4());
    // The issuer is the jwks function's URL under watch (sign's `iss`, jwks's discovery).
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}/lambda-url/jwks");
    let watch = start_watch(&endpoint, port, &settings(&secret_id, &issuer));
    let mut cli_env = settings(&secret_id, &issuer);
    cli_env.push(("AWS_ENDPOINT_URL", endpoint.clone()));
    cli_env.push(("AWS_ENDPOINT_URL_LAMBDA", format!("http://127.0.0.1:{}", watch.port)));
    cli_env.push(("KMS_JWT_ROTATE_FUNCTION", "rotate".into()));
    cli_env.push(("AWS_REGION", std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())));
    let cli = Cli { binary, env: cli_env };

    // Before bootstrap: status says the secret is missing and how to bootstrap; plan says so.
    let missing = cli.run(&["status"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("not found") && missing.stderr.contains("kms-jwt rotate"),
        "{}",
        missing.stderr
    );
    let plan = cli.run(&["plan"]);
    assert_eq!(plan.code, 0);
    assert!(plan.stdout.starts_with("a run now would: bootstrap"), "{}", plan.stdout);

    // Bootstrap through the rotate function, without asking.
    let rotate = cli.run(&["rotate", "--yes"]);
    assert_eq!(rotate.code, 0, "{}", rotate.stderr);
    assert!(rotate.stdout.contains("plan: invoke rotate with"), "{}", rotate.stdout);
    assert!(rotate.stdout.contains("transitions [bootstrap]"), "{}", rotate.stdout);

    let status = cli.run(&["status"]);
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert!(status.stdout.contains("nothing needs attention"), "{}", status.stdout);
    // The rotation is due 30 days after bootstrap; a second or more may pass before `status`.
    let due_in_a_month = ["next transition: in 30 d", "next transition: in 29 d 23 h"];
    assert!(due_in_a_month.iter().any(|line| status.stdout.contains(line)), "{}", status.stdout);
    let before = cli.status_json();
    assert_eq!(before["keys"].as_array().unwrap().len(), 2);
    let next = kid_in_state(&before, "next");
    let current = kid_in_state(&before, "current");

    let plan = cli.run(&["plan", "--json"]);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["now_run"]["transitions"], json!([]));
    assert_eq!(plan["next"][0]["transitions"], json!(["rotate"]));
    assert_eq!(plan["next"][0]["new_current"], json!(next));

    // A rotation that is not due yet waits for pre-publication: nothing is invoked.
    let early = cli.run(&["rotate", "--yes"]);
    assert_eq!(early.code, 0);
    assert!(early.stdout.contains("nothing to do yet"), "{}", early.stdout);

    // Bad input: exit 2, nothing invoked.
    let unknown = cli.run(&["revoke", "no-such-kid", "--yes"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("unknown kid no-such-kid") && unknown.stderr.contains(&current),
        "{}",
        unknown.stderr
    );

    // Revoke, declined: the plan and what verifiers will see, then nothing changes.
    let declined = cli.run_with_input(&["revoke", &next], Some("n\n"));
    assert_eq!(declined.code, 1);
    assert!(
        declined.stdout.contains("API Gateway HTTP API JWT authorizer keeps accepting it up to 2 h"),
        "{}",
        declined.stdout
    );
    assert!(declined.stderr.contains("not confirmed: nothing was changed"), "{}", declined.stderr);
    assert_eq!(kid_in_state(&cli.status_json(), "next"), next);

    // Revoke, confirmed on standard input.
    let revoked = cli.run_with_input(&["revoke", &next], Some("y\n"));
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    assert!(revoked.stdout.contains("transitions [revoke, add_next]"), "{}", revoked.stdout);
    let after = cli.status_json();
    assert!(after["keys"].as_array().unwrap().iter().all(|k| k["kid"] != json!(next)), "{after}");
    let new_next = kid_in_state(&after, "next");

    // A token from the sign function verifies against the served JWKS.
    tokio::time::sleep(Duration::from_millis(1_200)).await; // the functions' keyring cache
    warm(&format!("{issuer}/.well-known/openid-configuration")).await;
    let signed: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/2015-03-31/functions/sign/invocations", watch.port))
        .json(&json!({"claims": {"sub": "carol", "aud": "https://api.example.com"}, "ttl_seconds": 600}))
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signed["token"].as_str().unwrap();
    let verify = cli.run(&["verify", token, "--audience", "https://api.example.com"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("signature and claims valid"), "{}", verify.stdout);
    assert!(verify.stdout.contains("accepts  aws-jwt-verify"), "{}", verify.stdout);
    assert!(!verify.stdout.contains("carol"), "the subject is not printed: {}", verify.stdout);
    let malformed = cli.run(&["verify", "not.a-token"]);
    assert_eq!(malformed.code, 2);
    assert!(malformed.stderr.contains("malformed token"), "{}", malformed.stderr);

    // Without the template's alarms, doctor fails the deployment and names them.
    let doctor = cli.run(&["doctor"]);
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    assert!(
        doctor.stdout.contains(&format!("no alarm on kms-jwt CurrentKeyAgeSeconds (Keyring={secret_id})")),
        "{}",
        doctor.stdout
    );
    assert!(doctor.stdout.contains("fix: deploy infra/template.yaml's alarms"), "{}", doctor.stdout);

    // With them (as infra/template.yaml declares them), the healthy deployment has warnings
    // only: plain http on loopback, functions' settings not compared.
    put_template_alarms(&secret_id, "rotate").await;
    let doctor = cli.run(&["doctor"]);
    assert_eq!(doctor.code, 0, "{}", doctor.stdout);
    assert!(doctor.stdout.contains("the served JWKS is the keyring's"), "{}", doctor.stdout);
    assert!(doctor.stdout.contains("stalled rotation: kms-jwt-stalled-rotation"), "{}", doctor.stdout);

    // Drift: someone replaced the current key's policy; someone disabled the next key.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let current_arn = arn_of(&after, &current);
    let loose = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Loose", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*", "Resource": "*"}]});
    kms.put_key_policy()
        .key_id(&current_arn)
        .policy_name("default")
        .policy(loose.to_string())
        .send()
        .await
        .unwrap();
    kms.disable_key().key_id(arn_of(&after, &new_next)).send().await.unwrap();

    let doctor = cli.run(&["doctor"]);
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    assert!(
        doctor.stdout.contains(&format!("{current} (us-east-1): the key policy differs")),
        "{}",
        doctor.stdout
    );
    assert!(doctor.stdout.contains(&format!("{new_next} (next key) is Disabled")), "{}", doctor.stdout);
    assert!(doctor.stdout.contains("fix: as a key-policy administrator"), "{}", doctor.stdout);
    let status = cli.run(&["status"]);
    assert_eq!(status.code, 1);
    assert!(status.stdout.contains(&format!("next key {new_next} is Disabled in KMS")), "{}", status.stdout);
}

/// The three alarms infra/template.yaml declares (StalledRotationAlarm, RetirementBacklogAlarm,
/// RotateErrorsAlarm), on the metrics and dimensions doctor looks for.
async fn put_template_alarms(keyring: &str, rotate_function: &str) {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    let alarms = [
        ("kms-jwt-stalled-rotation", "kms-jwt", "CurrentKeyAgeSeconds", ("Keyring", keyring), 2_599_200.0),
        ("kms-jwt-retirement-backlog", "kms-jwt", "RetiringKeys", ("Keyring", keyring), 0.0),
        ("kms-jwt-rotate-errors", "AWS/Lambda", "Errors", ("FunctionName", rotate_function), 0.0),
    ];
    for (name, namespace, metric, (dimension, value), threshold) in alarms {
        cloudwatch
            .put_metric_alarm()
            .alarm_name(format!("{name}-{}", uuid::Uuid::new_v4()))
            .namespace(namespace)
            .metric_name(metric)
            .dimensions(Dimension::builder().name(dimension).value(value).build())
            .statistic(Statistic::Maximum)
            .period(3_600)
            .evaluation_periods(1)
            .threshold(threshold)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .unwrap();
    }
}
