"""Stable identifiers derived from keys: the same key gives the same number on every machine."""

from __future__ import annotations

import hashlib


def stable_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def stable_uint64(text: str) -> int:
    """A 64-bit unsigned integer for ``text`` (a seeded draw: ``f"{seed}:{epoch}:{key}"``)."""
    return int.from_bytes(stable_hash(text)[:8], "big")


def seeded_draw(seed: int, *parts: object) -> int:
    """:func:`stable_uint64` of ``seed`` and ``parts`` joined by colons: a draw fixed by them."""
    return stable_uint64(":".join(str(p) for p in (seed, *parts)))


def stable_int_id(key: str) -> int:
    """A non-negative 63-bit integer id for ``key`` (COCO-style ``image_id`` for sources without one)."""
    return int.from_bytes(stable_hash(key)[:8], "big") >> 1


def stable_unit_interval(key: str, salt: str = "") -> float:
    """Map ``key`` to a number in [0, 1), uniform over keys and stable forever."""
    return int.from_bytes(stable_hash(salt + key)[:8], "big") / 2**64
