"""``jobstream cost``: each priced resource type, the phase summary, the price file."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.plan import Plan, PlannedResource, PlanSet
from ops.cost import Assumptions, Estimate, Line, estimate, load_prices

PRICES = load_prices()
HOURS = PRICES.hours
LOAD = Assumptions(jobs_per_day=2000, job_seconds=120, log_gb_per_group=1.0)


def _resource(type_: str, name: str, inputs: dict[str, Any], parent: str = "") -> PlannedResource:
    return PlannedResource(
        urn=f"urn:pulumi:dev::jobstream::{type_}::{name}",
        type=type_,
        name=name,
        parent=parent or None,
        inputs=inputs,
        protect=False,
        retain_on_delete=False,
        dependencies=(),
        custom=True,
    )


def _plan_with(base: Plan, *resources: PlannedResource, phase: int | None = None) -> Plan:
    """A plan holding only ``resources`` under one component ``group``, with the stack's config."""
    component = PlannedResource(
        urn="urn:pulumi:dev::jobstream::jobstream:test:Group::group",
        type="jobstream:test:Group",
        name="group",
        parent=None,
        inputs={},
        protect=False,
        retain_on_delete=False,
        dependencies=(),
        custom=False,
    )
    children = tuple(dataclasses.replace(r, parent=component.urn) for r in resources)
    return dataclasses.replace(base, resources=(component, *children), phase=phase or base.phase)


def _lines(result: Estimate, item_prefix: str) -> list[Line]:
    found = [line for line in result.lines if line.item.startswith(item_prefix)]
    assert found, f"no line {item_prefix!r} in {[line.item for line in result.lines]}"
    return found


@pytest.fixture(scope="module")
def dev(plans: PlanSet) -> Plan:
    return plans.get("dev", 1)


def test_nat_gateway_is_priced_per_hour(dev: Plan) -> None:
    plan = _plan_with(dev, _resource("aws:ec2/natGateway:NatGateway", "nat-a", {}))
    (line,) = _lines(estimate(plan, LOAD), "NAT gateway")
    assert line.group == "group"
    assert line.monthly == pytest.approx(HOURS * 0.045)


def test_interface_endpoints_are_priced_per_az_and_gateway_endpoints_are_free(dev: Plan) -> None:
    plan = _plan_with(
        dev,
        _resource(
            "aws:ec2/vpcEndpoint:VpcEndpoint",
            "sqs",
            {
                "vpcEndpointType": "Interface",
                "subnetIds": ["a", "b", "c"],
                "serviceName": "com.amazonaws.us-east-1.sqs",
            },
        ),
        _resource("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", {"vpcEndpointType": "Gateway"}),
    )
    (line,) = _lines(estimate(plan, LOAD), "interface endpoint")
    assert line.quantity == 3 * HOURS
    assert line.monthly == pytest.approx(3 * HOURS * 0.01)


def test_msk_brokers_and_storage_come_from_the_cluster_inputs(dev: Plan) -> None:
    cluster = _resource(
        "aws:msk/cluster:Cluster",
        "kafka",
        {
            "numberOfBrokerNodes": 3,
            "brokerNodeGroupInfo": {
                "instanceType": "kafka.m7g.large",
                "storageInfo": {"ebsStorageInfo": {"volumeSize": 500}},
            },
        },
    )
    result = estimate(_plan_with(dev, cluster), LOAD)
    (brokers,) = _lines(result, "MSK broker hours")
    (storage,) = _lines(result, "MSK broker storage")
    assert brokers.monthly == pytest.approx(3 * HOURS * 0.204)
    assert storage.monthly == pytest.approx(1500 * 0.10)


def test_msk_serverless_is_priced_per_cluster_and_partition_hour(dev: Plan) -> None:
    result = estimate(
        _plan_with(
            dev,
            _resource("aws:msk/serverlessCluster:ServerlessCluster", "kafka", {}),
            _resource("aws:msk/topic:Topic", "jobs", {"partitionCount": 6}),
            _resource("aws:msk/topic:Topic", "dlq", {"partitionCount": 2}),
        ),
        LOAD,
    )
    (partitions,) = _lines(result, "MSK Serverless partition hours")
    assert partitions.quantity == 8 * HOURS
    assert _lines(result, "MSK Serverless cluster hours")[0].monthly == pytest.approx(HOURS * 0.75)


def test_multi_az_rds_doubles_instance_and_storage(dev: Plan) -> None:
    db = {"instanceClass": "db.r6g.large", "allocatedStorage": 100, "storageType": "gp3"}
    single = estimate(_plan_with(dev, _resource("aws:rds/instance:Instance", "db", db)), LOAD)
    multi = estimate(
        _plan_with(dev, _resource("aws:rds/instance:Instance", "db", {**db, "multiAz": True})), LOAD
    )
    assert _lines(single, "RDS PostgreSQL")[0].monthly == pytest.approx(HOURS * 0.225)
    assert _lines(multi, "RDS PostgreSQL")[0].monthly == pytest.approx(2 * HOURS * 0.225)
    assert _lines(multi, "RDS gp3 storage")[0].monthly == pytest.approx(200 * 0.115)


def test_rds_proxy_is_priced_per_vcpu_of_the_instance_with_a_minimum(dev: Plan) -> None:
    plan = _plan_with(
        dev,
        _resource(
            "aws:rds/instance:Instance",
            "db",
            {"instanceClass": "db.r6g.xlarge", "allocatedStorage": 20},
        ),
        _resource("aws:rds/proxy:Proxy", "proxy", {}),
    )
    (line,) = _lines(estimate(plan, LOAD), "RDS Proxy")
    assert line.quantity == 4 * HOURS
    assert line.monthly == pytest.approx(4 * HOURS * 0.015)


def test_unknown_instance_class_is_reported_not_priced(dev: Plan) -> None:
    plan = _plan_with(
        dev, _resource("aws:rds/instance:Instance", "db", {"instanceClass": "db.x9.huge"})
    )
    result = estimate(plan, LOAD)
    assert [line.item for line in result.unpriced] == ["RDS PostgreSQL db.x9.huge instance hours"]


def test_ecs_fargate_tasks_use_desired_count_and_the_configured_task_size(dev: Plan) -> None:
    plan = _plan_with(dev, _resource("aws:ecs/service:Service", "svc", {"desiredCount": 3}))
    result = estimate(plan, LOAD)
    cpu, mem = dev.config.consumer.cpu / 1024, dev.config.consumer.memory_mib / 1024
    assert _lines(result, "ECS Fargate task vCPU")[0].monthly == pytest.approx(
        3 * cpu * HOURS * 0.04048
    )
    assert _lines(result, "ECS Fargate task memory")[0].monthly == pytest.approx(
        3 * mem * HOURS * 0.004445
    )


def test_batch_jobs_follow_jobs_per_day_times_duration_while_producers_write_sqs(dev: Plan) -> None:
    """Phase 4 keeps Batch enabled to drain what reached SQS, then it idles: no new jobs."""
    jobdef = _resource("aws:batch/jobDefinition:JobDefinition", "ml", {})
    result = estimate(_plan_with(dev, jobdef, phase=1), LOAD)
    (vcpu, _mem) = _lines(result, "Batch Fargate Spot")  # dev: computeType FARGATE_SPOT
    job_hours = 2000 * PRICES.days * 120 / 3600
    assert vcpu.quantity == pytest.approx(job_hours * dev.config.batch.job_vcpu)
    assert vcpu.unit_price == 0.01334053
    draining = estimate(_plan_with(dev, jobdef, phase=4), LOAD)
    assert not [line for line in draining.lines if line.item.startswith("Batch")]


def test_alarms_and_dashboards_are_priced_per_month(dev: Plan) -> None:
    plan = _plan_with(
        dev,
        _resource("aws:cloudwatch/metricAlarm:MetricAlarm", "a1", {}),
        _resource(
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "a2",
            {"metricQueries": [{"metric": {}}, {"metric": {}}, {"expression": "m1+m2"}]},
        ),
        _resource("aws:cloudwatch/dashboard:Dashboard", "d", {}),
    )
    result = estimate(plan, LOAD)
    assert sum(line.quantity for line in _lines(result, "CloudWatch alarm")) == 3
    assert _lines(result, "CloudWatch dashboard")[0].monthly == 3.0


def test_kafka_adds_cost_from_phase_2_on_and_dev_prod_figures_are_positive(plans: PlanSet) -> None:
    for stack in ("dev", "prod"):
        one = estimate(plans.get(stack, 1), LOAD)
        two = estimate(plans.get(stack, 2), LOAD)
        assert "kafka" not in one.by_group(), f"{stack}: phase 1 has no MSK"
        assert two.by_group()["kafka"] > 0, f"{stack}: phase 2 prices the MSK cluster"
        assert two.total > one.total > 0
    nat_dev = _lines(estimate(plans.get("dev", 1), LOAD), "NAT gateway")
    nat_prod = _lines(estimate(plans.get("prod", 1), LOAD), "NAT gateway")
    assert (len(nat_dev), len(nat_prod)) == (1, 3), "one NAT in dev, one per AZ in prod"


def test_price_file_names_region_date_and_a_source_for_every_section() -> None:
    data = PRICES.data
    assert (data["region"], data["currency"]) == ("us-east-1", "USD")
    assert data["taken"] and "list prices" in data["description"]
    priced_sections = {k for k, v in data.items() if isinstance(v, dict) and k != "sources"}
    assert priced_sections <= set(data["sources"]), priced_sections - set(data["sources"])
    for source in data["sources"].values():
        assert source["url"].startswith("https://aws.amazon.com/")


def test_cost_command_prints_one_json_object_with_every_phase(run: Any) -> None:
    result = run("cost", "--stack", "dev", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert [p["phase"] for p in doc["phases"]] == [1, 2, 3, 4, 5]
    assert doc["phases"][0]["extra_over_phase_1"] == 0
    assert doc["prices"]["region"] == "us-east-1"
    assert "list prices" in doc["prices"]["kind"] and "estimates" in doc["prices"]["kind"]
    assert doc["monthly_total"] == pytest.approx(sum(doc["groups"].values()), abs=0.05)
    json.dumps(doc)


def test_cost_table_says_estimates_and_list_prices(run: Any) -> None:
    result = run("cost", "--stack", "dev", "--phase", "2")
    assert result.code == 0
    assert "phase 2 (dual-write)" in result.out
    assert "Estimates from on-demand list prices as published by AWS for us-east-1" in result.out
    assert "extra over phase 1" in result.out


def test_cost_evaluates_its_five_plans_in_one_pass_of_the_plan_path(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ops import cli, plan_cmd

    calls: list[list[tuple[str, int | None]]] = []
    evaluate = plan_cmd.evaluate

    def recording(requests: Any) -> Any:
        calls.append([(r.stack, r.phase) for r in requests])
        return evaluate(requests)

    monkeypatch.setattr(plan_cmd, "evaluate", recording)
    assert cli.main(["cost", "--stack", "prod", "--json"]) == 0
    assert calls == [[("prod", None), ("prod", 2), ("prod", 3), ("prod", 4), ("prod", 5)]]
    assert [p["phase"] for p in json.loads(capsys.readouterr().out)["phases"]] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_a_log_volume_that_is_not_a_finite_number_0_or_more_exits_2(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    from ops import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["cost", "--stack", "dev", "--log-gb", value, "--json"])
    assert exited.value.code == 2, f"--log-gb {value} was accepted (its JSON held NaN or inf)"
    error = json.loads(capsys.readouterr().out)["error"]
    assert "must be a finite number, 0 or more" in error["message"]


def test_a_bad_value_in_the_stack_file_is_named_with_the_file(
    run: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "Pulumi.yaml").write_text((root / "Pulumi.yaml").read_text())
    stack = (root / "Pulumi.dev.yaml").read_text()
    assert "jobstream:natStrategy: single" in stack
    bad = stack.replace("jobstream:natStrategy: single", "jobstream:natStrategy: perAz")
    (tmp_path / "Pulumi.dev.yaml").write_text(bad)
    monkeypatch.chdir(tmp_path)
    result = run("cost", "--stack", "dev")
    assert result.code == 2
    assert "Pulumi.dev.yaml" in result.err and "jobstream:natStrategy" in result.err, result.err


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_cost_table_in_the_operations_guide_is_what_cost_prints(run: Any, stack: str) -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
    row = re.search(rf"^\| {stack} \| (.+) \|$", guide.read_text(), re.MULTILINE)
    assert row, f"docs/operations.md has no cost row for {stack}"
    documented = [float(c.split(" (")[0].replace(",", "")) for c in row[1].split(" | ")]
    result = run("cost", "--stack", stack, "--json")
    assert result.code == 0, result.err
    printed = [p["monthly"] for p in result.json()["phases"]]
    assert documented == pytest.approx(printed, abs=0.005), (
        f"docs/operations.md's {stack} cost row is stale: cost prints {printed}"
    )
