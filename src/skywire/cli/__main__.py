"""``python -m skywire.cli``: the same as the ``skywire`` command."""

from skywire.cli.main import app

app()
