#!/usr/bin/env bash
# Lint and scan the SAM template: cfn-lint (0 errors, 0 warnings), checkov (0 failed checks;
# the few skips sit in the template with their reasons), the IAM assertions, and that the
# rendered test stacks (shared/fixtures/test-stacks.json) are current.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$REPO_ROOT/scripts/python-env.sh"   # provides uv

LINT_VENV="$REPO_ROOT/.venv-lint"
LOCK="$REPO_ROOT/tools/lint-requirements.lock"
STAMP="$LINT_VENV/.lock-sha256"
want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
  log "installing cfn-lint and checkov from tools/lint-requirements.lock"
  python3 -m venv "$LINT_VENV"
  "$VENV/bin/uv" pip sync --quiet --python "$LINT_VENV/bin/python" --require-hashes "$LOCK"
  echo "$want" >"$STAMP"
fi

template="$REPO_ROOT/infra/template.yaml"
log "cfn-lint infra/template.yaml"
"$LINT_VENV/bin/cfn-lint" "$template"
log "checkov infra/template.yaml"
"$LINT_VENV/bin/checkov" -f "$template" --framework cloudformation --skip-download --compact --quiet
log "IAM assertions"
"$LINT_VENV/bin/python" "$REPO_ROOT/infra/check_template.py" "$template"
log "test-stack fixture (shared/fixtures/test-stacks.json) matches the template"
"$LINT_VENV/bin/python" "$REPO_ROOT/infra/render_test_stacks.py" --check
