#!/usr/bin/env bash
# cargo deny on the locked dependency graph with deny.toml: licences, bans (wildcards, duplicate
# versions; `cargo tree -d` shows who brings a duplicate) and sources. Installs the pinned
# cargo-deny first (scripts/cargo-tool.sh).
# Advisories are not checked: their database cannot be fetched here (deny.toml says why).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

deny="$("$REPO_ROOT/scripts/cargo-tool.sh" cargo-deny)"
"$deny" --locked check --hide-inclusion-graph licenses bans sources
printf '\033[1;33mnote:\033[0m %s\n' \
  "advisories NOT checked: the RustSec database cannot be fetched from this machine (deny.toml)" >&2
