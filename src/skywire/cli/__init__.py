"""The ``skywire`` command tree: thin wrappers that parse, call and print.

Help and usage errors are printed as plain text unless ``TYPER_USE_RICH=1`` is set: typer's
rich formatting costs more start-up time (about 0.15 s) than most commands take to run.
"""

import os

os.environ.setdefault("TYPER_USE_RICH", "0")
