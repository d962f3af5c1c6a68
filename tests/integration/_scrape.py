"""Reading a ``/metrics`` answer as Prometheus would: parsed by ``prometheus_client``'s parser,
samples looked up by name and labels, differences between two scrapes."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from skywire.debug.metrics import CONTENT_TYPE

_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    families: dict[str, str]  # name -> type

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        families: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            families[family.name] = family.type
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return cls(samples, families)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; 0 when that label set has none yet (the family must exist)."""
        assert any(name == f + sfx for f in self.families for sfx in _SUFFIXES), (
            f"no metric family for {name}: {sorted(self.families)}"
        )
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def delta(self, before: Scrape, name: str, **labels: str) -> float:
        return self.value(name, **labels) - before.value(name, **labels)


async def scrape(http: aiohttp.ClientSession, url: str) -> Scrape:
    """GET ``url`` (a ``/metrics`` address) and parse it."""
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        return Scrape.parse(await resp.text())


def parse_text(text: str, content_type: str) -> Scrape:
    """Parse an answer fetched some other way (over dmsg)."""
    assert content_type == CONTENT_TYPE
    return Scrape.parse(text)
