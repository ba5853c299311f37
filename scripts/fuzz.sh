#!/usr/bin/env bash
# Build the cargo fuzz targets of fuzz/ (libFuzzer) and run each for a bounded time, starting
# from the committed seeds (fuzz/seeds/<target>) plus whatever earlier runs left in
# fuzz/corpus/<target> (git-ignored), with the target's dictionary (fuzz/dicts/<target>.dict). Fails on the first crash: a panic, an assertion of the
# target, an input taking longer than FUZZ_INPUT_TIMEOUT seconds, or memory over 2 GB; the input
# is saved under fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                      # every target, FUZZ_SECONDS (30) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh spki_der
#
# Stable Rust: with `--sanitizer none`, cargo fuzz needs no nightly flag (-Cpasses=sancov-module
# and -Cllvm-args are stable). No AddressSanitizer: the project's code forbids `unsafe`, and the
# parsers fuzzed here are pure Rust.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT/fuzz"

seconds="${FUZZ_SECONDS:-30}"
input_timeout="${FUZZ_INPUT_TIMEOUT:-10}"
targets=("$@")
((${#targets[@]})) || targets=(sign_request keyring_json spki_der minting_policy)
# The same flags for build and run, or `run` builds again. 16 codegen units: the build (the AWS
# SDK comes along with the library) is most of the time a short run takes.
flags=(--sanitizer none --codegen-units 16)

cargo fmt --manifest-path Cargo.toml -- --check
# Refuses to go on if fuzz/Cargo.lock would have to change (cargo fuzz has no --locked).
cargo metadata --locked --format-version 1 > /dev/null

fuzz="$("$REPO_ROOT/scripts/cargo-tool.sh" cargo-fuzz)"
log "building the fuzz targets (cargo fuzz build ${flags[*]})"
"$fuzz" fuzz build "${flags[@]}"

for target in "${targets[@]}"; do
  [[ -d "seeds/$target" ]] || die "no seeds for fuzz target '$target' (fuzz/seeds/$target)"
  mkdir -p "corpus/$target"
  options=(-max_total_time="$seconds" -timeout="$input_timeout" -rss_limit_mb=2048 -print_final_stats=1)
  [[ -f "dicts/$target.dict" ]] && options+=(-dict="dicts/$target.dict")
  log "fuzzing $target for ${seconds} s"
  if ! "$fuzz" fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- "${options[@]}" \
    2> "$STATE_DIR/fuzz-$target.log"; then
    tail -n 60 "$STATE_DIR/fuzz-$target.log" >&2
    die "fuzz target $target failed; the input is in fuzz/artifacts/$target/ (full log: .local/fuzz-$target.log)"
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|cov: .*corp:' \
    "$STATE_DIR/fuzz-$target.log" | tail -n 4 >&2
done
