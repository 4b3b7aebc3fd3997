"""The twoway-matching command: `migrate` and `run`."""

from __future__ import annotations

import sys

from twoway_shared.platform.cli import service_main

from twoway_matching.app import create_spec
from twoway_matching.config import MatchingServiceSettings


def main() -> None:
    sys.exit(service_main(create_spec(), MatchingServiceSettings))
