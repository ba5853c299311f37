"""Assert the IAM rules of infra/template.yaml: least privilege, stated as tests.

Run by scripts/lint-infra.sh (part of `make test`). Uses cfn-lint's YAML loader, which
understands the CloudFormation short tags (!Ref, !Sub, !GetAtt).

The rule behind them: access to a signing key comes from the key's own policy (written by
rotate at CreateKey from KEY_ADMIN_ROLE_ARN, KEY_USER_ROLE_ARNS and KEY_POLICY_ADMIN_ARNS),
never from a tag. IAM only lets rotate create and tag keys, narrowed by what the request
carries (and, for retagging, by the key's own keyring tag). The key policy denies PutKeyPolicy
and CreateGrant to everyone but the break-glass administrators (KeyPolicyAdminArns), rotate
included, so rotate creates keys bypassing the lockout check (no condition against it).

Multi-Region (docs/multi-region.md) follows the same rule: replicas are created only through
ReplicateKey, which each primary's own policy allows (never an IAM Allow); IAM only denies it
outside ReplicaRegions (the one IAM statement naming Regions, so that adding a Region is a
stack update), lets rotate create replicas with this keyring's tags, and read (and, through
Secrets Manager, encrypt) the other Regions' copies of its own secret. sign and jwks read their
own Region's copy only. No other IAM document depends on ReplicaRegions, and none on which
Region is home. A single-Region stack (the default parameters) resolves to the resources it had
before the multi-Region parameters; the conditions are evaluated below for that, for a home and
a replica Region, and across a failover.

Also asserted: the schedule's execution role trusts this stack's own schedule group only
(aws:SourceArn), and the detective control (EventBridge rules on PutKeyPolicy/CreateGrant and on
denied kms:Sign, published to an encrypted SNS topic only those rules may publish to).

And serving JWKS at scale (docs/edge.md): CloudFront only when asked for (JwksEdge, or a custom
domain under auto), HTTPS only, TLSv1.2_2021 with the custom domain, compression, a cache policy
that leaves the TTL to the origin's Cache-Control and keys on nothing the viewer can vary, an
origin reachable only through origin access control bound to the distribution (SourceArn), 404
at the edge for every other path; rotate's invalidation and PutEvents grants on exactly the
distribution and the bus; the issuer following the custom domain, with the rules that keep it in
one place; throttles on every public route; the web ACL parameter wired to the distribution.
"""
import itertools
import json
import sys

from cfnlint.decode import cfn_yaml

TEMPLATE = sys.argv[1] if len(sys.argv) > 1 else "infra/template.yaml"
template = cfn_yaml.load(TEMPLATE)
resources = template["Resources"]
parameters = template["Parameters"]
passed, failed = 0, []


def check(name, condition):
    global passed
    if condition:
        passed += 1
    else:
        failed.append(name)


def as_list(value):
    return [value] if isinstance(value, (str, dict)) else list(value)


def actions(statement):
    return as_list(statement["Action"])


def getatt(logical_id, attribute="Arn"):
    return {"Fn::GetAtt": [logical_id, attribute]}


def is_getatt(value, logical_id, attribute="Arn"):
    """!GetAtt X.Arn loads as {"Fn::GetAtt": ["X", "Arn"]} (or "X.Arn" in the long form)."""
    if not isinstance(value, dict) or list(value) != ["Fn::GetAtt"]:
        return False
    target = value["Fn::GetAtt"]
    if isinstance(target, str):
        target = target.split(".", 1)
    return list(target) == [logical_id, attribute]


def of_type(type_name):
    return {name: r for name, r in resources.items() if r["Type"] == type_name}


# ---- every IAM statement in the template, wherever it sits -------------------------------
def role_statements(role):
    """Statements of a role: its inline Policies plus every AWS::IAM::RolePolicy on it."""
    out = []
    for policy in resources[role]["Properties"].get("Policies", []):
        out.extend(policy["PolicyDocument"]["Statement"])
    for policy in of_type("AWS::IAM::RolePolicy").values():
        if policy["Properties"]["RoleName"] == {"Ref": role}:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def all_iam_statements():
    """(where, statement) for every identity policy: roles, role policies, policies, SAM."""
    out = []
    for name, r in resources.items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                out.extend((name, s) for s in policy["PolicyDocument"]["Statement"])
        elif r["Type"] in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            out.extend((name, s) for s in props["PolicyDocument"]["Statement"])
        elif r["Type"] == "AWS::Serverless::Function":
            for policy in props.get("Policies", []) if isinstance(props.get("Policies"), list) else []:
                if isinstance(policy, dict) and "Statement" in policy:
                    out.extend((name, s) for s in policy["Statement"])
    return out


def condition_blocks(statement):
    """The statement's condition operators, both branches of an !If included."""
    condition = statement.get("Condition", {})
    if list(condition) == ["Fn::If"]:
        return [b for branch in condition["Fn::If"][1:] if isinstance(branch, dict) and "Ref" not in branch
                for b in branch.values()]
    return list(condition.values())


def condition_keys(statement):
    return {key for block in condition_blocks(statement) for key in block}


def role_actions(role):
    """Actions the role's policies allow (Deny statements grant nothing)."""
    return {a for s in role_statements(role) if s["Effect"] == "Allow" for a in actions(s)}


def statements_with(role, action):
    return [s for s in role_statements(role) if s["Effect"] == "Allow" and action in actions(s)]


def only(role, action):
    found = statements_with(role, action)
    check(f"{role}: exactly one statement grants {action}", len(found) == 1)
    return found[0] if found else {"Condition": {}, "Resource": None, "Action": []}


def finish():
    for name in failed:
        print(f"FAILED: {name}")
    print(f"{passed} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


# The rest looks into these; without them there is nothing meaningful to check.
required = ["DataKey", "Keyring", "RotateDeadLetterQueue", "RotateRole", "SignRole", "JwksRole", "SchedulerRole",
            "RotateFunction", "SignFunction", "SignHttpFunction", "JwksFunction", "RotateLogs", "SignLogs",
            "SignHttpLogs", "JwksLogs"]
for name in required:
    check(f"resource {name} exists", name in resources)
check("the template has Rules", "Rules" in template)
if failed:
    finish()

iam = all_iam_statements()
check("the template has IAM statements to check", len(iam) > 10)
# The one Deny in IAM: replication outside the replica Regions (each key's policy allows
# ReplicateKey to its creator without a Region; IAM names the Regions).
DENIES = {("RotateMultiRegionPolicy", "ReplicateOnlyToReplicaRegions")}
for where, statement in iam:
    sid = statement.get("Sid", "?")
    check(f"{where}/{sid}: allow only, but for the one Deny on replication outside ReplicaRegions",
          statement["Effect"] == "Allow" or (where, sid) in DENIES)
    check(f"{where}/{sid}: no wildcard in any action", all("*" not in a for a in actions(statement)))
    if statement.get("Resource") == "*":
        check(f"{where}/{sid}: Resource '*' is narrowed by a condition", bool(statement.get("Condition")))
    # Tags never authorize: no IAM statement reads a resource tag (nor the old kms-jwt ones),
    # except to narrow kms:TagResource to keys already carrying this keyring's tag.
    check(
        f"{where}/{sid}: no aws:ResourceTag condition (access comes from key policies, never tags)",
        not any(k.lower().startswith("aws:resourcetag/") for k in condition_keys(statement))
        or (sid == "TagOnlyWithThisKeyringsTags" and actions(statement) == ["kms:TagResource"]),
    )
    # KMS data-key use of DataKey only through the two services that encrypt with it; the one
    # exception, the replica Regions' copies of the keyring, is checked below (multi-Region).
    for action in actions(statement):
        if action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"):
            if sid == "ReplicaKeyringEncryptionThroughSecretsManager":
                continue
            via = statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
            check(f"{where}/{sid}: {action} only on DataKey", is_getatt(statement.get("Resource"), "DataKey"))
            check(f"{where}/{sid}: {action} only through Secrets Manager or SQS", via is not None)
    # Replication and promotion of keys are never IAM grants: each key's own policy decides
    # (IAM may only deny ReplicateKey outside the replica Regions).
    for action in ("kms:ReplicateKey", "kms:UpdatePrimaryRegion", "kms:SynchronizeMultiRegionKey"):
        check(f"{where}/{sid}: no {action} allowed in IAM (a key's own policy grants it)",
              action not in actions(statement) or statement["Effect"] == "Deny")

# ---- functions use the explicit roles, never SAM-generated ones --------------------------
function_roles = {"RotateFunction": "RotateRole", "SignFunction": "SignRole", "JwksFunction": "JwksRole"}
for function, role in [*function_roles.items(), ("SignHttpFunction", "SignRole")]:
    props = resources[function]["Properties"]
    check(f"{function} runs as {role}", is_getatt(props.get("Role"), role))
    check(f"{function} has no SAM Policies (no generated role)", "Policies" not in props)
for role in [*function_roles.values(), "SchedulerRole"]:
    props = resources[role]["Properties"]
    # A key policy stores a role as its unique id: a replaced role loses every signing key.
    check(f"{role} has no RoleName or Path (nothing can force its replacement)", not {"RoleName", "Path"} & set(props))
for role in function_roles.values():
    trust = resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    check(f"{role} is assumed by Lambda only", [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}])

# ---- rotate ------------------------------------------------------------------------------
rotate = role_actions("RotateRole")
for action in ["kms:GetPublicKey", "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:ListResourceTags",
               "kms:PutKeyPolicy", "kms:DescribeKey", "kms:Sign"]:
    check(f"rotate's IAM grants no {action} (its key policy does)", action not in rotate)
check(
    "rotate's IAM grants nothing beyond create/tag/discover keys, its secret, the DLQ and logs",
    rotate <= {
        "kms:CreateKey", "kms:TagResource", "tag:GetResources", "kms:ListKeys",
        "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage", "secretsmanager:ListSecretVersionIds",
        "kms:Decrypt", "kms:GenerateDataKey", "sqs:SendMessage", "logs:CreateLogStream", "logs:PutLogEvents",
        # multi-Region only (RotateMultiRegionPolicy): the KMS service-linked role, and Encrypt on
        # the replica Regions' keyring keys through Secrets Manager
        "iam:CreateServiceLinkedRole", "kms:Encrypt",
        # with CloudFront: invalidate this stack's distribution; with a lifecycle bus: publish
        # to it (both checked below, "Serving JWKS at scale")
        "cloudfront:CreateInvalidation", "cloudfront:GetInvalidation", "events:PutEvents",
    },
)
# How the template names the keyring: its ARN in a single-Region stack, its name (shared by
# every Region's replica) otherwise; and this Region's secret by ARN or by name-based ARN.
KEYRING_ID = {"Fn::If": ["KeyringByArn", {"Ref": "Keyring"}, {"Fn::Sub": "${AWS::StackName}/keyring"}]}
OWN_SECRET_PATTERN = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/keyring-??????"
ANY_REGION_SECRET_PATTERN = "arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:${AWS::StackName}/keyring-??????"
OWN_SECRET = {"Fn::If": ["KeyringByArn", {"Ref": "Keyring"}, {"Fn::Sub": OWN_SECRET_PATTERN}]}
REPLICA_ALIAS = {"Fn::Sub": "alias/kms-jwt/${AWS::StackName}/keyring"}


def by_sid(role, sid):
    found = [s for s in role_statements(role) if s.get("Sid") == sid]
    check(f"{role}: exactly one statement {sid}", len(found) == 1)
    return found[0] if found else {"Condition": {}, "Resource": None, "Action": []}
allowed_tag_keys = {"kms-jwt:keyring", "kms-jwt:managed-by", "kms-jwt:request"}

creates = statements_with("RotateRole", "kms:CreateKey")
check("rotate's CreateKey comes from two statements only (primaries, and replicas in replica Regions)",
      sorted(s.get("Sid", "") for s in creates)
      == ["CreateOnlyReplicasOfOwnKeys", "CreateOnlyTaggedSigningKeysOfTheConfiguredSpec"])
check("CreateKey is granted alone in its statements", all(actions(s) == ["kms:CreateKey"] for s in creates))
create = by_sid("RotateRole", "CreateOnlyTaggedSigningKeysOfTheConfiguredSpec")
create_eq = create["Condition"].get("StringEquals", {})
check("rotate creates only SIGN_VERIFY keys", create_eq.get("kms:KeyUsage") == "SIGN_VERIFY")
check("rotate creates only keys of the configured spec", create_eq.get("kms:KeySpec") == {"Ref": "KeySpec"})
check("rotate creates only keys tagged for this keyring", create_eq.get("aws:RequestTag/kms-jwt:keyring") == KEYRING_ID)
check("rotate creates only keys tagged managed-by=kms-jwt", create_eq.get("aws:RequestTag/kms-jwt:managed-by") == "kms-jwt")
check(
    "rotate's CreateKey tag keys are a subset of kms-jwt's three",
    set(create["Condition"].get("ForAllValues:StringEquals", {}).get("aws:TagKeys", [])) == allowed_tag_keys,
)
# The key policy denies PutKeyPolicy to rotate itself, so rotate must bypass the lockout check:
# no condition may refuse it (and none may require it either: nothing to gain).
check("rotate may bypass the key policy lockout check (its key policies deny it PutKeyPolicy)",
      all("kms:BypassPolicyLockoutSafetyCheck" not in json.dumps(s) for s in creates))
check("rotate creates single-Region keys, and multi-Region ones only in a multi-Region deployment",
      create["Condition"].get("BoolIfExists")
      == {"Fn::If": ["MultiRegionDeployment", {"Ref": "AWS::NoValue"}, {"kms:MultiRegion": "false"}]})

tag = only("RotateRole", "kms:TagResource")
check("TagResource is granted alone in its statement", actions(tag) == ["kms:TagResource"])
tag_eq = tag["Condition"].get("StringEquals", {})
check("rotate tags only with this keyring's value", tag_eq.get("aws:RequestTag/kms-jwt:keyring") == KEYRING_ID)
check("rotate's tag statement has no Region condition (it also tags replicas in replica Regions)",
      "aws:RequestedRegion" not in condition_keys(tag))
check("rotate tags only with managed-by=kms-jwt", tag_eq.get("aws:RequestTag/kms-jwt:managed-by") == "kms-jwt")
check("rotate retags only keys already tagged for this keyring (or untagged ones, as at creation)",
      tag["Condition"].get("StringEqualsIfExists") == {"aws:ResourceTag/kms-jwt:keyring": KEYRING_ID})
check("TagResource stays on Resource '*' (tagging at creation needs an unrestricted IAM grant)", tag["Resource"] == "*")
check(
    "rotate's tag keys are a subset of kms-jwt's three",
    set(tag["Condition"].get("ForAllValues:StringEquals", {}).get("aws:TagKeys", [])) == allowed_tag_keys,
)

discover = only("RotateRole", "tag:GetResources")
# Single-Region: this Region only. Multi-Region: every Region (a crashed run of an old home
# left its primaries there), hence the !If.
check("tag:GetResources is granted alone, narrowed to this Region in a single-Region stack",
      actions(discover) == ["tag:GetResources"]
      and discover["Condition"] == {"Fn::If": ["MultiRegionDeployment", {"Ref": "AWS::NoValue"},
                                               {"StringEquals": {"aws:RequestedRegion": {"Ref": "AWS::Region"}}}]})
list_keys = only("RotateRole", "kms:ListKeys")
check("kms:ListKeys (the fallback) is granted alone, narrowed to this Region",
      actions(list_keys) == ["kms:ListKeys"]
      and list_keys["Condition"].get("StringEquals", {}).get("aws:RequestedRegion") == {"Ref": "AWS::Region"})
check("rotate writes only its own Region's secret",
      all(s["Resource"] == OWN_SECRET for s in role_statements("RotateRole")
          if any(a.startswith("secretsmanager:") and a != "secretsmanager:GetSecretValue" for a in actions(s))))
check("rotate reads no secret but its own keyring (this Region's, or a replica Region's copy)",
      all(s["Resource"] in (OWN_SECRET, {"Fn::Sub": ANY_REGION_SECRET_PATTERN})
          for s in statements_with("RotateRole", "secretsmanager:GetSecretValue")))
check("rotate may not create a secret", "secretsmanager:CreateSecret" not in rotate)
check("rotate's dead-letter sends go to its queue only",
      all(is_getatt(s["Resource"], "RotateDeadLetterQueue") for s in statements_with("RotateRole", "sqs:SendMessage")))
check("rotate may encrypt dead letters (the queue uses DataKey)",
      any(s["Condition"].get("StringEquals", {}).get("kms:ViaService") == {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"}
          for s in statements_with("RotateRole", "kms:GenerateDataKey")))

rotate_fn = resources["RotateFunction"]["Properties"]
env = rotate_fn["Environment"]["Variables"]
check("KEY_ADMIN_ROLE_ARN is the rotate function's own role", is_getatt(env.get("KEY_ADMIN_ROLE_ARN"), "RotateRole"))
check("KEY_USER_ROLE_ARNS is the sign function's role, plus the other Regions' sign roles when given",
      env.get("KEY_USER_ROLE_ARNS") == {"Fn::If": ["HasPeerSigners",
                                                   {"Fn::Join": [",", [getatt("SignRole"), {"Fn::Join": [",", {"Ref": "PeerSignRoleArns"}]}]]},
                                                   getatt("SignRole")]})
check("PEER_ADMIN_ROLE_ARNS is the other Regions' rotate roles when given, else absent",
      env.get("PEER_ADMIN_ROLE_ARNS") == {"Fn::If": ["HasPeerRotators", {"Fn::Join": [",", {"Ref": "PeerRotateRoleArns"}]},
                                                     {"Ref": "AWS::NoValue"}]})
check("KEY_POLICY_ADMIN_ARNS is KeyPolicyAdminArns when given, else absent (rotate then names the account root)",
      env.get("KEY_POLICY_ADMIN_ARNS") == {"Fn::If": ["HasKeyPolicyAdmins", {"Fn::Join": [",", {"Ref": "KeyPolicyAdminArns"}]},
                                                      {"Ref": "AWS::NoValue"}]})
admins = parameters.get("KeyPolicyAdminArns", {})
check("KeyPolicyAdminArns is a list that defaults to empty (the account root user only)",
      admins.get("Type") == "CommaDelimitedList" and admins.get("Default") == "")
check("KeyPolicyAdminArns accepts IAM roles and the account root only",
      admins.get("AllowedPattern") == "^(arn:[a-z-]+:iam::[0-9]{12}:(role/\\S+|root))?$")
check("KeyPolicyAdminArns says what it is for (break glass, MFA)",
      all(w in admins.get("Description", "") for w in ("kms:PutKeyPolicy", "kms:CreateGrant", "MFA", "root")))
check("HasKeyPolicyAdmins is 'KeyPolicyAdminArns is not empty'",
      template["Conditions"].get("HasKeyPolicyAdmins")
      == {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": [",", {"Ref": "KeyPolicyAdminArns"}]}, ""]}]})
check("KEY_DISCOVERY is the tagging API", env.get("KEY_DISCOVERY") == "tagging-api")
globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
check("rotate and jwks read the same JWKS_STALE_IF_ERROR and ROTATION_PERIOD (pre-publication and max-age agree)",
      globals_env.get("JWKS_STALE_IF_ERROR") == {"Ref": "JwksStaleIfErrorSeconds"}
      and globals_env.get("ROTATION_PERIOD") == {"Fn::Sub": "${RotationPeriodDays}d"}
      and all("JWKS_STALE_IF_ERROR" not in resources[f]["Properties"].get("Environment", {}).get("Variables", {})
              for f in ("RotateFunction", "JwksFunction")))
check("rotate runs one at a time", rotate_fn.get("ReservedConcurrentExecutions") == 1)
check("rotate has a dead-letter queue", rotate_fn.get("DeadLetterQueue", {}).get("TargetArn") == getatt("RotateDeadLetterQueue"))

# ---- sign and jwks -----------------------------------------------------------------------
sign = role_actions("SignRole")
check("sign's IAM grants no kms:Sign (each key's policy does)", "kms:Sign" not in sign)
check("sign's IAM holds no KMS action but Decrypt", {a for a in sign if a.startswith("kms:")} == {"kms:Decrypt"})
check("sign grants nothing but secret read, decrypt, the minting policy's read and logs",
      sign <= {"secretsmanager:GetSecretValue", "kms:Decrypt", "ssm:GetParameter", "logs:CreateLogStream", "logs:PutLogEvents"})
jwks = role_actions("JwksRole")
check("jwks only reads the secret (and writes its logs)",
      jwks <= {"secretsmanager:GetSecretValue", "kms:Decrypt", "logs:CreateLogStream", "logs:PutLogEvents"})
for role in ("SignRole", "JwksRole"):
    for s in statements_with(role, "kms:Decrypt"):
        check(f"{role} decrypts only through Secrets Manager",
              s["Condition"]["StringEquals"]["kms:ViaService"] == {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"})
    for s in statements_with(role, "secretsmanager:GetSecretValue"):
        check(f"{role} reads only the keyring, and only this Region's (a replica Region's local replica)",
              s["Resource"] == OWN_SECRET and "*" not in OWN_SECRET_PATTERN.split(":secret:")[0])

# ---- logs: each role writes only its own function's log group ----------------------------
for function, role in function_roles.items():
    logs = [s for s in role_statements(role) if any(a.startswith("logs:") for a in actions(s))]
    group = function.replace("Function", "Logs")
    # Both sign functions run as SignRole: it writes to both their groups, nothing else.
    groups = [group, "SignHttpLogs"] if role == "SignRole" else [group]
    check(f"{role} writes logs only to {' and '.join(groups)}",
          bool(logs) and all(len(as_list(s["Resource"])) == len(groups)
                             and all(is_getatt(r, g) for r, g in zip(as_list(s["Resource"]), groups)) for s in logs))
    check(f"{role} cannot create log groups", not any("logs:CreateLogGroup" in actions(s) for s in logs))
    check(f"{group} is the function's default log group",
          resources[group]["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function}}}"})

# ---- the schedule and its dead-letter queue ----------------------------------------------
schedule = rotate_fn["Events"]["Hourly"]["Properties"]
check("the schedule runs as SchedulerRole", is_getatt(schedule.get("RoleArn"), "SchedulerRole"))
check("the schedule has a dead-letter queue", schedule.get("DeadLetterConfig", {}).get("Arn") == getatt("RotateDeadLetterQueue"))
check("the schedule's name is generated (two stacks in one account do not collide)", schedule.get("OmitName") is True)
scheduler = role_actions("SchedulerRole")
check("SchedulerRole only invokes rotate and writes dead letters",
      scheduler == {"lambda:InvokeFunction", "sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"})
check("SchedulerRole invokes only rotate",
      all(is_getatt(s["Resource"], "RotateFunction") for s in statements_with("SchedulerRole", "lambda:InvokeFunction")))
check("SchedulerRole sends only to the dead-letter queue",
      all(is_getatt(s["Resource"], "RotateDeadLetterQueue") for s in statements_with("SchedulerRole", "sqs:SendMessage")))
check("SchedulerRole may encrypt with DataKey through SQS only",
      all(s["Condition"]["StringEquals"]["kms:ViaService"] == {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"}
          for s in statements_with("SchedulerRole", "kms:GenerateDataKey")))
trust = resources["SchedulerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
check("SchedulerRole is assumed by EventBridge Scheduler of this account only",
      [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
      and all(s["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"} for s in trust))
check("SchedulerRole is assumed only for schedules of this stack's schedule group (aws:SourceArn)",
      all(is_getatt(s["Condition"].get("ArnEquals", {}).get("aws:SourceArn"), "RotateScheduleGroup") for s in trust))
check("the schedule group is this stack's own, with a generated name",
      resources.get("RotateScheduleGroup", {}).get("Type") == "AWS::Scheduler::ScheduleGroup"
      and "Name" not in resources.get("RotateScheduleGroup", {}).get("Properties", {}))
check("the schedule sits in that group", schedule.get("GroupName") == {"Ref": "RotateScheduleGroup"})
check("the dead-letter queue is encrypted with DataKey",
      resources["RotateDeadLetterQueue"]["Properties"].get("KmsMasterKeyId") == {"Ref": "DataKey"})

# ---- what the stack keeps ----------------------------------------------------------------
for name in ("Keyring", "DataKey"):
    check(f"{name} is retained when the stack is deleted", resources[name].get("DeletionPolicy") == "Retain")
    check(f"{name} is retained when replaced", resources[name].get("UpdateReplacePolicy") == "Retain")
keyring = resources["Keyring"]["Properties"]
# CloudFormation writes a new version only when SecretString changes: pinning the literal
# keeps every stack update from resetting the keyring.
check("Keyring's SecretString is exactly the empty keyring, never edited",
      keyring.get("SecretString") == '{"schema_version":1,"keys":[]}')
check("Keyring has no GenerateSecretString (editing it regenerates the value)", "GenerateSecretString" not in keyring)
check("the keyring secret is encrypted with the customer-managed key", keyring.get("KmsKeyId") == {"Ref": "DataKey"})
key_policy = resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
check("the key policy has no wildcard principal",
      all(s["Principal"] != "*" and s["Principal"].get("AWS") != "*" for s in key_policy))
check("DataKey's policy delegates to IAM (the roles' ViaService grants need it)",
      any(s["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}} for s in key_policy))

# ---- environment and parameters ----------------------------------------------------------
globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
for variable, parameter in [("KEYRING_MAX_STALENESS", "KeyringMaxStalenessSeconds"),
                            ("AWS_CALL_ATTEMPT_TIMEOUT", "AwsCallAttemptTimeoutSeconds"),
                            ("AWS_CALL_TIMEOUT", "AwsCallTimeoutSeconds")]:
    check(f"every function (rotate included) gets {variable} from {parameter}", globals_env.get(variable) == {"Ref": parameter})
for parameter, default, low, high in [("AwsCallAttemptTimeoutSeconds", 2, 1, 30), ("AwsCallTimeoutSeconds", 5, 1, 60)]:
    p = parameters[parameter]
    check(f"{parameter} defaults to {default} within {low}..{high}",
          (p["Default"], p["MinValue"], p["MaxValue"]) == (default, low, high))
for function, parameter, condition in [("SignFunction", "SignConcurrency", "ReserveSignConcurrency"),
                                       ("JwksFunction", "JwksConcurrency", "ReserveJwksConcurrency")]:
    check(f"{parameter} reserves nothing by default (fits a new account)", parameters[parameter]["Default"] == 0)
    check(f"{function} reserves concurrency only when {parameter} is not 0",
          resources[function]["Properties"].get("ReservedConcurrentExecutions")
          == {"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]})
    check(f"{condition} is '{parameter} is not 0'",
          template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, "0"]}]})
check("the longest token never outlives one rotation period (MaxTokenTtlSeconds <= 1 day <= RotationPeriodDays)",
      parameters["MaxTokenTtlSeconds"]["MaxValue"] <= 86400 and parameters["RotationPeriodDays"]["MinValue"] >= 1)


# ---- the SigningAlg/KeySpec rule, evaluated for every pair -------------------------------
def evaluate(expression, values):
    """A tiny evaluator of the rule functions used here (Fn::Or/And/Equals/Contains, Ref)."""
    if isinstance(expression, dict):
        (function, args), = expression.items()
        if function == "Ref":
            return values[args]
        if function == "Fn::Or":
            return any(evaluate(a, values) for a in args)
        if function == "Fn::And":
            return all(evaluate(a, values) for a in args)
        if function == "Fn::Equals":
            return evaluate(args[0], values) == evaluate(args[1], values)
        if function == "Fn::Contains":
            return evaluate(args[1], values) in [evaluate(a, values) for a in args[0]]
        raise ValueError(f"unexpected rule function {function}")
    if isinstance(expression, list):
        return [evaluate(a, values) for a in expression]
    return expression


# KMS "Key spec reference" and shared/src/jose/alg.rs (kms_key_spec).
spec_of = {"ES256": "ECC_NIST_P256", "ES384": "ECC_NIST_P384", "ES512": "ECC_NIST_P521",
           "RS256": "RSA_2048", "PS256": "RSA_2048", "RS384": "RSA_3072", "PS384": "RSA_3072",
           "RS512": "RSA_4096", "PS512": "RSA_4096", "ES256K": "ECC_SECG_P256K1",
           "EdDSA": "ECC_NIST_EDWARDS25519", "Ed25519": "ECC_NIST_EDWARDS25519",
           "ML-DSA-44": "ML_DSA_44", "ML-DSA-65": "ML_DSA_65", "ML-DSA-87": "ML_DSA_87"}
rotate_env = template["Resources"]["RotateFunction"]["Properties"]["Environment"]["Variables"]
check("rotate gets the published-key cap", rotate_env.get("MAX_PUBLISHED_KEYS") == {"Ref": "MaxPublishedKeys"})
check("rotate gets the key spec IAM allows, to refuse a mismatched SIGNING_ALG at cold start",
      rotate_env.get("KEY_SPEC") == {"Ref": "KeySpec"} and rotate_env.get("SIGNING_ALG") == {"Ref": "SigningAlg"})
check("every KeySpec value serves some SigningAlg", set(parameters["KeySpec"]["AllowedValues"]) == set(spec_of.values()))
check("the published-key cap defaults to ALB's 10 and stays in what rotate accepts",
      parameters["MaxPublishedKeys"]["Default"] == 10 and parameters["MaxPublishedKeys"]["MinValue"] == 3
      and parameters["MaxPublishedKeys"]["MaxValue"] == 100)
check("the default algorithm is RS256 (every AWS verifier accepts it)", parameters["SigningAlg"]["Default"] == "RS256")
check("the default key spec matches the default algorithm", parameters["KeySpec"]["Default"] == "RSA_2048")
check("SigningAlg's description says which AWS verifiers accept what",
      all(v in parameters["SigningAlg"].get("Description", "") for v in ("HTTP API", "REST API", "ALB", "aws-jwt-verify")))
rule = template["Rules"]["SigningAlgMatchesKeySpec"]
check("the SigningAlg/KeySpec rule always applies", "RuleCondition" not in rule)
check("every SigningAlg value is known to the check", set(parameters["SigningAlg"]["AllowedValues"]) == set(spec_of))
wrong = [
    (alg, spec)
    for alg, spec in itertools.product(parameters["SigningAlg"]["AllowedValues"], parameters["KeySpec"]["AllowedValues"])
    if all(evaluate(a["Assert"], {"SigningAlg": alg, "KeySpec": spec}) for a in rule["Assertions"]) != (spec_of[alg] == spec)
]
check(f"the rule accepts exactly the matching SigningAlg/KeySpec pairs (wrong: {wrong})", not wrong)

# ---- multi-Region (docs/multi-region.md) -------------------------------------------------
conditions = template["Conditions"]


def condition_value(expression, values, region):
    """Evaluates a condition of this template (Fn::Equals/Not/And/Or, Condition, and the list
    functions the replica slots use) for parameter values and a Region."""
    def ev(x):
        if isinstance(x, dict):
            (function, args), = x.items()
            if function == "Ref":
                return region if args == "AWS::Region" else values[args]
            if function == "Condition":
                return ev(conditions[args])
            if function == "Fn::Equals":
                return ev(args[0]) == ev(args[1])
            if function == "Fn::Not":
                return not ev(args[0])
            if function == "Fn::And":
                return all(ev(a) for a in args)
            if function == "Fn::Or":
                return any(ev(a) for a in args)
            if function == "Fn::Join":
                return args[0].join(ev(args[1]))
            if function == "Fn::Split":
                return ev(args[1]).split(args[0])
            if function == "Fn::Select":
                return ev(args[1])[int(args[0])]
            if function == "Fn::Sub":
                text, names = args
                for name, value in names.items():
                    text = text.replace("${" + name + "}", ev(value))
                return text
            raise ValueError(f"unexpected condition function {function}")
        return x
    return ev(expression)


def scenario(region, **overrides):
    # Every parameter at its default (as CloudFormation passes it: a list splits, numbers are
    # strings), Issuer (no usable default) given.
    values = {name: (str(spec["Default"]).split(",") if spec["Type"] == "CommaDelimitedList" else str(spec["Default"]))
              for name, spec in parameters.items() if "Default" in spec}
    values["Issuer"] = "https://auth.example.com"
    values.update(overrides)
    return {name: condition_value(c, values, region) for name, c in conditions.items()}


for name in ("HomeRegion", "ReplicaRegions", "KeyringSecret", "PeerSignRoleArns", "PeerRotateRoleArns"):
    check(f"parameter {name} exists", name in parameters)
check("HomeRegion defaults to empty (single-Region)", parameters["HomeRegion"].get("Default") == "")
check("ReplicaRegions is a list that defaults to empty",
      parameters["ReplicaRegions"]["Type"] == "CommaDelimitedList" and parameters["ReplicaRegions"].get("Default") == "")
check("KeyringSecret defaults to create", parameters["KeyringSecret"].get("Default") == "create")

single = scenario("eu-west-1")
check(f"default parameters resolve to a single-Region stack ({single})",
      single["IsHome"] and single["OwnsKeyring"] and single["KeyringByArn"]
      and not any(single[c] for c in ("MultiRegion", "MultiRegionDeployment", "ReplicatesKeyring", "HasPeerSigners", "HasPeerRotators",
                                       "TooManyReplicaRegions", "ReplicaSlot0")))
# A failover changes HomeRegion, ReplicaRegions and KeyringSecret; IAM's control plane is in
# us-east-1, so IAM documents depend on them as little as possible: only on a deployment being
# multi-Region, and on ReplicaRegions in the one Deny that names the replication Regions.
iam_conditions = set()
for where, statement in iam:
    text = json.dumps(statement)
    iam_conditions |= {c for c in conditions if f'"{c}"' in text}
    for parameter in ("HomeRegion", "ReplicaRegions", "KeyringSecret", "PeerSignRoleArns", "PeerRotateRoleArns",
                      "KeyPolicyAdminArns"):
        if parameter == "ReplicaRegions" and (where, statement.get("Sid")) in DENIES:
            continue
        check(f"{where}/{statement.get('Sid', '?')}: no IAM statement refers to {parameter} (a failover changes no other IAM policy)",
              f'{{"Ref": "{parameter}"}}' not in text)
for name, r in resources.items():
    if r["Type"].startswith("AWS::IAM::") and r.get("Condition"):
        iam_conditions.add(r["Condition"])
# UseCloudFront and HasLifecycleBus depend on edge and event parameters only, never on Regions.
check(f"IAM depends only on conditions a failover does not change ({sorted(iam_conditions)})",
      iam_conditions <= {"MultiRegionDeployment", "KeyringByArn", "UseCloudFront", "HasLifecycleBus"})
for region, values in [("us-east-1", {}), ("eu-west-1", {"ReplicaRegions": ["us-east-1"]}),
                       ("eu-west-1", {"KeyringSecret": "existing", "ReplicaRegions": [""]})]:
    before = scenario(region, HomeRegion="eu-west-1", ReplicaRegions=["us-east-1", "ap-southeast-2"])
    after = scenario(region, **{"HomeRegion": "us-east-1", "ReplicaRegions": ["ap-southeast-2"], "KeyringSecret": "existing", **values})
    check(f"a failover leaves the IAM conditions unchanged in {region} ({values})",
          all(before[c] == after[c] for c in iam_conditions))
regions = dict(HomeRegion="eu-west-1", ReplicaRegions=["us-east-1", "ap-southeast-2"])
home, replica = scenario("eu-west-1", **regions), scenario("us-east-1", **regions)
check("the home Region's stack creates and replicates the secret, and rotates",
      home["IsHome"] and home["OwnsKeyring"] and home["ReplicatesKeyring"] and not home["KeyringByArn"]
      and home["ReplicaSlot0"] and home["ReplicaSlot1"] and not home["ReplicaSlot2"])
check("a replica Region's stack creates no secret and does not rotate",
      not replica["IsHome"] and not replica["OwnsKeyring"] and not replica["KeyringByArn"] and replica["MultiRegion"])
failed_over = scenario("us-east-1", HomeRegion="us-east-1", ReplicaRegions=["ap-southeast-2"], KeyringSecret="existing")
check("after a failover the new home rotates but does not create the (promoted) secret again",
      failed_over["IsHome"] and not failed_over["OwnsKeyring"] and not failed_over["KeyringByArn"])
check("a sixth replica Region is refused",
      scenario("eu-west-1", HomeRegion="eu-west-1", ReplicaRegions=[f"r-{i}-1" for i in range(6)])["TooManyReplicaRegions"]
      and not scenario("eu-west-1", HomeRegion="eu-west-1", ReplicaRegions=[f"r-{i}-1" for i in range(5)])["TooManyReplicaRegions"])
guard = resources.get("ReplicaRegionsLimitAtMostFive", {})
check("the replica-Region limit fails the deployment (an unsignalled wait condition)",
      guard.get("Type") == "AWS::CloudFormation::WaitCondition" and guard.get("Condition") == "TooManyReplicaRegions")
check("the retained resources wait for that limit, so a refused deployment leaves nothing behind",
      resources["DataKey"]["Properties"]["Description"]["Fn::If"][:2]
      == ["TooManyReplicaRegions", {"Ref": "ReplicaRegionsLimitAtMostFive"}]
      and resources["Keyring"]["Properties"]["KmsKeyId"] == {"Ref": "DataKey"})

rules = template["Rules"]
check("a rule requires HomeRegion with ReplicaRegions", "MultiRegionNeedsHomeRegion" in rules)
check("a rule keeps HomeRegion out of ReplicaRegions", "HomeRegionIsNotAReplica" in rules)

check("the keyring secret exists only in the stack that owns it", resources["Keyring"].get("Condition") == "OwnsKeyring")
slots = keyring.get("ReplicaRegions", {}).get("Fn::If", [None, [], None])
check("the secret is replicated only by its home stack, in multi-Region mode",
      slots[0] == "ReplicatesKeyring" and slots[2] == {"Ref": "AWS::NoValue"})
check("there are five replica slots, each an !If on its slot condition",
      [slot["Fn::If"][0] for slot in slots[1]] == [f"ReplicaSlot{i}" for i in range(5)]
      and all(slot["Fn::If"][2] == {"Ref": "AWS::NoValue"} for slot in slots[1]))
check("each replica is encrypted with its Region's alias of that stack's DataKey",
      all(slot["Fn::If"][1].get("KmsKeyId") == REPLICA_ALIAS for slot in slots[1]))
alias = resources.get("ReplicaKeyringKeyAlias", {})
check("every multi-Region stack creates that alias for its DataKey",
      alias.get("Condition") == "MultiRegionDeployment" and alias.get("Properties", {}).get("AliasName") == REPLICA_ALIAS
      and alias.get("Properties", {}).get("TargetKeyId") == {"Ref": "DataKey"})
check("the functions find the keyring by ARN single-Region, by its shared name otherwise",
      globals_env.get("KEYRING_SECRET_ID") == KEYRING_ID)

replica_create = by_sid("RotateRole", "CreateOnlyReplicasOfOwnKeys")
replica_eq = replica_create["Condition"].get("StringEquals", {})
check("replicas are created only as replicas (kms:MultiRegionKeyType REPLICA)", replica_eq.get("kms:MultiRegionKeyType") == "REPLICA")
check("replicas are created only with this keyring's tags",
      replica_eq.get("aws:RequestTag/kms-jwt:keyring") == {"Fn::Sub": "${AWS::StackName}/keyring"}
      and replica_eq.get("aws:RequestTag/kms-jwt:managed-by") == "kms-jwt"
      and set(replica_create["Condition"].get("ForAllValues:StringEquals", {}).get("aws:TagKeys", [])) == allowed_tag_keys)
check("replicas may bypass the key policy lockout check (ReplicateKey passes the same policy)",
      "BoolIfExists" not in replica_create["Condition"])
deny = by_sid("RotateRole", "ReplicateOnlyToReplicaRegions")
check("rotate may replicate keys only to ReplicaRegions (an explicit Deny, StringNotEquals: a NOR of the Regions)",
      deny.get("Effect") == "Deny" and actions(deny) == ["kms:ReplicateKey"] and deny.get("Resource") == "*"
      and deny.get("Condition") == {"StringNotEquals": {"kms:ReplicaRegion": {"Ref": "ReplicaRegions"}}})
mr_statements = resources.get("RotateMultiRegionPolicy", {}).get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])
check("the replication Deny sits in the multi-Region policy (a stack update changes it with ReplicaRegions)",
      any(s is deny for s in mr_statements))
for label, regions_, expected in [("two replica Regions", ["us-east-1", "ap-southeast-2"],
                                   {"us-east-1": False, "ap-southeast-2": False, "eu-west-1": True, "eu-central-1": True}),
                                  ("no replica Region", [""], {"us-east-1": True, "eu-west-1": True})]:
    # StringNotEquals with a list: true when the request's value equals none of them.
    denied = {r: all(r != v for v in regions_) for r in expected}
    check(f"the replication Deny evaluates as intended with {label} ({denied})", denied == expected)
slr = by_sid("RotateRole", "CreateTheMultiRegionKeyServiceLinkedRole")
check("rotate may create only KMS's multi-Region service-linked role",
      actions(slr) == ["iam:CreateServiceLinkedRole"]
      and slr["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/mrk.kms.amazonaws.com/AWSServiceRoleForKeyManagementServiceMultiRegionKeys"}
      and slr["Condition"].get("StringEquals", {}).get("iam:AWSServiceName") == "mrk.kms.amazonaws.com")
read_replicas = by_sid("RotateRole", "ReadReplicaKeyrings")
check("rotate only reads the other Regions' copies of its keyring",
      actions(read_replicas) == ["secretsmanager:GetSecretValue"]
      and read_replicas["Resource"] == {"Fn::Sub": ANY_REGION_SECRET_PATTERN})
replica_kms = by_sid("RotateRole", "ReplicaKeyringEncryptionThroughSecretsManager")
check("rotate uses the replica Regions' keys only through Secrets Manager, for this keyring",
      set(actions(replica_kms)) == {"kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"}
      and replica_kms["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*"}
      and replica_kms["Condition"].get("StringLike", {}).get("kms:ViaService") == "secretsmanager.*.amazonaws.com"
      and replica_kms["Condition"].get("StringLike", {}).get("kms:EncryptionContext:SecretARN") == {"Fn::Sub": ANY_REGION_SECRET_PATTERN})
mr_policy = resources.get("RotateMultiRegionPolicy", {})
check("every multi-Region grant sits in RotateMultiRegionPolicy, absent from a single-Region stack",
      mr_policy.get("Condition") == "MultiRegionDeployment"
      and {s.get("Sid") for s in mr_policy.get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])}
      == {"CreateOnlyReplicasOfOwnKeys", "ReplicateOnlyToReplicaRegions", "CreateTheMultiRegionKeyServiceLinkedRole",
          "ReadReplicaKeyrings", "ReplicaKeyringEncryptionThroughSecretsManager"})
check("no other role gets multi-Region grants",
      all(r["Properties"]["RoleName"] == {"Ref": "RotateRole"} for r in of_type("AWS::IAM::RolePolicy").values()
          if r.get("Condition")))

check("HOME_REGION is set only when HomeRegion is", env.get("HOME_REGION") == {"Fn::If": ["MultiRegionDeployment", {"Ref": "HomeRegion"}, {"Ref": "AWS::NoValue"}]})
check("REPLICA_REGIONS is set only in multi-Region mode",
      env.get("REPLICA_REGIONS") == {"Fn::If": ["MultiRegion", {"Fn::Join": [",", {"Ref": "ReplicaRegions"}]}, {"Ref": "AWS::NoValue"}]})
check("the schedule runs only in the home Region (rotate is deployed everywhere, for failover)",
      schedule.get("State") == {"Fn::If": ["IsHome", {"Ref": "AWS::NoValue"}, "DISABLED"]})
for alarm in ("StalledRotationAlarm", "RetirementBacklogAlarm"):
    props = resources[alarm]["Properties"]
    check(f"{alarm} exists only where rotate runs", resources[alarm].get("Condition") == "IsHome")
    check(f"{alarm} watches the keyring under the name rotate reports", props["Dimensions"] == [{"Name": "Keyring", "Value": KEYRING_ID}])

# ---- detective control: EventBridge rules on CloudTrail, to an encrypted SNS topic ---------
topic = resources.get("SecurityAlertsTopic", {})
check("there is a security alerts topic, encrypted with its own key",
      topic.get("Type") == "AWS::SNS::Topic"
      and is_getatt(topic.get("Properties", {}).get("KmsMasterKeyId"), "SecurityAlertsKey"))
check("every stack has the detective control (replica keys live in every Region)",
      all(resources.get(n, {}).get("Condition") is None
          for n in ("SecurityAlertsTopic", "SecurityAlertsKey", "SecurityAlertsTopicPolicy", "KeyPolicyChangeRule", "DeniedSignRule")))
CLOUDTRAIL_KMS = {"source": ["aws.kms"], "detail-type": ["AWS API Call via CloudTrail"]}
rules_ = {name: resources.get(name, {}).get("Properties", {}) for name in ("KeyPolicyChangeRule", "DeniedSignRule")}
for name, props in rules_.items():
    check(f"{name} is an EventBridge rule on KMS API calls via CloudTrail",
          resources[name]["Type"] == "AWS::Events::Rule"
          and all(props.get("EventPattern", {}).get(k) == v for k, v in CLOUDTRAIL_KMS.items())
          and props.get("EventPattern", {}).get("detail", {}).get("eventSource") == ["kms.amazonaws.com"])
    check(f"{name} publishes to the security alerts topic only (resource policy, no role)",
          [t.get("Arn") for t in props.get("Targets", [])] == [{"Ref": "SecurityAlertsTopic"}]
          and not any("RoleArn" in t for t in props.get("Targets", [])))
change = rules_["KeyPolicyChangeRule"]
check("KeyPolicyChangeRule matches PutKeyPolicy and CreateGrant (write events: plain ENABLED)",
      sorted(change.get("EventPattern", {}).get("detail", {}).get("eventName", [])) == ["CreateGrant", "PutKeyPolicy"]
      and change.get("State") == "ENABLED")
denied_sign = rules_["DeniedSignRule"]
check("DeniedSignRule matches denied Sign calls (read-only events: needs ALL_CLOUDTRAIL_MANAGEMENT_EVENTS)",
      denied_sign.get("EventPattern", {}).get("detail", {}).get("eventName") == ["Sign"]
      and denied_sign.get("EventPattern", {}).get("detail", {}).get("errorCode") == [{"prefix": "AccessDenied"}]
      and denied_sign.get("State") == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")
topic_policy = resources.get("SecurityAlertsTopicPolicy", {}).get("Properties", {})
topic_statements = topic_policy.get("PolicyDocument", {}).get("Statement", [])
check("only this stack's three rules may publish to the topic (aws:SourceArn)",
      topic_policy.get("Topics") == [{"Ref": "SecurityAlertsTopic"}]
      and [s.get("Principal") for s in topic_statements] == [{"Service": "events.amazonaws.com"}]
      and all(s["Effect"] == "Allow" and actions(s) == ["sns:Publish"] and s["Resource"] == {"Ref": "SecurityAlertsTopic"}
              and s.get("Condition") == {"ArnEquals": {"aws:SourceArn": [getatt("KeyPolicyChangeRule"), getatt("DeniedSignRule"), getatt("MintingPolicyChangeRule")]}}
              for s in topic_statements))
alerts_key = resources.get("SecurityAlertsKey", {}).get("Properties", {})
alerts_key_statements = alerts_key.get("KeyPolicy", {}).get("Statement", [])
check("the topic's key lets EventBridge encrypt for the topic, nothing else, and rotates",
      alerts_key.get("EnableKeyRotation") is True
      and [(s.get("Principal"), sorted(as_list(s["Action"]))) for s in alerts_key_statements]
      == [({"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}, ["kms:*"]),
          ({"Service": "events.amazonaws.com"}, ["kms:Decrypt", "kms:GenerateDataKey*"])])
check("the topic's ARN is an output", template["Outputs"].get("SecurityAlertsTopicArn", {}).get("Value") == {"Ref": "SecurityAlertsTopic"})

# ---- the public surface ------------------------------------------------------------------
sign_route = resources["SignHttpFunction"]["Properties"]["Events"]["Sign"]["Properties"]
check("POST /sign requires IAM authorization", sign_route.get("Auth", {}).get("Authorizer") == "AWS_IAM")
check("SignHttpLogs is the HTTP sign function's default log group",
      resources["SignHttpLogs"]["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${SignHttpFunction}"})

# ---- who may mint what: the caller's identity comes only from what AWS attests -----------
sign_env = resources["SignFunction"]["Properties"]["Environment"]["Variables"]
http_env = resources["SignHttpFunction"]["Properties"]["Environment"]["Variables"]
check("the direct sign function has no API Gateway event (it reads no request context)",
      "Events" not in resources["SignFunction"]["Properties"] and sign_env.get("SIGN_TRANSPORT") == "direct")
http_events = resources["SignHttpFunction"]["Properties"]["Events"]
check("the HTTP sign function is invoked by API Gateway only (POST /sign and POST /token, its transport api-gateway)",
      {e["Type"] for e in http_events.values()} == {"HttpApi"}
      and sorted((e["Properties"]["Method"], e["Properties"]["Path"]) for e in http_events.values())
      == [("POST", "/sign"), ("POST", "/token")]
      and http_env.get("SIGN_TRANSPORT") == "api-gateway")
check("POST /token requires IAM authorization",
      all(e["Properties"].get("Auth", {}).get("Authorizer") == "AWS_IAM" for e in http_events.values()))
SIGN_FUNCTIONS = ("SignFunction", "SignHttpFunction")
lambda_permissions = of_type("AWS::Lambda::Permission")
check("no Lambda permission in the stack lets anyone but API Gateway invoke a sign function",
      all(r["Properties"].get("Principal") == "apigateway.amazonaws.com"
          for r in lambda_permissions.values()
          if any(f in json.dumps(r["Properties"].get("FunctionName")) for f in SIGN_FUNCTIONS)))
check("every Lambda permission in the template is CloudFront's on jwks (SAM adds API Gateway's at transform)",
      sorted(lambda_permissions) == ["JwksFunctionInvokeCloudFrontPermission", "JwksFunctionUrlCloudFrontPermission"])
# ---- the minting policy: one SSM parameter, read by sign, written by nobody in the stack ---
check("both sign functions read the one minting policy parameter (MINTING_POLICY_PARAMETER), none from the environment",
      sign_env.get("MINTING_POLICY_PARAMETER") == http_env.get("MINTING_POLICY_PARAMETER") == {"Ref": "MintingPolicyParameter"}
      and "MINTING_POLICY" not in sign_env and "MINTING_POLICY" not in http_env)
policy_parameter = resources.get("MintingPolicyParameter", {})
check("the minting policy parameter is a String in every stack, first version from MintingPolicy",
      policy_parameter.get("Type") == "AWS::SSM::Parameter" and policy_parameter.get("Condition") is None
      and policy_parameter.get("Properties", {}).get("Type") == "String"
      and policy_parameter.get("Properties", {}).get("Value") == {"Ref": "MintingPolicy"}
      and policy_parameter.get("Properties", {}).get("Name") == {"Fn::Sub": "/${AWS::StackName}/minting-policy"})
policy_read = only("SignRole", "ssm:GetParameter")
check("SignRole reads exactly that parameter, and nothing else of SSM",
      actions(policy_read) == ["ssm:GetParameter"]
      and policy_read["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${MintingPolicyParameter}"}
      and {a for a in role_actions("SignRole") if a.startswith("ssm:")} == {"ssm:GetParameter"})
for role in ("RotateRole", "SignRole", "JwksRole", "SchedulerRole"):
    check(f"{role} may not write the minting policy (the power to mint anything)",
          not {a for a in role_actions(role) if a.startswith("ssm:") and a != "ssm:GetParameter"}
          and not any(a in ("ssm:*", "*") for a in role_actions(role)))
policy_change = resources.get("MintingPolicyChangeRule", {}).get("Properties", {})
check("every change of the minting policy reaches the security alerts topic (Parameter Store Change events)",
      policy_change.get("EventPattern") == {"source": ["aws.ssm"], "detail-type": ["Parameter Store Change"],
                                            "detail": {"name": [{"Ref": "MintingPolicyParameter"}]}}
      and policy_change.get("State") == "ENABLED"
      and [t.get("Arn") for t in policy_change.get("Targets", [])] == [{"Ref": "SecurityAlertsTopic"}])
for role in ("RotateRole", "SignRole", "JwksRole"):
    check(f"{role} may not invoke Lambda functions",
          not {a for a in role_actions(role) if a.startswith("lambda:")})

# ---- serving JWKS at scale (docs/edge.md): CloudFront, throttling, WAF ---------------------
DISTRIBUTION_ARN = {"Fn::Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${JwksDistribution}"}
BUS_ARN = {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${LifecycleEventBusName}"}
EDGE = ["JwksFunctionUrl", "JwksFunctionUrlCloudFrontPermission", "JwksFunctionInvokeCloudFrontPermission",
        "JwksOriginAccessControl", "JwksCachePolicy", "JwksOriginRequestPolicy", "JwksNotFoundFunction",
        "JwksDistribution", "RotateInvalidationPolicy"]
for name in EDGE:
    check(f"{name} exists only with CloudFront", resources.get(name, {}).get("Condition") == "UseCloudFront")
for name, default in [("JwksEdge", "auto"), ("IssuerDomainName", ""), ("IssuerCertificateArn", ""), ("JwksWebAclArn", ""),
                      ("LifecycleEventBusName", "default")]:
    check(f"parameter {name} defaults to {default!r}", parameters.get(name, {}).get("Default") == default)
check("JwksEdge is auto, cloudfront or direct", parameters["JwksEdge"].get("AllowedValues") == ["auto", "cloudfront", "direct"])
check("IssuerCertificateArn takes ACM certificates in us-east-1 only (CloudFront's Region for certificates)",
      parameters["IssuerCertificateArn"].get("AllowedPattern", "").startswith("^(arn:[a-z-]+:acm:us-east-1:"))
check("JwksWebAclArn takes WAFv2 web ACLs of scope CLOUDFRONT (us-east-1, global/) only",
      parameters["JwksWebAclArn"].get("AllowedPattern", "").startswith("^(arn:[a-z-]+:wafv2:us-east-1:[0-9]{12}:global/webacl/"))
cf = lambda **o: scenario("eu-west-1", **o)
check("default parameters: no CloudFront (an update changes nothing), lifecycle events on the default bus",
      not cf()["UseCloudFront"] and not cf()["CloudFrontCustomDomain"] and cf()["HasLifecycleBus"])
check("auto with a custom domain: CloudFront with that domain",
      cf(IssuerDomainName="auth.example.com", Issuer="")["CloudFrontCustomDomain"])
check("cloudfront without a custom domain: CloudFront on *.cloudfront.net",
      cf(JwksEdge="cloudfront")["UseCloudFront"] and not cf(JwksEdge="cloudfront")["CloudFrontCustomDomain"])
check("direct: never CloudFront", not cf(JwksEdge="direct")["UseCloudFront"])
check("the web ACL is attached only with CloudFront",
      cf(JwksEdge="cloudfront", JwksWebAclArn="arn:aws:wafv2:us-east-1:1:global/webacl/a/b")["HasJwksWebAcl"]
      and not cf(JwksEdge="direct", JwksWebAclArn="arn:aws:wafv2:us-east-1:1:global/webacl/a/b")["HasJwksWebAcl"])
check("an empty LifecycleEventBusName turns lifecycle events off", not cf(LifecycleEventBusName="")["HasLifecycleBus"])


EDGE_RULES = ("IssuerComesFromOnePlace", "IssuerIsGiven", "WebAclNeedsCloudFront")
for name in EDGE_RULES:
    check(f"rule {name} exists", name in template["Rules"])


def rules_hold(**values):
    """The issuer and edge rules for these parameter values (defaults otherwise)."""
    v = {name: (str(spec["Default"]).split(",") if spec["Type"] == "CommaDelimitedList" else str(spec["Default"]))
         for name, spec in parameters.items() if "Default" in spec}
    v.update(values)
    for rule_ in (template["Rules"].get(name, {"Assertions": []}) for name in EDGE_RULES):
        if "RuleCondition" in rule_ and not condition_value(rule_["RuleCondition"], v, "eu-west-1"):
            continue
        if not all(condition_value(a["Assert"], v, "eu-west-1") for a in rule_["Assertions"]):
            return False
    return True


CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0000"
check("the rules accept an Issuer alone, and a custom domain with its certificate",
      rules_hold(Issuer="https://auth.example.com")
      and rules_hold(Issuer="", IssuerDomainName="auth.example.com", IssuerCertificateArn=CERT))
check("the rules refuse no issuer at all, a domain without a certificate, a certificate without a domain",
      not rules_hold(Issuer="") and not rules_hold(Issuer="", IssuerDomainName="auth.example.com")
      and not rules_hold(Issuer="https://auth.example.com", IssuerCertificateArn=CERT))
check("the rules refuse two sources of the issuer (Issuer and IssuerDomainName)",
      not rules_hold(Issuer="https://auth.example.com", IssuerDomainName="auth.example.com", IssuerCertificateArn=CERT))
check("the rules refuse a custom domain with JwksEdge direct, and a web ACL without CloudFront",
      not rules_hold(Issuer="", IssuerDomainName="a.example.com", IssuerCertificateArn=CERT, JwksEdge="direct")
      and not rules_hold(Issuer="https://a.example.com", JwksWebAclArn="arn:aws:wafv2:us-east-1:1:global/webacl/a/b"))
ISSUER_VALUE = {"Fn::If": ["IssuerFromDomain", {"Fn::Sub": "https://${IssuerDomainName}"}, {"Ref": "Issuer"}]}
for function in ("SignFunction", "SignHttpFunction", "JwksFunction"):
    check(f"{function}'s ISSUER follows the custom domain",
          resources[function]["Properties"]["Environment"]["Variables"].get("ISSUER") == ISSUER_VALUE)
check("jwks's JWKS_URI defaults to empty (ISSUER + /.well-known/jwks.json: it follows the issuer)",
      resources["JwksFunction"]["Properties"]["Environment"]["Variables"].get("JWKS_URI") == {"Ref": "JwksUri"}
      and parameters["JwksUri"].get("Default") == "")
check("the Issuer output is the issuer the functions get", template["Outputs"]["Issuer"]["Value"] == ISSUER_VALUE)

url = resources.get("JwksFunctionUrl", {}).get("Properties", {})
check("the origin is the jwks function's URL with AuthType AWS_IAM (never public)",
      is_getatt(url.get("TargetFunctionArn"), "JwksFunction") and url.get("AuthType") == "AWS_IAM" and "Cors" not in url)
oac = resources.get("JwksOriginAccessControl", {}).get("Properties", {}).get("OriginAccessControlConfig", {})
check("origin access control for a Lambda origin, signing every request with SigV4",
      (oac.get("OriginAccessControlOriginType"), oac.get("SigningBehavior"), oac.get("SigningProtocol"))
      == ("lambda", "always", "sigv4"))
for name, action in [("JwksFunctionUrlCloudFrontPermission", "lambda:InvokeFunctionUrl"),
                     ("JwksFunctionInvokeCloudFrontPermission", "lambda:InvokeFunction")]:
    perm = resources.get(name, {}).get("Properties", {})
    check(f"{name}: {action} for CloudFront on behalf of this distribution only (SourceArn)",
          perm.get("Action") == action and perm.get("Principal") == "cloudfront.amazonaws.com"
          and is_getatt(perm.get("FunctionName"), "JwksFunction") and perm.get("SourceArn") == DISTRIBUTION_ARN)
check("the URL permission is for AWS_IAM function URLs",
      resources.get("JwksFunctionUrlCloudFrontPermission", {}).get("Properties", {}).get("FunctionUrlAuthType") == "AWS_IAM")
check("CloudFront's lambda:InvokeFunction holds only through the function URL",
      resources.get("JwksFunctionInvokeCloudFrontPermission", {}).get("Properties", {}).get("InvokedViaFunctionUrl") is True)

policy = resources.get("JwksCachePolicy", {}).get("Properties", {}).get("CachePolicyConfig", {})
key = policy.get("ParametersInCacheKeyAndForwardedToOrigin", {})
check("the cache honours the origin's Cache-Control: MinTTL 0 (no-store stays uncached, max-age never lengthened)",
      policy.get("MinTTL") == 0)
check("the cache's DefaultTTL (no Cache-Control at all) is small, and MaxTTL bounded by a day",
      0 <= policy.get("DefaultTTL", -1) <= 300 and 0 < policy.get("MaxTTL", 0) <= 86400
      and policy.get("MaxTTL", 0) >= parameters["JwksMaxAgeSeconds"]["MaxValue"])
check("nothing of the request is in the cache key but path and normalized Accept-Encoding (gzip and Brotli)",
      key.get("EnableAcceptEncodingGzip") is True and key.get("EnableAcceptEncodingBrotli") is True
      and key.get("HeadersConfig") == {"HeaderBehavior": "none"} and key.get("CookiesConfig") == {"CookieBehavior": "none"}
      and key.get("QueryStringsConfig") == {"QueryStringBehavior": "none"})
orp = resources.get("JwksOriginRequestPolicy", {}).get("Properties", {}).get("OriginRequestPolicyConfig", {})
check("the origin request policy forwards nothing more (no Host, no query string, no cookie)",
      orp.get("HeadersConfig") == {"HeaderBehavior": "none"} and orp.get("CookiesConfig") == {"CookieBehavior": "none"}
      and orp.get("QueryStringsConfig") == {"QueryStringBehavior": "none"})
dist = resources.get("JwksDistribution", {}).get("Properties", {}).get("DistributionConfig", {})
behaviors = [dist.get("DefaultCacheBehavior", {}), *dist.get("CacheBehaviors", [])]
check("the distribution has the default behavior and exactly the two documents' paths",
      sorted(b.get("PathPattern", "") for b in behaviors) == ["", "/.well-known/jwks.json", "/.well-known/openid-configuration"])
for b in behaviors:
    where = b.get("PathPattern", "default behavior")
    check(f"{where}: HTTPS only", b.get("ViewerProtocolPolicy") == "https-only")
    check(f"{where}: GET and HEAD only, both cached",
          b.get("AllowedMethods") == ["GET", "HEAD"] and b.get("CachedMethods") == ["GET", "HEAD"])
    check(f"{where}: compressed (gzip and Brotli, with the cache policy)", b.get("Compress") is True)
    check(f"{where}: the cache policy and origin request policy above",
          b.get("CachePolicyId") == {"Ref": "JwksCachePolicy"} and b.get("OriginRequestPolicyId") == {"Ref": "JwksOriginRequestPolicy"})
    check(f"{where}: to the jwks function URL", b.get("TargetOriginId") == "jwks-function-url")
check("every other path is answered 404 at the edge (made-up paths never reach the origin)",
      dist.get("DefaultCacheBehavior", {}).get("FunctionAssociations")
      == [{"EventType": "viewer-request", "FunctionARN": getatt("JwksNotFoundFunction", "FunctionARN")}]
      and "statusCode: 404" in resources.get("JwksNotFoundFunction", {}).get("Properties", {}).get("FunctionCode", ""))
origins = dist.get("Origins", [])
check("one origin: the function URL's host, through origin access control, HTTPS and TLS 1.2 only",
      len(origins) == 1 and origins[0].get("Id") == "jwks-function-url"
      and origins[0].get("DomainName") == {"Fn::Select": [2, {"Fn::Split": ["/", getatt("JwksFunctionUrl", "FunctionUrl")]}]}
      and origins[0].get("OriginAccessControlId") == getatt("JwksOriginAccessControl", "Id")
      and origins[0].get("CustomOriginConfig", {}).get("OriginProtocolPolicy") == "https-only"
      and origins[0].get("CustomOriginConfig", {}).get("OriginSSLProtocols") == ["TLSv1.2"])
cert = dist.get("ViewerCertificate", {}).get("Fn::If", [None, {}, {}])
check("with a custom domain: its ACM certificate, SNI, TLS 1.2 at least (TLSv1.2_2021)",
      cert[0] == "CloudFrontCustomDomain"
      and cert[1] == {"AcmCertificateArn": {"Ref": "IssuerCertificateArn"}, "SslSupportMethod": "sni-only",
                      "MinimumProtocolVersion": "TLSv1.2_2021"}
      and cert[2] == {"CloudFrontDefaultCertificate": True})
check("the alternate domain name is IssuerDomainName, only with a custom domain",
      dist.get("Aliases") == {"Fn::If": ["CloudFrontCustomDomain", [{"Ref": "IssuerDomainName"}], {"Ref": "AWS::NoValue"}]})
check("the WAF parameter is the distribution's web ACL when given",
      dist.get("WebACLId") == {"Fn::If": ["HasJwksWebAcl", {"Ref": "JwksWebAclArn"}, {"Ref": "AWS::NoValue"}]})

invalidate = [s for s in role_statements("RotateRole") if any(a.startswith("cloudfront:") for a in actions(s))]
check("rotate may invalidate exactly this stack's distribution, nothing else of CloudFront",
      len(invalidate) == 1 and invalidate[0]["Effect"] == "Allow"
      and sorted(actions(invalidate[0])) == ["cloudfront:CreateInvalidation", "cloudfront:GetInvalidation"]
      and invalidate[0]["Resource"] == DISTRIBUTION_ARN and "Condition" not in invalidate[0])
check("that grant sits in RotateInvalidationPolicy, absent without CloudFront",
      any(s is invalidate[0] for s in resources.get("RotateInvalidationPolicy", {}).get("Properties", {})
          .get("PolicyDocument", {}).get("Statement", [])) if invalidate else False)
publish = [s for s in role_statements("RotateRole") if any(a.startswith("events:") for a in actions(s))]
check("rotate may PutEvents on exactly the configured bus, nothing else of EventBridge",
      len(publish) == 1 and publish[0]["Effect"] == "Allow" and actions(publish[0]) == ["events:PutEvents"]
      and publish[0]["Resource"] == BUS_ARN and "Condition" not in publish[0])
check("that grant exists only with a bus (RotateLifecycleEventsPolicy, HasLifecycleBus)",
      resources.get("RotateLifecycleEventsPolicy", {}).get("Condition") == "HasLifecycleBus"
      and any(s is publish[0] for s in resources.get("RotateLifecycleEventsPolicy", {}).get("Properties", {})
              .get("PolicyDocument", {}).get("Statement", [])) if publish else False)
for role in ("SignRole", "JwksRole", "SchedulerRole"):
    check(f"{role} may neither invalidate nor publish events",
          not {a for a in role_actions(role) if a.startswith(("cloudfront:", "events:"))})
check("rotate's JWKS_DISTRIBUTION_ID is the distribution with CloudFront, unset without",
      env.get("JWKS_DISTRIBUTION_ID") == {"Fn::If": ["UseCloudFront", {"Ref": "JwksDistribution"}, {"Ref": "AWS::NoValue"}]})
check("rotate's LIFECYCLE_EVENT_BUS is LifecycleEventBusName, unset when empty",
      env.get("LIFECYCLE_EVENT_BUS") == {"Fn::If": ["HasLifecycleBus", {"Ref": "LifecycleEventBusName"}, {"Ref": "AWS::NoValue"}]})
for name in ("JwksDistributionId", "JwksDistributionDomainName", "JwksEdgeUrl"):
    check(f"output {name} exists with CloudFront", template["Outputs"].get(name, {}).get("Condition") == "UseCloudFront")

route_settings = resources["HttpApi"]["Properties"].get("RouteSettings", {})
public_routes = sorted(f"{e['Properties']['Method']} {e['Properties']['Path']}"
                       for e in resources["JwksFunction"]["Properties"]["Events"].values())
check(f"every public (jwks) route is throttled, by the parameters ({public_routes})",
      len(public_routes) == 4 and sorted(route_settings) == public_routes
      and all(v == {"ThrottlingRateLimit": {"Ref": "JwksThrottlingRateLimit"},
                    "ThrottlingBurstLimit": {"Ref": "JwksThrottlingBurstLimit"}} for v in route_settings.values()))
check("the throttle parameters have bounded, nonzero defaults",
      1 <= parameters["JwksThrottlingRateLimit"]["Default"] <= parameters["JwksThrottlingRateLimit"]["MaxValue"]
      and 1 <= parameters["JwksThrottlingBurstLimit"]["Default"] <= parameters["JwksThrottlingBurstLimit"]["MaxValue"])

finish()
