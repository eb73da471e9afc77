"""The network component, through the offline plan of each stack."""

from __future__ import annotations

import ipaddress
import json

import pytest

from components.network import subnet_cidrs
from infra.plan import Plan, PlanSet

SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ROUTE = "aws:ec2/route:Route"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"


def tier(plan: Plan, name: str) -> list:
    return [r for r in plan.of_type(SUBNET) if r.inputs["tags"]["Tier"] == name]


@pytest.mark.parametrize(("stack", "azs"), [("dev", 2), ("prod", 3)])
def test_one_public_and_one_private_subnet_per_az(plans: PlanSet, stack: str, azs: int) -> None:
    plan = plans.get(stack, 1)
    for name in ("public", "private"):
        zones = sorted(r.inputs["availabilityZone"] for r in tier(plan, name))
        assert len(zones) == azs and len(set(zones)) == azs, f"{stack} {name} subnets: {zones}"


def test_subnet_cidrs_are_computed_from_the_vpc_cidr_and_do_not_overlap(plans: PlanSet) -> None:
    plan = plans.get("prod", 1)
    vpc = ipaddress.IPv4Network(plan.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    nets = [ipaddress.IPv4Network(r.inputs["cidrBlock"]) for r in plan.of_type(SUBNET)]
    for net in nets:
        assert net.subnet_of(vpc), f"{net} is outside the VPC {vpc}"
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            assert not a.overlaps(b), f"subnets {a} and {b} overlap"


def test_adding_an_az_keeps_the_existing_subnet_cidrs() -> None:
    public2, private2 = subnet_cidrs("10.0.0.0/16", 2)
    public3, private3 = subnet_cidrs("10.0.0.0/16", 3)
    assert public3[:2] == public2 and private3[:2] == private2


def test_vpc_has_dns_support_and_hostnames(plans: PlanSet) -> None:
    vpc = plans.get("dev", 1).one("aws:ec2/vpc:Vpc")
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True, (
        vpc.urn
    )


@pytest.mark.parametrize(("strategy", "expected"), [("none", 0), ("single", 1), ("per-az", 2)])
def test_nat_gateway_count_follows_the_strategy(
    plans: PlanSet, strategy: str, expected: int
) -> None:
    plan = plans.get("dev", phase=1, overrides={"jobstream:natStrategy": strategy})
    assert len(plan.of_type(NAT)) == expected


def test_prod_has_a_nat_gateway_per_az(plans: PlanSet) -> None:
    assert len(plans.get("prod", 1).of_type(NAT)) == 3


@pytest.mark.parametrize("strategy", ["single", "per-az"])
def test_each_private_subnet_routes_to_the_internet_only_through_a_nat(
    plans: PlanSet, strategy: str
) -> None:
    plan = plans.get("dev", phase=1, overrides={"jobstream:natStrategy": strategy})
    default_routes = [
        r for r in plan.of_type(ROUTE) if r.inputs.get("destinationCidrBlock") == "0.0.0.0/0"
    ]
    private_routes = [r for r in default_routes if "private" in r.name]
    assert len(private_routes) == 2
    for route in private_routes:
        assert "natGatewayId" in route.inputs and "gatewayId" not in route.inputs, (
            f"{route.urn}: a private subnet must not route to the internet gateway"
        )


def test_private_route_tables_have_no_default_route_without_nat(plans: PlanSet) -> None:
    plan = plans.get("dev", phase=1, overrides={"jobstream:natStrategy": "none"})
    assert [r.name for r in plan.of_type(ROUTE)] == ["network-public-internet"]


def test_only_the_public_route_table_routes_to_the_internet_gateway(plans: PlanSet) -> None:
    plan = plans.get("prod", 1)
    via_igw = [r for r in plan.of_type(ROUTE) if "gatewayId" in r.inputs]
    assert [r.name for r in via_igw] == ["network-public-internet"]
    public_rt = plan.one("aws:ec2/routeTable:RouteTable", "network-public")
    associations = plan.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    public_rt_id = next(
        a.inputs["routeTableId"] for a in associations if a.name == "network-public-0"
    )
    for a in associations:
        if "private" in a.name:
            assert a.inputs["routeTableId"] != public_rt_id, (
                f"{a.urn} associates a private subnet with {public_rt.urn}"
            )


def test_subnets_do_not_assign_public_ips(plans: PlanSet) -> None:
    for r in plans.get("dev", 1).of_type(SUBNET):
        assert r.inputs["mapPublicIpOnLaunch"] is False, r.urn


def test_s3_gateway_endpoint_serves_the_private_route_tables(plans: PlanSet) -> None:
    s3 = plans.get("dev", 1).one(ENDPOINT, "network-s3")
    assert s3.inputs["vpcEndpointType"] == "Gateway"
    assert s3.inputs["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert len(s3.inputs["routeTableIds"]) == 2


def test_default_interface_endpoints_are_present_in_the_private_subnets(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    interface = [r for r in plan.of_type(ENDPOINT) if r.inputs["vpcEndpointType"] == "Interface"]
    services = sorted(
        r.inputs["serviceName"].removeprefix("com.amazonaws.us-east-1.") for r in interface
    )
    assert services == sorted(["ecr.api", "ecr.dkr", "logs", "sqs", "sts", "secretsmanager", "ssm"])
    private_ids = {r.urn: r for r in plan.of_type(SUBNET)}
    assert private_ids
    for r in interface:
        assert r.inputs["privateDnsEnabled"] is True, r.urn
        assert len(r.inputs["subnetIds"]) == 2, r.urn


def test_interface_endpoint_list_is_configurable(plans: PlanSet) -> None:
    plan = plans.get("dev", phase=1, overrides={"jobstream:interfaceEndpoints": '["sqs"]'})
    names = sorted(r.name for r in plan.of_type(ENDPOINT))
    assert names == ["network-s3", "network-sqs"]


def test_endpoint_security_group_admits_https_from_the_vpc_only(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    rules = [
        r
        for r in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.name.startswith("network-")
    ]
    assert len(rules) == 1, [r.urn for r in rules]
    (rule,) = rules
    assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (
        443,
        443,
        "tcp",
    )
    assert rule.inputs["cidrIpv4"] == "10.10.0.0/16", rule.urn


def test_flow_logs_capture_all_traffic_to_a_log_group_with_retention(plans: PlanSet) -> None:
    plan = plans.get("dev", 1)
    flow = plan.one("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["trafficType"] == "ALL", flow.urn
    group = plan.one("aws:cloudwatch/logGroup:LogGroup", "network-flow-logs")
    assert group.inputs["retentionInDays"] == 14, group.urn
    assert flow.inputs["logDestination"].endswith(f":log-group:{group.inputs['name']}")


def test_default_security_group_is_stripped_of_rules(plans: PlanSet) -> None:
    sg = plans.get("dev", 1).one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert sg.inputs.get("ingress", []) == [] and sg.inputs.get("egress", []) == [], sg.urn


def test_availability_zones_come_from_the_data_source(plans: PlanSet) -> None:
    zones = {r.inputs["availabilityZone"] for r in plans.get("prod", 1).of_type(SUBNET)}
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1c"}


def test_resources_are_tagged_by_the_provider_not_by_hand(plans: PlanSet) -> None:
    plan = plans.get("prod", 1)
    provider = plan.one("pulumi:providers:aws")
    assert '"Environment": "prod"' in provider.inputs["defaultTags"]
    for r in plan.resources:
        tags = r.inputs.get("tags") or {}
        assert not {"Project", "Environment", "ManagedBy", "Phase"} & set(tags), (
            f"{r.urn} tags by hand: {tags}"
        )


def test_flow_log_role_is_assumable_for_this_accounts_flow_logs_only(plans: PlanSet) -> None:
    """Issue 12 defect 9. VPC User Guide, IAM role for publishing flow logs to CloudWatch Logs:
    "We recommend that you use the aws:SourceAccount and aws:SourceArn condition keys to
    protect yourself against the confused deputy problem" (flow log id unknown beforehand: a
    wildcard)."""
    plan = plans.get("dev", 1)
    role = plan.one("aws:iam/role:Role", "network-flow-logs")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}, role.urn
    condition = statement.get("Condition", {})
    assert condition.get("StringEquals") == {"aws:SourceAccount": "123456789012"}, (
        f"{role.urn}: trust policy lacks the aws:SourceAccount condition"
    )
    assert condition.get("ArnLike") == {
        "aws:SourceArn": "arn:aws:ec2:us-east-1:123456789012:vpc-flow-log/*"
    }, f"{role.urn}: trust policy lacks the aws:SourceArn condition"
