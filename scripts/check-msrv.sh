#!/usr/bin/env bash
# The declared minimum Rust version (`rust-version` in Cargo.toml) against what it promises.
#
# 1. From the lock file: fails when any locked dependency declares a higher `rust-version` than
#    the workspace does, and names them (cargo metadata, no build; a second or two).
# 2. The build: `cargo +<rust-version> check --workspace --all-targets --locked` with a toolchain
#    of exactly that version, installed with rustup (--profile minimal) when missing. Skipped with
#    --no-build. If rustup cannot install the toolchain, this says so loudly and carries on with
#    check 1 only, unless MSRV_STRICT=1, which makes that a failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

build=1
[[ "${1:-}" == "--no-build" ]] && build=0

command -v python3 >/dev/null || die "python3 is required to read cargo metadata"
meta="$(mktemp)"
trap 'rm -f "$meta"' EXIT
cargo metadata --format-version 1 --locked > "$meta"
msrv="$(python3 - "$meta" <<'PY'
import json, sys

def key(version):
    return tuple(int(part) for part in version.split("."))

def say(line):
    print(line, file=sys.stderr)

meta = json.load(open(sys.argv[1]))
ours = set(meta["workspace_members"])
declared = {p["rust_version"] for p in meta["packages"] if p["id"] in ours}
if len(declared) != 1 or None in declared:
    sys.exit(f"check-msrv: the workspace crates must declare one rust-version, found {sorted(map(str, declared))}")
msrv = declared.pop()
deps = [p for p in meta["packages"] if p["id"] not in ours and p.get("rust_version")]
above = [p for p in deps if key(p["rust_version"]) > key(msrv)]
if above:
    say(f'check-msrv: Cargo.toml says rust-version = "{msrv}", but these locked dependencies need more:')
    for p in sorted(above, key=lambda p: (key(p["rust_version"]), p["name"]), reverse=True):
        say(f'  {p["name"]} {p["version"]} needs {p["rust_version"]}')
    sys.exit(1)
highest = max(key(p["rust_version"]) for p in deps)
setters = sorted(p["name"] for p in deps if key(p["rust_version"]) == highest)
more = ", ..." if len(setters) > 4 else ""
say(f"check-msrv: rust-version {msrv}; {len(deps)} locked dependencies declare one, the highest "
    f"{'.'.join(map(str, highest))} ({len(setters)} crates: {', '.join(setters[:4])}{more})")
print(msrv)
PY
)"

[[ $build == 1 ]] || exit 0

if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
  log "installing Rust $msrv (rustup, minimal profile) for the MSRV build"
  if ! rustup toolchain install "$msrv" --profile minimal --no-self-update >&2; then
    [[ "${MSRV_STRICT:-0}" == 1 ]] && die "could not install Rust $msrv: the MSRV build cannot run"
    warning="could not install Rust $msrv with rustup: the MSRV BUILD WAS NOT DONE"
    warning+=", only the lock file was checked (MSRV_STRICT=1 makes this a failure)"
    printf '\033[1;33mwarning:\033[0m %s\n' "$warning" >&2
    exit 0
  fi
fi
log "MSRV build: cargo +$msrv check --workspace --all-targets --locked"
cargo "+$msrv" check --workspace --all-targets --locked
