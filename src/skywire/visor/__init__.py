"""The visor: the node that composes dmsg, transports, routing, apps and its RPC."""
