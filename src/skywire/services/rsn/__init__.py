"""Route setup node: ``SetupRPCGateway.DialRouteGroup`` on dmsg port 36, ``/stats`` on port 80."""

from __future__ import annotations

from skywire.services.rsn.node import SetupFailure, SetupNode
from skywire.services.rsn.pool import HopPool
from skywire.services.rsn.stats import FailureClass, SetupStats

__all__ = ["FailureClass", "HopPool", "SetupFailure", "SetupNode", "SetupStats"]
