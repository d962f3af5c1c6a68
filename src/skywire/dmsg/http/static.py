"""Serving a directory over dmsghttp: files written in chunks, an index page, byte ranges.

aiohttp's ``add_static`` answers with ``FileResponse``, which hands the file to
``loop.sendfile()`` and so needs a real socket. Over a dmsg stream the bytes must go through
the stream's own writes, so :func:`add_static` registers a handler that reads the file in
chunks (off the event loop) and writes each through ``StreamResponse.write``. It works on TCP
sites as well, so one application can be served both ways.

Paths are resolved inside the directory (``..`` and links out of it are refused with 404);
``GET`` and ``HEAD`` are answered; one ``Range: bytes=a-b`` gives 206, an unsatisfiable one 416.
"""

from __future__ import annotations

import asyncio
import html
import logging
import mimetypes
import os
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import quote

from aiohttp import hdrs, web

log = logging.getLogger(__name__)

__all__ = ["CHUNK_SIZE", "add_static", "byte_range"]

CHUNK_SIZE: Final = 256 * 1024
"""Bytes read from the file and written to the response at a time."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` (inclusive) of a single ``bytes=`` range over ``size`` bytes.

    ``None`` when the header asks for something else (several ranges, another unit): the whole
    file is sent. ``ValueError`` when the range cannot be satisfied (answered with 416).
    """
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, sep, last_text = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if not first_text:  # a suffix: the last N bytes
            n = int(last_text)
            if n <= 0 or size == 0:
                raise ValueError("empty suffix range")
            return max(0, size - n), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError as exc:
        raise ValueError(f"bad range {header!r}") from exc
    if first < 0 or first >= size or last < first:
        raise ValueError(f"range {header!r} outside 0..{size - 1}")
    return first, min(last, size - 1)


def _resolve(root: Path, rel: str) -> Path:
    """The path of ``rel`` inside ``root``; 404 for anything that escapes it."""
    if "\x00" in rel:
        raise web.HTTPNotFound()
    target = (root / rel.lstrip("/")).resolve()
    if target != root and root not in target.parents:
        raise web.HTTPNotFound()
    if not target.exists():
        raise web.HTTPNotFound()
    return target


def _index_page(root: Path, directory: Path, prefix: str) -> str:
    rel = directory.relative_to(root).as_posix()
    title = "/" if rel == "." else f"/{rel}/"
    rows = []
    for entry in sorted(directory.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
        name = entry.name + ("/" if entry.is_dir() else "")
        href = prefix.rstrip("/") + "/" + quote(entry.relative_to(root).as_posix())
        if entry.is_dir():
            href += "/"
        rows.append(f'<li><a href="{html.escape(href)}">{html.escape(name)}</a></li>')
    return (
        f"<!doctype html><html><head><title>Index of {html.escape(title)}</title></head>"
        f"<body><h1>Index of {html.escape(title)}</h1><ul>{''.join(rows)}</ul></body></html>"
    )


async def _send_file(request: web.Request, path: Path) -> web.StreamResponse:
    info = await asyncio.to_thread(path.stat)
    size = info.st_size
    span = (0, size - 1)
    status = 200
    header = request.headers.get(hdrs.RANGE)
    if header:
        try:
            asked = byte_range(header, size)
        except ValueError:
            raise web.HTTPRequestRangeNotSatisfiable(
                headers={hdrs.CONTENT_RANGE: f"bytes */{size}"}
            ) from None
        if asked is not None:
            span, status = asked, 206
    length = max(0, span[1] - span[0] + 1)
    resp = web.StreamResponse(status=status)
    resp.content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    resp.content_length = length
    resp.last_modified = info.st_mtime
    resp.headers[hdrs.ACCEPT_RANGES] = "bytes"
    if status == 206:
        resp.headers[hdrs.CONTENT_RANGE] = f"bytes {span[0]}-{span[1]}/{size}"
    await resp.prepare(request)
    if request.method == hdrs.METH_HEAD or length == 0:
        await resp.write_eof()
        return resp
    fobj: BinaryIO = await asyncio.to_thread(open, path, "rb")
    left = length
    try:
        if span[0]:
            await asyncio.to_thread(fobj.seek, span[0], os.SEEK_SET)
        while left > 0:
            chunk = await asyncio.to_thread(fobj.read, min(CHUNK_SIZE, left))
            if not chunk:
                break  # the file shrank meanwhile: the client sees a short body
            await resp.write(chunk)
            left -= len(chunk)
        await resp.write_eof()
    except ConnectionError as exc:
        # The client went away mid-file. Ending the handler as cancelled is how aiohttp
        # expects a handler to stop for a lost connection (an exception would be logged as
        # an error and answered with a 500 nobody can read).
        log.debug("%s: client gone after %d of %d bytes: %s", path.name, length - left, length, exc)
        raise asyncio.CancelledError from None
    finally:
        fobj.close()
    return resp


def add_static(
    router: web.UrlDispatcher,
    prefix: str,
    directory: str | os.PathLike[str],
    *,
    show_index: bool = False,
) -> None:
    """Serve the files under ``directory`` at ``prefix`` (``GET`` and ``HEAD``), with an index
    page for directories when ``show_index``."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise ValueError(f"{directory!s} is not a directory")

    def locate(rel: str) -> tuple[Path, str | None]:
        """The file to send, or the directory's index page (file system work: in a thread)."""
        path = _resolve(root, rel)
        if not path.is_dir():
            return path, None
        index = path / "index.html"
        if index.is_file():
            return index, None
        if not show_index:
            raise web.HTTPForbidden(text="directory listing is off\n")
        return path, _index_page(root, path, prefix)

    async def handle(request: web.Request) -> web.StreamResponse:
        path, page = await asyncio.to_thread(locate, request.match_info.get("filename", ""))
        if page is not None:
            return web.Response(text=page, content_type="text/html")
        return await _send_file(request, path)

    base = prefix.rstrip("/")
    router.add_route(hdrs.METH_GET, base + "/{filename:.*}", handle)
    router.add_route(hdrs.METH_HEAD, base + "/{filename:.*}", handle)
