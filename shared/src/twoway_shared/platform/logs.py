"""JSON logs on stdout, one object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from twoway_shared.platform.tracing import current_ids

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record and its `extra` fields as one JSON object."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = current_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class DropMessages(logging.Filter):
    """Drops records whose message starts with one of the given texts (each kept with why)."""

    def __init__(self, *starts: str) -> None:
        super().__init__()
        self._starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self._starts)


# FastStream warns at every subscriber start that it does not create topics in consumer-only
# mode, and FastStream has no switch for it; the runtime creates every topic before it
# subscribes (platform.kafka.ensure_topics), so the warning would only mislead.
FASTSTREAM_NOISE = DropMessages("Topic creation is skipped in consumer-only mode")


def configure_logging(service: str, level: str) -> None:
    """Send every log record of the process to stdout as JSON."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every rebalance and reconnect at INFO; keep its warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
