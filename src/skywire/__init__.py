"""Skywire in Python: a PK-addressed overlay network, wire-compatible with the Go implementation."""

__version__ = "0.1.0"
