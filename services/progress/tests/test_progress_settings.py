"""The progress service reads its own TWOWAY_* settings."""

from __future__ import annotations

import pytest
from twoway_progress.config import ProgressSettings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWOWAY_HTTP_PORT", "TWOWAY_XAPI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = ProgressSettings()
    assert settings.http_port == 8084
    assert settings.xapi_endpoint is None
    assert settings.consumer_group("progress") == "twoway.progress"


def test_xapi_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWOWAY_XAPI_ENDPOINT", "http://lrs.example/xapi/")
    monkeypatch.setenv("TWOWAY_XAPI_PASSWORD", "s3cret")
    settings = ProgressSettings()
    assert settings.xapi_endpoint == "http://lrs.example/xapi/"
    assert settings.xapi_password is not None
    assert settings.xapi_password.get_secret_value() == "s3cret"
