#!/usr/bin/env bash
# Install a pinned cargo subcommand from the default crate registry with its own lock file (`cargo install
# --locked`) into a per-version directory, and print the path of its binary. Does nothing but
# print the path when that version is installed already.
#
#   scripts/cargo-tool.sh cargo-deny   # -> .../cargo-deny-0.20.2/bin/cargo-deny
#
# The directory is outside the work tree ($KMS_JWT_TOOLS, by default ~/.cargo/kms-jwt-tools) so
# that fresh clones on the same machine share it; a fresh machine builds the tool once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The pinned versions. Change them here only.
declare -A PINNED=(
  [cargo-deny]=0.20.2
  [cargo-fuzz]=0.13.2
)

name="${1:?usage: cargo-tool.sh <tool>}"
version="${PINNED[$name]:-}"
[[ -n "$version" ]] || die "cargo-tool.sh: no pinned version for '$name'"

root="${KMS_JWT_TOOLS:-${CARGO_HOME:-$HOME/.cargo}/kms-jwt-tools}/$name-$version"
bin="$root/bin/$name"

if [[ -x "$bin" ]] && "$bin" "${name#cargo-}" --version 2>/dev/null | grep -qF " $version"; then
  echo "$bin"
  exit 0
fi

log "installing $name $version (cargo install --locked) into $root"
start=$SECONDS
# Its own target directory: the workspace's CARGO_TARGET_DIR is not for tools, and a temporary
# one is removed when the install is done.
build_dir="$(mktemp -d)"
trap 'rm -rf "$build_dir"' EXIT
CARGO_TARGET_DIR="$build_dir" cargo install --quiet --locked --root "$root" "$name" --version "=$version" >&2
log "$name $version installed in $((SECONDS - start)) s"
echo "$bin"
