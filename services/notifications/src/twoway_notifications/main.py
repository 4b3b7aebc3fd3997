"""The twoway-notifications command: `migrate` and `run`."""

from __future__ import annotations

import sys

from twoway_shared.platform.cli import service_main

from twoway_notifications.app import create_spec
from twoway_notifications.config import NotificationsSettings


def main() -> None:
    sys.exit(service_main(create_spec(), NotificationsSettings))
