#!/usr/bin/env bash
# Install (or refresh) the Node verifiers of the end-to-end tests, aws-jwt-verify and jose (and
# @noble/curves, @noble/post-quantum for ES256K and ML-DSA),
# into tests/node/node_modules with `npm ci` from the committed tests/node/package-lock.json.
# Does nothing when they are installed from the current lock file already.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_DIR="$REPO_ROOT/tests/node"
STAMP="$NODE_DIR/node_modules/.lock-sha256"
# The contents only: a path in the hash would make every checkout re-install.
want="$(cat "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json" | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
command -v node >/dev/null || die "node (20 or newer) is required for the Node verifiers of the tests"
command -v npm >/dev/null || die "npm is required to install the Node verifiers from tests/node/package-lock.json"
major="$(node -p 'process.versions.node.split(".")[0]')"
[[ "$major" -ge 20 ]] || die "node 20 or newer is required (found $(node --version))"
log "installing the Node verifiers from tests/node/package-lock.json"
(cd "$NODE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
echo "$want" > "$STAMP"
