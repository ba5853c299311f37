#!/usr/bin/env bash
# Create (or refresh) the project's Python virtual environment from the committed lock:
# LocalStack for AWS emulation and cargo-lambda for the local Lambda runtime.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOCK="$REPO_ROOT/tools/requirements.lock"
STAMP="$VENV/.lock-sha256"
# The contents only: a path in the hash would make every checkout (worktree, clone) re-sync.
want="$(cat "$LOCK" "$REPO_ROOT/tools/bootstrap.txt" | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
command -v python3.11 >/dev/null || command -v python3 >/dev/null || die "python3 (3.11) is required"
PY="$(command -v python3.11 || command -v python3)"
log "creating Python environment in $VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REPO_ROOT/tools/bootstrap.txt"
log "installing LocalStack and cargo-lambda from tools/requirements.lock"
"$VENV/bin/uv" pip sync --quiet --python "$VENV/bin/python" --require-hashes "$LOCK"
echo "$want" > "$STAMP"
