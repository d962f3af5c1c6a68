"""The service discovery on dmsg port 80, as ``skywire svc sd --sk`` serves it, over a real local
dmsg network: the API and ``/debug`` for the survey whitelist, and a public visor registering
over dmsg, where the address it registers from is its ``SW-PublicIP`` header (upstream's
``GetRemoteAddr``)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import pytest

from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.cli.svc_dmsgport import serve_app
from skywire.dmsg.client import Client
from skywire.dmsg.http import fetch
from skywire.services.dmsgport import DmsgPortConfig
from skywire.services.httpauth import auth_headers
from skywire.services.sd.api import ERR_VISOR_UNREACHABLE, make_app
from skywire.services.sd.entry import ServiceEntry, ServiceType, SWAddr
from skywire.services.sd.store.memory import MemoryStore
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from tests.conftest import no_leaked_tasks

pytestmark = pytest.mark.timeout(90)


@contextlib.contextmanager
def root_handlers_restored() -> Iterator[None]:
    """``/debug`` feeds the process log ring from the root logger: take that handler off again."""
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        yield
    finally:
        for added in set(root.handlers) - set(before):
            root.removeHandler(added)


async def call(
    client: Client,
    pk: PubKey,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    resp = await fetch(
        client.dial,
        f"dmsg://{pk.hex()}:80{path}",
        method=method,
        headers=headers,
        content=body or None,
    )
    return resp.status_code, resp.text


async def test_sd_serves_its_api_and_debug_on_dmsg_port_80() -> None:
    with root_handlers_restored():
        async with no_leaked_tasks(), LocalDmsgNetwork(servers=1) as net:
            friend, stranger = await net.client(), await net.client()
            config = DmsgPortConfig(
                SecKey.generate(),
                net.disc_url,
                frozenset({friend.pk}),
                backoff=net.client_backoff,
            )
            store = MemoryStore()
            app = make_app(store)
            async with store, serve_app(app, "127.0.0.1", 0, config) as (_server, port):
                assert port is not None
                await port.ready()
                status, text = await call(stranger, port.pk, "/health")
                assert status == 200 and json.loads(text)["service_name"] == "service-discovery"
                status, text = await call(stranger, port.pk, "/api/services?type=visor")
                assert (status, json.loads(text)) == (200, [])
                assert (await call(friend, port.pk, "/debug/tasks"))[0] == 200
                status, text = await call(stranger, port.pk, "/debug/tasks")
                assert status == 403 and stranger.pk.hex() in text

                # A public visor registers over dmsg: the service sees a key, not an address,
                # and takes the address from SW-PublicIP.
                visor = KeyPair.generate()
                entry = ServiceEntry(
                    SWAddr(visor.pk, 1), ServiceType.VISOR, local_ips=("203.0.113.5",)
                )
                body = entry.to_json()

                async def register(public_ip: str) -> tuple[int, str]:
                    status, text = await call(
                        stranger, port.pk, f"/security/nonces/{visor.pk.hex()}"
                    )
                    assert status == 200, text
                    nonce = int(json.loads(text)["next_nonce"])
                    headers = auth_headers(visor.sk, body, nonce, public_ip=public_ip)
                    return await call(
                        stranger,
                        port.pk,
                        "/api/services",
                        method="POST",
                        body=body,
                        headers=headers,
                    )

                status, text = await register("")
                assert status == 403 and json.loads(text)["error"] == ERR_VISOR_UNREACHABLE
                status, text = await register("198.51.100.1")
                assert status == 403 and json.loads(text)["error"] == ERR_VISOR_UNREACHABLE
                assert await store.services(ServiceType.VISOR) == []
                status, text = await register("203.0.113.5")
                assert status == 200, text
                assert await store.services(ServiceType.VISOR) == [entry]
