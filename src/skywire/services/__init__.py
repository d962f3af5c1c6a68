"""Network services: dmsg discovery, transport discovery, address resolver, route finder, RSN."""
