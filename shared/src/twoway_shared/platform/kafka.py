"""Kafka client set-up: security options, topic creation, the idempotent producer."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from faststream.kafka.security import parse_security
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from twoway_shared.contract.topics import TOPIC_CONFIGS, topic_of
from twoway_shared.platform.settings import Settings

log = logging.getLogger(__name__)


def security_of(settings: Settings) -> BaseSecurity | None:
    """The FastStream security object for the configured protocol (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        key_password = settings.kafka_ssl_key_password
        ssl_context = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            # A client certificate makes it mutual TLS; the broker may map it to the principal.
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            password=key_password.get_secret_value() if key_password else None,
        )
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    if settings.kafka_sasl_username is None or settings.kafka_sasl_password is None:
        raise ValueError(
            f"TWOWAY_KAFKA_SECURITY_PROTOCOL={protocol} needs TWOWAY_KAFKA_SASL_USERNAME "
            "and TWOWAY_KAFKA_SASL_PASSWORD"
        )
    use_ssl = protocol == "SASL_SSL"
    credentials = (settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value())
    mechanisms: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    cls = mechanisms[settings.kafka_sasl_mechanism]
    return cls(*credentials, ssl_context=ssl_context, use_ssl=use_ssl)


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by every aiokafka client of a service."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        **parse_security(security_of(settings)),
    }


async def ensure_topics(settings: Settings, names: list[str]) -> None:
    """Create the topics a service uses when they are missing; existing ones stay as they are."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = sorted(set(names) - existing)
        if not missing:
            return
        replication = settings.topic_replication_factor
        if replication is None:
            cluster = await admin.describe_cluster()
            replication = max(1, min(3, len(cluster["brokers"])))
        new = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=replication,
                topic_configs=_topic_configs(settings.topic_prefix, name),
            )
            for name in missing
        ]
        try:
            response = await admin.create_topics(new)
        except TopicAlreadyExistsError:
            return  # another instance won the race
        for topic, code, *_ in response.topic_errors:
            # 36 = TOPIC_ALREADY_EXISTS: another instance created it first.
            if code not in (0, 36):
                raise RuntimeError(f"could not create topic {topic}: Kafka error code {code}")
        log.info("created topics", extra={"topics": missing})
    finally:
        await admin.close()


async def wait_for_group_coordinator(
    settings: Settings, group_id: str, timeout: float = 60.0
) -> bool:
    """Wait until the group's coordinator answers for the group; False after `timeout` s.

    On a new cluster the first lookup makes the broker create its offsets topic: it answers
    COORDINATOR_NOT_AVAILABLE, then COORDINATOR_LOAD_IN_PROGRESS until the group's partition
    is loaded, and aiokafka's consumer logs each such answer as an ERROR or WARNING. Asking
    here first, quietly, keeps the start-up log to real problems.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                [response] = await admin.describe_consumer_groups([group_id])
                error_code = response.groups[0][0]
            except KafkaError as exc:
                error_code = getattr(exc, "errno", -1)
            if error_code == 0:
                return True
            if time.monotonic() > deadline:
                log.warning(
                    "the consumer group's coordinator is not ready; starting anyway",
                    extra={"group": group_id, "error_code": error_code},
                )
                return False
            log.debug("waiting for the group coordinator", extra={"group": group_id})
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def _topic_configs(prefix: str, name: str) -> dict[str, str]:
    topic = topic_of(prefix, name)
    return dict(TOPIC_CONFIGS.get(topic, {})) if topic is not None else {}


PRODUCER_BATCH_BYTES = 256 * 1024
"""Records a producer gathers per partition before a batch is full (before compression)."""
MAX_REQUEST_BYTES = 2 * 1024 * 1024
"""The largest record a producer sends (the chart's topics take as much: `max.message.bytes`)."""


def idempotent_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """A producer that never duplicates or reorders a record on retry (acks=all, idempotence)."""
    return AIOKafkaProducer(
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        # Compressed batches keep the copy of a large record (dead letters) under the broker's
        # 1 MiB limit, and cost little on small JSON events.
        compression_type="gzip",
        # A relay step (up to 1,000 events of about a kilobyte) fills a few batches a partition
        # rather than dozens of aiokafka's default 16 KiB: a quarter less CPU per record.
        max_batch_size=PRODUCER_BATCH_BYTES,
        max_request_size=MAX_REQUEST_BYTES,
        **client_options(settings),
    )
