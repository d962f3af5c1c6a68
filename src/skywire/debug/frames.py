"""How the debug dumps name code: ``function (file:line)`` with the file relative to ``sys.path``.

Shared by the task dump and the profiler so that a function reads the same in both.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from types import CodeType

__all__ = ["code_label", "short_path"]


@lru_cache(maxsize=4096)
def short_path(filename: str) -> str:
    """``filename`` relative to the longest ``sys.path`` entry holding it (so
    ``skywire/dmsg/server.py``, ``asyncio/tasks.py``), else unchanged."""
    best = ""
    for entry in sys.path:
        if not entry:
            continue
        root = os.path.join(os.path.abspath(entry), "")
        if filename.startswith(root) and len(root) > len(best):
            best = root
    return filename[len(best) :] if best else filename


def code_label(code: CodeType, line: int | None = None) -> str:
    """``qualified.name (short/path.py:line)``; ``line`` defaults to where the code begins."""
    where = code.co_firstlineno if line is None else line
    return f"{code.co_qualname} ({short_path(code.co_filename)}:{where})"
