"""Per-sample random draws for loss functions, derived from the loop's sample seeds.

The :class:`~geocopgen.training.loop.Trainer` hands a loss function one seed per sample. Drawing
each sample's noise, timesteps and roles from its own generator (never from a generator shared by
the batch) is what keeps a resumed run and a DDP run on the same numbers as an uninterrupted
single-process run: a sample's draws do not depend on which process holds it or on what was drawn
before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def generators(seeds: torch.Tensor | Sequence[int], salt: int = 0) -> list[torch.Generator]:
    """One CPU generator per sample seed; ``salt`` separates independent streams of one seed."""
    return [torch.Generator().manual_seed((int(s) * 2 + 1) * 1_000_003 + salt) for s in seeds]


def randn(gens: Sequence[torch.Generator], shape: Sequence[int]) -> torch.Tensor:
    """``(len(gens), *shape)`` standard normal noise, one generator per row."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in gens])


def randint(gens: Sequence[torch.Generator], high: int) -> torch.Tensor:
    """One integer in ``[0, high)`` per generator, ``(len(gens),)`` int64."""
    return torch.cat([torch.randint(high, (1,), generator=g) for g in gens])


def step_of(seeds: torch.Tensor, seed: int, batch_size: int) -> int:
    """The training step a batch of sample seeds belongs to (inverse of ``sample_seed``).

    Batch-level draws (the set of absent modalities) must agree across DDP processes, which each
    see only their slice of the batch; the step is the one thing they share.
    """
    return (int(seeds.min()) - seed * 1_000_003) // batch_size
