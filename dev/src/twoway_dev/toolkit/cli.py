"""`twoway`: publish portal events, follow topics and read dead letters from the command line.

Exit codes scripts can rely on: 0 ok; 1 invalid input (nothing was published);
2 usage error (bad arguments or TWOWAY_* settings); 3 Kafka unreachable or publishing failed;
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from twoway_shared.contract import (
    PairResponseSubmitted,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    SessionAttendanceRecorded,
    SessionRescheduleRequested,
    access,
    event_type_of,
    full_type,
)
from twoway_shared.contract.access import all_acls
from twoway_shared.contract.envelope import describe
from twoway_shared.platform.kafka import client_options
from twoway_shared.platform.settings import Settings, describe_settings_error

from twoway_dev.toolkit import deadletters, inputs
from twoway_dev.toolkit.generate import generate_cohort
from twoway_dev.toolkit.outcome import DEFAULT_WAIT_SECONDS, publish_and_wait
from twoway_dev.toolkit.publish import DEFAULT_SOURCE, KafkaTrouble, Outgoing, outgoing, publish
from twoway_dev.toolkit.tail import (
    DeadLetter,
    Record,
    follow,
    group_dead_letters,
    read_dead_letters,
    resolve_topics,
    summarise,
)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_KAFKA = 3
EXIT_REJECTED = 4
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes:
  0  ok
  1  invalid input: nothing was published (each problem is printed)
  2  usage error: bad arguments, or bad TWOWAY_* settings
  3  Kafka unreachable, or publishing failed
  4  accept/decline --wait: matching rejected the response (the reason is printed)
  130 interrupted

Kafka settings come from the services' variables: TWOWAY_KAFKA_BOOTSTRAP_SERVERS
(default localhost:9092), TWOWAY_KAFKA_SECURITY_PROTOCOL, TWOWAY_KAFKA_SASL_MECHANISM,
TWOWAY_KAFKA_SASL_USERNAME/_PASSWORD, TWOWAY_KAFKA_SSL_CAFILE, TWOWAY_TOPIC_PREFIX
(default twoway.) and TWOWAY_TOPIC_PARTITIONS. Missing topics are created before publishing.

examples:
  twoway generate --n 300 -o cohort.csv && twoway enrol cohort.csv
  twoway programme configure RM-2027 --sessions 12 --starts-on 2027-01-11 --acceptance-required
  twoway accept 5d1c2a4e-7b7f-4d36-9d43-0f6c1c3e2b11 E12345 --wait
  twoway tail sessions pairs --from-beginning --max 20 --timeout 5
  twoway dlq
  twoway dlq replay --all --consumer scheduling --dry-run
  twoway dlq purge --before 30d
"""


SHORT_EPILOG = (
    "exit codes: 0 ok, 1 invalid input (nothing published), 2 usage error, 3 Kafka, 4 rejected"
)


class Toolkit:
    """The commands, writing results to `out` and problems and progress to `err`."""

    def __init__(self, out: Console, err: Console) -> None:
        self.out = out
        self.err = err
        self.loaded: Settings | None = None

    # ---------------------------------------------------------------- helpers

    def fail(self, message: str, code: int) -> int:
        self.err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        return code

    def settings(self) -> Settings | None:
        """The TWOWAY_* settings, or None after saying what is wrong with them."""
        try:
            settings = Settings()
            client_options(settings)
        except ValidationError as exc:
            self.fail(f"invalid settings: {describe_settings_error(exc)}", EXIT_USAGE)
            return None
        except ValueError as exc:
            self.fail(str(exc), EXIT_USAGE)
            return None
        self.loaded = settings
        return settings

    def run_kafka(self, work: Callable[[Settings], Coroutine[Any, Any, int]]) -> int:
        settings = self.settings()
        if settings is None:
            return EXIT_USAGE
        try:
            return asyncio.run(work(settings))
        except KafkaTrouble as exc:
            return self.fail(str(exc), EXIT_KAFKA)

    def publish_records(self, records: list[Outgoing], dry_run: bool) -> int:
        """Publish with a progress bar (or print them, for a dry run)."""
        if dry_run:
            for record in records:
                self.out.print(record.value.decode(), markup=False, highlight=False, soft_wrap=True)
            return EXIT_OK

        async def work(settings: Settings) -> int:
            with Progress(
                TextColumn("publishing"),
                BarColumn(),
                MofNCompleteColumn(),
                console=self.err,
                transient=True,
                disable=len(records) < 2,
            ) as progress:
                task = progress.add_task("publish", total=len(records))
                await publish(settings, records, on_sent=lambda: progress.advance(task))
            return EXIT_OK

        return self.run_kafka(work)

    def publish_one(self, model: type[BaseModel], data: dict[str, Any], args: Any) -> int:
        """Validate one event's data with the contract model, then publish it."""
        event_type = full_type(event_type_of(model))
        try:
            record = outgoing(model.model_validate(data), source=args.source)
        except ValidationError as exc:
            return self.fail(f"invalid {event_type}: {describe(exc)}", EXIT_INVALID)
        code = self.publish_records([record], args.dry_run)
        if code == EXIT_OK and self.loaded is not None:
            self.out.print(
                f"published {event_type} {record.event.id} to "
                f"{self.loaded.topic(record.topic)} (key {record.key.decode()})",
                highlight=False,
                soft_wrap=True,
            )
        return code

    # ---------------------------------------------------------------- commands

    def enrol(self, args: Any) -> int:
        fmt: inputs.Format = args.format or inputs.format_of(args.file) or "csv"
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return self.fail(f"cannot read {args.file}: {exc}", EXIT_INVALID)
        parsed = inputs.parse_text(text, fmt, updated=args.updated)
        if parsed.errors:
            self.show_row_errors(args.file, parsed.errors)
        if parsed.errors and not args.skip_invalid:
            return self.fail(
                f"nothing published: {len(parsed.errors)} invalid row(s) in {args.file}; "
                "fix them, or publish the valid rows with --skip-invalid",
                EXIT_INVALID,
            )
        if not parsed.valid:
            return self.fail(
                f"nothing published: no valid participant in {args.file}", EXIT_INVALID
            )
        records = [outgoing(row.profile, source=args.source) for row in parsed.valid]
        code = self.publish_records(records, args.dry_run)
        if code == EXIT_OK:
            verb = "would publish" if args.dry_run else "published"
            event_type = "participant.updated" if args.updated else "participant.enrolled"
            self.out.print(
                f"{verb} {len(records)} {event_type} event(s), invalid {len(parsed.errors)}",
                highlight=False,
            )
        return code

    def show_row_errors(self, filename: str, errors: list[inputs.RowError]) -> None:
        """One `FILE:LINE: (ID) reason` line per invalid row, as compilers do, so editors jump."""
        for error in errors:
            who = f" ({error.participant_id})" if error.participant_id else ""
            self.err.print(
                f"[bold]{escape(filename)}:{error.line}:[/]{escape(who)} {escape(error.reason)}",
                highlight=False,
                soft_wrap=True,
            )

    def programme_configure(self, args: Any) -> int:
        data: dict[str, Any] = {"programme_id": args.programme_id}
        options = {
            "name": args.name,
            "session_minutes": args.session_minutes,
            "cadence": args.cadence,
            "sessions": args.sessions,
            "starts_on": args.starts_on,
            "min_notice_hours": args.min_notice_hours,
            "reminder_minutes": [] if args.no_reminders else args.reminder_minutes,
        }
        matching = {
            "mode": args.mode,
            "acceptance_required": args.acceptance_required,
            "min_grade_gap": args.min_grade_gap,
            "cross_department": args.cross_department,
            "proposal_ttl_hours": args.proposal_ttl_hours,
            "min_score": args.min_score,
        }
        progress = {
            "fit_check": args.fit_check,
            "inactive_warning_days": args.inactive_warning_days,
            "inactive_close_days": args.inactive_close_days,
            "credit_minutes": args.credit_minutes,
        }
        options["coordinator_email"] = args.coordinator_email
        data.update({k: v for k, v in options.items() if v is not None})
        data["matching"] = {k: v for k, v in matching.items() if v is not None}
        data["progress"] = {k: v for k, v in progress.items() if v is not None}
        return self.publish_one(ProgrammeConfigured, data, args)

    def programme_match(self, args: Any) -> int:
        return self.publish_one(
            ProgrammeMatchingRequested, {"programme_id": args.programme_id}, args
        )

    def respond(self, args: Any) -> int:
        data = {
            "pair_id": args.pair_id,
            "participant_id": args.participant_id,
            "response": args.command,
            "reason": getattr(args, "reason", None),
        }
        if args.wait and not args.dry_run:
            return self.respond_and_wait(data, args)
        return self.publish_one(PairResponseSubmitted, data, args)

    def respond_and_wait(self, data: dict[str, Any], args: Any) -> int:
        """Publish a response and print what matching made of it (`--wait`)."""
        try:
            record = outgoing(PairResponseSubmitted.model_validate(data), source=args.source)
        except ValidationError as exc:
            return self.fail(f"invalid pair.response_submitted: {describe(exc)}", EXIT_INVALID)

        async def work(settings: Settings) -> int:
            self.err.print(
                f"published pair.response_submitted {record.event.id}; waiting up to "
                f"{args.wait_seconds:g} s for matching ...",
                highlight=False,
                soft_wrap=True,
            )
            outcome = await publish_and_wait(settings, record, args.wait_seconds)
            line = outcome.describe(data["pair_id"], args.wait_seconds)
            if outcome.rejected:
                return self.fail(line, EXIT_REJECTED)
            self.out.print(line, markup=False, highlight=False, soft_wrap=True)
            return EXIT_OK

        return self.run_kafka(work)

    def publish_fields(self, model: type[BaseModel], args: Any) -> int:
        """Publish one `model` event whose fields are the command's options of the same names."""
        data = {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}
        return self.publish_one(model, data, args)

    def reschedule(self, args: Any) -> int:
        return self.publish_fields(SessionRescheduleRequested, args)

    def attend(self, args: Any) -> int:
        return self.publish_fields(SessionAttendanceRecorded, args)

    def withdraw(self, args: Any) -> int:
        return self.publish_fields(ParticipantWithdrawn, args)

    def tail(self, args: Any) -> int:
        async def work(settings: Settings) -> int:
            topics = resolve_topics(settings.topic_prefix, args.topics)

            def emit(record: Record) -> None:
                line = summarise(settings.topic_prefix, record)
                self.out.print(line, markup=False, highlight=False, soft_wrap=True)

            await follow(
                settings,
                topics,
                emit,
                from_beginning=args.from_beginning,
                max_records=args.max,
                idle_timeout=args.timeout,
            )
            return EXIT_OK

        return self.run_kafka(work)

    def dlq(self, args: Any) -> int:
        async def work(settings: Settings) -> int:
            letters = await read_dead_letters(settings, args.max)
            if not letters:
                self.err.print("no dead letters", highlight=False)
                return EXIT_OK
            self.show_dead_letters(f"{settings.topic_prefix}deadletter.v1", letters)
            return EXIT_OK

        return self.run_kafka(work)

    def dlq_replay(self, args: Any) -> int:
        """Publish dead letters to their original topics again, each at most once."""
        selection = deadletters.Selection(
            partition=args.partition,
            offset=args.offset,
            consumer=args.consumer,
            original_topic=args.topic,
            error_contains=args.error,
        )

        async def work(settings: Settings) -> int:
            if selection.original_topic is not None:
                (name,) = resolve_topics(settings.topic_prefix, [selection.original_topic])
                chosen = dataclasses.replace(selection, original_topic=name)
            else:
                chosen = selection
            report = await deadletters.replay(settings, chosen, dry_run=args.dry_run)
            verb = "would replay" if args.dry_run else "replayed"
            for letter in report.replayed:
                self.out.print(
                    f"{verb} {letter.marker} to {letter.original_topic} "
                    f"(key {'-' if letter.key is None else letter.key.decode(errors='replace')})",
                    highlight=False,
                    soft_wrap=True,
                )
            for letter in report.already:
                self.err.print(f"skipped {letter.marker}: replayed before", highlight=False)
            for letter, why in report.refused:
                self.err.print(f"refused {letter.marker}: {why}", highlight=False)
            total = len(report.replayed) + len(report.already) + len(report.refused)
            if total == 0:
                return self.fail("no dead letter matches", EXIT_INVALID)
            self.out.print(
                f"{verb} {len(report.replayed)}, already replayed {len(report.already)}, "
                f"refused {len(report.refused)}",
                highlight=False,
            )
            return EXIT_INVALID if report.refused else EXIT_OK

        return self.run_kafka(work)

    def dlq_purge(self, args: Any) -> int:
        """Delete the dead letters older than a time (Kafka DeleteRecords)."""

        async def work(settings: Settings) -> int:
            counts = await deadletters.purge(settings, args.before, dry_run=args.dry_run)
            verb = "would delete" if args.dry_run else "deleted"
            for partition, count in sorted(counts.items()):
                self.out.print(f"partition {partition}: {verb} {count}", highlight=False)
            self.out.print(
                f"{verb} {sum(counts.values())} dead letter(s) older than "
                f"{args.before.isoformat()}",
                highlight=False,
            )
            return EXIT_OK

        return self.run_kafka(work)

    def show_dead_letters(self, topic: str, letters: list[DeadLetter]) -> None:
        """Each bad record once (with every service that refused it): a table on a terminal,
        one tab-separated line when piped (when, consumers, original, type, key, error)."""
        bad = group_dead_letters(letters)
        if not self.out.is_terminal:
            for b in bad:
                d = b.first
                row = (d.record.when, b.consumers, d.original, d.event_type, d.record.key_text)
                self.out.file.write("\t".join((*row, b.error)) + "\n")  # rich expands tabs
            return
        table = Table(
            title=f"{len(bad)} bad record(s), {len(letters)} dead letter(s) on {topic}",
            show_lines=True,
            expand=True,
        )
        table.add_column("first seen", no_wrap=True)
        table.add_column("record", no_wrap=True)
        table.add_column("refused by", no_wrap=True)
        table.add_column("why", ratio=1, overflow="fold")
        for b in bad:
            d = b.first
            record = f"{d.original}\n{d.event_type}\nkey {d.record.key_text}"
            table.add_row(
                escape(d.record.when),
                escape(record),
                escape(b.consumers.replace(",", "\n")),
                escape(b.error),
            )
        self.out.print(table)

    def generate(self, args: Any) -> int:
        cohort = generate_cohort(args.n, seed=args.seed, programme_id=args.programme)
        fmt = args.format or (inputs.format_of(args.output) if args.output else None) or "jsonl"
        text = inputs.to_csv(cohort) if fmt == "csv" else inputs.to_jsonl(cohort)
        if args.output is None:
            sys.stdout.write(text)
        else:
            Path(args.output).write_text(text, encoding="utf-8")
        mentors = sum(1 for p in cohort if p["role"] == "mentor")
        where = args.output or "standard output"
        self.err.print(
            f"wrote {len(cohort)} profiles ({mentors} mentors, {len(cohort) - mentors} mentees) "
            f"for {args.programme} to {where} as {fmt}",
            highlight=False,
        )
        return EXIT_OK

    def acl(self, args: Any) -> int:
        prefix = args.prefix
        if prefix is None:
            settings = self.settings()
            if settings is None:
                return EXIT_USAGE
            prefix = settings.topic_prefix
        acls = all_acls(prefix)
        if args.format == "json":
            sys.stdout.write(json.dumps(access.as_json(acls), indent=2) + "\n")
        else:
            sys.stdout.write("\n".join(access.as_kafka_acls_commands(acls)) + "\n")
        return EXIT_OK


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
    return value


def _positive(text: str) -> int:
    return _whole(text, 1)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _add_wait_options(command: argparse.ArgumentParser) -> None:
    """`--wait` and `--wait-seconds` of accept and decline."""
    command.add_argument(
        "--wait",
        action="store_true",
        help="wait for matching's answer and print it: confirmed, declined, rejected (exit 4) "
        "or no change",
    )
    command.add_argument(
        "--wait-seconds",
        type=_seconds,
        default=DEFAULT_WAIT_SECONDS,
        metavar="S",
        help=f"how long --wait waits ({DEFAULT_WAIT_SECONDS:g})",
    )


def parser() -> argparse.ArgumentParser:
    """The `twoway` argument parser."""
    publishing = argparse.ArgumentParser(add_help=False)
    publishing.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        help=f"CloudEvents source of the events (default {DEFAULT_SOURCE})",
    )
    publishing.add_argument(
        "--dry-run", action="store_true", help="validate and print the events; publish nothing"
    )
    top = argparse.ArgumentParser(
        prog="twoway",
        description="The Twoway portal and operator toolkit: publish portal events to Kafka, "
        "follow topics, list dead letters, generate a synthetic programme.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("-v", "--verbose", action="store_true", help="show Kafka client logs")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    acl = sub.add_parser(
        "acl",
        help="print every Kafka ACL the services need (the one list in twoway_shared)",
        description="Print the allow rules of each service's principal (User:matching, ...) "
        "under a topic prefix: as kafka-acls.sh commands (expecting $BOOTSTRAP and an "
        "admin.properties of a super-user) or as JSON. Nothing is sent to Kafka.",
    )
    acl.add_argument("--prefix", help="topic prefix (default: TWOWAY_TOPIC_PREFIX, else twoway.)")
    acl.add_argument("--format", choices=("kafka-acls", "json"), default="kafka-acls")
    acl.set_defaults(run=Toolkit.acl)

    enrol = sub.add_parser(
        "enrol",
        parents=[publishing],
        help="publish participant.enrolled events from an HR export (CSV or JSONL)",
        description="Validate every row, then publish one participant.enrolled event per row. "
        "CSV columns are the profile fields; languages, offers and wants are separated by ; or |; "
        "availability reads 'mon 09:00-12:00; thu 14:00-24:00'; notify_email and "
        "notify_reminders are true/false. JSONL holds one profile object per line.",
    )
    enrol.add_argument("file", metavar="FILE", help="FILE.csv or FILE.jsonl")
    enrol.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file name")
    enrol.add_argument("--updated", action="store_true", help="publish participant.updated instead")
    enrol.add_argument(
        "--skip-invalid", action="store_true", help="publish the valid rows even if some are not"
    )

    programme = sub.add_parser("programme", help="configure a programme or run a matching round")
    psub = programme.add_subparsers(dest="action", required=True, metavar="ACTION")
    configure = psub.add_parser(
        "configure",
        parents=[publishing],
        help="publish programme.configured (options left out take the contract defaults)",
    )
    configure.add_argument("programme_id", metavar="PROGRAMME_ID")
    configure.add_argument("--name")
    configure.add_argument("--session-minutes", type=int, help="15..120, multiple of 15 (30)")
    configure.add_argument("--cadence", choices=("weekly", "fortnightly"))
    configure.add_argument("--sessions", type=int, help="1..52 (12)")
    configure.add_argument("--starts-on", help="YYYY-MM-DD (default: the day it is processed)")
    configure.add_argument("--min-notice-hours", type=int, help="0..336 (24)")
    reminders = configure.add_mutually_exclusive_group()
    reminders.add_argument(
        "--reminder-minutes", type=int, action="append", help="repeatable, at most 5 (1440)"
    )
    reminders.add_argument("--no-reminders", action="store_true", help="send no reminders")
    configure.add_argument("--mode", choices=("continuous", "batch"))
    configure.add_argument(
        "--acceptance-required", action=argparse.BooleanOptionalAction, default=None
    )
    configure.add_argument("--min-grade-gap", type=int, help="0..29 (1)")
    configure.add_argument(
        "--cross-department", action=argparse.BooleanOptionalAction, default=None
    )
    configure.add_argument("--proposal-ttl-hours", type=int, help="(72)")
    configure.add_argument("--min-score", type=float, help="0..1: weaker pairs are not formed (0)")
    configure.add_argument("--fit-check", action=argparse.BooleanOptionalAction, default=None)
    configure.add_argument("--inactive-warning-days", type=int, help="0 = never (21)")
    configure.add_argument("--inactive-close-days", type=int, help="0 = never (42)")
    configure.add_argument("--credit-minutes", type=int, help="15..120 (50)")
    configure.add_argument("--coordinator-email", help="where at-risk pairs are reported")
    configure.set_defaults(run=Toolkit.programme_configure)
    match = psub.add_parser(
        "match", parents=[publishing], help="publish programme.matching_requested"
    )
    match.add_argument("programme_id", metavar="PROGRAMME_ID")
    match.set_defaults(run=Toolkit.programme_match)

    for response in ("accept", "decline"):
        respond = sub.add_parser(response, parents=[publishing], help=f"{response} a proposed pair")
        respond.add_argument("pair_id", metavar="PAIR_ID")
        respond.add_argument("participant_id", metavar="PARTICIPANT_ID")
        if response == "decline":
            respond.add_argument("--reason", help="at most 500 characters")
        _add_wait_options(respond)
        respond.set_defaults(run=Toolkit.respond)

    reschedule = sub.add_parser(
        "reschedule", parents=[publishing], help="publish session.reschedule_requested"
    )
    reschedule.add_argument("session_id", metavar="SESSION_ID")
    reschedule.add_argument("pair_id", metavar="PAIR_ID")
    reschedule.add_argument(
        "requested_by", metavar="REQUESTED_BY", help="participant id of the person asking"
    )
    reschedule.add_argument("--reason")
    reschedule.add_argument("--not-before", help="RFC 3339 time, e.g. 2027-03-01T09:00:00Z")
    reschedule.set_defaults(run=Toolkit.reschedule)

    attend = sub.add_parser(
        "attend", parents=[publishing], help="publish session.attendance_recorded"
    )
    attend.add_argument("session_id", metavar="SESSION_ID")
    attend.add_argument("pair_id", metavar="PAIR_ID")
    attend.add_argument("participant_id", metavar="PARTICIPANT_ID")
    presence = attend.add_mutually_exclusive_group(required=True)
    presence.add_argument("--attended", dest="attended", action="store_true", default=None)
    presence.add_argument("--absent", dest="attended", action="store_false")
    attend.add_argument("--rating", type=int, help="1..5")
    attend.add_argument("--comment", help="at most 2000 characters")
    attend.set_defaults(run=Toolkit.attend)

    withdraw = sub.add_parser(
        "withdraw", parents=[publishing], help="publish participant.withdrawn"
    )
    withdraw.add_argument("participant_id", metavar="PARTICIPANT_ID")
    withdraw.add_argument("programme_id", metavar="PROGRAMME_ID")
    withdraw.add_argument("--reason")
    withdraw.add_argument(
        "--erase", action="store_true", help="every service deletes the person's personal data"
    )
    withdraw.set_defaults(run=Toolkit.withdraw)

    tail = sub.add_parser(
        "tail",
        help="follow events as one-line summaries",
        description="Follow topics (default: every contract topic under the prefix). "
        "TOPIC is a contract topic (sessions, sessions.v1) or a full topic name.",
    )
    tail.add_argument("topics", nargs="*", metavar="TOPIC")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--max", type=_positive, help="stop after N records")
    tail.add_argument(
        "--timeout", type=_seconds, help="stop once no record has arrived for S seconds"
    )
    tail.set_defaults(run=Toolkit.tail)

    dlq = sub.add_parser(
        "dlq", help="list dead letters with their reasons, from the beginning to the end"
    )
    dlq.add_argument("--max", type=_positive, help="list at most N (the oldest first)")
    dlq.set_defaults(run=Toolkit.dlq)
    add_dlq_actions(dlq)

    generate = sub.add_parser(
        "generate", help="write a synthetic cohort that `twoway enrol` accepts"
    )
    generate.add_argument("--n", type=_positive, default=300, help="participants (300)")
    generate.add_argument("--seed", type=int, default=2027, help="same seed, same cohort (2027)")
    generate.add_argument("--programme", default="RM-DEMO", help="programme id (RM-DEMO)")
    generate.add_argument("--format", choices=("jsonl", "csv"), help="default: from -o, else jsonl")
    generate.add_argument("-o", "--output", help="file to write (default: standard output)")
    generate.set_defaults(run=Toolkit.generate)

    enrol.set_defaults(run=Toolkit.enrol)
    for command in [*sub.choices.values(), *psub.choices.values()]:
        command.epilog = SHORT_EPILOG
    return top


def _moment(text: str) -> datetime:
    """An RFC 3339 time with an offset, or an age such as 30d or 12h (that long ago)."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (e.g. 2027-01-31T00:00:00Z, or 30d for 30 days ago)"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time with its offset: {text!r} (e.g. ...Z)")
    return moment


def _offset(text: str) -> int:
    return _whole(text, 0)


def add_dlq_actions(dlq: argparse.ArgumentParser) -> None:
    """`twoway dlq replay` and `twoway dlq purge` (plain `twoway dlq` lists)."""
    actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION")
    replay = actions.add_parser(
        "replay",
        help="publish dead letters to their original topic again (each at most once)",
        description="Publish a dead letter's key, value and headers (less x-twoway-* and "
        "x-original-*) to its original topic, marked x-twoway-replay-of: PARTITION:OFFSET. "
        "A dead letter replayed before is skipped, so running this twice is safe.",
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--offset", type=_offset, help="the dead letter at this offset")
    which.add_argument("--all", action="store_true", help="every dead letter matching the filters")
    replay.add_argument("--partition", type=_offset, help="partition of --offset (0)")
    replay.add_argument("--consumer", help="with --all: only those this service rejected")
    replay.add_argument("--topic", help="with --all: only those from this topic (e.g. pairs)")
    replay.add_argument("--error", help="with --all: only those whose reason contains this text")
    replay.add_argument("--dry-run", action="store_true", help="list them; publish nothing")
    replay.set_defaults(run=Toolkit.dlq_replay)
    purge = actions.add_parser(
        "purge",
        help="delete dead letters older than a time",
        description="Delete, on every partition of the dead-letter topic, the records written "
        "before --before (Kafka DeleteRecords). Newer ones stay.",
    )
    purge.add_argument(
        "--before", type=_moment, required=True, help="RFC 3339 time, or an age like 30d"
    )
    purge.add_argument("--dry-run", action="store_true", help="count them; delete nothing")
    purge.set_defaults(run=Toolkit.dlq_purge)
    for action in (replay, purge):
        action.epilog = SHORT_EPILOG


def main(argv: Sequence[str] | None = None) -> int:
    """Run `twoway` with `argv` (default: the command line) and return its exit code."""
    command = parser()
    try:
        args = command.parse_args(argv)
        if args.command == "enrol" and not (args.format or inputs.format_of(args.file)):
            command.error(
                f"cannot tell the format of {args.file}: name it .csv or .jsonl, or use --format"
            )
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not args.verbose:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    toolkit = Toolkit(Console(soft_wrap=True), Console(stderr=True, soft_wrap=True))
    try:
        code: int = args.run(toolkit, args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code
