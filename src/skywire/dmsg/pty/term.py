"""The interactive end: the local terminal attached to a remote pty (upstream ``cli.go``,
``cli_unix.go``).

:func:`attach` starts the command at the local terminal's size, puts the local terminal in raw
mode (restored on the way out, however it ends), copies keystrokes to the pty and its output to
the local terminal, and sends the new size on every ``SIGWINCH``. It returns when the remote
command ends or the connection goes. When input is not a terminal and runs out, an EOF
character (Ctrl-D) is sent once, so that ``echo cmd | … start <pk>`` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import termios
import tty
from collections.abc import Iterator, Sequence

from skywire.dmsg.pty.client import READ_SIZE, PtyClient
from skywire.dmsg.pty.errors import PtyEOFError, PtyError
from skywire.dmsg.pty.local import get_size
from skywire.dmsg.pty.protocol import WinSize
from skywire.wire.tasks import Leave, leaving

__all__ = ["attach", "raw_mode", "terminal_size"]

EOF_CHAR = b"\x04"


def terminal_size(fd: int) -> WinSize | None:
    """The size of the terminal on ``fd``, or ``None`` when it is not one."""
    try:
        return get_size(fd)
    except OSError:
        return None


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Raw mode on the terminal ``fd`` for the block (nothing when it is not a terminal)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def attach(
    client: PtyClient,
    command: str,
    args: Sequence[str] = (),
    *,
    stdin: int = 0,
    stdout: int = 1,
) -> None:
    """Run ``command args…`` on ``client``'s pty with this terminal attached, until it ends."""
    size = terminal_size(stdin) or terminal_size(stdout)
    await client.start(command, args, size)
    loop = asyncio.get_running_loop()
    keys: asyncio.Queue[bytes] = asyncio.Queue()
    resized = asyncio.Event()

    def on_input() -> None:
        try:
            data = os.read(stdin, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(stdin)
        keys.put_nowait(data)

    async def output() -> None:
        with contextlib.suppress(PtyEOFError):
            while True:
                _write_all(stdout, await client.read(READ_SIZE))
        raise Leave

    async def input_() -> None:
        while data := await keys.get():
            await client.write(data)
        if not os.isatty(stdin):
            await client.write(EOF_CHAR)

    async def resize() -> None:
        while True:
            await resized.wait()
            resized.clear()
            now = terminal_size(stdin) or terminal_size(stdout)
            if now is not None:
                with contextlib.suppress(PtyError):
                    await client.set_size(now)

    with raw_mode(stdin):
        loop.add_reader(stdin, on_input)
        loop.add_signal_handler(signal.SIGWINCH, resized.set)
        try:
            async with leaving() as tg:
                tg.create_task(output())
                tg.create_task(input_())
                tg.create_task(resize())
        finally:
            loop.remove_signal_handler(signal.SIGWINCH)
            loop.remove_reader(stdin)
