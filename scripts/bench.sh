#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md in one run, in four parts:
#   artifacts     release builds of the three functions as Lambda gets them (cargo lambda
#                 build --release), their binary and zip sizes, their dependency counts;
#   criterion     the Criterion benches of the in-process hot paths;
#   instructions  instructions per token verification under callgrind (needs valgrind);
#   localstack    LocalStack up, then kms-jwt-bench: the sign function next to raw KMS Sign,
#                 AWS calls per token, Secrets Manager reads per 10,000 JWKS requests, cold
#                 starts of the artifacts.
# The report goes to stdout and target/bench/report.md. Arguments go to kms-jwt-bench
# (e.g. `scripts/bench.sh --rounds 3`); BENCH_PARTS="criterion instructions" runs only those.
# Benchmarks measure; they never fail on a number.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/python-env.sh"
export PATH="$VENV/bin:$PATH"   # cargo-lambda
OUT="$REPO_ROOT/target/bench"
mkdir -p "$OUT"
REPORT="$OUT/report.md"
FUNCTIONS=(rotate sign jwks)
BENCH_PARTS="${BENCH_PARTS:-artifacts criterion instructions localstack}"
want() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }
TARGET=x86_64-unknown-linux-gnu   # the only Rust target on this machine; the template deploys arm64

{
  echo "# kms-jwt benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "Machine: $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc -V)."
  echo
} > "$REPORT"

if want artifacts || want localstack; then
  log "release build of the functions, as Lambda gets them (cargo lambda build --release)"
  packages=()
  for fn in "${FUNCTIONS[@]}"; do packages+=(-p "kms-jwt-$fn"); done
  build=(cargo lambda build --release --compiler cargo --target "$TARGET" "${packages[@]}")
  "${build[@]}" --lambda-dir target/lambda
  "${build[@]}" --lambda-dir target/lambda-zip --output-format zip
fi

if want artifacts; then
  {
    echo "## Artifacts ($TARGET, release profile of Cargo.toml)"
    echo
    echo "| function | binary | zip | crates in its dependency graph |"
    echo "|---|---|---|---|"
    for fn in "${FUNCTIONS[@]}"; do
      binary=$(stat -c %s "target/lambda/$fn/bootstrap")
      zip=$(stat -c %s "target/lambda-zip/$fn/bootstrap.zip")
      # Distinct name+version of every crate compiled for the function (itself excluded).
      deps=$(cargo tree -p "kms-jwt-$fn" -e normal,build --target "$TARGET" --prefix none \
        | sed -E 's/ \(.*$//' | sort -u | grep -vc "^kms-jwt-$fn ")
      awk -v fn="$fn" -v b="$binary" -v z="$zip" -v d="$deps" \
        'BEGIN { printf "| %s | %.2f MB | **%.2f MB** | %d |\n", fn, b / 1e6, z / 1e6, d }'
    done
    echo
  } >> "$REPORT"
fi

if want criterion; then
  log "Criterion benches of the in-process hot paths"
  rm -rf "$REPO_ROOT/target/criterion"
  CRITERION_HOME="$REPO_ROOT/target/criterion" cargo bench --target "$TARGET" -p kms-jwt-tests --bench hot_paths
  {
    echo "## In process (Criterion; median point estimate of this run)"
    echo
    "$VENV/bin/python" - "$REPO_ROOT/target/criterion" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
print("| bench | median | per second |\n|---|---|---|")
for estimates in sorted(root.glob("**/new/estimates.json")):
    name = "/".join(estimates.parent.parent.relative_to(root).parts)
    ns = json.loads(estimates.read_text())["median"]["point_estimate"]
    shown = f"{ns / 1000:.3f} µs" if ns < 1e6 else f"{ns / 1e6:.3f} ms"
    print(f"| {name} | {shown} | {1e9 / ns:,.0f} |")
PY
    echo
  } >> "$REPORT"
fi

if want instructions && ! command -v valgrind >/dev/null; then
  log "valgrind not installed: skipping the instruction counts"
elif want instructions; then
  log "instructions per verification under callgrind (repeatable, unlike time on a shared machine)"
  cargo build --release --target "$TARGET" -p kms-jwt-tests --example verify_cost
  exe="target/$TARGET/release/examples/verify_cost"
  instructions() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" "$@" 2>&1 \
      | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
  }
  N=300
  {
    echo "## Verification cost in instructions (callgrind; $N verifications minus setup)"
    echo
    echo "| alg | jsonwebtoken, our token | same, typed claims | jsonwebtoken, minimal token | raw verify | throughput vs raw (raw ÷ ours) | typed vs raw |"
    echo "|---|---|---|---|---|---|---|"
    for alg in es256 rs256; do
      key="$OUT/verify-cost-$alg.pk8"   # a benchmark key, made here before anything is counted
      rm -f "$key"
      "$exe" "$alg" raw 0 "$key"
      row="| ${alg^^} "
      declare -A per=()
      for mode in ours typed minimal raw; do
        full=$(instructions "$alg" "$mode" "$N" "$key")
        base=$(instructions "$alg" "$mode" 0 "$key")
        per[$mode]=$(( (full - base) / N ))
        row+="| ${per[$mode]} "
      done
      ratio() { awk -v r="${per[raw]}" -v o="$1" 'BEGIN { printf "%.1f %%", 100 * r / o }'; }
      echo "$row| **$(ratio "${per[ours]}")** | $(ratio "${per[typed]}") |"
    done
    echo
  } >> "$REPORT"
fi

want localstack || { cat "$REPORT"; exit 0; }
trap stop_localstack_if_started EXIT
ensure_localstack
localstack_env

log "kms-jwt-bench against LocalStack"
cargo build --release --target "$TARGET" -p kms-jwt-tests --bin kms-jwt-bench
"target/$TARGET/release/kms-jwt-bench" --functions-dir target/lambda "$@" >> "$REPORT"

cat "$REPORT"
log "report: $REPORT"
