"""Sans-I/O wire codecs shared by every layer: Noise, yamux, gob and net/rpc."""
