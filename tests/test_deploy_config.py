"""The deployment files name only real settings and the real console scripts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from twoway_matching.config import MatchingServiceSettings
from twoway_notifications.config import NotificationsSettings
from twoway_progress.config import ProgressSettings
from twoway_scheduling.config import SchedulingSettings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (MatchingServiceSettings, SchedulingSettings, NotificationsSettings, ProgressSettings)
KNOWN = {f"TWOWAY_{name.upper()}" for cls in SETTINGS for name in cls.model_fields}
SCRIPTS = {"twoway-matching", "twoway-scheduling", "twoway-notifications", "twoway-progress"}


def variables(text: str) -> set[str]:
    return set(re.findall(r"\bTWOWAY_[A-Z_]+\b", text)) - {"TWOWAY_IMAGE", "TWOWAY_DB_PASSWORD"}


def test_kubernetes_manifests_use_known_settings_and_commands() -> None:
    """The plain manifest (the chart rendered, tests/test_helm_chart.py checks it is fresh)."""
    text = (ROOT / "deploy" / "kubernetes" / "twoway.yaml").read_text()
    assert variables(text) <= KNOWN
    documents: list[dict[str, Any]] = [d for d in yaml.safe_load_all(text) if d]
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    migrations = {
        j["spec"]["template"]["spec"]["containers"][0]["command"][0]: j
        for j in documents
        if j["kind"] == "Job"
    }
    assert len(deployments) == 4
    assert set(migrations) == SCRIPTS
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"][0] in SCRIPTS
        assert container["command"][1:] == ["run"]
        (migrate,) = migrations[container["command"][0]]["spec"]["template"]["spec"]["containers"]
        assert migrate["command"] == [container["command"][0], "migrate"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert not container["image"].endswith(":latest")


def test_compose_uses_known_settings() -> None:
    text = (ROOT / "deploy" / "compose.yaml").read_text()
    assert variables(text) <= KNOWN
    services = yaml.safe_load(text)["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4")
    commands = {s["command"][-1].split(" ")[-2] for n, s in services.items() if "twoway-" in n}
    assert commands == SCRIPTS


def test_every_contract_variable_is_a_setting() -> None:
    contract = (ROOT / "docs" / "contract.md").read_text()
    named = variables(contract)
    assert "TWOWAY_KAFKA_BOOTSTRAP_SERVERS" in named
    assert named <= KNOWN
    # Rows such as "TWOWAY_SMTP_USERNAME / _PASSWORD / _STARTTLS" name the rest by suffix.
    for suffix in re.findall(r"`(_[A-Z_]+)`", contract):
        assert any(v.endswith(suffix) for v in KNOWN), suffix
