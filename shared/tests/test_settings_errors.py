"""Settings errors name the environment variable a person sets, never the Python field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from twoway_dev.toolkit import cli
from twoway_shared.platform.settings import Settings, describe_settings_error


def test_each_problem_names_its_variable_and_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWOWAY_TOPIC_PARTITIONS", "many")
    monkeypatch.setenv("TWOWAY_LOG_LEVEL", "LOUD")

    with pytest.raises(ValidationError) as raised:
        Settings()
    text = describe_settings_error(raised.value)

    assert text.startswith("TWOWAY_TOPIC_PARTITIONS: input should be a valid integer")
    assert '(got "many")' in text
    assert "TWOWAY_LOG_LEVEL: input should be 'DEBUG'" in text
    assert "topic_partitions" not in text


class _WithSecret(Settings):
    smtp_password: int = 0  # an int only so that a value can be invalid here


def test_a_secret_is_never_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWOWAY_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("TWOWAY_HTTP_PORT", "99999")

    with pytest.raises(ValidationError) as raised:
        _WithSecret()
    text = describe_settings_error(raised.value)

    assert "TWOWAY_SMTP_PASSWORD: input should be a valid integer" in text
    assert "hunter2" not in text
    assert 'TWOWAY_HTTP_PORT: input should be less than or equal to 65535 (got "99999")' in text


def test_the_toolkit_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TWOWAY_TOPIC_PARTITIONS", "many")

    assert cli.main(["dlq"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "TWOWAY_TOPIC_PARTITIONS: input should be a valid integer" in err
    assert "field topic_partitions" not in err
