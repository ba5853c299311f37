#!/usr/bin/env bash
# Re-resolve tools/requirements.lock. LocalStack 4.13.1 is the newest release that runs on
# Python 3.11, and its transitive dependencies break when newer cbor2/pyOpenSSL/cryptography
# are picked, so resolution is frozen to the day before those releases.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$REPO_ROOT/scripts/python-env.sh" 2>/dev/null || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q -r "$REPO_ROOT/tools/bootstrap.txt"; }
"$VENV/bin/uv" pip compile "$REPO_ROOT/tools/requirements.in" \
  --python-version 3.11 --generate-hashes \
  --exclude-newer 2026-02-10 --exclude-newer-package cargo-lambda=2026-11-01 \
  -o "$REPO_ROOT/tools/requirements.lock"
"$VENV/bin/uv" pip compile "$REPO_ROOT/tools/lint-requirements.in" \
  --python-version 3.11 --generate-hashes \
  -o "$REPO_ROOT/tools/lint-requirements.lock"
