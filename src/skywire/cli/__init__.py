"""The ``skywire`` command tree: thin wrappers that parse, call and print."""
