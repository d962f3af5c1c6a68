"""appnet: how an app process reaches the visor's router and dmsg, through the visor's app server.

* :mod:`~skywire.apps.appnet.proto` — the protocol, sans-I/O: ``PROC_CONFIG``
  (:class:`ProcConfig`), the Hello, the JSON-line control messages, typed errors.
* :mod:`~skywire.apps.appnet.client` — :class:`AppClient`, the app side: ``listen`` /
  ``dial`` / ``dial_routes`` handing out byte streams, ``set_status`` / ``set_error``.

The visor side is :mod:`skywire.visor.appserver`.
"""
