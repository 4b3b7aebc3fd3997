"""The twoway-progress command: `migrate` and `run`."""

from __future__ import annotations

import sys

from twoway_shared.platform.cli import service_main

from twoway_progress.app import create_spec
from twoway_progress.config import ProgressSettings


def main() -> None:
    sys.exit(service_main(create_spec(), ProgressSettings))
