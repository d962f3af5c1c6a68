"""Shared test helpers: golden vectors and leak checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"


def load_vectors(name: str) -> dict[str, Any]:
    """Load one golden vector file (copied from the upstream Go implementation's output)."""
    with open(VECTORS / f"{name}.json") as f:
        data: dict[str, Any] = json.load(f)
    return data


def backend_unavailable(name: str, reason: str) -> None:
    """Skip a backend test with the reason printed, or fail when CI demands every backend.

    ``SKYWIRE_REQUIRE_BACKENDS=1`` (set by ``.ci/run``) turns the skip into a failure, so CI
    always exercises the real engines.
    """
    import os

    import pytest

    message = f"{name} not reachable: {reason}"
    if os.environ.get("SKYWIRE_REQUIRE_BACKENDS") == "1":
        pytest.fail(f"{message} (SKYWIRE_REQUIRE_BACKENDS=1 forbids skipping)")
    pytest.skip(message)


@contextlib.asynccontextmanager
async def no_leaked_tasks() -> AsyncIterator[None]:
    """``async with no_leaked_tasks():`` fails if the body leaves a task behind (one that was
    not running when it started and still is when it ends)."""
    before = asyncio.all_tasks()
    yield
    leftover = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not leftover, "tasks left behind: " + ", ".join(
        sorted(f"{t.get_name()} ({t.get_coro()!r})" for t in leftover)
    )
