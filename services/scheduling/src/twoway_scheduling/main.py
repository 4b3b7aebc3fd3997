"""The twoway-scheduling command: `migrate` and `run`."""

from __future__ import annotations

import sys

from twoway_shared.platform.cli import service_main

from twoway_scheduling.app import create_spec
from twoway_scheduling.config import SchedulingSettings


def main() -> None:
    sys.exit(service_main(create_spec(), SchedulingSettings))
