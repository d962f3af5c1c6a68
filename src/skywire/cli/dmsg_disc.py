"""``skywire dmsg disc``: run the dmsg discovery service."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from skywire.cipher import CipherError, PubKey, SecKey
from skywire.cli.common import (
    AddrOption,
    LogLevelOption,
    RedisNamespaceOption,
    RedisOption,
    install_stop_signals,
    parse_addr,
    run_service,
    setup_logging,
)
from skywire.services.dmsgdisc.store import StoreKind

_DEFAULT_DB = Path("./dmsg-discovery.db")


def _parse_pks(text: str, option: str) -> list[PubKey]:
    out: list[PubKey] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(PubKey.from_hex(item))
        except CipherError as exc:
            raise typer.BadParameter(f"{item!r}: {exc}", param_hint=option) from exc
    return out


async def _serve(
    *,
    host: str,
    port: int,
    store_kind: StoreKind,
    db: Path,
    redis_url: str,
    redis_namespace: str,
    test_mode: bool,
    auth: str,
    official_servers: list[PubKey],
    sk: SecKey | None = None,
) -> None:
    from skywire.services.dmsgdisc.api import DiscoveryServer
    from skywire.services.dmsgdisc.store import open_store

    stop = install_stop_signals()

    store = await open_store(
        store_kind,
        db=str(db),
        redis_url=redis_url,
        redis_password=os.environ.get("REDIS_PASSWORD") or None,
        namespace=redis_namespace,
    )
    where = {
        StoreKind.sqlite: f"sqlite {db}",
        StoreKind.memory: "memory",
        StoreKind.redis: f"redis {redis_url}",
    }[store_kind]
    async with store:
        server = DiscoveryServer(
            store,
            host,
            port,
            test_mode=test_mode,
            auth_passphrase=auth,
            official_servers=official_servers,
        )
        async with server:
            shown = f"{host or '*'}:{server.port}"
            typer.echo(f"dmsg discovery listening on {shown} (store: {where})")
            if test_mode:
                typer.echo("test mode: loopback server addresses are accepted")
            if sk is None:
                await stop.wait()
            else:
                from skywire.services.dmsgdisc.direct import DiscoveryOverDmsg

                assert server.runner is not None
                async with DiscoveryOverDmsg(sk, server.runner, server.url):
                    typer.echo(f"also serving over dmsg at dmsg://{sk.pubkey()}:80")
                    await stop.wait()
            typer.echo("shutting down")


def _parse_sk(text: str) -> SecKey | None:
    if not text:
        return None
    try:
        return SecKey.from_hex(text)
    except CipherError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sk") from exc


def register(dmsg_app: typer.Typer) -> None:
    """Attach ``disc`` to the ``skywire dmsg`` command group."""

    @dmsg_app.command("disc")
    def disc(
        addr: AddrOption = ":9090",
        store: Annotated[
            StoreKind, typer.Option("--store", help="Where entries live.")
        ] = StoreKind.sqlite,
        db: Annotated[
            Path, typer.Option("--db", help="SQLite file (--store sqlite).")
        ] = _DEFAULT_DB,
        redis: RedisOption = "redis://localhost:6379",
        redis_namespace: RedisNamespaceOption = "",
        test_mode: Annotated[
            bool, typer.Option("--test-mode", "-t", help="Accept loopback server addresses.")
        ] = False,
        auth: Annotated[
            str,
            typer.Option(
                "--auth", help="Passphrase marking a server entry 'official' via serverType."
            ),
        ] = "",
        official_servers: Annotated[
            str,
            typer.Option(
                "--official-servers", help="Comma-separated PKs of official dmsg servers."
            ),
        ] = "",
        log_level: LogLevelOption = "info",
        sk: Annotated[
            str,
            typer.Option(
                "--sk",
                help="Secret key: also serve the API over dmsg (port 80), connected to every "
                "server.",
                envvar="SKYWIRE_SK",
            ),
        ] = "",
    ) -> None:
        """Run the dmsg discovery service (HTTP API of skycoin/dmsg's dmsg-discovery)."""
        setup_logging(log_level)
        host, port = parse_addr(addr)
        officials = _parse_pks(official_servers, "--official-servers")
        run_service(
            _serve(
                host=host,
                port=port,
                store_kind=store,
                db=db,
                redis_url=redis,
                redis_namespace=redis_namespace,
                test_mode=test_mode,
                auth=auth,
                official_servers=officials,
                sk=_parse_sk(sk),
            ),
            "dmsg discovery",
        )
