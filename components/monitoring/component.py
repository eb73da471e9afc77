"""The monitoring component: the alert topic (its key, policy and e-mail subscription), the
Batch failure rule, one CloudWatch alarm per ``AlarmSpec`` of the phase, and the dashboard."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.iam import policy_document, service_principal
from components.kms import customer_managed_key
from components.monitoring.alarms import alarm_specs, metric_alarm
from components.monitoring.args import BatchMonitoring, MonitoringArgs
from components.monitoring.dashboard import dashboard_body

ALARM_PUBLISHERS = ("cloudwatch.amazonaws.com", "events.amazonaws.com")
"""Service principals that publish to the alert topic (alarms, the Batch failure rule)."""


class Monitoring(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    dashboard_name: pulumi.Output[str]
    alarm_names: list[str]

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jobstream:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition

        key = customer_managed_key(
            self,
            f"{name}-alerts",
            alias=args.alert_topic_name,
            description=f"{args.alert_topic_name}: alert topic encryption",
            policy=self._key_policy(account, partition),
        )
        topic = aws.sns.Topic(
            f"{name}-alerts",
            name=args.alert_topic_name,
            kms_master_key_id=key.arn,
            opts=child,
        )
        aws.sns.TopicPolicy(
            f"{name}-alerts",
            arn=topic.arn,
            policy=self._topic_policy(topic.arn, account),
            opts=child,
        )
        aws.sns.TopicSubscription(
            f"{name}-alerts-email",
            topic=topic.arn,
            protocol="email",
            endpoint=args.alert_email,
            opts=child,
        )

        failed_rule: aws.cloudwatch.EventRule | None = None
        if args.batch is not None:
            failed_rule = self._batch_failures(name, args, args.batch, topic, account, partition)

        alarms: list[aws.cloudwatch.MetricAlarm] = []
        self.alarm_names = []
        for spec in alarm_specs(args):
            alarm_name = f"{args.alarm_prefix}{spec.slug}"
            alarms.append(metric_alarm(f"{name}-{spec.slug}", alarm_name, spec, topic.arn, child))
            self.alarm_names.append(alarm_name)

        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=args.dashboard_name,
            dashboard_body=pulumi.Output.json_dumps(
                dashboard_body(
                    args,
                    alarm_arns=[a.arn for a in alarms],
                    failed_rule_name=failed_rule.name if failed_rule is not None else None,
                )
            ),
            opts=child,
        )

        self.topic_arn = topic.arn
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs(
            {
                "topicArn": topic.arn,
                "dashboardName": dashboard.dashboard_name,
                "alarmNames": self.alarm_names,
            }
        )

    def _key_policy(
        self, account: pulumi.Output[str], partition: pulumi.Output[str]
    ) -> pulumi.Output[str]:
        root = pulumi.Output.concat("arn:", partition, ":iam::", account, ":root")
        return policy_document(
            self,
            [
                {
                    # The key policy AWS writes when none is given: the account (its IAM
                    # policies) administers the key; without it the key cannot be managed.
                    "sid": "AccountAdministersKey",
                    "principals": [{"type": "AWS", "identifiers": [root]}],
                    "actions": ["kms:*"],
                    "resources": ["*"],
                },
                {
                    "sid": "AlarmAndEventPublishersUseKey",
                    "principals": [service_principal(s) for s in ALARM_PUBLISHERS],
                    "actions": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "resources": ["*"],
                },
            ],
        )

    def _topic_policy(
        self, topic_arn: pulumi.Output[str], account: pulumi.Output[str]
    ) -> pulumi.Output[str]:
        return policy_document(
            self,
            [
                {
                    "sid": "AlarmAndEventPublishers",
                    "principals": [service_principal(s) for s in ALARM_PUBLISHERS],
                    "actions": ["sns:Publish"],
                    "resources": [topic_arn],
                    "conditions": [
                        {
                            "test": "StringEquals",
                            "variable": "aws:SourceAccount",
                            "values": [account],
                        }
                    ],
                },
                {
                    "sid": "DenyInsecureTransport",
                    "effect": "Deny",
                    "principals": [{"type": "*", "identifiers": ["*"]}],
                    "actions": ["sns:Publish"],
                    "resources": [topic_arn],
                    "conditions": [
                        {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}
                    ],
                },
            ],
        )

    def _batch_failures(
        self,
        name: str,
        args: MonitoringArgs,
        batch: BatchMonitoring,
        topic: aws.sns.Topic,
        account: pulumi.Output[str],
        partition: pulumi.Output[str],
    ) -> aws.cloudwatch.EventRule:
        """Batch job state changes to FAILED on the job queue -> the alert topic; the rule's
        AWS/Events ``MatchedEvents`` metric counts the failures (on the dashboard)."""
        child = pulumi.ResourceOptions(parent=self)
        queue_arn = pulumi.Output.concat(
            "arn:", partition, ":batch:", args.region, ":", account, ":job-queue/",
            batch.job_queue_name,
        )  # fmt: skip
        rule = aws.cloudwatch.EventRule(
            f"{name}-batch-job-failed",
            name=f"{args.alarm_prefix}batch-job-failed",
            description=f"AWS Batch jobs that FAILED on {batch.job_queue_name}",
            event_pattern=pulumi.Output.json_dumps(
                {
                    "source": ["aws.batch"],
                    "detail-type": ["Batch Job State Change"],
                    "detail": {"status": ["FAILED"], "jobQueue": [queue_arn]},
                }
            ),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-batch-job-failed",
            rule=rule.name,
            arn=topic.arn,
            input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
                input_paths={
                    "job": "$.detail.jobName",
                    "id": "$.detail.jobId",
                    "reason": "$.detail.statusReason",
                },
                input_template=(
                    f'"{args.stack}: AWS Batch job <job> (<id>) FAILED on '
                    f'{batch.job_queue_name}: <reason>"'
                ),
            ),
            opts=child,
        )
        return rule
