"""The noise schedule and the schedulers geocopgen uses, all stock diffusers classes.

COP-GEN-Beta trains on the Stable Diffusion "scaled linear" schedule over 1000 steps with epsilon
prediction. Its discrete index ``n`` runs over 1..1000 with ``n = 0`` meaning clean data, and the
network sees ``n`` itself as its timestep. diffusers indexes the same 1000 noise levels 0..999, so
diffusers timestep ``k`` is the official ``n = k + 1``. :func:`model_timestep` is the one place
that converts; conditions (clean latents) get model timestep 0.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

NUM_TRAIN_TIMESTEPS = 1000

#: Arguments shared by every scheduler: the SD scaled-linear betas, epsilon prediction.
SCHEDULE = {
    "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}


def model_timestep(timestep: torch.Tensor | int | float) -> torch.Tensor:
    """diffusers timestep (0..999, noised) → the network's timestep (1..1000; 0 = clean)."""
    return torch.as_tensor(timestep, dtype=torch.float32) + 1.0


def training_scheduler() -> DDPMScheduler:
    """The scheduler whose ``add_noise`` training uses."""
    return DDPMScheduler(**SCHEDULE, clip_sample=False)


def default_scheduler() -> DPMSolverMultistepScheduler:
    """geocopgen's sampler: DPM-Solver++ (2M), data prediction, final step to clean data."""
    return DPMSolverMultistepScheduler(
        **SCHEDULE, algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True
    )


def official_scheduler() -> DPMSolverSinglestepScheduler:
    """The closest diffusers match to the official sampler (see ``docs/official-weights.md``).

    Official: DPM-Solver ``fast``, order 3, time-uniform grid ``t = linspace(1, 1e-3, 51)``,
    orders ``[3]*16 + [2]`` (50 model calls), data prediction, ending at ``t = 1e-3``. Here:
    singlestep DPM-Solver++ order 3 with ``lower_order_final`` (orders ``[1,2,3]*16 + [1,2]``, the
    same 50 calls grouped the same way), timesteps ``linspace(999, 0, 51)`` rounded to integers
    (diffusers index k = official t*1000 - 1) and a final sigma of index 0 (``sigma_min``), i.e.
    the same end point as the official ``t = 1e-3``.
    """
    return DPMSolverSinglestepScheduler(
        **SCHEDULE,
        algorithm_type="dpmsolver++",
        solver_order=3,
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="sigma_min",
    )


def scheduler_from_config(config: dict) -> SchedulerMixin:
    """Rebuild a saved scheduler, accepting only diffusers scheduler classes."""
    import diffusers

    from geocopgen.errors import CheckpointError

    name = config.get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise CheckpointError(
            f"scheduler config names {name!r}, which is not a diffusers scheduler class"
        )
    return cls.from_config(config)
