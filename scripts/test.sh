#!/usr/bin/env bash
# Run every test: lint, unit and simulation tests, then the LocalStack integration and
# end-to-end tests. Starts LocalStack itself (unless one is already running for us) and stops
# what it started, whatever happens.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/python-env.sh"
"$REPO_ROOT/scripts/node-env.sh"

log "lint: cargo fmt --check, clippy -D warnings"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log "MSRV: no locked dependency needs a newer Rust than rust-version, and the workspace builds with it"
"$REPO_ROOT/scripts/check-msrv.sh"

log "cargo deny: licences, bans and sources of the locked graph (deny.toml; advisories cannot be fetched here)"
"$REPO_ROOT/scripts/deny.sh"

log "fuzzing: each cargo fuzz target of fuzz/ for ${FUZZ_SECONDS:-30} s (parsers of sign requests, keyrings, public keys)"
"$REPO_ROOT/scripts/fuzz.sh"

log "benchmarks, once each in test mode (they measure nothing here; this keeps them building and running)"
cargo test -p kms-jwt-tests --benches

log "infrastructure: cfn-lint, checkov, IAM assertions"
"$REPO_ROOT/scripts/lint-infra.sh"

trap stop_localstack_if_started EXIT
ensure_localstack
localstack_env
export PATH="$VENV/bin:$PATH"   # cargo-lambda for the end-to-end test

log "building the function binaries (the end-to-end tests run them under cargo lambda watch) and the kms-jwt CLI"
cargo build -p kms-jwt-rotate -p kms-jwt-sign -p kms-jwt-jwks -p kms-jwt-cli

log "cargo test (unit, simulation, LocalStack integration, end-to-end)"
RUST_BACKTRACE=0 cargo test --workspace --lib --bins --tests --no-fail-fast -- --test-threads "${TEST_THREADS:-4}"

log "the LocalStack bench, once with tiny counts (it measures nothing here; this keeps it working)"
cargo run -q -p kms-jwt-tests --bin kms-jwt-bench -- --rounds 1 --tokens 4 --batches 1 \
  --jwks-requests 200 --cold-starts 1 --functions-dir target/debug > /dev/null
