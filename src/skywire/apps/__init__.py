"""Apps that run over the visor's routes: each one takes the router's ``dial_routes`` /
``listen`` as a :class:`typing.Protocol` and never imports the visor.

* :mod:`~skywire.apps.skysocks` — skysocks (SOCKS5 server, routing port 3) and skysocks-client
  (SOCKS5 on 127.0.0.1:1080, one route + yamux to the server).
"""
