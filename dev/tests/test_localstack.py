"""The local stack's pieces that need no running process: configuration, jars, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from twoway_dev.localstack import cli
from twoway_dev.localstack.stack import (
    KAFKA_POM,
    LocalStack,
    StackError,
    ensure_kafka_jars,
    kafka_version,
    new_cluster_id,
    new_kafka_passwords,
    server_properties,
)


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key: value for key, value in pairs}


def test_server_properties_is_a_single_node_kraft_broker_with_sasl_and_acls(
    tmp_path: Path,
) -> None:
    passwords = new_kafka_passwords()
    props = parse_properties(
        server_properties(
            data_dir=tmp_path / "data",
            kafka_port=19092,
            controller_port=19093,
            passwords=passwords,
        )
    )

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    # No listener lets a client in without a password, and no ACL means no access.
    assert "PLAINTEXT:PLAINTEXT" not in props["listener.security.protocol.map"]
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:controller"
    assert (
        passwords["admin"] in props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    )
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "6"
    assert props["auto.create.topics.enable"] == "false"


def test_every_user_gets_its_own_random_password() -> None:
    first, second = new_kafka_passwords(), new_kafka_passwords()

    assert set(first) == {
        "admin",
        "controller",
        "matching",
        "scheduling",
        "notifications",
        "progress",
    }
    assert len(set(first.values())) == len(first)
    assert not set(first.values()) & set(second.values())


def test_cluster_id_is_22_characters_of_base64url() -> None:
    ids = {new_cluster_id() for _ in range(20)}

    assert len(ids) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id) for cluster_id in ids)


def test_kafka_version_comes_from_the_pom() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", kafka_version(KAFKA_POM))


def test_stack_info_and_layout(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, kafka_port=19092, pg_port=15432)

    assert stack.info.kafka_bootstrap == "127.0.0.1:19092"
    assert stack.info.admin_dsn == "postgresql://postgres@127.0.0.1:15432/postgres"
    assert stack.controller_port == 19093
    assert stack.kafka_dir.is_relative_to(tmp_path)
    assert stack.pg_data.is_relative_to(tmp_path)


def test_status_of_a_stack_never_started(tmp_path: Path) -> None:
    status = LocalStack(tmp_path, kafka_port=19092, pg_port=15432).status()

    assert not status.kafka_running
    assert not status.postgres_running
    assert not status.running


def test_missing_java_is_an_actionable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    with pytest.raises(StackError, match=r"`java` is needed .* apt-get install"):
        ensure_kafka_jars(cache=tmp_path / "cache")

    # Nothing half-made is left where a complete download would go.
    assert not (tmp_path / "cache" / f"kafka-{kafka_version()}").exists()


def test_cli_reports_missing_java_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("TWOWAY_CACHE_DIR", str(tmp_path / "cache"))
    # Only Kafka's half runs: PostgreSQL is made to look already started.
    monkeypatch.setattr(LocalStack, "_postgres_up", lambda self, deadline: None)

    with pytest.raises(SystemExit) as exited:
        cli.main(["up", "--dir", str(tmp_path / "stack"), "--kafka-port", "19092"])

    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "twoway-stack: error: `java` is needed" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["launch"],
        ["up", "--kafka-port", "nope"],
        ["up", "--pg-port", "70000"],
        ["down", "--unknown"],
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)

    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_settings_give_each_service_its_own_principal_and_roles(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, kafka_port=19092, pg_port=15432)
    stack.kafka_dir.mkdir(parents=True)
    passwords = new_kafka_passwords()
    stack.kafka_credentials.write_text(json.dumps(passwords))

    text = cli.settings(stack.info)

    assert "export TWOWAY_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092" in text
    blocks = dict(re.findall(r"# (\S+)[^\n]*\n((?:export [^\n]*\n?)+)", text))
    assert "TWOWAY_KAFKA_SASL_USERNAME=admin" in blocks["twoway"]
    for service in ("matching", "scheduling", "notifications"):
        block = blocks[f"twoway-{service}"]
        assert "export TWOWAY_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT" in block
        assert f"export TWOWAY_KAFKA_SASL_USERNAME={service}" in block
        assert f"export TWOWAY_KAFKA_SASL_PASSWORD={passwords[service]}" in block
        assert (
            f"export TWOWAY_DATABASE_URL=postgresql://twoway_{service}@127.0.0.1:15432/twoway"
            in block
        )
        assert (
            "export TWOWAY_DATABASE_MIGRATION_URL="
            f"postgresql://twoway_{service}_owner@127.0.0.1:15432/twoway" in block
        )


def test_cli_status_of_a_stopped_stack_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["status", "--dir", str(tmp_path), "--kafka-port", "19092"])

    assert exited.value.code == 3
    assert "stopped" in capsys.readouterr().out


def test_cli_uses_the_ports_a_stack_was_started_with(tmp_path: Path) -> None:
    fresh = cli.stack_for(cli.parser().parse_args(["up", "--dir", str(tmp_path)]))
    assert (fresh.kafka_port, fresh.pg_port) == (9092, 5432)

    (tmp_path / "stack.json").write_text('{"kafka_port": 19192, "pg_port": 15532}\n')

    status = cli.stack_for(cli.parser().parse_args(["status", "--dir", str(tmp_path)]))
    up = cli.stack_for(cli.parser().parse_args(["up", "--dir", str(tmp_path)]))
    told = cli.stack_for(
        cli.parser().parse_args(["env", "--dir", str(tmp_path), "--pg-port", "15000"])
    )

    assert (status.kafka_port, status.pg_port) == (19192, 15532)
    assert (up.kafka_port, up.pg_port) == (19192, 15532)
    assert (told.kafka_port, told.pg_port) == (19192, 15000)
