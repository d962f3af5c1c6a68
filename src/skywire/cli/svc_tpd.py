"""``skywire svc tpd``: run the transport discovery service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skywire.cli.common import (
    AddrOption,
    LogLevelOption,
    install_stop_signals,
    parse_addr,
    run_service,
    setup_logging,
)
from skywire.services.tpd.store import StoreKind

_DEFAULT_DB = Path("./transport-discovery.db")
_DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _serve(
    *, host: str, port: int, store_kind: StoreKind, db: Path, pg_url: str, pg_schema: str
) -> None:
    from skywire.services.tpd.api import TPDServer
    from skywire.services.tpd.store import open_store

    stop = install_stop_signals()

    store = await open_store(store_kind, db=str(db), pg_url=pg_url, pg_schema=pg_schema or None)
    where = {
        StoreKind.sqlite: f"sqlite {db}",
        StoreKind.memory: "memory",
        StoreKind.postgres: f"postgres {pg_url}" + (f" schema {pg_schema}" if pg_schema else ""),
    }[store_kind]
    async with store, TPDServer(store, host, port) as server:
        typer.echo(f"transport discovery listening on {host or '*'}:{server.port} (store: {where})")
        await stop.wait()
        typer.echo("shutting down")


def register(svc_app: typer.Typer) -> None:
    """Attach ``tpd`` to the ``skywire svc`` command group."""

    @svc_app.command("tpd")
    def tpd(
        addr: AddrOption = "127.0.0.1:9091",
        store: Annotated[
            StoreKind, typer.Option("--store", help="Where transports and nonces live.")
        ] = StoreKind.sqlite,
        db: Annotated[
            Path, typer.Option("--db", help="SQLite file (--store sqlite).")
        ] = _DEFAULT_DB,
        pg_url: Annotated[
            str, typer.Option("--pg-url", help="PostgreSQL URL (--store postgres).")
        ] = _DEFAULT_PG,
        pg_schema: Annotated[
            str, typer.Option("--pg-schema", help="PostgreSQL schema for the tables (optional).")
        ] = "",
        log_level: LogLevelOption = "info",
    ) -> None:
        """Run the transport discovery service (registry of signed transport entries)."""
        setup_logging(log_level)
        host, port = parse_addr(addr)
        run_service(
            _serve(
                host=host,
                port=port,
                store_kind=store,
                db=db,
                pg_url=pg_url,
                pg_schema=pg_schema,
            ),
            "transport discovery",
        )
