"""A node's files: its keys (mode 0600) and the holder indices it hosts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..crypto import PrivateKey
from ..errors import ConfigError

__all__ = ["load_or_create_key", "parse_indices"]


def load_or_create_key(path: Path, *, create: bool = True) -> PrivateKey:
    """A secp256k1 key kept in ``path`` as hex, readable by its owner only (0600).

    A key file that group or others can read is refused, the way ssh refuses one.
    """
    path = Path(path)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if os.name == "posix" and mode & 0o077:
            raise ConfigError(f"key file {path} has mode {mode:o}: it must be readable by its owner only "
                              f"(chmod 600 {path})")
        text = path.read_text().strip()
        try:
            return PrivateKey(bytes.fromhex(text.removeprefix("0x")))
        except ValueError as exc:
            raise ConfigError(f"key file {path} does not hold a 32-byte hex secp256k1 key ({exc})") from None
    if not create:
        raise ConfigError(f"no key file at {path}")
    key = PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.secret.hex() + "\n")
    return key


#: Holder indices a node takes: far more than any network's holders (each one a key and a
#: data shard).
MAX_HOLDER_INDEX = 1 << 20


def parse_indices(text) -> tuple:
    """``"3"``, ``"0,4,8"`` or ``"0-7"`` (mixable) as sorted unique holder indices."""
    if text is None or text == "":
        return ()
    if isinstance(text, int):
        return (text,)
    if isinstance(text, (list, tuple)):
        return tuple(sorted({int(i) for i in text}))
    out = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            lo, hi = (int(v) for v in part.split("-", 1)) if "-" in part else (int(part),) * 2
        except ValueError:
            raise ConfigError(f"holder index {part!r} is not a number or a range A-B") from None
        if not 0 <= lo <= hi < MAX_HOLDER_INDEX:  # checked before a set of every index in it is made
            raise ConfigError(f"holder index {part!r} is not an index or a range A-B (A <= B) in "
                              f"0..{MAX_HOLDER_INDEX - 1}")
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))
