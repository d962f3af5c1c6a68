"""The visor's own log file, ``<local_path>/log/skywire.log``, rotated by size.

A visor started by ``skywire visor`` writes every log line there as well as to stderr, so
that its log server can hand recent history to hypervisors and survey collectors
(``/visor.log``). When the file passes :data:`MAX_BYTES` it becomes ``skywire.log.1`` (the older
ones move up, :data:`BACKUPS` are kept) and a new file starts.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

__all__ = ["BACKUPS", "LOG_NAME", "MAX_BYTES", "LogFile", "log_path"]

LOG_NAME = "skywire.log"
MAX_BYTES = 10 << 20
BACKUPS = 3
LINE_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"


def log_path(local_path: str | Path) -> Path:
    return Path(local_path) / "log" / LOG_NAME


class LogFile:
    """The rotating handler on the root logger, from :meth:`open` until :meth:`close`."""

    def __init__(
        self,
        local_path: str | Path,
        *,
        max_bytes: int = MAX_BYTES,
        backups: int = BACKUPS,
        level: int = logging.DEBUG,
    ) -> None:
        self.path = log_path(local_path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.level = level
        self.handler: logging.handlers.RotatingFileHandler | None = None

    def open(self) -> None:
        if self.handler is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=self.max_bytes, backupCount=self.backups, encoding="utf-8"
        )
        handler.setLevel(self.level)
        handler.setFormatter(logging.Formatter(LINE_FORMAT))
        logging.getLogger().addHandler(handler)
        self.handler = handler

    def rotate(self) -> None:
        """Start a new file now (what passing ``max_bytes`` does)."""
        if self.handler is not None:
            self.handler.doRollover()

    def close(self) -> None:
        if self.handler is None:
            return
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()
        self.handler = None

    def files(self, *, rotated: bool) -> list[Path]:
        """The current file, preceded (oldest first) by the rotated ones when ``rotated``."""
        older = [self.path.with_name(f"{LOG_NAME}.{i}") for i in range(self.backups, 0, -1)]
        chosen = [p for p in older if p.is_file()] if rotated else []
        return [*chosen, self.path] if self.path.is_file() else chosen
