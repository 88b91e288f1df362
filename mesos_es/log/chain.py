"""The hash chain over committed entries: each hash covers every entry before it."""

from __future__ import annotations

import hashlib

GENESIS_HASH = bytes(32)


def chain_hash(previous: bytes, position: int, payload: bytes) -> bytes:
    """sha256(previous hash || position as 8 bytes big-endian || payload)."""
    digest = hashlib.sha256(previous)
    digest.update(position.to_bytes(8, "big"))
    digest.update(payload)
    return digest.digest()
