#!/usr/bin/env bash
# The main job, end to end on this machine: LocalStack up, the three functions running under
# `cargo lambda watch`, keys bootstrapped, a token signed through KMS, the JWKS fetched over
# HTTP from the jwks function URL, the token verified; then a rotation, and both the old and
# the new token verified; then the minting policy (in SSM Parameter Store): a workload exchanges
# its IAM identity for a token (POST /token) that verifies, and a mint outside the policy is
# refused. Stops everything it started.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/scripts/watch.sh"
cd "$REPO_ROOT"

step() { printf '\n\033[1;32m[%s]\033[0m %s\n' "$1" "$2"; }

"$REPO_ROOT/scripts/python-env.sh"
# The sign function as the template deploys it behind API Gateway (SIGN_TRANSPORT=api-gateway),
# under a second `cargo lambda watch`.
API_PORT=$((WATCH_PORT + 1))
api_watch() { WATCH_PORT=$API_PORT WATCH_PID_FILE="$STATE_DIR/watch-$API_PORT.pid" WATCH_LOG="$STATE_DIR/watch-$API_PORT.log" "$@"; }
cleanup() {
  api_watch watch_stop
  watch_stop
  stop_localstack_if_started
}
trap cleanup EXIT
ensure_localstack

# A fresh keyring name per run, so the demo also works against a LocalStack left running.
run_id="$(date +%s)"
env_file="$STATE_DIR/demo.env"
policy_parameter="/kms-jwt/demo-$run_id/minting-policy"
# The policy from Parameter Store, as deployed (not from the environment, as in other local runs;
# MINTING_POLICY blank, so that .cargo/config.toml's allow-all policy does not apply either).
sed -e "s|^KEYRING_SECRET_ID=.*|KEYRING_SECRET_ID=kms-jwt/demo-$run_id/keyring|" \
    -e "s|^MINTING_POLICY=.*|MINTING_POLICY=\nMINTING_POLICY_PARAMETER=$policy_parameter|" .env.localstack >"$env_file"
api_env_file="$STATE_DIR/demo-api.env"
{ cat "$env_file"; echo "SIGN_TRANSPORT=api-gateway"; } >"$api_env_file"
ISSUER="$(grep '^ISSUER=' "$env_file" | cut -d= -f2-)"
JWKS_URL="http://127.0.0.1:$WATCH_PORT/lambda-url/jwks/.well-known/jwks.json"
cargo build --quiet -p kms-jwt-tests --bin verify-token -p kms-jwt-cli
VERIFY="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/verify-token"
# The operator's command line, on this deployment: rotate's settings from the env file, the
# Lambda API of `cargo lambda watch` for its acting commands.
kms_jwt() {
  (set -a; source "$env_file"; set +a
   AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$WATCH_PORT" \
     exec "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/kms-jwt" --config-from-env --function-name rotate "$@")
}
json_field() { "$VENV/bin/python" -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Who may mint what: the demo's policy (scripts/demo-minting-policy.json) as the parameter's
# first version. PutParameter through the SDK LocalStack ships with (no AWS CLI needed).
put_policy() {  # $1: policy file; LocalStack's endpoint and region from the env file
  (set -a; source "$env_file"; set +a
   exec "$VENV/bin/python" - "$policy_parameter" "$1") <<'PY'
import os, sys, boto3
name, path = sys.argv[1], sys.argv[2]
ssm = boto3.client("ssm", region_name=os.environ["AWS_REGION"], endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
out = ssm.put_parameter(Name=name, Value=open(path).read(), Type="String", Overwrite=True)
print(f"{name}: version {out['Version']}")
PY
}
put_policy scripts/demo-minting-policy.json

watch_start "$env_file"
api_watch watch_start "$api_env_file"

step 1 "rotate (EventBridge scheduled event): bootstrap the keyring with a current and a next key in KMS"
invoke rotate "$(cat events/rotate-scheduled.json)" | tee "$STATE_DIR/rotate-1.json" | "$VENV/bin/python" -m json.tool

step 2 "sign: one KMS Sign call, the private key never leaves KMS"
invoke sign "$(cat events/sign.json)" >"$STATE_DIR/sign-1.json"
TOKEN_A="$(json_field "['token']" <"$STATE_DIR/sign-1.json")"
echo "kid=$(json_field "['kid']" <"$STATE_DIR/sign-1.json") expires_at=$(json_field "['expires_at']" <"$STATE_DIR/sign-1.json")"
echo "token=${TOKEN_A:0:60}..."

step 3 "GET $JWKS_URL"
curl -sS -i "$JWKS_URL"
echo

step 4 "verify the token against the JWKS fetched over HTTP (jsonwebtoken, alg taken from the JWK)"
"$VERIFY" --jwks-url "$JWKS_URL" --issuer "$ISSUER" "$TOKEN_A"

step 5 "rotate now ({\"action\":\"rotate\",\"force\":true}): next becomes current, current becomes previous, a new next is created"
echo "(forced because the demo does not wait the pre-publication time; a scheduled run waits for it)"
invoke rotate "$(cat events/rotate-force.json)" >"$STATE_DIR/rotate-2.json"
echo "transitions: $(json_field "['transitions']" <"$STATE_DIR/rotate-2.json")"
echo "\$ kms-jwt status"
kms_jwt status || log "kms-jwt status exited $?: something needs attention (above)"
sleep 3   # the functions cache the keyring for KEYRING_CACHE_TTL (2s in this demo)

step 6 "sign again: the new token carries the new current kid"
invoke sign "$(cat events/sign.json)" >"$STATE_DIR/sign-2.json"
TOKEN_B="$(json_field "['token']" <"$STATE_DIR/sign-2.json")"
KID_A="$(json_field "['kid']" <"$STATE_DIR/sign-1.json")"
KID_B="$(json_field "['kid']" <"$STATE_DIR/sign-2.json")"
echo "old kid=$KID_A"
echo "new kid=$KID_B"
[[ "$KID_A" != "$KID_B" ]] || die "the token after rotation was signed with the old key"

step 7 "fetch the JWKS again and verify both tokens: the old key stays published until its tokens expire"
curl -sS "$JWKS_URL" | "$VENV/bin/python" -c 'import json,sys; [print("  published", k["kid"], k["alg"]) for k in json.load(sys.stdin)["keys"]]'
"$VERIFY" --jwks-url "$JWKS_URL" --issuer "$ISSUER" "$TOKEN_A" "$TOKEN_B"

step 8 "who may mint what: the policy in SSM ($policy_parameter) lets this backend mint for users of https://api.example.com only"
"$VENV/bin/python" -c 'import json,sys; [print("  rule", r["id"], "->", r["audiences"]) for r in json.load(open(sys.argv[1]))["rules"]]' scripts/demo-minting-policy.json
echo "sign {\"claims\": {\"sub\": \"admin\", \"aud\": \"https://payments.example.com\"}}"
if invoke sign '{"claims": {"sub": "admin", "aud": "https://payments.example.com"}}' >"$STATE_DIR/refused.json" 2>"$STATE_DIR/refused.err"; then
  die "a mint outside the policy was signed"
fi
# cargo lambda prints the error type, then the message folded over lines behind "×" and "│".
echo "  refused: $(grep -o 'NotAllowed' "$STATE_DIR/refused.err" | head -n 1): $(sed -n 's/^ *[×│] *//p' "$STATE_DIR/refused.err" | tr '\n' ' ')"
grep -q NotAllowed "$STATE_DIR/refused.err" || { cat "$STATE_DIR/refused.err" >&2; die "expected NotAllowed"; }

step 9 "identity exchange (POST /token, IAM-authorized): the workload role issuer-service gets a token about itself"
api_watch invoke sign "$(cat events/token-http-api.json)" >"$STATE_DIR/token.json"
echo "HTTP $(json_field "['statusCode']" <"$STATE_DIR/token.json")"
TOKEN_C="$(json_field "['body']" <"$STATE_DIR/token.json" | json_field "['WebIdentityToken']")"
"$VERIFY" --jwks-url "$JWKS_URL" --issuer "$ISSUER" "$TOKEN_C"

printf '\n\033[1;32mdemo complete:\033[0m keys rotated, tokens signed in KMS, JWKS served over HTTP, tokens verified, a workload token exchanged, a mint outside the policy refused.\n'
