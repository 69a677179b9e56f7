"""Identifiers and skewed counts drawn from a seeded ``random.Random``."""

from __future__ import annotations

import math
import random
import string
from typing import Any

_ALPHANUMERIC = string.ascii_letters + string.digits
_BASE64URL = _ALPHANUMERIC + "-_"
# Byte-to-character tables for bytes.translate: a fast way to turn random bytes into ids.
_ALPHANUMERIC_TABLE = bytes(ord(_ALPHANUMERIC[i % len(_ALPHANUMERIC)]) for i in range(256))
BASE64URL_TABLE = bytes(ord(_BASE64URL[i % len(_BASE64URL)]) for i in range(256))


def random_text(rng: random.Random, length: int, table: bytes = _ALPHANUMERIC_TABLE) -> str:
    return rng.randbytes(length).translate(table).decode("ascii")


def random_uuid(rng: random.Random) -> str:
    """Format 16 random bytes as a version 4 UUID, like ``uuid.uuid4`` but from ``rng``."""
    digits = rng.randbytes(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def lognormal_int(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    """Draw a right-skewed count, as token counts are, clamped to [low, high]."""
    return min(max(int(rng.lognormvariate(math.log(median), sigma)), low), high)


def pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    """Pick one value from (value, weight) pairs whose weights sum to 1."""
    draw = rng.random()
    for value, weight in weighted:
        draw -= weight
        if draw < 0:
            return value
    return weighted[-1][0]
