"""Render infra/template.yaml for concrete test stacks: shared/fixtures/test-stacks.json.

The Rust in-memory AWS twins evaluate every call against each role's real IAM policies; this
resolves the template's roles (trust policy, inline Policies and every AWS::IAM::RolePolicy
attached to them, under the template's Conditions) and the functions' environments for:

- single_region: one stack in us-east-1, default parameters;
- multi_region: three stacks (us-east-1 home, eu-west-1, ap-southeast-2) with the same
  parameters everywhere (docs/multi-region.md, Configuration) except PeerSignRoleArns and
  PeerRotateRoleArns, which name the other stacks' roles: HomeRegion=us-east-1 and
  ReplicaRegions=eu-west-1,ap-southeast-2 (the Regions other than the home) in every stack.
- single_region_cloudfront: single_region with CloudFront in front of jwks (docs/edge.md):
  IssuerDomainName=auth.example.com and its certificate, Issuer empty (the issuer is then
  https://auth.example.com, as in the other stacks); rotate gets JWKS_DISTRIBUTION_ID and may
  invalidate that distribution.

Intrinsics resolved: Ref (parameters, pseudo parameters, resources), Fn::Sub (both forms),
Fn::GetAtt (X.Arn), Fn::If, Fn::Equals/Not/And/Or, Condition, Fn::Join, Fn::Select, Fn::Split,
AWS::NoValue (dropped). Anything else, or a Ref/GetAtt to a resource this script cannot name,
is an error: nothing is passed through unresolved. Physical names are fake but deterministic
and unique per account across Regions (e.g. kms-jwt-RotateRole-useast1).

Usage: render_test_stacks.py [--template T] [--output O] [--check]
  --check: render, compare with the committed file, exit 1 with a diff if they differ.
"""
import argparse
import difflib
import json
import sys
import uuid
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "000000000000"
PARTITION = "aws"
STACK = "kms-jwt"
URL_SUFFIX = "amazonaws.com"
SECRET_SUFFIX = "AbCdEf"  # the six characters Secrets Manager appends; a replica keeps them
ISSUER = "https://auth.example.com"  # Issuer has no default
ROLES = ("RotateRole", "SignRole", "JwksRole", "SchedulerRole")
FUNCTIONS = ("RotateFunction", "SignFunction", "JwksFunction")


class RenderError(Exception):
    pass


NO_VALUE = object()


def compact(region):
    return region.replace("-", "")


def physical_name(logical_id, region):
    return f"{STACK}-{logical_id}-{compact(region)}"


def role_arn(logical_id, region):
    return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{physical_name(logical_id, region)}"


def key_id(logical_id, region):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ACCOUNT}/{region}/{STACK}/{logical_id}"))


class Stack:
    def __init__(self, template, region, overrides):
        self.template = template
        self.region = region
        self.resources = template["Resources"]
        self.parameters = self._parameters(overrides)
        self._conditions = {}

    # ---- parameters and conditions -------------------------------------------------------
    def _parameters(self, overrides):
        values = {}
        for name, spec in self.template["Parameters"].items():
            if name in overrides:
                value = overrides[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise RenderError(f"parameter {name} has no default and no test value")
            if spec["Type"] == "CommaDelimitedList":
                value = value if isinstance(value, list) else str(value).split(",")
                value = [str(v) for v in value]
            elif spec["Type"] in ("String", "Number"):
                if isinstance(value, (list, dict)):
                    raise RenderError(f"parameter {name}: a {spec['Type']} cannot be {value!r}")
                value = str(value)
            else:
                raise RenderError(f"parameter {name}: unsupported type {spec['Type']}")
            values[name] = value
        unknown = set(overrides) - set(values)
        if unknown:
            raise RenderError(f"unknown parameters {sorted(unknown)}")
        return values

    def condition(self, name):
        if name not in self._conditions:
            if name not in self.template.get("Conditions", {}):
                raise RenderError(f"unknown condition {name}")
            self._conditions[name] = None  # cycle guard
            value = self.resolve(self.template["Conditions"][name])
            if not isinstance(value, bool):
                raise RenderError(f"condition {name} is not a boolean: {value!r}")
            self._conditions[name] = value
        value = self._conditions[name]
        if value is None:
            raise RenderError(f"condition {name} refers to itself")
        return value

    def active(self, logical_id):
        condition = self.resources[logical_id].get("Condition")
        return condition is None or self.condition(condition)

    # ---- physical names of resources -----------------------------------------------------
    def ref_resource(self, logical_id):
        resource = self.resources.get(logical_id)
        if resource is None:
            raise RenderError(f"Ref to unknown {logical_id}")
        if not self.active(logical_id):
            raise RenderError(f"Ref to {logical_id}, which this stack does not create")
        kind = resource["Type"]
        name = physical_name(logical_id, self.region)
        if kind == "AWS::IAM::Role":
            return name
        if kind == "AWS::Serverless::Function":
            return name
        if kind == "AWS::SecretsManager::Secret":
            return self.secret_arn()
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{self.region}:{ACCOUNT}:{name}"
        if kind == "AWS::Scheduler::ScheduleGroup":
            return name
        if kind == "AWS::KMS::Key":
            return key_id(logical_id, self.region)
        if kind == "AWS::Logs::LogGroup":
            return self.log_group_name(logical_id)
        if kind == "AWS::SSM::Parameter":
            # Ref gives the parameter's name, which the template sets.
            return self.resolve(resource["Properties"]["Name"])
        if kind == "AWS::CloudFront::Distribution":
            # A distribution ID: E and 13 upper-case letters and digits (global, no Region in
            # its ARN; deterministic per account, Region of the stack and logical id).
            return "E" + uuid.uuid5(uuid.NAMESPACE_URL, f"{ACCOUNT}/{self.region}/{STACK}/{logical_id}").hex[:13].upper()
        raise RenderError(f"Ref to {logical_id} ({kind}): no fake physical id for that type")

    def getatt(self, logical_id, attribute):
        resource = self.resources.get(logical_id)
        if resource is None:
            raise RenderError(f"GetAtt of unknown {logical_id}")
        if not self.active(logical_id):
            raise RenderError(f"GetAtt of {logical_id}, which this stack does not create")
        if attribute != "Arn":
            raise RenderError(f"GetAtt {logical_id}.{attribute}: only .Arn is rendered")
        kind = resource["Type"]
        name = physical_name(logical_id, self.region)
        r, a, p = self.region, ACCOUNT, PARTITION
        arns = {
            "AWS::IAM::Role": lambda: role_arn(logical_id, r),
            "AWS::Serverless::Function": lambda: f"arn:{p}:lambda:{r}:{a}:function:{name}",
            "AWS::SecretsManager::Secret": self.secret_arn,
            "AWS::SQS::Queue": lambda: f"arn:{p}:sqs:{r}:{a}:{name}",
            "AWS::KMS::Key": lambda: f"arn:{p}:kms:{r}:{a}:key/{key_id(logical_id, r)}",
            "AWS::SNS::Topic": lambda: f"arn:{p}:sns:{r}:{a}:{name}",
            "AWS::Scheduler::ScheduleGroup": lambda: f"arn:{p}:scheduler:{r}:{a}:schedule-group/{name}",
            "AWS::Events::Rule": lambda: f"arn:{p}:events:{r}:{a}:rule/{name}",
            # GetAtt of a log group's Arn ends in :* (AWS::Logs::LogGroup return values).
            "AWS::Logs::LogGroup": lambda: f"arn:{p}:logs:{r}:{a}:log-group:{self.log_group_name(logical_id)}:*",
        }
        if kind not in arns:
            raise RenderError(f"GetAtt {logical_id}.Arn ({kind}): no fake ARN for that type")
        return arns[kind]()

    def secret_arn(self):
        # The template names the secret ${AWS::StackName}/keyring; a replica's ARN differs from
        # the primary's only in the Region.
        return f"arn:{PARTITION}:secretsmanager:{self.region}:{ACCOUNT}:secret:{STACK}/keyring-{SECRET_SUFFIX}"

    def log_group_name(self, logical_id):
        name = self.resources[logical_id]["Properties"].get("LogGroupName")
        if name is None:
            raise RenderError(f"log group {logical_id} has no LogGroupName to render")
        return self.string(name, f"{logical_id}.LogGroupName")

    # ---- intrinsic functions -------------------------------------------------------------
    def ref(self, name):
        pseudo = {"AWS::Partition": PARTITION, "AWS::Region": self.region, "AWS::AccountId": ACCOUNT,
                  "AWS::StackName": STACK, "AWS::URLSuffix": URL_SUFFIX, "AWS::NoValue": NO_VALUE}
        if name in pseudo:
            return pseudo[name]
        if name.startswith("AWS::"):
            raise RenderError(f"unsupported pseudo parameter {name}")
        if name in self.parameters:
            return self.parameters[name]
        return self.ref_resource(name)

    def string(self, value, where):
        value = self.resolve(value)
        if not isinstance(value, str):
            raise RenderError(f"{where}: expected a string, got {value!r}")
        return value

    def sub(self, text, variables):
        out, i = [], 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            end = text.find("}", start)
            if end < 0:
                raise RenderError(f"Fn::Sub: unterminated ${{ in {text!r}")
            name = text[start + 2:end]
            if name.startswith("!"):
                out.append("${" + name[1:] + "}")  # ${!Literal} is the literal ${Literal}
            elif name in variables:
                out.append(self.string(variables[name], f"Fn::Sub variable {name}"))
            elif "." in name:
                logical_id, attribute = name.split(".", 1)
                out.append(self.getatt(logical_id, attribute))
            else:
                value = self.ref(name)
                if not isinstance(value, str):
                    raise RenderError(f"Fn::Sub ${{{name}}} is not a string: {value!r}")
                out.append(value)
            i = end + 1
        return "".join(out)

    def intrinsic(self, function, args):
        if function == "Ref":
            return self.ref(args)
        if function == "Condition":
            return self.condition(args)
        if function == "Fn::If":
            name, when_true, when_false = args
            return self.resolve(when_true if self.condition(name) else when_false)
        if function == "Fn::Equals":
            left, right = (self.resolve(a) for a in args)
            return left == right
        if function == "Fn::Not":
            (value,) = args
            value = self.resolve(value)
            if not isinstance(value, bool):
                raise RenderError(f"Fn::Not of a non-boolean {value!r}")
            return not value
        if function in ("Fn::And", "Fn::Or"):
            values = [self.resolve(a) for a in args]
            if not all(isinstance(v, bool) for v in values):
                raise RenderError(f"{function} of non-booleans {values!r}")
            return all(values) if function == "Fn::And" else any(values)
        if function == "Fn::Sub":
            if isinstance(args, str):
                return self.sub(args, {})
            text, variables = args
            return self.sub(text, variables)
        if function == "Fn::GetAtt":
            target = args.split(".", 1) if isinstance(args, str) else list(args)
            if len(target) != 2:
                raise RenderError(f"Fn::GetAtt {args!r}")
            return self.getatt(*target)
        if function == "Fn::Join":
            delimiter, values = args
            values = self.resolve(values)
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise RenderError(f"Fn::Join of {values!r}")
            return delimiter.join(values)
        if function == "Fn::Split":
            delimiter, text = args
            return self.string(text, "Fn::Split").split(delimiter)
        if function == "Fn::Select":
            index, values = args
            values = self.resolve(values)
            index = int(self.resolve(index))
            if not isinstance(values, list) or not 0 <= index < len(values):
                raise RenderError(f"Fn::Select {index} of {values!r}")
            return values[index]
        raise RenderError(f"unsupported intrinsic function {function}")

    def resolve(self, value):
        if isinstance(value, dict):
            if len(value) == 1:
                (key, args), = value.items()
                if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                    return self.intrinsic(key, args)
            out = {}
            for key, item in value.items():
                item = self.resolve(item)
                if item is not NO_VALUE:
                    out[str(key)] = item
            return out
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not NO_VALUE]
        if isinstance(value, (str, bool)) or value is None:
            return value
        if isinstance(value, (int, float)):
            return value
        raise RenderError(f"cannot render {value!r}")

    # ---- the stack's view ----------------------------------------------------------------
    def role(self, logical_id):
        props = self.resources[logical_id]["Properties"]
        policies = [{"name": self.string(p["PolicyName"], f"{logical_id} policy name"),
                     "document": self.resolve(p["PolicyDocument"])}
                    for p in props.get("Policies", [])]
        for name, resource in self.resources.items():
            if resource["Type"] != "AWS::IAM::RolePolicy" or not self.active(name):
                continue
            if resource["Properties"]["RoleName"] != {"Ref": logical_id}:
                continue
            policies.append({"name": self.string(resource["Properties"]["PolicyName"], f"{name}.PolicyName"),
                             "document": self.resolve(resource["Properties"]["PolicyDocument"])})
        for name, resource in self.resources.items():
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and self.active(name):
                raise RenderError(f"{name}: {resource['Type']} is not rendered (attach it to the output first)")
        return {"arn": self.getatt(logical_id, "Arn"),
                "trust_policy": self.resolve(props["AssumeRolePolicyDocument"]),
                "policies": policies}

    def function(self, logical_id):
        props = self.resources[logical_id]["Properties"]
        role = props.get("Role")
        if not (isinstance(role, dict) and list(role) == ["Fn::GetAtt"]):
            raise RenderError(f"{logical_id}: Role is not a GetAtt of a role of this template")
        target = role["Fn::GetAtt"]
        target = target.split(".", 1) if isinstance(target, str) else list(target)
        if target[1] != "Arn" or target[0] not in ROLES:
            raise RenderError(f"{logical_id}: Role {role!r} is not one of {ROLES}")
        merged = dict(self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
        merged.update(props.get("Environment", {}).get("Variables", {}))
        environment = {}
        for variable, value in merged.items():
            value = self.resolve(value)
            if value is NO_VALUE:
                continue
            if isinstance(value, bool) or isinstance(value, (int, float)):
                value = str(value).lower() if isinstance(value, bool) else str(value)
            if not isinstance(value, str):
                raise RenderError(f"{logical_id}: {variable} resolves to {value!r}, not a string")
            environment[variable] = value
        return {"arn": self.getatt(logical_id, "Arn"), "role": target[0], "environment": environment}

    def render(self):
        out = {
            "region": self.region,
            "parameters": dict(self.parameters),
            "roles": {role: self.role(role) for role in ROLES},
            "functions": {function: self.function(function) for function in FUNCTIONS},
            "keyring_secret_arn": self.secret_arn(),
            "security_topic_arn": self.getatt("SecurityAlertsTopic", "Arn"),
        }
        if "RotateScheduleGroup" in self.resources:
            out["schedule_group_arn"] = self.getatt("RotateScheduleGroup", "Arn")
        return out


def render(template):
    single = {"us-east-1": Stack(template, "us-east-1", {"Issuer": ISSUER}).render()}
    home, regions = "us-east-1", ["us-east-1", "eu-west-1", "ap-southeast-2"]
    multi = {}
    for region in regions:
        others = [r for r in regions if r != region]
        multi[region] = Stack(template, region, {
            "Issuer": ISSUER,
            "HomeRegion": home,
            "ReplicaRegions": [r for r in regions if r != home],
            "PeerSignRoleArns": [role_arn("SignRole", r) for r in others],
            "PeerRotateRoleArns": [role_arn("RotateRole", r) for r in others],
        }).render()
    edge = {"us-east-1": Stack(template, "us-east-1", {
        "Issuer": "",
        "IssuerDomainName": ISSUER.removeprefix("https://"),
        "IssuerCertificateArn": f"arn:{PARTITION}:acm:us-east-1:{ACCOUNT}:certificate/{key_id('IssuerCertificate', 'us-east-1')}",
    }).render()}
    return {"account": ACCOUNT, "partition": PARTITION,
            "deployments": {"single_region": {"home": "us-east-1", "stacks": single},
                            "multi_region": {"home": home, "stacks": multi},
                            "single_region_cloudfront": {"home": "us-east-1", "stacks": edge}}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default=str(ROOT / "infra" / "template.yaml"))
    parser.add_argument("--output", default=str(ROOT / "shared" / "fixtures" / "test-stacks.json"))
    parser.add_argument("--check", action="store_true", help="fail with a diff if the committed file differs")
    options = parser.parse_args()
    try:
        text = json.dumps(render(cfn_yaml.load(options.template)), indent=2, sort_keys=True) + "\n"
    except RenderError as error:
        print(f"render_test_stacks: {error}", file=sys.stderr)
        return 2
    output = Path(options.output)
    if options.check:
        committed = output.read_text() if output.exists() else ""
        if committed == text:
            print(f"{output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} is up to date")
            return 0
        sys.stdout.writelines(difflib.unified_diff(committed.splitlines(True), text.splitlines(True),
                                                   "committed", "rendered from the template"))
        print("\nrender_test_stacks: the fixture differs from the template; run infra/render_test_stacks.py",
              file=sys.stderr)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
