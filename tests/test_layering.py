"""The runtime package stands without the development package, and nothing imports in a loop.

Layers (docs/architecture.md): `twoway_shared` (contract + platform) <- each service <-
`twoway_dev` (local stack, demo, toolkit, test support). The service image installs the
first two only; this test runs the image's own install line (from the Dockerfile) and looks
at what it installed.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("matching", "scheduling", "notifications", "progress")
SOURCES = {
    "twoway_shared": ROOT / "shared" / "src",
    "twoway_dev": ROOT / "dev" / "src",
    **{f"twoway_{name}": ROOT / "services" / name / "src" for name in SERVICES},
}


def modules() -> dict[str, Path]:
    found = {}
    for package, src in SOURCES.items():
        for path in (src / package).rglob("*.py"):
            name = ".".join(path.relative_to(src).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def imported(path: Path) -> Iterator[str]:
    """Every absolute module name `path` imports, at any depth (lazy imports count too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def project_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for name in imported(path):
            target = project_module(name)
            if target is not None and target != module:
                edges[module].add(target)
    return edges


def top(module: str) -> str:
    return module.split(".")[0]


def test_the_runtime_package_imports_no_service_and_nothing_of_the_dev_package() -> None:
    wrong = {
        (module, target)
        for module, targets in graph().items()
        if top(module) == "twoway_shared"
        for target in targets
        if top(target) != "twoway_shared"
    }
    assert not wrong


def test_a_service_imports_only_itself_and_the_runtime_package() -> None:
    wrong = {
        (module, target)
        for module, targets in graph().items()
        if top(module) not in ("twoway_shared", "twoway_dev")
        for target in targets
        if top(target) not in (top(module), "twoway_shared")
    }
    assert not wrong


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(MODULES):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_in_a_loop() -> None:
    assert cycles(graph()) == []


def test_no_subpackage_imports_in_a_loop() -> None:
    """`twoway_dev.testing` builds on `twoway_dev.localstack`, never the other way, and so on."""

    def group(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph().items():
        edges[group(module)] |= {group(t) for t in targets if group(t) != group(module)}
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_loop() -> None:
    assert cycles({"twoway_shared": {"twoway_dev"}, "twoway_dev": {"twoway_shared"}}) == [
        ["twoway_dev", "twoway_shared"]
    ]


def install_commands() -> list[list[str]]:
    """The Dockerfile's `uv sync` lines, continuation lines joined: the service image's first,
    then the toolbox's."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.findall(r"^RUN (uv sync [^\n]+)$", text, re.MULTILINE)
    assert len(found) == 2, "the Dockerfile installs the services, then the toolbox, with uv"
    return [line.split() for line in found]


def uv() -> list[str]:
    """uv as `make install` provides it (`python3 -m uv`), or one on the PATH."""
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def build_context(tmp_path: Path) -> Path:
    """A copy of what the Dockerfile copies into the image."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (?!--from)(\S+(?: \S+)*) \S+$", dockerfile, re.MULTILINE)
    for sources in copied:
        for source in sources.split():
            target = tmp_path / source
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source,
                    target,
                    ignore=shutil.ignore_patterns("__pycache__", "tests"),
                    dirs_exist_ok=True,
                )
            elif not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
    return tmp_path


def install(context: Path, command: list[str]) -> Path:
    venv = context / ".venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(uv() + command[1:], cwd=context, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return venv


@pytest.mark.timeout(600)
def test_the_service_image_installs_the_runtime_only(tmp_path: Path) -> None:
    """The image's install line, run on a copy of what the Dockerfile copies."""
    venv = install(build_context(tmp_path), install_commands()[0])
    scripts = {path.name for path in (venv / "bin").iterdir() if path.name.startswith("twoway")}
    assert scripts == {f"twoway-{name}" for name in SERVICES} | {"twoway-db-setup"}
    python = str(venv / "bin" / "python")
    probe = (
        "import importlib.util as u, json; "
        "print(json.dumps({m: u.find_spec(m) is not None for m in "
        "['twoway_dev', 'rich', 'pytest', 'twoway_matching.app', 'twoway_scheduling.app', "
        "'twoway_notifications.app', 'twoway_progress.app']}))"
    )
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == (
        '{"twoway_dev": false, "rich": false, "pytest": false, "twoway_matching.app": true, '
        '"twoway_scheduling.app": true, "twoway_notifications.app": true, '
        '"twoway_progress.app": true}'
    )
    apps = "; ".join(f"import twoway_{name}.app" for name in SERVICES)
    subprocess.run([python, "-c", apps], check=True, capture_output=True)


@pytest.mark.timeout(600)
def test_the_toolbox_image_has_the_toolkit(tmp_path: Path) -> None:
    context = build_context(tmp_path)
    first, toolbox = install_commands()
    install(context, first)
    venv = install(context, toolbox)
    help_text = subprocess.run(
        [str(venv / "bin" / "twoway"), "dlq", "--help"], capture_output=True, text=True, check=True
    )
    assert "replay" in help_text.stdout
