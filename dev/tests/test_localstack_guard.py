"""The local stack refuses a second user, survives zombie pids and fails in one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twoway_dev.localstack import cli, stack
from twoway_dev.localstack.stack import (
    LocalStack,
    StackError,
    StackInUse,
    ensure_kafka_jars,
    failure,
    hold,
    holder_of,
)

HOLDER = """
import sys, time
from pathlib import Path
from twoway_dev.localstack.stack import hold
with hold(Path(sys.argv[1]), "a demo (twoway-dev demo)"):
    print("held", flush=True)
    time.sleep(120)
"""


def _start_holder(root: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_held_folder_refuses_a_second_user_and_is_free_once_the_holder_dies(
    tmp_path: Path,
) -> None:
    process = _start_holder(tmp_path)
    try:
        assert holder_of(tmp_path) == f"a demo (twoway-dev demo) (pid {process.pid})"
        with (
            pytest.raises(StackInUse, match=rf"a demo .*pid {process.pid}.* is using"),
            hold(tmp_path, "another demo"),
        ):
            pass
        # Starting or stopping the stack there is refused too, before anything is touched.
        with pytest.raises(StackInUse):
            LocalStack(tmp_path, kafka_port=19092, pg_port=15432).down()
    finally:
        process.kill()
        process.wait()
    # Killed without cleaning up: the kernel released the lock with the process.
    assert holder_of(tmp_path) is None
    with hold(tmp_path, "the next demo"):
        assert holder_of(tmp_path) is None  # our own hold does not block us


def test_cli_refuses_to_stop_a_stack_a_demo_is_using(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    process = _start_holder(tmp_path)
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main(["down", "--dir", str(tmp_path), "--kafka-port", "19092"])
    finally:
        process.kill()
        process.wait()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"twoway-stack: error: a demo (twoway-dev demo) (pid {process.pid}) is using" in err
    assert len(err.strip().splitlines()) == 1


ZOMBIE_PARENT = """
import subprocess, sys, time
child = subprocess.Popen(["true"])
print(child.pid, flush=True)
time.sleep(120)  # never waits for the child: it stays a zombie
"""


def test_a_zombie_pid_counts_as_stopped(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", ZOMBIE_PARENT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        zombie = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while not stack._zombie(zombie):
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.05)
        os.kill(zombie, 0)  # still "there" for kill(0) ...
        assert not stack.process_alive(zombie)  # ... but not alive
        assert stack._cmdline(zombie) == []

        # A broker pid file naming the zombie: status says stopped, down does not hang.
        local = LocalStack(tmp_path, kafka_port=19092, pg_port=15432)
        local.kafka_dir.mkdir(parents=True)
        local.kafka_pidfile.write_text(f"{zombie}\n")
        assert local.status().kafka_pid is None
        local._kafka_down()
        assert not local.kafka_pidfile.exists()
    finally:
        parent.kill()
        parent.wait()


def test_failure_is_one_line_naming_the_log(tmp_path: Path) -> None:
    log = tmp_path / "kafka" / "format.log"
    output = (
        "usage: kafka-storage ...\n"
        "kafka-storage: error: argument --cluster-id/-t: expected one argument\n"
    )

    error = failure("formatting Kafka's storage failed (exit 1)", log, output)

    assert str(error) == (
        "formatting Kafka's storage failed (exit 1) (kafka-storage: error: argument "
        f"--cluster-id/-t: expected one argument); read {log}"
    )
    assert log.read_text() == output


def test_a_cluster_id_starting_with_a_dash_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster_id = "-" + "A" * 21
    monkeypatch.setattr(stack, "new_cluster_id", lambda: cluster_id)
    local = LocalStack(tmp_path, kafka_port=19092, pg_port=15432)
    local.kafka_dir.mkdir(parents=True)
    local.kafka_properties.write_text(
        stack.server_properties(
            data_dir=local.kafka_dir / "data",
            kafka_port=19092,
            controller_port=19093,
            passwords=stack.new_kafka_passwords(),
        )
    )
    lib = ensure_kafka_jars()

    local._format_kafka_storage(stack.require_tool("java", "", ""), f"{lib}{os.sep}*")

    meta = (local.kafka_dir / "data" / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}" in meta


def test_a_failing_format_is_one_line_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = LocalStack(tmp_path, kafka_port=19092, pg_port=15432)
    local.kafka_dir.mkdir(parents=True)
    local.kafka_properties.write_text("this is not a broker configuration\n")
    lib = ensure_kafka_jars()

    with pytest.raises(StackError) as raised:
        local._format_kafka_storage(stack.require_tool("java", "", ""), f"{lib}{os.sep}*")

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("formatting Kafka's storage in ")
    assert message.endswith(f"read {local.kafka_dir / 'format.log'}")


def test_env_finds_the_demo_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default, demo = tmp_path / "local", tmp_path / ".demo" / "stack"
    monkeypatch.setattr(cli, "default_root", lambda: default)
    monkeypatch.setattr(cli, "demo_stack_root", lambda: demo)
    (demo).mkdir(parents=True)
    (demo / "stack.json").write_text('{"kafka_port": 47092, "pg_port": 47432}\n')
    running = {demo.resolve()}
    monkeypatch.setattr(
        LocalStack,
        "status",
        lambda self: stack.StackStatus(self.root in running, 1, self.root in running, self.info),
    )

    found = cli.stack_for(cli.parser().parse_args(["env"]))

    assert found.root == demo.resolve()
    assert (found.kafka_port, found.pg_port) == (47092, 47432)
    assert "TWOWAY_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:47092" in cli.settings(found.info)
    # Told where to look, it looks only there.
    told = cli.stack_for(cli.parser().parse_args(["env", "--dir", str(default)]))
    assert told.root == default.resolve()


def test_shims_put_the_toolkit_on_the_path(tmp_path: Path) -> None:
    from twoway_dev.cli import write_shims

    written = write_shims(tmp_path / "bin")

    assert {path.name for path in written} == {"twoway", "twoway-stack", "twoway-dev"}
    # From another folder, with only the shims' folder and the system's on PATH.
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["twoway", "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: twoway ")


def test_up_refuses_where_a_stack_already_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        LocalStack, "status", lambda self: stack.StackStatus(True, 4321, True, self.info)
    )
    monkeypatch.setattr(LocalStack, "up", lambda self: pytest.fail("must not start anything"))

    with pytest.raises(SystemExit) as exited:
        cli.main(["up", "--dir", str(tmp_path), "--kafka-port", "19092"])

    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"a stack already runs in {tmp_path.resolve()} (Kafka pid 4321)" in err
    assert "twoway-stack down" in err
