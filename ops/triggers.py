"""``jobstream triggers --stack S [--days 30]``: the migration-trigger review.

Three triggers, each met / not met / cannot-tell, and an overall verdict (migrate when any
trigger is met):

- volume: jobs per day (AWS/SQS ``NumberOfMessagesSent`` of the job queue, daily sums over UTC
  days) above the threshold on each of the last N complete days;
- latency: a percentile of the 5-minute maxima of ``ApproximateAgeOfOldestMessage`` above the
  latency need (SQS + Batch cannot start jobs fast enough);
- errors: processing errors (``Jobstream/ProcessingErrors{Consumer=sqs}``) or dead-lettered
  jobs (peak depth of the DLQ, a lower bound) per job sent above a rate.

A chart of jobs per day against the threshold goes to the terminal, and to a PNG with --png.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any, TypeVar

from rich.text import Text

from jobstream.contract import metrics as m
from ops.arguments import config_key, ratio
from ops.aws_clients import (
    EXIT_OK,
    CannotTellError,
    ResourceMissingError,
    UsageError,
    handles_errors,
)
from ops.probes import (
    FIVE_MINUTE_DATA_DAYS,
    StackContext,
    add_stack_arguments,
    jobstream_metric,
    metric_series,
    open_stack,
    percentile,
    queue_depth,
    sqs_metric,
)
from ops.report import Check, Verdict, check, checks_table, console, fmt_int, fmt_pct, print_json

DEFAULT_DAYS = 30
DEFAULT_MAX_ERROR_RATE = 0.01
BAR_WIDTH = 50

MET, NOT_MET = Verdict.FAIL, Verdict.PASS
"""A trigger that is met shows as 'met' (the SQS platform no longer fits)."""


@dataclass(frozen=True)
class Day:
    date: str
    jobs: float
    complete: bool


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "triggers",
        help="review the migration triggers: jobs/day, queue latency, error rate",
        description=(
            "Read SQS and messaging metrics from CloudWatch and say whether the triggers for "
            "moving from SQS + Batch to Kafka are met. Thresholds default to the stack's "
            "jobstream:trigger* config."
        ),
    )
    add_stack_arguments(parser)
    parser.add_argument(
        "--days", type=_days, default=DEFAULT_DAYS, help=f"days to review (default {DEFAULT_DAYS})"
    )
    parser.add_argument(
        "--jobs-per-day",
        type=config_key("triggerJobsPerDay"),
        help="volume threshold (default: jobstream:triggerJobsPerDay, 10,000)",
    )
    parser.add_argument(
        "--sustained-days",
        type=config_key("triggerSustainedDays"),
        help="'consistently': the last N complete days all above (default: jobstream:triggerSustainedDays)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=config_key("triggerLatencySeconds"),
        help="latency need (default: jobstream:triggerLatencySeconds, 1 s)",
    )
    parser.add_argument(
        "--percentile",
        help="percentile of the 5-minute maxima of the queue age compared with the need, e.g. p99 (default: 100 - jobstream:triggerLatencyBreachPercent, the same rule as the trigger alarm)",
    )
    parser.add_argument(
        "--max-error-rate",
        type=ratio,
        default=DEFAULT_MAX_ERROR_RATE,
        help=f"errors or dead-lettered jobs per job sent (default {DEFAULT_MAX_ERROR_RATE})",
    )
    parser.add_argument("--png", type=Path, metavar="FILE", help="also draw the chart into FILE")
    parser.set_defaults(handler=run)


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 455:
        raise argparse.ArgumentTypeError("must be 1..455 (CloudWatch keeps hourly data 455 days)")
    return value


_V = TypeVar("_V")


def _given(option: _V | None, configured: _V) -> _V:
    """The option where given, else the stack config's value."""
    return configured if option is None else option


@dataclass(frozen=True)
class Thresholds:
    jobs_per_day: int
    sustained_days: int
    latency_seconds: float
    percentile: float
    percentile_label: str
    max_error_rate: float


def thresholds(ctx: StackContext, args: argparse.Namespace) -> Thresholds:
    mon = ctx.cfg.monitoring
    # The alarm fires when at least B % of the day's 5-minute maxima breach: the p(100 - B) of
    # those maxima is above the need. The review reads the same rule over its days.
    label = args.percentile or f"p{100 - mon.trigger_latency_breach_percent:g}"
    try:
        pct = float(label.lstrip("pP"))
    except ValueError:
        raise UsageError(f"--percentile {label!r}: expected a percentile like p99") from None
    if not 0 < pct < 100:
        raise UsageError(f"--percentile {label!r}: must lie strictly between p0 and p100")
    sustained = _given(args.sustained_days, mon.trigger_sustained_days)
    if sustained > args.days:
        raise UsageError(
            f"--days {args.days} is shorter than the sustained period ({sustained} days)"
        )
    return Thresholds(
        jobs_per_day=_given(args.jobs_per_day, mon.trigger_jobs_per_day),
        sustained_days=sustained,
        latency_seconds=_given(args.latency_seconds, mon.trigger_latency_seconds),
        percentile=pct,
        percentile_label=f"p{pct:g}",
        max_error_rate=args.max_error_rate,
    )


@handles_errors
def run(args: argparse.Namespace) -> int:
    ctx = open_stack(args)
    limits = thresholds(ctx, args)
    if queue_depth(ctx, ctx.names.job_queue) is None:
        raise ResourceMissingError(
            f"SQS queue {ctx.names.job_queue} does not exist in {ctx.aws.region}: the triggers "
            "review reads the metrics of the stack's job queue",
            hint="deploy the stack at phase 1 first, or check --stack/--region",
        )
    days = jobs_per_day(ctx, args.days)
    triggers = [
        volume_trigger(days, limits),
        latency_trigger(ctx, args.days, limits),
        error_trigger(ctx, days, limits),
    ]
    overall = overall_verdict(triggers)
    png: str | None = None
    if args.png is not None:
        draw_png(args.png, ctx.stack, days, limits.jobs_per_day)
        png = str(args.png)
    if args.json:
        print_json(
            {
                "command": "triggers",
                "stack": ctx.stack,
                "region": ctx.aws.region,
                "days": args.days,
                "thresholds": limits.__dict__,
                "jobs_per_day": [d.__dict__ for d in days],
                "triggers": [_trigger_json(t) for t in triggers],
                "overall": overall,
                "png": png,
                "exit_code": EXIT_OK,
            }
        )
        return EXIT_OK
    out = console()
    out.print(
        Text(
            f"jobs per day, {ctx.names.job_queue} (AWS/SQS NumberOfMessagesSent, UTC days); "
            f"| = threshold {fmt_int(limits.jobs_per_day)}"
        )
    )
    out.print(terminal_chart(days, limits.jobs_per_day))
    title = f"migration triggers: stack {ctx.stack}, last {args.days} days"
    out.print(
        checks_table(
            title,
            triggers,
            header="trigger",
            threshold_header="met when",  # each trigger's threshold says when it is met
            labels=LABELS,
            styles=STYLES,
        )
    )
    out.print(f"overall: {overall['verdict']} - {overall['reason']}")
    if png:
        out.print(f"chart written to {png}")
    return EXIT_OK


LABELS = {MET: "met", NOT_MET: "not met", Verdict.CANNOT_TELL: "cannot-tell"}
STYLES = {MET: "bold yellow", NOT_MET: "green", Verdict.CANNOT_TELL: "dim"}


def _trigger_json(c: Check) -> dict[str, Any]:
    doc = c.to_json()
    doc["verdict"] = LABELS[c.verdict]
    return doc


def overall_verdict(triggers: list[Check]) -> dict[str, Any]:
    met = [t.name for t in triggers if t.verdict is MET]
    unknown = [t.name for t in triggers if t.verdict is Verdict.CANNOT_TELL]
    if met:
        return {"verdict": "migrate", "reason": "met: " + "; ".join(met), "met": met}
    if unknown:
        return {
            "verdict": "cannot-tell",
            "reason": "no trigger met, but cannot tell: " + "; ".join(unknown),
            "met": [],
        }
    return {"verdict": "stay", "reason": "no trigger met: SQS + Batch still fits", "met": []}


# ---- figures --------------------------------------------------------------------------------


def jobs_per_day(ctx: StackContext, days: int) -> list[Day]:
    """Daily sums (UTC days, oldest first); days without datapoints count 0; today is partial."""
    today = ctx.now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days)
    series = metric_series(
        ctx,
        sqs_metric(ctx.names.job_queue, "NumberOfMessagesSent"),
        stat="Sum",
        start=start,
        end=ctx.now,
        period=86400,
    )
    if not series:
        return []
    totals: dict[str, float] = {}
    for ts, value in series:
        key = ts.astimezone(UTC).date().isoformat()
        totals[key] = totals.get(key, 0.0) + value
    out: list[Day] = []
    for offset in range(days + 1):
        day = (start + timedelta(days=offset)).date().isoformat()
        out.append(Day(day, totals.get(day, 0.0), complete=offset < days))
    return out


def volume_trigger(days: list[Day], limits: Thresholds) -> Check:
    name = "volume: jobs per day consistently above the threshold"
    needs = f"> {fmt_int(limits.jobs_per_day)}/day on each of the last {limits.sustained_days} days"

    def decide() -> Check:
        if not days:
            raise CannotTellError("no NumberOfMessagesSent data for the job queue in the window")
        complete = [d for d in days if d.complete]
        recent = complete[-limits.sustained_days :]
        above = [d for d in recent if d.jobs > limits.jobs_per_day]
        peak = max(d.jobs for d in complete) if complete else 0.0
        mean = sum(d.jobs for d in complete) / len(complete) if complete else 0.0
        figure = (
            f"{len(above)}/{len(recent)} recent days above; mean {fmt_int(mean)}, "
            f"peak {fmt_int(peak)}"
        )
        met = len(recent) == limits.sustained_days and len(above) == len(recent)
        return Check(name, MET if met else NOT_MET, figure, needs, value=len(above))

    return check(name, needs, decide)


def latency_days(days: int) -> int:
    """The days the latency trigger reads: the review's, at most the 63 that CloudWatch keeps
    5-minute maxima for. Coarser maxima (hourly) would change the rule: the alarm's is a
    percentile of 5-minute maxima, and the maximum of an hour breaches whenever one of its
    twelve 5-minute maxima does."""
    return min(days, FIVE_MINUTE_DATA_DAYS)


def latency_trigger(ctx: StackContext, days: int, limits: Thresholds) -> Check:
    name = f"latency: {limits.percentile_label} age of the oldest queued job above the need"
    needs = f"{limits.percentile_label} > {limits.latency_seconds:g} s"
    read_days = latency_days(days)

    def decide() -> Check:
        series = metric_series(
            ctx,
            sqs_metric(ctx.names.job_queue, "ApproximateAgeOfOldestMessage"),
            stat="Maximum",
            start=ctx.now - timedelta(days=read_days),
            end=ctx.now,
            period=300,
        )
        if not series:
            raise CannotTellError("no ApproximateAgeOfOldestMessage data for the job queue")
        value = percentile((v for _, v in series), limits.percentile)
        met = value > limits.latency_seconds
        return Check(
            name,
            MET if met else NOT_MET,
            f"{limits.percentile_label} {value:g} s over {len(series)} 5-minute maxima"
            + (
                f" of the last {read_days} days (CloudWatch keeps 5-minute data {read_days} days)"
                if read_days < days
                else ""
            ),
            needs,
            value=value,
        )

    return check(name, needs, decide)


def error_trigger(ctx: StackContext, days: list[Day], limits: Thresholds) -> Check:
    name = "errors: processing errors or dead-lettered jobs per job"
    needs = f"errors or dead-lettered > {fmt_pct(limits.max_error_rate)} of jobs sent"

    def decide() -> Check:
        sent = sum(d.jobs for d in days)
        if sent <= 0:
            raise CannotTellError("no jobs sent in the window: no rate to compute")
        window_start = ctx.now - timedelta(days=len(days))
        errors_series = metric_series(
            ctx,
            jobstream_metric(ctx, m.PROCESSING_ERRORS, Consumer="sqs"),
            stat="Sum",
            start=window_start,
            end=ctx.now,
            period=86400,
        )
        errors = sum(v for _, v in errors_series)
        dlq_series = metric_series(
            ctx,
            sqs_metric(ctx.names.dead_letter_queue, "ApproximateNumberOfMessagesVisible"),
            stat="Maximum",
            start=window_start,
            end=ctx.now,
            period=3600,
        )
        dead = max((v for _, v in dlq_series), default=0.0)
        error_rate, dead_rate = errors / sent, dead / sent
        met = error_rate > limits.max_error_rate or dead_rate > limits.max_error_rate
        return Check(
            name,
            MET if met else NOT_MET,
            f"errors {fmt_pct(error_rate)} ({fmt_int(errors)}), dead-lettered >= "
            f"{fmt_pct(dead_rate)} ({fmt_int(dead)} peak DLQ depth) of {fmt_int(sent)} jobs",
            needs,
            detail="dead-lettered is a lower bound: the DLQ's peak depth in the window",
            value=max(error_rate, dead_rate),
        )

    return check(name, needs, decide)


# ---- charts ---------------------------------------------------------------------------------


def terminal_chart(days: list[Day], threshold: int, width: int = BAR_WIDTH) -> Text:
    """One line per day: a bar of the jobs sent, '|' at the threshold, the count."""
    text = Text()
    if not days:
        text.append("(no data)\n")
        return text
    top = max(max(d.jobs for d in days), float(threshold)) or 1.0
    mark = min(width - 1, round(threshold / top * (width - 1)))
    for day in days:
        filled = round(day.jobs / top * (width - 1))
        bar = ["#" if i < filled else " " for i in range(width)]
        if bar[mark] == " ":
            bar[mark] = "|"
        style = "yellow" if day.jobs > threshold else "cyan"
        text.append(f"{day.date} ")
        text.append("".join(bar), style=style)
        text.append(f" {fmt_int(day.jobs)}{'' if day.complete else ' (today, partial)'}\n")
    return text


def draw_png(path: Path, stack: str, days: list[Day], threshold: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--png needs matplotlib: pip install 'jobstream[charts]'") from None
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    labels = [d.date[5:] for d in days]
    colors = ["#d9822b" if d.jobs > threshold else "#3b7dd8" for d in days]
    ax.bar(labels, [d.jobs for d in days], color=colors)
    ax.axhline(threshold, color="#c23030", linestyle="--", label=f"threshold {threshold:,}/day")
    ax.set_title(f"jobstream {stack}: jobs per day (SQS NumberOfMessagesSent)")
    ax.set_ylabel("jobs per day")
    ax.set_xlabel("UTC day")
    ax.legend(loc="upper left")
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error}") from None
    finally:
        plt.close(fig)
