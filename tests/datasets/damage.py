"""Damaged copies of a file for the readers' fuzz tests (``test_fuzz_*.py``)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def damaged_copies(
    data: bytes,
    rng: random.Random,
    *,
    cuts: Sequence[int],
    flips: int,
    keeps: Sequence[int],
    bodies: int,
    checksummed: bool,
) -> list[tuple[str, bytes, bool]]:
    """``(label, damaged bytes, whether a successful read must equal the intact file)``.

    Args:
        data: The intact file.
        rng: A seeded generator, so every run tries the same cases.
        cuts: Lengths to cut the file to (those not shorter than the file are skipped).
        flips: How many copies with one byte flipped at a random position.
        keeps: How many first bytes to keep before a random body, used in turn.
        bodies: How many copies with a random body.
        checksummed: Whether the format checksums its content, so a flipped byte that still
            reads must give the intact values.
    """
    n = len(data)
    out = [(f"cut at {k}", data[:k], True) for k in sorted(set(cuts)) if k < n]
    for _ in range(flips):
        at = rng.randrange(n)
        flipped = bytearray(data)
        flipped[at] ^= rng.randrange(1, 256)
        out.append((f"byte {at} flipped", bytes(flipped), checksummed))
    for i in range(bodies):
        keep = keeps[i % len(keeps)]
        body = data[:keep] + rng.randbytes(max(n - keep, 0))
        out.append((f"random body after {keep} bytes", body, False))
    return out
