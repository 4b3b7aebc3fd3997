"""Run a service in the test process against the real broker and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from twoway_shared.platform.runtime import Runtime, ServiceSpec, run_migrations
from twoway_shared.platform.settings import Settings


class MovableClock:
    """Real time plus an offset a test can move forward (e.g. past an expiry)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by


MIGRATION_DSNS: dict[str, str] = {}
"""Runtime DSN -> the schema owner's DSN, filled by the fixtures that provision databases.

Settings without `database_migration_url` migrate with the owner found here, as `migrate`
would with TWOWAY_DATABASE_MIGRATION_URL; the runtime role itself may not change the schema.
"""


def with_migration_url(settings: Settings) -> Settings:
    """The settings, with the owner's DSN for `migrate` when the test did not give one."""
    owner = MIGRATION_DSNS.get(settings.database_url)
    if settings.database_migration_url is not None or owner is None:
        return settings
    return settings.model_copy(update={"database_migration_url": owner})


@asynccontextmanager
async def running_service(
    spec: ServiceSpec, settings: Settings, clock: MovableClock | None = None
) -> AsyncIterator[Runtime]:
    """Migrate, start, yield the runtime, then stop it cleanly."""
    await run_migrations(spec, with_migration_url(settings))
    runtime = Runtime(spec, settings, clock=clock or MovableClock())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
