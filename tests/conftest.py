"""Shared test helpers: golden vectors and leak checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors"


def load_vectors(name: str) -> dict[str, Any]:
    """Load one golden vector file (copied from the upstream Go implementation's output)."""
    with open(VECTORS / f"{name}.json") as f:
        data: dict[str, Any] = json.load(f)
    return data
