"""The local stack: a KRaft Kafka broker from Maven Central and a PostgreSQL cluster, detached."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from twoway_shared.contract.access import SERVICES

log = logging.getLogger(__name__)

KAFKA_POM = Path(__file__).with_name("kafka-pom.xml")
KAFKA_MAIN = "kafka.Kafka"
# A test session gives every test its own topics (thousands of partitions in one run), and a
# broker that kept 512 MiB ran out of heap at about 15,000 partitions: 2 GiB leaves room,
# and a 2-core machine with 24 GiB has it.
KAFKA_JAVA_OPTS = (
    "-Xms256m",
    "-Xmx2g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
)
PG_SETTINGS = (
    "listen_addresses=127.0.0.1",
    # Throw-away development data: durability costs more time than it is worth here.
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    # Every test gets its own database and each service its own pool.
    "max_connections=300",
)
# The broker's SCRAM users: a super-user for operators and tests, and one per service.
KAFKA_ADMIN = "admin"
KAFKA_SERVICES = SERVICES
KAFKA_MECHANISM = "SCRAM-SHA-512"
# The controller listener cannot use SCRAM (its users live in the metadata it serves).
_CONTROLLER_USER = "controller"
DEFAULT_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
_POLL = 0.2
_T = TypeVar("_T")


class StackError(RuntimeError):
    """The stack could not be started or stopped; the message says what to do about it."""


class StackInUse(StackError):
    """Another process (a demo, a test session) is using the stack's folder."""


@dataclass(frozen=True)
class StackInfo:
    """Where a running stack answers, and the broker's SCRAM passwords (user -> password)."""

    kafka_bootstrap: str
    admin_dsn: str
    root: Path
    kafka_passwords: Mapping[str, str] = field(default_factory=dict)

    def kafka_client_options(self, user: str = KAFKA_ADMIN) -> dict[str, Any]:
        """aiokafka keyword arguments to connect as `user` (the super-user by default)."""
        return sasl_client_options(self.kafka_bootstrap, user, self.kafka_passwords[user])

    def kafka_env(self, user: str) -> dict[str, str]:
        """The TWOWAY_KAFKA_* settings of a service (or the super-user) on this broker."""
        return {
            "TWOWAY_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "TWOWAY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "TWOWAY_KAFKA_SASL_MECHANISM": KAFKA_MECHANISM,
            "TWOWAY_KAFKA_SASL_USERNAME": user,
            "TWOWAY_KAFKA_SASL_PASSWORD": self.kafka_passwords[user],
        }


def sasl_client_options(bootstrap: str, user: str, password: str) -> dict[str, Any]:
    """aiokafka keyword arguments for SASL/SCRAM-SHA-512 over a plain connection."""
    return {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": KAFKA_MECHANISM,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


@dataclass(frozen=True)
class StackStatus:
    """Whether each half of the stack is running, and where it would answer."""

    kafka_running: bool
    kafka_pid: int | None
    postgres_running: bool
    info: StackInfo

    @property
    def running(self) -> bool:
        return self.kafka_running and self.postgres_running


def repo_root() -> Path:
    """The workspace root (found from this package, else the working directory), or cwd."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (start, *start.parents):
            if (parent / "pyproject.toml").is_file() and (parent / "services").is_dir():
                return parent
    return Path.cwd()


def default_root() -> Path:
    """`<repo>/.stack/local`, where `twoway-stack` keeps its data unless told otherwise."""
    return repo_root() / ".stack" / "local"


def cache_dir() -> Path:
    """`$TWOWAY_CACHE_DIR`, else `~/.cache/twoway`: downloads shared by every stack."""
    configured = os.environ.get("TWOWAY_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "twoway"


def kafka_version(pom: Path = KAFKA_POM) -> str:
    """The Kafka version the pom resolves."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if match is None:
        raise StackError(f"{pom} has no <kafka.version> property")
    return match.group(1).strip()


def saved_ports(root: Path) -> tuple[int, int] | None:
    """The (kafka_port, pg_port) the stack in root was last started with, if any."""
    try:
        saved = json.loads((root.expanduser() / "stack.json").read_text())
        return int(saved["kafka_port"]), int(saved["pg_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID as 22 characters of unpadded base64url."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


def new_kafka_passwords() -> dict[str, str]:
    """A fresh random password for the super-user, the controller and each service."""
    users = (KAFKA_ADMIN, _CONTROLLER_USER, *KAFKA_SERVICES)
    return {user: secrets.token_urlsafe(24) for user in users}


def _jaas(module: str, user: str, password: str, extra: str = "") -> str:
    return f'{module} required username="{user}" password="{password}"{extra};'


def server_properties(
    *,
    data_dir: Path,
    kafka_port: int,
    controller_port: int,
    passwords: Mapping[str, str],
    node_id: int = 1,
) -> str:
    """A single-node KRaft broker+controller: SASL/SCRAM-SHA-512 clients, ACLs enforced.

    Clients authenticate with SCRAM-SHA-512 on the one broker listener; the StandardAuthorizer
    denies whatever no ACL allows. `admin` is the super-user; the controller listener uses
    PLAIN with its own user (KRaft cannot use SCRAM there).
    """
    admin, controller = passwords[KAFKA_ADMIN], passwords[_CONTROLLER_USER]
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    # A static voter set rather than `--standalone` (a dynamic quorum): the controller's
    # address then lives only in this file, so a later `up` with other ports still works.
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": (
            f"SASL_PLAINTEXT://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}"
        ),
        "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": KAFKA_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": KAFKA_MECHANISM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": _jaas(
            scram, KAFKA_ADMIN, admin
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            plain, _CONTROLLER_USER, controller, f' user_{_CONTROLLER_USER}="{controller}"'
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{KAFKA_ADMIN};User:{_CONTROLLER_USER}",
        "allow.everyone.if.no.acl.found": "false",
        "log.dirs": str(data_dir),
        "num.partitions": "6",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        # Fewer internal partitions make the first consumer group and transaction quicker.
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # The broker is unfenced on a heartbeat: sooner heartbeats make it ready sooner.
        "broker.heartbeat.interval.ms": "500",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    lines = ["# Written by twoway-stack on every start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def ensure_kafka_jars(cache: Path | None = None, pom: Path = KAFKA_POM) -> Path:
    """The folder of Kafka's jars, resolved with Maven into the cache the first time."""
    cache = cache or cache_dir()
    version = kafka_version(pom)
    target = cache / f"kafka-{version}"
    lib = target / "lib"
    wanted = pom.read_text()
    recorded = target / "pom.xml"
    if lib.is_dir() and recorded.is_file() and recorded.read_text() == wanted:
        return lib
    require_tool("java", "to run the local Kafka broker", "default-jre-headless (Java 17+)")
    mvn = require_tool("mvn", "to download Kafka's jars from Maven Central", "maven")
    cache.mkdir(parents=True, exist_ok=True)
    # Left by killed downloads; an hour is far longer than any download still under way.
    for leftover in cache.glob(f".kafka-{version}-*"):
        if time.time() - leftover.stat().st_mtime > 3600:
            shutil.rmtree(leftover, ignore_errors=True)
    log.info("Downloading Kafka %s's jars with Maven into %s (first run only) ...", version, target)
    # Resolved in a private folder and renamed into place, so an interrupted download never
    # looks like a complete one and two concurrent first runs do not mix their files.
    work = Path(tempfile.mkdtemp(prefix=f".kafka-{version}-", dir=cache))
    try:
        (work / "pom.xml").write_text(wanted)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={work / 'lib'}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not any((work / "lib").glob("kafka_*.jar")):
            raise failure(
                f"Maven could not resolve Kafka {version} (exit {done.returncode}): is Maven "
                "Central reachable (proxy settings in ~/.m2/settings.xml)?",
                cache / "maven.log",
                done.stdout + done.stderr,
            )
        shutil.rmtree(work / "target", ignore_errors=True)
        # mkdtemp makes it private; the jars are public and may serve other users.
        work.chmod(0o755)
        if target.exists():
            # Stale (another pom) or half-removed: swap it aside first, as rename needs room.
            stale = Path(tempfile.mkdtemp(prefix=f".stale-kafka-{version}-", dir=cache))
            with contextlib.suppress(FileNotFoundError):
                target.rename(stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            work.rename(target)
        except OSError:
            # Another process finished first; its result is as good as ours.
            if not lib.is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return lib


def require_tool(name: str, why: str, package: str) -> str:
    """The path of a program on PATH, or a StackError saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise StackError(
            f"`{name}` is needed {why} but was not found on PATH. Install it "
            f"(Debian/Ubuntu: apt-get install {package}; or run `make system-deps`), "
            "or use Docker: deploy/compose.yaml."
        )
    return found


def postgres_bindir() -> Path:
    """The folder of one PostgreSQL installation's server programs (initdb, pg_ctl)."""
    candidates: list[Path] = []
    configured = os.environ.get("TWOWAY_PG_BINDIR")
    if configured:
        candidates.append(Path(configured))
    on_path = shutil.which("initdb")
    if on_path:
        # Symlinks such as /usr/local/bin/initdb lead to the real installation folder.
        candidates.append(Path(on_path).resolve().parent)
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += installed
    candidates += sorted(Path("/usr").glob("pgsql-*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise StackError(
        "PostgreSQL's server programs (initdb, pg_ctl) were not found: install PostgreSQL "
        "(Debian/Ubuntu: apt-get install postgresql; or run `make system-deps`), or set "
        "TWOWAY_PG_BINDIR to the folder that holds them."
    )


def tail(text: str, lines: int = 40) -> str:
    """The last lines of some output, for error messages."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def failure(what: str, log: Path, output: str | None = None) -> StackError:
    """One line: what failed, its last error line, and the log to read (`output` goes there)."""
    if output is not None:
        with contextlib.suppress(OSError):
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(output)
    hint = last_problem(file_tail(log, 200)) if log.is_file() else ""
    detail = f" ({hint})" if hint else ""
    return StackError(f"{what}{detail}; read {log}")


_PROBLEM = re.compile(r"error|fatal|exception|panic|refused|denied|cannot|could not", re.I)


def last_problem(text: str, width: int = 160) -> str:
    """The last line of a log that reads like an error (else its last line), shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    found = next((line for line in reversed(lines) if _PROBLEM.search(line)), lines[-1])
    return found if len(found) <= width else found[: width - 1] + "…"


def file_tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            return tail(handle.read().decode("utf-8", "replace"), lines)
    except OSError:
        return "(no log)"


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _run_in_fresh_loop(coro: Coroutine[Any, Any, _T]) -> _T:
    # A thread of its own, so that callers already inside an event loop can call us too.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def kafka_answers(options: dict[str, Any], timeout_ms: int = 5000) -> bool:
    """Whether the broker answers a metadata request and lists at least one live broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**options, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (it holds passwords)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def process_alive(pid: int) -> bool:
    """Whether the process `pid` runs (a zombie has ended)."""
    # Reap it first if it is our own exited child, or it would linger as a zombie "alive".
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie nobody reaps (a container without a real init) still answers kill(0): dead.
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether the process has exited and only waits to be reaped (state Z or X in /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return Path("/proc/self").exists()
    except OSError:
        return False
    # The command name in parentheses may hold spaces; the state follows its last ")".
    state = stat.rpartition(")")[2].split()
    return bool(state) and state[0] in ("Z", "X")


def _cmdline(pid: int) -> list[str] | None:
    """The command line of a process ([] for an exited one), or None where /proc cannot tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return [] if Path("/proc/self").exists() else None
    except OSError:
        return None
    return raw.decode("utf-8", "replace").split("\0") if raw else []


# Folders this process holds (a flock conflicts with another descriptor of the same process).
_HELD: dict[Path, Any] = {}
HOLD_FILE = "in-use.lock"


def holder_of(root: Path) -> str | None:
    """Who else holds the folder (`a demo (pid 123)`), or None when nobody else does."""
    root = root.expanduser().resolve()
    path = root / HOLD_FILE
    if root in _HELD or not path.is_file():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def refuse_if_held(root: Path) -> None:
    """Raise StackInUse when another live process holds the folder."""
    holder = holder_of(root)
    if holder is not None:
        raise StackInUse(
            f"{holder} is using {root.expanduser().resolve()}: stop it first "
            "(Ctrl-C where it runs), or choose another folder or ports"
        )


@contextlib.contextmanager
def hold(root: Path, what: str) -> Iterator[None]:
    """Hold a stack's folder while this process uses it; StackInUse if another holds it.

    An exclusive flock: the kernel releases it when the holder exits in any way (killed, or a
    zombie never reaped), so a stale pid file can never block a new start.
    """
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    handle = (root / HOLD_FILE).open("a+")
    # A few tries: `holder_of` in another process takes a shared lock for an instant.
    for attempt in range(5):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt < 4:
                time.sleep(0.05)
                continue
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StackInUse(
                f"{holder} is using {root}: stop it first (Ctrl-C where it runs), "
                "or choose another folder or ports"
            ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{what} (pid {os.getpid()})\n")
    handle.flush()
    _HELD[root] = handle
    try:
        yield
    finally:
        del _HELD[root]
        handle.truncate(0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class LocalStack:
    """Kafka (KRaft, one node) and PostgreSQL as detached processes keeping data under root."""

    def __init__(
        self,
        root: Path | None = None,
        kafka_port: int = 9092,
        pg_port: int = 5432,
        *,
        controller_port: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.root = (root or default_root()).expanduser().resolve()
        self.kafka_port = kafka_port
        self.controller_port = controller_port or kafka_port + 1
        self.pg_port = pg_port
        self.timeout = timeout
        self._kafka: subprocess.Popen[bytes] | None = None

    # Layout under root.
    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_log(self) -> Path:
        return self.kafka_dir / "kafka.log"

    @property
    def kafka_pidfile(self) -> Path:
        return self.kafka_dir / "kafka.pid"

    @property
    def kafka_properties(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def kafka_credentials(self) -> Path:
        return self.kafka_dir / "credentials.json"

    def kafka_passwords(self) -> dict[str, str]:
        """The broker's SCRAM passwords (user -> password); empty before the first `up`."""
        try:
            saved = json.loads(self.kafka_credentials.read_text())
        except (OSError, ValueError):
            return {}
        return {str(user): str(password) for user, password in saved.items()}

    @property
    def pg_dir(self) -> Path:
        return self.root / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_log(self) -> Path:
        return self.pg_dir / "postgres.log"

    @property
    def info(self) -> StackInfo:
        return StackInfo(
            kafka_bootstrap=f"127.0.0.1:{self.kafka_port}",
            admin_dsn=f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres",
            root=self.root,
            kafka_passwords=self.kafka_passwords(),
        )

    def up(self, *, topic_prefix: str = "twoway.") -> StackInfo:
        """Start whatever is not running yet and wait until both answer; idempotent.

        Each service's principal is then granted its ACLs for the topics under `topic_prefix`.
        """
        deadline = time.monotonic() + self.timeout
        refuse_if_held(self.root)
        with self._locked():
            # PostgreSQL is set up while the broker boots: the JVM start is the slow part.
            kafka = self._kafka_start()
            # So that `status`, `env` and `down` find the ports without being told again;
            # as soon as the broker starts, so they find a stack still starting too.
            saved = {"kafka_port": self.kafka_port, "pg_port": self.pg_port}
            (self.root / "stack.json").write_text(json.dumps(saved) + "\n")
            self._postgres_up(deadline)
            self._wait_kafka(deadline, kafka)
            self._grant_acls(topic_prefix)
        return self.info

    def down(self) -> None:
        """Stop both, gracefully first; data stays under root for the next `up`."""
        problems: list[str] = []
        refuse_if_held(self.root)
        with self._locked():
            for stop in (self._kafka_down, self._postgres_down):
                try:
                    stop()
                except StackError as exc:
                    problems.append(str(exc))
        if problems:
            raise StackError("\n".join(problems))

    def kill_kafka(self) -> None:
        """SIGKILL the broker, as a crash would (fault tests); `up()` starts it again."""
        with self._locked():
            pid = self._kafka_pid()
            if pid is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise StackError(f"Kafka (pid {pid}) did not stop after SIGKILL")
            self._kafka = None

    def stop_postgres(self) -> None:
        """`pg_ctl stop -m fast`: clients are disconnected (fault tests); `up()` restarts it."""
        with self._locked():
            self._postgres_down()

    def status(self) -> StackStatus:
        """Whether Kafka and PostgreSQL are running (not whether they answer yet)."""
        pid = self._kafka_pid()
        return StackStatus(
            kafka_running=pid is not None,
            kafka_pid=pid,
            postgres_running=self._postgres_running(),
            info=self.info,
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Two `up`s on one folder at once (two test sessions, say) take turns.
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # Kafka.
    def _kafka_pid(self) -> int | None:
        """The pid of this stack's running broker, or None."""
        try:
            pid = int(self.kafka_pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if not process_alive(pid):
            return None
        cmdline = _cmdline(pid)
        # After a reboot the pid may belong to something else: only trust our own command.
        if cmdline is not None and (
            KAFKA_MAIN not in cmdline or str(self.kafka_properties) not in cmdline
        ):
            return None
        return pid

    def _kafka_start(self) -> subprocess.Popen[bytes] | None:
        """Start the broker unless it runs already; the new process, or None."""
        running = self._kafka_pid()
        if running is not None:
            configured = self.kafka_properties.read_text()
            if f"SASL_PLAINTEXT://127.0.0.1:{self.kafka_port}," not in configured:
                raise StackError(
                    f"Kafka in {self.root} already runs on other ports (pid {running}); "
                    "run `twoway-stack down` with its --dir first, or use that port."
                )
            return None
        lib = ensure_kafka_jars()
        java = require_tool("java", "to run the local Kafka broker", "default-jre-headless")
        for port, what in ((self.kafka_port, "Kafka"), (self.controller_port, "KRaft controller")):
            if port_answers(port):
                raise StackError(
                    f"port {port} for the {what} is already in use by another program: stop "
                    "it or choose another --kafka-port (the controller uses the next port)."
                )
        data = self.kafka_dir / "data"
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        passwords = self.kafka_passwords()
        if not passwords and (data / "meta.properties").is_file():
            # Formatted before the broker required SASL: its users cannot be added offline.
            logging.getLogger(__name__).info(
                "Kafka's data in %s has no SCRAM users; formatting it again", data
            )
            shutil.rmtree(data)
        if not (data / "meta.properties").is_file():
            passwords = new_kafka_passwords()
        # Private: it holds the passwords.
        _write_private(
            self.kafka_properties,
            server_properties(
                data_dir=data,
                kafka_port=self.kafka_port,
                controller_port=self.controller_port,
                passwords=passwords,
            ),
        )
        classpath = f"{lib}{os.sep}*"
        if not (data / "meta.properties").is_file():
            _write_private(self.kafka_credentials, json.dumps(passwords, indent=2) + "\n")
            scram = [
                f"--add-scram={KAFKA_MECHANISM}=[name={user},password={password}]"
                for user, password in passwords.items()
                if user != _CONTROLLER_USER
            ]
            # A folder without meta.properties is an interrupted format: start it over.
            shutil.rmtree(data, ignore_errors=True)
            self._format_kafka_storage(java, classpath, scram)
        with self.kafka_log.open("ab") as log:
            self._kafka = subprocess.Popen(
                [java, *KAFKA_JAVA_OPTS, "-cp", classpath, KAFKA_MAIN, str(self.kafka_properties)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.kafka_dir,
                # Its own session, so a Ctrl-C meant for the caller does not stop the broker.
                start_new_session=True,
            )
        self.kafka_pidfile.write_text(f"{self._kafka.pid}\n")
        return self._kafka

    def _format_kafka_storage(self, java: str, classpath: str, scram: Sequence[str] = ()) -> None:
        """Write a new cluster id into the broker's empty data folder (kafka-storage format)."""
        formatted = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                # One argument with "=": an id may start with "-" (argparse would
                # read a separate "-abc..." as an option).
                f"--cluster-id={new_cluster_id()}",
                "-c",
                str(self.kafka_properties),
                *scram,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if formatted.returncode != 0:
            raise failure(
                f"formatting Kafka's storage in {self.kafka_dir / 'data'} failed "
                f"(exit {formatted.returncode})",
                self.kafka_dir / "format.log",
                formatted.stdout + formatted.stderr,
            )

    def _wait_kafka(self, deadline: float, process: subprocess.Popen[bytes] | None) -> None:
        bootstrap = self.info.kafka_bootstrap
        options = self.info.kafka_client_options()
        while True:
            if process is not None and process.poll() is not None:
                raise failure(
                    f"Kafka exited with code {process.returncode} while starting", self.kafka_log
                )
            if port_answers(self.kafka_port) and _run_in_fresh_loop(kafka_answers(options)):
                return
            if time.monotonic() > deadline:
                raise failure(
                    f"Kafka did not answer on {bootstrap} within {self.timeout:.0f} s",
                    self.kafka_log,
                )
            time.sleep(_POLL)

    def _grant_acls(self, topic_prefix: str) -> None:
        from twoway_shared.contract.access import all_acls
        from twoway_shared.platform.kafka_acls import grant

        options = self.info.kafka_client_options()
        _run_in_fresh_loop(grant(options, all_acls(topic_prefix)))

    def _kafka_down(self) -> None:
        pid = self._kafka_pid()
        if pid is None:
            self.kafka_pidfile.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise StackError(f"Kafka (pid {pid}) did not stop, even after SIGKILL")
        self.kafka_pidfile.unlink(missing_ok=True)
        self._kafka = None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._kafka is not None and self._kafka.pid == pid:
                try:
                    self._kafka.wait(_POLL)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not process_alive(pid):
                return True
            time.sleep(_POLL)
        return False

    # PostgreSQL.
    def _as_postgres(self, command: Sequence[str]) -> list[str]:
        # initdb refuses to run as root, and the server must own its data folder.
        if os.geteuid() != 0:
            return list(command)
        runuser = shutil.which("runuser")
        if runuser is None:
            raise StackError("running as root needs `runuser` (util-linux) to start PostgreSQL")
        return [runuser, "-u", "postgres", "--", *command]

    def _pg(
        self, program: str, *args: str, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = self._as_postgres([str(postgres_bindir() / program), *args])
        try:
            return subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=False,
                cwd=self.pg_dir,
                timeout=timeout,
                # pg_ctl's server must not share our session (see the Kafka start).
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise failure(f"{program} did not finish within {timeout:.0f} s", self.pg_log) from exc

    def _prepare_pg_dir(self) -> None:
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        try:
            shutil.chown(self.pg_dir, user="postgres", group="postgres")
        except LookupError as exc:
            raise StackError(
                "running as root needs the system user `postgres` (it comes with PostgreSQL's "
                "packages) to own the database files"
            ) from exc
        reachable = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-w", str(self.pg_dir)], check=False
        )
        if reachable.returncode != 0:
            raise StackError(
                f"the user `postgres` cannot reach {self.pg_dir}: a parent folder is not "
                "searchable by other users; choose --dir in a world-searchable place (/tmp)."
            )

    def _socket_dir(self) -> str:
        folder = self.pg_dir / "run"
        # Unix socket paths are limited to about 107 bytes; beyond that use TCP alone.
        if len(str(folder / f".s.PGSQL.{self.pg_port}")) > 100:
            return ""
        return str(folder)

    def _postgres_running(self) -> bool:
        if not (self.pg_data / "PG_VERSION").is_file():
            return False
        return self._pg("pg_ctl", "status", "-D", str(self.pg_data), timeout=30).returncode == 0

    def _postgres_port(self) -> int | None:
        try:
            # The fourth line of postmaster.pid is the port it listens on.
            return int((self.pg_data / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, ValueError, IndexError):
            return None

    def _postgres_up(self, deadline: float) -> None:
        self._prepare_pg_dir()
        if not (self.pg_data / "PG_VERSION").is_file():
            shutil.rmtree(self.pg_data, ignore_errors=True)
            created = self._pg(
                "initdb",
                "-D",
                str(self.pg_data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
                timeout=max(1.0, deadline - time.monotonic()),
            )
            if created.returncode != 0:
                raise failure(
                    f"initdb failed in {self.pg_data} (exit {created.returncode})",
                    self.pg_dir / "initdb.log",
                    created.stdout + created.stderr,
                )
        if self._postgres_running():
            port = self._postgres_port()
            if port is not None and port != self.pg_port:
                raise StackError(
                    f"PostgreSQL in {self.root} already runs on port {port}: run "
                    "`twoway-stack down` with its --dir first, or use that port."
                )
        else:
            if port_answers(self.pg_port):
                raise StackError(
                    f"port {self.pg_port} is already in use by another program: stop it or "
                    "choose another --pg-port."
                )
            socket_dir = self._socket_dir()
            if socket_dir:
                Path(socket_dir).mkdir(exist_ok=True)
                if os.geteuid() == 0:
                    shutil.chown(socket_dir, user="postgres", group="postgres")
            options = [f"-p {self.pg_port}", f"-k {shlex.quote(socket_dir)}"]
            options += [f"-c {setting}" for setting in PG_SETTINGS]
            remaining = max(1, int(deadline - time.monotonic()))
            started = self._pg(
                "pg_ctl",
                "-D",
                str(self.pg_data),
                "-l",
                str(self.pg_log),
                "-o",
                " ".join(options),
                "-w",
                "-t",
                str(remaining),
                "start",
                timeout=remaining + 10,
            )
            if started.returncode != 0:
                raise failure(f"PostgreSQL did not start (exit {started.returncode})", self.pg_log)
        self._wait_postgres(deadline)

    def _wait_postgres(self, deadline: float) -> None:
        bindir = postgres_bindir()
        ready = str(bindir / "pg_isready") if (bindir / "pg_isready").is_file() else "pg_isready"
        command = [ready, "-q", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres"]
        command += ["-d", "postgres", "-t", "2"]
        while True:
            if subprocess.run(command, check=False, capture_output=True).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise failure(
                    f"PostgreSQL did not answer on 127.0.0.1:{self.pg_port} within "
                    f"{self.timeout:.0f} s",
                    self.pg_log,
                )
            time.sleep(_POLL)

    def _postgres_down(self) -> None:
        if not self._postgres_running():
            return
        stopped = self._pg(
            "pg_ctl",
            "-D",
            str(self.pg_data),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(STOP_TIMEOUT)),
            "stop",
            timeout=STOP_TIMEOUT + 10,
        )
        if stopped.returncode != 0:
            raise failure(f"PostgreSQL did not stop (exit {stopped.returncode})", self.pg_log)
