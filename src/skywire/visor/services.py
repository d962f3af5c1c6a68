"""Clients of the network services a visor uses, built from its configuration."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from skywire.transport.manager import Registry
from skywire.visor.config import VisorConfig


@contextlib.asynccontextmanager
async def service_registry(cfg: VisorConfig) -> AsyncIterator[Registry | None]:
    """The transport registry (transport discovery) of ``cfg``, or None when none is set."""
    if not cfg.transport.discovery:
        yield None
        return
    from skywire.services.tpd.client import TPDRegistry

    async with TPDRegistry(cfg.transport.discovery, cfg.sk) as registry:
        yield registry
