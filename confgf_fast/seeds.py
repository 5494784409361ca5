"""Derived random seeds: one well-mixed 64-bit seed per (base seed, purpose, key).

A run has one user seed; its parts (chunks, batches, retries of generate_iter; ranks of a
torchrun launch) each need a stream of their own that is reproducible and never shared with
another part. Adding small integers to the seed (seed + rank) would make run (seed=1, rank 0) and
run (seed=0, rank 1) draw the same noise; hashing the whole key with numpy's SeedSequence does not.
"""

from __future__ import annotations

import numpy as np

# Purposes: the last word of every key, so keys of different purposes never coincide, and nonzero,
# because SeedSequence treats trailing zeros as absent ([s, 1] and [s, 1, 0] would collide).
CHUNK_PURPOSE = 0x5EED  # pipeline.generate_iter: (chunk, batch, retry)
SHARD_PURPOSE = 0xD157  # distributed: (rank, world size)
WARM_START_PURPOSE = 0xE7D6  # pipeline: ETKDG warm start, (chunk, input index)
MODEL_GROUP_PURPOSE = 0x60DE  # pipeline: molecules of model g > 0 in a chunk, (chunk, g, batch, retry)


def derive_seed(seed: int, *key: int, purpose: int) -> int:
    """A 64-bit seed for part `key` of a run with base `seed`, e.g. derive_seed(s, chunk, batch,
    retry, purpose=CHUNK_PURPOSE).

    Callers of one purpose must always pass keys of the same length (a fixed layout per purpose);
    `purpose` must be nonzero (see the module constants).
    """
    if purpose == 0:
        raise ValueError("purpose must be nonzero: SeedSequence ignores trailing zeros")
    words = [seed % 2**64, *(int(k) for k in key), purpose]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0])


__all__ = ["CHUNK_PURPOSE", "MODEL_GROUP_PURPOSE", "SHARD_PURPOSE", "WARM_START_PURPOSE", "derive_seed"]
