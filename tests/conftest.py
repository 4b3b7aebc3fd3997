"""The cross-service tests' view of what a module's running stack (its `stack`) produces."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from twoway_dev.testing.kafka import TopicReader
from twoway_dev.testing.stack import PRODUCED, Stack, View


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def reader(stack: Stack) -> AsyncIterator[TopicReader]:
    """Everything the services produce, read from the beginning."""
    async with TopicReader(stack.kafka, [stack.topic(t) for t in PRODUCED]) as found:
        yield found


@pytest.fixture
def view(stack: Stack, reader: TopicReader) -> View:
    return View(stack, reader)
