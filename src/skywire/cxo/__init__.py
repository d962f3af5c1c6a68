"""CXO: content-addressed objects, signed feed Roots, wire messages and the object store.

* :mod:`skywire.cxo.objects`: Ref, Refs (Merkle tree), Dynamic, schemas and the registry;
* :mod:`skywire.cxo.root`: the signed Root of one version of a feed;
* :mod:`skywire.cxo.msg`: the node's wire messages (protocol version 3) and their framing;
* :mod:`skywire.cxo.store`: objects with reference counts and the feeds → heads → roots index.

The encoding underneath is :mod:`skywire.wire.skyenc`.
"""
