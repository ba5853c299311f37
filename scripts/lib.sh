# Shared helpers for the project's scripts. Source it; do not run it.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KMS_JWT_VENV:-$REPO_ROOT/.venv}"
STATE_DIR="$REPO_ROOT/.local"           # pid files, logs, LocalStack data (git-ignored)
mkdir -p "$STATE_DIR"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Offline-safe defaults for talking to LocalStack. Real deployments get credentials from the
# Lambda execution role instead; these dummy values only satisfy the SDK's signer.
localstack_env() {
  export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:${LOCALSTACK_PORT:-4566}}"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_DEFAULT_REGION="$AWS_REGION"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
  export AWS_EC2_METADATA_DISABLED=true
}

# Start LocalStack unless one already runs for us; stop_localstack_if_started (for an EXIT
# trap) then stops only what this script started.
STARTED_LOCALSTACK=0
ensure_localstack() {
  if ! "$REPO_ROOT/scripts/localstack.sh" status >/dev/null 2>&1; then
    "$REPO_ROOT/scripts/localstack.sh" start
    STARTED_LOCALSTACK=1
  fi
}
stop_localstack_if_started() {
  if [[ $STARTED_LOCALSTACK == 1 ]]; then "$REPO_ROOT/scripts/localstack.sh" stop || true; fi
}
