"""``jobstream cost --stack S [--phase N]``: a monthly cost estimate from the offline plan.

Every billable resource the plan declares is priced from ``ops/prices.json`` (on-demand list
prices of one region, with the date they were taken and the pages they come from), grouped by
the top-level component that owns it; load-driven items (Batch jobs, SQS and Pipes requests)
come from the stack config (``expectedJobsPerDay`` x ``expectedJobSeconds``). The summary
prices every phase and shows the extra cost of each over phase 1. Estimates only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from infra import config as config_module
from jobstream.contract.choices import ComputeType
from jobstream.contract.names import Names
from jobstream.contract.phases import PHASES, Route, phase
from ops.arguments import non_negative_int, non_negative_number
from ops.errors import EXIT_OK, handles_errors
from ops.report import console, fmt_money, print_json

if TYPE_CHECKING:
    from infra.plan import Plan, PlannedResource, PlanRequest

DEFAULT_LOG_GB = 1.0

# Series of the messaging library's metrics (namespace Jobstream) that a phase emits: per
# publish route 3 (JobsPublished, PublishErrors, SecondaryPublishFailures), per consumer that
# is on 5 (JobsApplied, DuplicatesSkipped, ProcessingTime, ProcessingErrors, DeadLettered),
# and 2 more in verify mode (VerifyMatches, VerifyMismatches).
PUBLISH_SERIES, CONSUMER_SERIES, VERIFY_SERIES = 3, 5, 2


@dataclass(frozen=True)
class Prices:
    data: Mapping[str, Any]

    @property
    def region(self) -> str:
        return str(self.data["region"])

    @property
    def taken(self) -> str:
        return str(self.data["taken"])

    @property
    def hours(self) -> float:
        return float(self.data["hours_per_month"])

    @property
    def days(self) -> float:
        return float(self.data["days_per_month"])

    def get(self, *path: str) -> float | None:
        node: Any = self.data
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]  # pyright: ignore[reportUnknownVariableType]
        return float(node)  # pyright: ignore[reportUnknownArgumentType]

    def need(self, *path: str) -> float:
        value = self.get(*path)
        if value is None:
            raise KeyError("/".join(path))
        return value


@cache
def load_prices() -> Prices:
    text = resources.files("ops").joinpath("prices.json").read_text(encoding="utf-8")
    return Prices(json.loads(text))


@dataclass(frozen=True)
class Line:
    group: str
    item: str
    quantity: float
    unit: str
    unit_price: float | None
    note: str = ""

    @property
    def monthly(self) -> float:
        return 0.0 if self.unit_price is None else self.quantity * self.unit_price

    @property
    def priced(self) -> bool:
        return self.unit_price is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "item": self.item,
            "quantity": round(self.quantity, 4),
            "unit": self.unit,
            "unit_price": self.unit_price,
            "monthly": round(self.monthly, 2),
            "note": self.note,
        }


@dataclass(frozen=True)
class Assumptions:
    jobs_per_day: int
    job_seconds: int
    log_gb_per_group: float


@dataclass
class Estimate:
    stack: str
    phase: int
    lines: list[Line] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(line.monthly for line in self.lines)

    def by_group(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.lines:
            out[line.group] = out.get(line.group, 0.0) + line.monthly
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    @property
    def unpriced(self) -> list[Line]:
        return [line for line in self.lines if not line.priced]


# ---- pricing the plan -----------------------------------------------------------------------


def group_of(plan: Plan, resource: PlannedResource) -> str:
    """The top-level component that owns the resource (its name), or ``(stack)``."""
    index = plan.by_urn()
    top: PlannedResource | None = None
    current: PlannedResource | None = resource
    while current is not None:
        if not current.custom:
            top = current
        current = index.get(current.parent or "")
    return top.name if top is not None else "(stack)"


Pricer = Callable[["_Ctx", "PlannedResource"], list[Line]]


@dataclass(frozen=True)
class _Ctx:
    plan: Plan
    prices: Prices
    assumptions: Assumptions

    def group(self, r: PlannedResource) -> str:
        return group_of(self.plan, r)


def _nat(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    p = ctx.prices
    return [
        Line(
            ctx.group(r),
            "NAT gateway hours",
            p.hours,
            "hour",
            p.get("vpc", "nat_gateway_hour"),
            "data processed ($/GB) not included",
        )
    ]


def _eip(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    p = ctx.prices
    return [
        Line(
            ctx.group(r),
            "public IPv4 address hours",
            p.hours,
            "hour",
            p.get("vpc", "public_ipv4_hour"),
        )
    ]


def _endpoint(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    if str(r.inputs.get("vpcEndpointType", "Gateway")) != "Interface":
        return []
    azs = len(r.inputs.get("subnetIds") or []) or 1
    service = str(r.inputs.get("serviceName", r.name)).rsplit(".", 1)[-1]
    return [
        Line(
            ctx.group(r),
            "interface endpoint AZ-hours",
            azs * ctx.prices.hours,
            "endpoint-AZ-hour",
            ctx.prices.get("privatelink", "interface_endpoint_az_hour"),
            f"{service}: {azs} AZs; data processed not included",
        )
    ]


def _rds_instance(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    p = ctx.prices
    cls = str(r.inputs.get("instanceClass", ""))
    multi_az = bool(r.inputs.get("multiAz", False))
    factor = p.need("rds", "multi_az_factor") if multi_az else 1.0
    storage_type = str(r.inputs.get("storageType", "gp3"))
    gb = float(r.inputs.get("allocatedStorage", 0) or 0)
    hour = p.get("rds", "postgres_single_az_instance_hour", cls)
    storage = p.get("rds", "storage_gb_month", storage_type)
    az_note = "Multi-AZ (x2)" if multi_az else "Single-AZ"
    lines = [
        Line(
            ctx.group(r),
            f"RDS PostgreSQL {cls} instance hours",
            p.hours * factor,
            "instance-hour",
            hour,
            az_note + ("" if hour is not None else f"; no price for {cls} in ops/prices.json"),
        ),
        Line(
            ctx.group(r),
            f"RDS {storage_type} storage",
            gb * factor,
            "GB-month",
            storage,
            f"{gb:g} GB allocated, {az_note}; autoscaling growth not included",
        ),
    ]
    if r.inputs.get("manageMasterUserPassword"):
        lines.append(
            Line(
                ctx.group(r),
                "Secrets Manager secret (RDS-managed master password)",
                1,
                "secret-month",
                p.get("secrets_manager", "secret_month"),
            )
        )
    return lines


def _rds_proxy(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    p = ctx.prices
    instances = ctx.plan.of_type("aws:rds/instance:Instance")
    cls = (
        str(instances[0].inputs.get("instanceClass", ""))
        if instances
        else ctx.plan.config.database.instance_class
    )
    vcpus = p.get("rds", "instance_vcpus", cls)
    note = f"priced per vCPU of {cls}"
    if vcpus is None:
        return [
            Line(
                ctx.group(r),
                "RDS Proxy vCPU hours",
                0,
                "vCPU-hour",
                None,
                f"no vCPU count for {cls}",
            )
        ]
    billed = max(vcpus, p.need("rds_proxy", "minimum_vcpus"))
    if billed > vcpus:
        note += f" (minimum {billed:g} vCPUs)"
    return [
        Line(
            ctx.group(r),
            "RDS Proxy vCPU hours",
            billed * p.hours,
            "vCPU-hour",
            p.get("rds_proxy", "vcpu_hour"),
            note,
        )
    ]


def _msk(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    p = ctx.prices
    info = r.inputs.get("brokerNodeGroupInfo") or {}
    broker_type = str(info.get("instanceType", ""))
    brokers = float(r.inputs.get("numberOfBrokerNodes", 0) or 0)
    volume = float(
        ((info.get("storageInfo") or {}).get("ebsStorageInfo") or {}).get("volumeSize", 0) or 0
    )
    hour = p.get("msk", "broker_hour", broker_type)
    return [
        Line(
            ctx.group(r),
            f"MSK broker hours ({broker_type})",
            brokers * p.hours,
            "broker-hour",
            hour,
            f"{brokers:g} brokers" + ("" if hour is not None else f"; no price for {broker_type}"),
        ),
        Line(
            ctx.group(r),
            "MSK broker storage",
            brokers * volume,
            "GB-month",
            p.get("msk", "storage_gb_month"),
            f"{volume:g} GB x {brokers:g} brokers; storage auto scaling growth not included",
        ),
    ]


def _msk_serverless(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    p = ctx.prices
    partitions = sum(
        float(t.inputs.get("partitionCount", 0) or 0)
        for t in ctx.plan.of_type("aws:msk/topic:Topic")
    ) or float(ctx.plan.config.kafka.topic_partitions)
    return [
        Line(
            ctx.group(r),
            "MSK Serverless cluster hours",
            p.hours,
            "cluster-hour",
            p.get("msk", "serverless_cluster_hour"),
        ),
        Line(
            ctx.group(r),
            "MSK Serverless partition hours",
            partitions * p.hours,
            "partition-hour",
            p.get("msk", "serverless_partition_hour"),
            f"{partitions:g} partitions; data in/out not included",
        ),
    ]


def _ecs_service(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    p = ctx.prices
    consumer = ctx.plan.config.consumer
    tasks = float(r.inputs.get("desiredCount", consumer.desired_count) or 0)
    vcpu = consumer.cpu / 1024
    gb = consumer.memory_mib / 1024
    return [
        Line(
            ctx.group(r),
            "ECS Fargate task vCPU hours",
            tasks * vcpu * p.hours,
            "vCPU-hour",
            p.get("fargate", "linux_x86_vcpu_hour"),
            f"{tasks:g} tasks x {vcpu:g} vCPU (desired count; auto scaling not included)",
        ),
        Line(
            ctx.group(r),
            "ECS Fargate task memory hours",
            tasks * gb * p.hours,
            "GB-hour",
            p.get("fargate", "linux_x86_gb_hour"),
            f"{tasks:g} tasks x {gb:g} GB",
        ),
    ]


def _batch_jobs(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    p, a, batch = ctx.prices, ctx.assumptions, ctx.plan.config.batch
    # Jobs run on Batch while producers publish to SQS; in phase 4 the SQS path only drains
    # what is left and then idles (an idle compute environment costs nothing).
    if Route.SQS not in phase(ctx.plan.phase).publish_targets:
        return []
    hours = a.jobs_per_day * p.days * a.job_seconds / 3600
    load = f"{a.jobs_per_day:,}/day x {a.job_seconds} s"
    if batch.compute_type is ComputeType.SPOT:
        instance = batch.spot_instance_types[0]
        vcpus = p.get("ec2", "instance_vcpus", instance)
        hour = p.get("ec2", "instance_hour", instance)
        per_vcpu = None if vcpus is None or hour is None else hour / vcpus
        return [
            Line(
                ctx.group(r),
                f"Batch EC2 Spot vCPU hours ({instance})",
                hours * batch.job_vcpu,
                "vCPU-hour",
                per_vcpu,
                f"{load}; On-Demand price as an upper bound (Spot varies)",
            )
        ]
    spot = batch.compute_type is ComputeType.FARGATE_SPOT
    prefix = "spot_linux_x86" if spot else "linux_x86"
    kind = "Fargate Spot" if spot else "Fargate"
    return [
        Line(
            ctx.group(r),
            f"Batch {kind} vCPU hours",
            hours * batch.job_vcpu,
            "vCPU-hour",
            p.get("fargate", f"{prefix}_vcpu_hour"),
            f"{load} x {batch.job_vcpu:g} vCPU",
        ),
        Line(
            ctx.group(r),
            f"Batch {kind} memory hours",
            hours * batch.job_memory_mib / 1024,
            "GB-hour",
            p.get("fargate", f"{prefix}_gb_hour"),
            f"{load} x {batch.job_memory_mib / 1024:g} GB",
        ),
    ]


def _sqs_queue(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    # Requests are priced once, on the job queue (the DLQ sees almost none).
    if r.inputs.get("name") != Names(ctx.plan.stack).job_queue:
        return []
    if Route.SQS not in phase(ctx.plan.phase).publish_targets:
        return []
    requests = ctx.assumptions.jobs_per_day * ctx.prices.days * 3
    return [
        Line(
            ctx.group(r),
            "SQS requests (send, receive, delete per job)",
            requests / 1e6,
            "million requests",
            ctx.prices.get("sqs", "per_million_requests"),
            "empty receives (polling) not included",
        )
    ]


def _pipe(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    if Route.SQS not in phase(ctx.plan.phase).publish_targets:
        return []
    events = ctx.assumptions.jobs_per_day * ctx.prices.days
    return [
        Line(
            ctx.group(r),
            "EventBridge Pipes requests",
            events / 1e6,
            "million requests",
            ctx.prices.get("pipes", "per_million_requests"),
        )
    ]


def _alarm(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    queries = r.inputs.get("metricQueries") or []
    metrics = sum(1 for q in queries if isinstance(q, Mapping) and q.get("metric") is not None) or 1
    return [
        Line(
            ctx.group(r),
            "CloudWatch alarm metrics",
            metrics,
            "alarm-metric-month",
            ctx.prices.get("cloudwatch", "alarm_metric_month"),
            "standard resolution",
        )
    ]


def _dashboard(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    return [
        Line(
            ctx.group(r),
            "CloudWatch dashboard",
            1,
            "dashboard-month",
            ctx.prices.get("cloudwatch", "dashboard_month"),
        )
    ]


def _log_group(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    gb = ctx.assumptions.log_gb_per_group
    retention = float(r.inputs.get("retentionInDays", 30) or 30)
    stored = gb * min(retention, 3653) / 30
    name = str(r.inputs.get("name", r.name))
    return [
        Line(
            ctx.group(r),
            "CloudWatch Logs ingestion",
            gb,
            "GB",
            ctx.prices.get("cloudwatch", "logs_ingest_gb"),
            f"{name}: assumed {gb:g} GB/month (--log-gb)",
        ),
        Line(
            ctx.group(r),
            "CloudWatch Logs storage",
            stored,
            "GB-month",
            ctx.prices.get("cloudwatch", "logs_storage_gb_month"),
            f"{name}: {retention:g} days kept",
        ),
    ]


def _kms_key(ctx: _Ctx, r: PlannedResource) -> list[Line]:
    return [
        Line(
            ctx.group(r),
            "KMS customer managed key",
            1,
            "key-month",
            ctx.prices.get("kms", "key_month"),
            "requests not included",
        )
    ]


PRICERS: Mapping[str, Pricer] = {
    "aws:ec2/natGateway:NatGateway": _nat,
    "aws:ec2/eip:Eip": _eip,
    "aws:ec2/vpcEndpoint:VpcEndpoint": _endpoint,
    "aws:rds/instance:Instance": _rds_instance,
    "aws:rds/proxy:Proxy": _rds_proxy,
    "aws:msk/cluster:Cluster": _msk,
    "aws:msk/serverlessCluster:ServerlessCluster": _msk_serverless,
    "aws:ecs/service:Service": _ecs_service,
    "aws:batch/jobDefinition:JobDefinition": _batch_jobs,
    "aws:sqs/queue:Queue": _sqs_queue,
    "aws:pipes/pipe:Pipe": _pipe,
    "aws:cloudwatch/metricAlarm:MetricAlarm": _alarm,
    "aws:cloudwatch/dashboard:Dashboard": _dashboard,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:kms/key:Key": _kms_key,
}


def custom_metric_series(phase_number: int) -> int:
    """Jobstream metric series the messaging library emits in a phase (see module constants)."""
    p = phase(phase_number)
    series = PUBLISH_SERIES * len(p.publish_targets)
    for mode in p.consumer_modes.values():
        if mode.value != "off":
            series += CONSUMER_SERIES
        if mode.value == "verify":
            series += VERIFY_SERIES
    return series


def estimate(plan: Plan, assumptions: Assumptions, prices: Prices | None = None) -> Estimate:
    prices = prices or load_prices()
    ctx = _Ctx(plan, prices, assumptions)
    result = Estimate(plan.stack, plan.phase)
    for r in plan.resources:
        pricer = PRICERS.get(r.type)
        if pricer is not None:
            result.lines.extend(pricer(ctx, r))
    result.lines.append(
        Line(
            "monitoring",
            "CloudWatch custom metrics (Jobstream namespace)",
            custom_metric_series(plan.phase),
            "metric-month",
            prices.get("cloudwatch", "custom_metric_month"),
            "series the messaging library emits in this phase",
        )
    )
    return result


def assumptions_for(plan: Plan, args: argparse.Namespace) -> Assumptions:
    batch = plan.config.batch
    return Assumptions(
        jobs_per_day=args.jobs_per_day
        if args.jobs_per_day is not None
        else batch.expected_jobs_per_day,
        job_seconds=args.job_seconds
        if args.job_seconds is not None
        else batch.expected_job_seconds,
        log_gb_per_group=args.log_gb,
    )


def plan_requests(stack: str) -> list[PlanRequest]:
    """The plans the estimate needs, one per phase: the stack as configured at its own phase,
    every other phase with ``--phase``-style overrides (phase 5 with ``confirmCleanup``)."""
    from infra.plan import PlanRequest, cleanup_confirmed

    own = config_module.parse(
        config_module.read_stack_config(stack), stack=stack, source=f"Pulumi.{stack}.yaml"
    ).phase
    return [
        PlanRequest(stack) if n == own else PlanRequest(stack, n, cleanup_confirmed(n))
        for n in PHASES
    ]


# ---- the command ----------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cost",
        help="estimate the monthly cost of a stack per component and per phase (offline)",
        description=(
            "Price the offline plan's resources with the on-demand list prices in ops/prices.json. "
            "An estimate: no free tiers, discounts, taxes or data transfer."
        ),
    )
    parser.add_argument("--stack", required=True, help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument(
        "--phase", type=int, choices=PHASES, help="phase to detail (default: the stack's)"
    )
    parser.add_argument(
        "--jobs-per-day", type=non_negative_int, help="override jobstream:expectedJobsPerDay"
    )
    parser.add_argument(
        "--job-seconds", type=non_negative_int, help="override jobstream:expectedJobSeconds"
    )
    parser.add_argument(
        "--log-gb",
        type=non_negative_number,
        default=DEFAULT_LOG_GB,
        help=f"assumed CloudWatch Logs ingestion per log group, GB/month (default {DEFAULT_LOG_GB:g})",
    )
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.set_defaults(handler=run)


@handles_errors
def run(args: argparse.Namespace) -> int:
    from ops.plan_cmd import evaluate

    prices = load_prices()
    requests = plan_requests(args.stack)
    plans = evaluate(requests)  # in this process, one after the other; progress on a terminal
    base = next(p for r, p in zip(requests, plans, strict=True) if r.phase is None)
    detail_phase = args.phase or base.phase
    assumptions = assumptions_for(base, args)
    estimates = {p.phase: estimate(p, assumptions, prices) for p in plans}
    detail = estimates[detail_phase]
    phase_one = estimates[PHASES[0]].total
    summary = [
        {
            "phase": n,
            "title": phase(n).title,
            "monthly": round(e.total, 2),
            "extra_over_phase_1": round(e.total - phase_one, 2),
        }
        for n, e in estimates.items()
    ]
    warnings: list[str] = []
    if base.config.region != prices.region:
        warnings.append(
            f"prices are for {prices.region}; stack {args.stack} is in {base.config.region}"
        )
    unpriced = sorted(
        {f"{line.item}: {line.note}" for e in estimates.values() for line in e.unpriced}
    )
    warnings += [f"not priced: {u}" for u in unpriced]
    disclaimer = (
        f"Estimates from on-demand list prices as published by AWS for {prices.region} "
        f"(taken {prices.taken}; sources in ops/prices.json), {prices.hours:g} hours/month. "
        "Not included: free tiers, Savings Plans/Reserved pricing, taxes, data transfer, NAT and "
        "endpoint data processing, MSK enhanced-monitoring metrics, auto scaling above the "
        "configured counts."
    )
    if args.json:
        print_json(
            {
                "command": "cost",
                "stack": args.stack,
                "phase": detail_phase,
                "currency": prices.data.get("currency", "USD"),
                "prices": {
                    "region": prices.region,
                    "taken": prices.taken,
                    "kind": "list prices (on-demand) as published by AWS; estimates",
                    "sources": prices.data.get("sources", {}),
                },
                "assumptions": assumptions.__dict__,
                "monthly_total": round(detail.total, 2),
                "groups": {g: round(v, 2) for g, v in detail.by_group().items()},
                "lines": [line.to_json() for line in detail.lines],
                "phases": summary,
                "warnings": warnings,
                "disclaimer": disclaimer,
                "exit_code": EXIT_OK,
            }
        )
        return EXIT_OK
    _print(args.stack, detail, summary, assumptions, warnings, disclaimer)
    return EXIT_OK


def _print(
    stack: str,
    detail: Estimate,
    summary: list[dict[str, Any]],
    assumptions: Assumptions,
    warnings: list[str],
    disclaimer: str,
) -> None:
    from rich.table import Table

    out = console()
    table = Table(
        title=f"cost estimate: stack {stack}, phase {phase(detail.phase).label}, USD per month",
        title_justify="left",
    )
    for column in ("component", "item", "quantity", "unit price", "monthly", "note"):
        table.add_column(
            column, justify="right" if column in ("quantity", "unit price", "monthly") else "left"
        )
    for group, subtotal in detail.by_group().items():
        lines = [line for line in detail.lines if line.group == group]
        merged = _merge(lines)
        for i, line in enumerate(merged):
            table.add_row(
                group if i == 0 else "",
                line.item,
                f"{line.quantity:,.2f} {line.unit}",
                "-" if line.unit_price is None else f"${line.unit_price:g}",
                fmt_money(line.monthly),
                line.note,
            )
        table.add_row(
            "",
            f"[bold]{group} subtotal[/]",
            "",
            "",
            f"[bold]{fmt_money(subtotal)}[/]",
            "",
            end_section=True,
        )
    table.add_row("[bold]total[/]", "", "", "", f"[bold]{fmt_money(detail.total)}[/]", "")
    out.print(table)

    phases = Table(title=f"per phase: stack {stack}", title_justify="left")
    phases.add_column("phase")
    phases.add_column("monthly", justify="right")
    phases.add_column("extra over phase 1", justify="right")
    for row in summary:
        phases.add_row(
            f"{row['phase']} ({row['title']})",
            fmt_money(row["monthly"]),
            ("+" if row["extra_over_phase_1"] >= 0 else "-")
            + fmt_money(abs(row["extra_over_phase_1"])),
        )
    out.print(phases)
    out.print(
        f"load: {assumptions.jobs_per_day:,} jobs/day x {assumptions.job_seconds} s; "
        f"logs: {assumptions.log_gb_per_group:g} GB/month per log group"
    )
    for warning in warnings:
        out.print(f"[yellow]warning:[/] {warning}")
    out.print(disclaimer)


def _merge(lines: list[Line]) -> list[Line]:
    """Lines with the same item and unit price shown once (e.g. 7 interface endpoints)."""
    merged: dict[tuple[str, float | None, str], Line] = {}
    counts: dict[tuple[str, float | None, str], int] = {}
    for line in lines:
        key = (line.item, line.unit_price, line.unit)
        if key in merged:
            prev = merged[key]
            merged[key] = Line(
                prev.group,
                prev.item,
                prev.quantity + line.quantity,
                prev.unit,
                prev.unit_price,
                prev.note,
            )
            counts[key] += 1
        else:
            merged[key] = line
            counts[key] = 1
    out: list[Line] = []
    for key, line in merged.items():
        if counts[key] > 1:
            line = Line(
                line.group,
                line.item,
                line.quantity,
                line.unit,
                line.unit_price,
                f"{counts[key]} resources",
            )
        out.append(line)
    return sorted(out, key=lambda line: -line.monthly)
