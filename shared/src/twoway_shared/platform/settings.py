"""Service settings read from the TWOWAY_* environment variables (CONTRACT.md section 7)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from twoway_shared.contract.topics import Topic, topic_name

_SECRET_WORDS = ("PASSWORD", "SECRET", "KEYS", "TOKEN")


def describe_settings_error(error: ValidationError, env_prefix: str = "TWOWAY_") -> str:
    """Each problem named by the environment variable that caused it, with the value given.

    `TWOWAY_TOPIC_PARTITIONS: input should be a valid integer (got "abc")`; values of
    secrets are never repeated.
    """
    problems = []
    for problem in error.errors(include_url=False):
        where = [str(part) for part in problem["loc"]]
        name = f"{env_prefix}{where[0].upper()}" if where else f"the {env_prefix}* settings"
        if where[1:]:
            name += f" ({'.'.join(where[1:])})"
        message = problem["msg"]
        message = message[0].lower() + message[1:] if message else message
        value = problem.get("input")
        secret = any(word in name for word in _SECRET_WORDS)
        shown = "" if secret or not isinstance(value, str | int | float) else f' (got "{value}")'
        problems.append(f"{name}: {message}{shown}")
    return "; ".join(problems)


class Settings(BaseSettings):
    """Everything a Twoway service reads from its environment; nothing else reads it."""

    model_config = SettingsConfigDict(env_prefix="TWOWAY_", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        "localhost:9092", description="Comma-separated Kafka bootstrap servers (host:port)."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to the brokers."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism for the SASL_* protocols."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle (PEM) for SSL and SASL_SSL.")
    kafka_ssl_certfile: str | None = Field(
        None, description="Client certificate chain (PEM) for mutual TLS with SSL and SASL_SSL."
    )
    kafka_ssl_keyfile: str | None = Field(
        None, description="Private key (PEM) of the client certificate; unset: in the certfile."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted client private key."
    )
    topic_prefix: str = Field("twoway.", description="Prefix of every topic name.")
    topic_partitions: int = Field(6, ge=1, le=10_000, description="Partitions of created topics.")
    topic_replication_factor: int | None = Field(
        None,
        ge=1,
        description="Replication factor of created topics; unset: 3, or fewer brokers if fewer.",
    )
    database_url: str = Field(
        "postgresql://localhost/twoway",
        description="PostgreSQL DSN of this service's runtime role (reads and writes rows only).",
    )
    database_migration_url: str | None = Field(
        None,
        description="PostgreSQL DSN of the schema owner role `migrate` uses; unset: database_url.",
    )
    http_port: int = Field(8080, ge=0, le=65535, description="Port of /healthz, /readyz, /metrics.")
    http_host: str = Field("0.0.0.0", description="Address the HTTP server binds.")
    oidc_issuer: str | None = Field(
        None, description="OpenID Connect issuer of read-API tokens; unset: the read API is closed."
    )
    oidc_audience: str = Field("twoway", description="The `aud` every read-API token must carry.")
    oidc_roles_claim: str = Field(
        "roles", description="Claim holding the roles; a dotted path is followed."
    )
    auth_disabled: bool = Field(
        False, description="Open the read API without tokens (local development only)."
    )
    portal_url: str = Field("http://localhost:8080", description="Base URL of links in messages.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Level of the JSON logs written to stdout."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="OTLP/HTTP collector base URL (the standard OpenTelemetry variable); "
        "unset: no traces are exported.",
    )

    def topic(self, topic: Topic) -> str:
        """The full name of a contract topic under this deployment's prefix."""
        return topic_name(self.topic_prefix, topic)

    def consumer_group(self, service: str) -> str:
        """The consumer group of a service, e.g. `twoway.scheduling`."""
        return f"{self.topic_prefix}{service}"


class CalendarSettings(Settings):
    """Settings of the services that hand out calendar feed links (scheduling, notifications)."""

    calendar_keys: SecretStr | None = Field(
        None,
        description="Comma-separated calendar feed token secrets; the first signs, all verify.",
    )
    calendar_base_url: str = Field(
        "http://localhost:8082", description="Public base URL of scheduling's calendar feeds."
    )
