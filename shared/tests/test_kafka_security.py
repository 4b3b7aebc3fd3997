"""Kafka least privilege on the real broker: each service principal gets only its ACLs;
topics that carry personal data are created with bounded retention."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from twoway_dev.testing.infra import Infra
from twoway_dev.toolkit.cli import main
from twoway_shared.contract import Topic, access
from twoway_shared.contract.topics import TOPIC_CONFIGS, topic_name
from twoway_shared.platform.kafka import client_options, ensure_topics
from twoway_shared.platform.settings import Settings


def test_acl_command_prints_the_one_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acl", "--prefix", "prod.", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == access.as_json(access.all_acls("prod."))
    assert {
        "principal": "User:matching",
        "resource_type": "topic",
        "pattern": "literal",
        "name": "prod.pairs.v1",
        "operation": "Write",
        "permission": "allow",
    } in printed

    assert main(["acl", "--prefix", "prod."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        'kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config admin.properties --add '
        "--allow-principal User:scheduling --operation Read --group prod.scheduling "
        "--resource-pattern-type literal"
    ) in lines
    # One line per principal and resource: every ACL of the list appears in exactly one.
    assert len(lines) == len(
        {(a.principal, a.resource_type, a.name) for a in access.all_acls("prod.")}
    )


@pytest.fixture
def secured(infra: Infra) -> Infra:
    if not infra.kafka_secured:
        pytest.skip("the broker does not enforce ACLs (external PLAINTEXT endpoints)")
    return infra


def as_service(infra: Infra, service: str, prefix: str) -> Settings:
    return Settings(**infra.kafka_settings(service), topic_prefix=prefix, topic_partitions=1)


@pytest.mark.infra
async def test_a_service_cannot_write_another_services_output_topic(
    secured: Infra, topic_prefix: str
) -> None:
    admin = Settings(**secured.kafka_settings("admin"), topic_prefix=topic_prefix)
    own, other = admin.topic(Topic.PAIRS), admin.topic(Topic.NOTIFICATIONS)
    await ensure_topics(admin, [own, other])
    producer = AIOKafkaProducer(**client_options(as_service(secured, "matching", topic_prefix)))
    await producer.start()
    try:
        await producer.send_and_wait(own, b"{}", key=b"k")  # its own output: allowed
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(other, b"{}", key=b"k")
    finally:
        await producer.stop()


async def first_record(consumer: AIOKafkaConsumer) -> object:
    try:
        await consumer.start()
        return await consumer.getone()
    finally:
        await consumer.stop()


@pytest.mark.infra
async def test_a_service_cannot_use_another_services_consumer_group(
    secured: Infra, topic_prefix: str
) -> None:
    settings = as_service(secured, "matching", topic_prefix)
    admin = Settings(**secured.kafka_settings("admin"), topic_prefix=topic_prefix)
    enrolments = admin.topic(Topic.ENROLMENTS)
    await ensure_topics(admin, [enrolments])
    stolen = AIOKafkaConsumer(
        enrolments, **client_options(settings), group_id=admin.consumer_group("scheduling")
    )
    with pytest.raises(GroupAuthorizationFailedError):
        await asyncio.wait_for(first_record(stolen), 30)
    # Nor read a topic it does not consume (feedback goes to progress only).
    feedback = admin.topic(Topic.FEEDBACK)
    await ensure_topics(admin, [feedback])
    snooper = AIOKafkaConsumer(feedback, **client_options(settings), group_id=None)
    with pytest.raises(TopicAuthorizationFailedError):
        await asyncio.wait_for(first_record(snooper), 30)


@pytest.mark.infra
async def test_topics_with_personal_data_are_created_with_bounded_retention(
    infra: Infra, topic_prefix: str
) -> None:
    settings = Settings(**infra.kafka_settings("admin"), topic_prefix=topic_prefix)
    names = {t: topic_name(topic_prefix, t) for t in (Topic.ENROLMENTS, Topic.DEADLETTER)}
    await ensure_topics(settings, [*names.values(), settings.topic(Topic.PAIRS)])
    admin = AIOKafkaAdminClient(**infra.kafka_admin_options())
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names.values()]
        )
    finally:
        await admin.close()
    found = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in described
        for resource in response.resources
    }
    for topic, name in names.items():
        assert TOPIC_CONFIGS[topic].items() <= found[name].items()
    assert found[names[Topic.DEADLETTER]]["retention.ms"] == str(14 * 24 * 3600 * 1000)
    assert found[names[Topic.ENROLMENTS]]["cleanup.policy"] == "compact"
