"""``python -m skywire.cli``: the same as the ``skywire`` command (same name in usage lines and
for shell completion)."""

from skywire.cli.main import run

run()
