"""Assert the IAM rules of infra/template.yaml: least privilege, stated as tests.

Run by scripts/lint-infra.sh (part of `make test`). Uses cfn-lint's YAML loader, which
understands the CloudFormation short tags (!Ref, !Sub, !GetAtt).
"""
import sys

from cfnlint.decode import cfn_yaml

TEMPLATE = sys.argv[1] if len(sys.argv) > 1 else "infra/template.yaml"
resources = cfn_yaml.load(TEMPLATE)["Resources"]
passed, failed = 0, []


def check(name, condition):
    global passed
    if condition:
        passed += 1
    else:
        failed.append(name)


def statements(function):
    out = []
    for policy in resources[function]["Properties"].get("Policies", []):
        out.extend(policy["Statement"])
    return out


def actions(statement):
    value = statement["Action"]
    return [value] if isinstance(value, str) else list(value)


def all_actions(function):
    return {a for s in statements(function) for a in actions(s)}


functions = ["RotateFunction", "SignFunction", "JwksFunction"]

for function in functions:
    for statement in statements(function):
        sid = statement.get("Sid", "?")
        check(f"{function}/{sid}: no wildcard in any action", all("*" not in a for a in actions(statement)))
        if statement.get("Resource") == "*":
            check(f"{function}/{sid}: Resource '*' is narrowed by a condition", bool(statement.get("Condition")))
        check(f"{function}/{sid}: allow only", statement["Effect"] == "Allow")

sign = all_actions("SignFunction")
check("sign may sign", "kms:Sign" in sign)
check("sign grants nothing but Sign, secret read, decrypt", sign <= {"kms:Sign", "secretsmanager:GetSecretValue", "kms:Decrypt"})
check("sign cannot create, disable or delete keys", not sign & {"kms:CreateKey", "kms:DisableKey", "kms:ScheduleKeyDeletion"})
for statement in statements("SignFunction"):
    if "kms:Sign" in actions(statement):
        check("sign signs only with keys tagged for this keyring", "aws:ResourceTag/kms-jwt:keyring" in statement["Condition"]["StringEquals"])

jwks = all_actions("JwksFunction")
check("jwks only reads the secret", jwks <= {"secretsmanager:GetSecretValue", "kms:Decrypt"})

rotate = {s["Sid"]: s for s in statements("RotateFunction")}
create = rotate["CreateOnlyTaggedSigningKeysOfTheConfiguredSpec"]["Condition"]["StringEquals"]
check("rotate creates only tagged keys", "aws:RequestTag/kms-jwt:keyring" in create)
check("rotate creates only SIGN_VERIFY keys", create.get("kms:KeyUsage") == "SIGN_VERIFY")
check("rotate creates only keys of the configured spec", "kms:KeySpec" in create)
manage = rotate["ManageOnlyOwnSigningKeys"]
check("rotate manages only keys tagged for this keyring", "aws:ResourceTag/kms-jwt:keyring" in manage["Condition"]["StringEquals"])
check("rotate never signs", "kms:Sign" not in all_actions("RotateFunction"))
check("rotate writes only its own secret", rotate["KeyringReadWrite"]["Resource"] == {"Ref": "Keyring"})
check("rotate runs one at a time", resources["RotateFunction"]["Properties"].get("ReservedConcurrentExecutions") == 1)
check("rotate has a dead-letter queue", "DeadLetterQueue" in resources["RotateFunction"]["Properties"])

sign_route = resources["SignFunction"]["Properties"]["Events"]["Sign"]["Properties"]
check("POST /sign requires IAM authorization", sign_route.get("Auth", {}).get("Authorizer") == "AWS_IAM")
check("the keyring secret is encrypted with the customer-managed key", resources["Keyring"]["Properties"].get("KmsKeyId") == {"Ref": "DataKey"})
key_policy = resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
check("the key policy has no wildcard principal", all(s["Principal"] != "*" and s["Principal"].get("AWS") != "*" for s in key_policy))

for name in failed:
    print(f"FAILED: {name}")
print(f"{passed} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
