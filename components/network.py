"""The VPC: public and private subnets per AZ, NAT by strategy, VPC endpoints, flow logs."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.iam import assume_role_policy, policy_document
from components.security_groups import HTTPS_PORT, security_group, tcp_rule
from jobstream.contract.choices import NatStrategy

SUBNET_BLOCKS_NEWBITS = 3
"""The VPC is cut into 2**3 = 8 equal blocks: public subnets take blocks 0-2 and private subnets
blocks 4-6 (one each per AZ, up to 3 AZs), so adding an AZ never renumbers an existing subnet."""
PRIVATE_BLOCK_OFFSET = 4


@dataclass(frozen=True)
class NetworkArgs:
    prefix: str
    vpc_cidr: str
    az_count: int
    nat_strategy: NatStrategy
    flow_log_retention_days: int
    flow_log_group_name: str
    interface_endpoints: Sequence[str]


def subnet_cidrs(vpc_cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """(public, private) CIDRs for ``az_count`` AZs, computed from the VPC CIDR."""
    blocks = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=SUBNET_BLOCKS_NEWBITS))
    if az_count > PRIVATE_BLOCK_OFFSET:
        raise ValueError(
            f"at most {PRIVATE_BLOCK_OFFSET} AZs fit the subnet layout, got {az_count}"
        )
    public = [str(blocks[i]) for i in range(az_count)]
    private = [str(blocks[PRIVATE_BLOCK_OFFSET + i]) for i in range(az_count)]
    return public, private


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    private_route_table_ids: list[pulumi.Output[str]]
    nat_gateway_count: int

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        p = args.prefix
        self.vpc_cidr = args.vpc_cidr

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": f"{p}-vpc"},
            opts=child,
        )
        self.vpc_id = vpc.id

        # Nothing may use the default security group: strip all of its rules.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
            tags={"Name": f"{p}-default-do-not-use"}, opts=child,
        )  # fmt: skip

        zones = aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOutputOptions(parent=self)
        )
        public_cidrs, private_cidrs = subnet_cidrs(args.vpc_cidr, args.az_count)

        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{p}-igw"}, opts=child
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public", vpc_id=vpc.id, tags={"Name": f"{p}-public"}, opts=child
        )
        aws.ec2.Route(
            f"{name}-public-internet", route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=child,
        )  # fmt: skip

        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for i in range(args.az_count):
            az = zones.names.apply(lambda names, i=i: names[i])
            public = self._subnet(name, p, vpc, "public", i, public_cidrs[i], az)
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=public.id, route_table_id=public_rt.id, opts=child
            )
            private = self._subnet(name, p, vpc, "private", i, private_cidrs[i], az)
            public_subnets.append(public)
            private_subnets.append(private)

        nat_count = {NatStrategy.NONE: 0, NatStrategy.SINGLE: 1, NatStrategy.PER_AZ: args.az_count}[
            args.nat_strategy
        ]
        nat_gateways: list[aws.ec2.NatGateway] = []
        for i in range(nat_count):
            eip = aws.ec2.Eip(
                f"{name}-nat-{i}", domain="vpc", tags={"Name": f"{p}-nat-{i}"}, opts=child
            )
            nat_gateways.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public_subnets[i].id,
                    tags={"Name": f"{p}-nat-{i}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )
        self.nat_gateway_count = nat_count

        private_route_tables: list[aws.ec2.RouteTable] = []
        for i, subnet in enumerate(private_subnets):
            rt = aws.ec2.RouteTable(
                f"{name}-private-{i}", vpc_id=vpc.id, tags={"Name": f"{p}-private-{i}"}, opts=child
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=rt.id, opts=child
            )
            if nat_gateways:
                nat = nat_gateways[i] if len(nat_gateways) > 1 else nat_gateways[0]
                aws.ec2.Route(
                    f"{name}-private-{i}-nat", route_table_id=rt.id,
                    destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.id, opts=child,
                )  # fmt: skip
            private_route_tables.append(rt)

        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=region.apply(lambda r: f"com.amazonaws.{r}.s3"),
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_route_tables],
            tags={"Name": f"{p}-s3"},
            opts=child,
        )

        if args.interface_endpoints:
            endpoint_sg = security_group(
                self,
                f"{name}-endpoints",
                vpc_id=vpc.id,
                description=f"{p}: HTTPS to interface VPC endpoints from inside the VPC",
                tag_name=f"{p}-endpoints",
            )
            tcp_rule(
                self,
                f"{name}-endpoints-https",
                "ingress",
                group_id=endpoint_sg.id,
                port=HTTPS_PORT,
                description="HTTPS from the VPC",
                peer_cidr=args.vpc_cidr,
            )
            for service in args.interface_endpoints:
                aws.ec2.VpcEndpoint(
                    f"{name}-{service.replace('.', '-')}",
                    vpc_id=vpc.id,
                    service_name=region.apply(lambda r, s=service: f"com.amazonaws.{r}.{s}"),
                    vpc_endpoint_type="Interface",
                    private_dns_enabled=True,
                    subnet_ids=[s.id for s in private_subnets],
                    security_group_ids=[endpoint_sg.id],
                    tags={"Name": f"{p}-{service}"},
                    opts=child,
                )

        self._flow_logs(name, p, vpc, args.flow_log_group_name, args.flow_log_retention_days)

        self.public_subnet_ids = [s.id for s in public_subnets]
        self.private_subnet_ids = [s.id for s in private_subnets]
        self.private_route_table_ids = [rt.id for rt in private_route_tables]
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )

    def _subnet(
        self,
        name: str,
        p: str,
        vpc: aws.ec2.Vpc,
        tier: str,
        i: int,
        cidr: str,
        az: pulumi.Output[str],
    ) -> aws.ec2.Subnet:
        # No public IPs even in the public tier: only the NAT gateways live there, with EIPs.
        return aws.ec2.Subnet(
            f"{name}-{tier}-{i}",
            vpc_id=vpc.id,
            cidr_block=cidr,
            availability_zone=az,
            map_public_ip_on_launch=False,
            tags={"Name": f"{p}-{tier}-{i}", "Tier": tier},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _flow_logs(
        self, name: str, p: str, vpc: aws.ec2.Vpc, log_group_name: str, retention_days: int
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=log_group_name,
            retention_in_days=retention_days,
            opts=child,
        )
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        region = aws.get_region_output(opts=invoke).region
        partition = aws.get_partition_output(opts=invoke).partition
        # Confused-deputy protection (VPC User Guide, IAM role for publishing flow logs): "We
        # recommend that you use the aws:SourceAccount and aws:SourceArn condition keys"; the
        # flow log's id is not known before it exists, hence the wildcard the guide suggests.
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=assume_role_policy(
                self,
                "vpc-flow-logs.amazonaws.com",
                source_account=account,
                source_arn_like=pulumi.Output.concat(
                    "arn:", partition, ":ec2:", region, ":", account, ":vpc-flow-log/*"
                ),
            ),
            opts=child,
        )
        write = policy_document(
            self,
            [
                {
                    "sid": "WriteFlowLogs",
                    "actions": [
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    "resources": [log_group.arn.apply(lambda a: f"{a}:*")],
                }
            ],
        )
        aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, policy=write, opts=child)
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags={"Name": f"{p}-flow-logs"},
            opts=child,
        )
