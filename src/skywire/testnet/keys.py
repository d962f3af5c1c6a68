"""Named secret keys kept in a state folder, so that a local network keeps its identities
across runs (a visor joined to the last run finds the same setup node and visors again)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from skywire.cipher import CipherError, SecKey

__all__ = ["KeyBook"]


class KeyBook:
    """``book.get("visor-0")``: the key of that name, made (and saved, mode 0600) if new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, SecKey] = {}
        if path.exists():
            try:
                doc = json.loads(path.read_text())
                self._keys = {str(k): SecKey.from_hex(str(v)) for k, v in dict(doc).items()}
            except (ValueError, TypeError, CipherError) as exc:
                raise ValueError(f"{path}: not a key book ({exc}); move it away") from exc

    def get(self, name: str) -> SecKey:
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = SecKey.generate()
            self._save()
        return key

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v.hex() for k, v in self._keys.items()}, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
