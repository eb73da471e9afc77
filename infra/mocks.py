"""Deterministic mocks of the AWS provider for the offline plan.

``PlanMocks.new_resource`` returns the inputs plus the computed outputs that the program reads
(ids, ARNs, URLs, endpoints, bootstrap brokers), all derived from the resource's name, so two
runs give identical values. ``MOCKED_INVOKES`` is the one list of data-source calls the program
may make offline; any other invoke fails loudly instead of returning something invented.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import pulumi

ACCOUNT_ID = "123456789012"
PARTITION = "aws"


def _digest(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _token_parts(token: str) -> tuple[str, str, str]:
    """``aws:sqs/queue:Queue`` -> ("aws", "sqs", "Queue")."""
    package, module_path, kind = token.split(":", 2)
    return package, module_path.split("/")[0], kind


class PlanMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str) -> None:
        self.region = region

    # ---- resources ---------------------------------------------------------------------

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        inputs: dict[str, Any] = dict(args.inputs)
        if args.typ.startswith("pulumi:providers:"):
            return f"{args.name}-provider-id", inputs
        package, module, kind = _token_parts(args.typ)
        physical = self._physical_name(args.name, inputs)
        resource_id = args.resource_id or self._resource_id(module, kind, args.name, physical)
        state = dict(inputs)
        if package == "aws" and args.resource_id and args.resource_id.startswith("arn:"):
            state.setdefault("arn", args.resource_id)  # imported by ARN: its ARN is the id
        if package == "aws":
            state.setdefault("arn", self._arn(module, kind, physical, inputs))
        extra = _EXTRA_OUTPUTS.get(args.typ)
        if extra is not None:
            state.update(extra(self, physical, inputs))
        if args.typ == "aws:sqs/queue:Queue" and args.resource_id:
            # An imported queue's id is its URL: the URL and ARN name its own account.
            *_, account, queue_name = args.resource_id.rsplit("/", 2)
            state["url"] = args.resource_id
            state["arn"] = f"arn:{PARTITION}:sqs:{self.region}:{account}:{queue_name}"
        if "namePrefix" in inputs:
            state.setdefault("name", physical)
        state.setdefault("tagsAll", inputs.get("tags", {}))
        return resource_id, state

    def resource_id(self, type_: str, logical: str, inputs: Mapping[str, Any]) -> str:
        """The id ``new_resource`` gives the resource of this type, logical name and inputs
        (what other resources' inputs carry where they reference it, e.g. security groups)."""
        _, module, kind = _token_parts(type_)
        return self._resource_id(module, kind, logical, self._physical_name(logical, inputs))

    def _physical_name(self, logical: str, inputs: Mapping[str, Any]) -> str:
        for key in ("name", "identifier", "clusterName", "parameterName", "functionName"):
            value = inputs.get(key)
            if isinstance(value, str) and value:
                return value
        prefix = inputs.get("namePrefix") or inputs.get("identifierPrefix")
        if isinstance(prefix, str) and prefix:
            return f"{prefix}{_digest(logical)}"
        return logical

    def _resource_id(self, module: str, kind: str, logical: str, physical: str) -> str:
        short = {
            "Vpc": "vpc", "Subnet": "subnet", "InternetGateway": "igw", "NatGateway": "nat",
            "Eip": "eipalloc", "RouteTable": "rtb", "SecurityGroup": "sg", "VpcEndpoint": "vpce",
            "FlowLog": "fl", "DefaultSecurityGroup": "sg",
        }.get(kind)  # fmt: skip
        if module == "ec2" and short:
            return f"{short}-{_digest(logical, length=17)}"
        if module == "sqs" and kind == "Queue":
            return self._queue_url(physical)
        return physical

    def _queue_url(self, name: str) -> str:
        return f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{name}"

    def _arn(self, module: str, kind: str, physical: str, inputs: Mapping[str, Any]) -> str:
        r, a = self.region, ACCOUNT_ID
        service = {"cloudwatch": "logs" if kind == "LogGroup" else "cloudwatch", "msk": "kafka",
                   "sfn": "states", "appautoscaling": "application-autoscaling"}.get(module, module)  # fmt: skip
        if module == "iam":
            return f"arn:{PARTITION}:iam::{a}:{kind[0].lower()}{kind[1:]}/{physical}"
        if module == "sqs" or module == "sns":
            return f"arn:{PARTITION}:{service}:{r}:{a}:{physical}"
        if module == "ssm" and kind == "Parameter":
            return f"arn:{PARTITION}:ssm:{r}:{a}:parameter/{physical.lstrip('/')}"
        if kind == "LogGroup":
            return f"arn:{PARTITION}:logs:{r}:{a}:log-group:{physical}"
        if module == "cloudwatch" and kind == "EventRule":
            return f"arn:{PARTITION}:events:{r}:{a}:rule/{physical}"
        if module == "kms":
            return f"arn:{PARTITION}:kms:{r}:{a}:key/{_uuid(physical)}"
        if module == "secretsmanager" and kind == "Secret":
            suffix = _digest(physical, length=6)  # AWS appends 6 random characters
            return f"arn:{PARTITION}:secretsmanager:{r}:{a}:secret:{physical}-{suffix}"
        if module == "msk" and kind in ("Cluster", "ServerlessCluster"):
            return f"arn:{PARTITION}:kafka:{r}:{a}:cluster/{physical}/{_uuid(physical)}-1"
        if module == "msk" and kind == "Configuration":
            return f"arn:{PARTITION}:kafka:{r}:{a}:configuration/{physical}/{_uuid(physical)}-1"
        if module == "rds" and kind == "Instance":
            return f"arn:{PARTITION}:rds:{r}:{a}:db:{physical}"
        if module == "rds" and kind == "Proxy":
            return f"arn:{PARTITION}:rds:{r}:{a}:db-proxy:prx-{_digest(physical, length=17)}"
        if module == "batch":
            kebab = "".join(f"-{c.lower()}" if c.isupper() else c for c in kind).lstrip("-")
            suffix = ":1" if kind == "JobDefinition" else ""
            return f"arn:{PARTITION}:batch:{r}:{a}:{kebab}/{physical}{suffix}"
        kebab = "".join(f"-{c.lower()}" if c.isupper() else c for c in kind).lstrip("-")
        return f"arn:{PARTITION}:{service}:{r}:{a}:{kebab}/{physical}"

    # ---- invokes -----------------------------------------------------------------------

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        handler = MOCKED_INVOKES.get(args.token)
        if handler is None:
            known = ", ".join(sorted(MOCKED_INVOKES))
            raise NotImplementedError(
                f"the offline plan has no mock for invoke {args.token!r}; add one to "
                f"infra/mocks.py MOCKED_INVOKES (mocked: {known})"
            )
        return handler(self, dict(args.args)), []


def _uuid(seed: str) -> str:
    h = _digest(seed, length=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# ---- computed outputs per resource type ------------------------------------------------------


def _queue(m: PlanMocks, name: str, _inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"url": m._queue_url(name)}


def _msk_cluster(m: PlanMocks, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    count = int(inputs.get("numberOfBrokerNodes", 3))
    host = f"{name}.{_digest(name, length=6)}.c2.kafka.{m.region}.amazonaws.com"
    brokers = ",".join(f"b-{i}.{host}:9098" for i in range(1, count + 1))
    return {
        "bootstrapBrokersSaslIam": brokers,
        "clusterUuid": f"{_uuid(name)}-1",
        "currentVersion": "K3AEGXETSR30VB",
        "zookeeperConnectString": "",
    }


def _msk_serverless(m: PlanMocks, name: str, _inputs: Mapping[str, Any]) -> dict[str, Any]:
    host = f"boot-{_digest(name, length=8)}.c2.kafka-serverless.{m.region}.amazonaws.com"
    return {"bootstrapBrokersSaslIam": f"{host}:9098", "clusterUuid": f"{_uuid(name)}-s1"}


def _msk_configuration(_m: PlanMocks, _name: str, _inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"latestRevision": 1}


def _rds_instance(m: PlanMocks, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    address = f"{name}.{_digest(name, length=12)}.{m.region}.rds.amazonaws.com"
    secret = (
        f"arn:{PARTITION}:secretsmanager:{m.region}:{ACCOUNT_ID}:secret:rds!db-{_uuid(name)}-AbCdEf"
    )
    return {
        "address": address,
        "endpoint": f"{address}:5432",
        "port": 5432,
        "resourceId": f"db-{_digest(name, length=26).upper()}",
        "masterUserSecrets": [
            {
                "secretArn": secret,
                "kmsKeyId": inputs.get("masterUserSecretKmsKeyId", ""),
                "secretStatus": "active",
            }
        ],
    }


def _rds_proxy(m: PlanMocks, name: str, _inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"endpoint": f"{name}.proxy-{_digest(name, length=12)}.{m.region}.rds.amazonaws.com"}


def _rds_proxy_default_target_group(
    _m: PlanMocks, _name: str, _inputs: Mapping[str, Any]
) -> dict[str, Any]:
    return {"name": "default"}


def _kms_key(m: PlanMocks, name: str, _inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"keyId": _uuid(name)}


def _security_group(_m: PlanMocks, _name: str, _inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"ownerId": ACCOUNT_ID}


def _ecs_cluster(m: PlanMocks, name: str, _inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"arn": f"arn:{PARTITION}:ecs:{m.region}:{ACCOUNT_ID}:cluster/{name}"}


def _ecs_task_definition(m: PlanMocks, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    family = inputs.get("family", name)
    return {
        "arn": f"arn:{PARTITION}:ecs:{m.region}:{ACCOUNT_ID}:task-definition/{family}:1",
        "revision": 1,
    }


def _job_definition(m: PlanMocks, name: str, _inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "revision": 1,
        "arnPrefix": f"arn:{PARTITION}:batch:{m.region}:{ACCOUNT_ID}:job-definition/{name}",
    }


def _random_id(_m: PlanMocks, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A stable stand-in for the random bytes: derived from the name and the keepers, so a
    change of keepers (which replaces a real RandomId) gives a new value here too."""
    length = int(inputs.get("byteLength", 8))
    keepers = json.dumps(inputs.get("keepers") or {}, sort_keys=True)
    return {"hex": _digest(name, keepers, length=2 * length)}


_EXTRA_OUTPUTS: Mapping[str, Callable[[PlanMocks, str, Mapping[str, Any]], dict[str, Any]]] = {
    "random:index/randomId:RandomId": _random_id,
    "aws:sqs/queue:Queue": _queue,
    "aws:msk/cluster:Cluster": _msk_cluster,
    "aws:msk/serverlessCluster:ServerlessCluster": _msk_serverless,
    "aws:msk/configuration:Configuration": _msk_configuration,
    "aws:rds/instance:Instance": _rds_instance,
    "aws:rds/proxy:Proxy": _rds_proxy,
    "aws:rds/proxyDefaultTargetGroup:ProxyDefaultTargetGroup": _rds_proxy_default_target_group,
    "aws:kms/key:Key": _kms_key,
    "aws:ec2/securityGroup:SecurityGroup": _security_group,
    "aws:ecs/cluster:Cluster": _ecs_cluster,
    "aws:ecs/taskDefinition:TaskDefinition": _ecs_task_definition,
    "aws:batch/jobDefinition:JobDefinition": _job_definition,
}


# ---- invokes ----------------------------------------------------------------------------------


def _availability_zones(m: PlanMocks, _args: dict[str, Any]) -> dict[str, Any]:
    letters = "abcdef"
    return {
        "names": [f"{m.region}{c}" for c in letters],
        "zoneIds": [f"use1-az{i}" for i in range(1, len(letters) + 1)],
        "id": m.region,
        "state": "available",
    }


def _caller_identity(_m: PlanMocks, _args: dict[str, Any]) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT_ID,
        "arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:user/plan",
        "userId": "AIDAPLAN",
        "id": ACCOUNT_ID,
    }


def _region(m: PlanMocks, _args: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": m.region,
        "region": m.region,
        "id": m.region,
        "endpoint": f"ec2.{m.region}.amazonaws.com",
    }


def _partition(_m: PlanMocks, _args: dict[str, Any]) -> dict[str, Any]:
    return {"partition": PARTITION, "dnsSuffix": "amazonaws.com", "id": PARTITION}


def _rds_get_instance(m: PlanMocks, args: dict[str, Any]) -> dict[str, Any]:
    """An existing instance (``existingDbInstanceId``): RDS-managed password, one SG."""
    identifier = str(args.get("dbInstanceIdentifier", ""))
    outputs = _rds_instance(m, identifier, {})
    return {
        "id": identifier,
        "dbInstanceIdentifier": identifier,
        "dbInstanceArn": f"arn:{PARTITION}:rds:{m.region}:{ACCOUNT_ID}:db:{identifier}",
        "address": outputs["address"],
        "endpoint": outputs["endpoint"],
        "port": outputs["port"],
        "resourceId": outputs["resourceId"],
        "engine": "postgres",
        "masterUserSecrets": [
            {
                **outputs["masterUserSecrets"][0],
                "kmsKeyId": f"arn:{PARTITION}:kms:{m.region}:{ACCOUNT_ID}:key/{_uuid(identifier)}",
            }
        ],
        "vpcSecurityGroups": [f"sg-{_digest(identifier, length=17)}"],
    }


def _policy_document(_m: PlanMocks, args: dict[str, Any]) -> dict[str, Any]:
    """Render ``aws.iam.get_policy_document`` the way the provider does (IAM JSON)."""
    document = render_policy_document(args)
    text = json.dumps(document, indent=2, sort_keys=False)
    return {
        "json": text,
        "minifiedJson": json.dumps(document, separators=(",", ":")),
        "id": _digest(text),
    }


def render_policy_document(args: Mapping[str, Any]) -> dict[str, Any]:
    statements: list[dict[str, Any]] = []
    # source_policy_documents come first; a statement of this document with the same Sid
    # replaces the source's (the provider's merge rule).
    for source in args.get("sourcePolicyDocuments") or []:
        statements.extend(json.loads(source).get("Statement", []))
    for st in args.get("statements") or []:
        out: dict[str, Any] = {}
        if st.get("sid"):
            out["Sid"] = st["sid"]
        out["Effect"] = st.get("effect") or "Allow"
        for wire, iam in (("actions", "Action"), ("notActions", "NotAction"),
                          ("resources", "Resource"), ("notResources", "NotResource")):  # fmt: skip
            values = st.get(wire)
            if values:
                out[iam] = _one_or_many(sorted(set(values), key=list(values).index))
        for wire, iam in (("principals", "Principal"), ("notPrincipals", "NotPrincipal")):
            principals = st.get(wire)
            if principals:
                block: dict[str, Any] = {}
                for p in principals:
                    block.setdefault(p["type"], []).extend(p["identifiers"])
                if list(block) == ["*"] and block["*"] == ["*"]:
                    out[iam] = "*"
                else:
                    out[iam] = {k: _one_or_many(v) for k, v in block.items()}
        conditions = st.get("conditions")
        if conditions:
            cond: dict[str, dict[str, Any]] = {}
            for c in conditions:
                cond.setdefault(c["test"], {})[c["variable"]] = _one_or_many(list(c["values"]))
            out["Condition"] = cond
        same_sid = [
            i for i, x in enumerate(statements) if "Sid" in out and x.get("Sid") == out["Sid"]
        ]
        if same_sid:
            statements[same_sid[0]] = out
        else:
            statements.append(out)
    return {"Version": args.get("version") or "2012-10-17", "Statement": statements}


def _one_or_many(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values


MOCKED_INVOKES: Mapping[str, Callable[[PlanMocks, dict[str, Any]], dict[str, Any]]] = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": _availability_zones,
    "aws:index/getCallerIdentity:getCallerIdentity": _caller_identity,
    "aws:index/getRegion:getRegion": _region,
    "aws:index/getPartition:getPartition": _partition,
    "aws:iam/getPolicyDocument:getPolicyDocument": _policy_document,
    "aws:rds/getInstance:getInstance": _rds_get_instance,
}
