"""One-command local networks on loopback: services, servers and nodes with embedded defaults."""
