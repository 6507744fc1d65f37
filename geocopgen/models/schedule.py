"""The noise schedule and the schedulers geocopgen uses, all stock diffusers classes.

COP-GEN-Beta trains on the Stable Diffusion "scaled linear" schedule over 1000 steps with epsilon
prediction. Its discrete index ``n`` runs over 1..1000 with ``n = 0`` meaning clean data, and the
network sees ``n`` itself as its timestep. diffusers indexes the same 1000 noise levels 0..999, so
diffusers timestep ``k`` is the official ``n = k + 1``. :func:`model_timestep` is the one place
that converts; conditions (clean latents) get model timestep 0.

geocopgen's own models may instead predict the velocity ``v = sqrt(a) eps - sqrt(1-a) x0``
(``prediction_type="v_prediction"``). Its loss weighs the clean-data error fully at high noise,
where an epsilon loss scales it by ``a/(1-a)`` (0.005 at the last step). High noise is where a
condition matters most, and a model trained for few steps on little data otherwise learns to
ignore it. Schedulers carry the prediction type in their config, so a saved pipeline samples
with the type it was trained for.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from geocopgen.errors import CheckpointError, ConfigError

NUM_TRAIN_TIMESTEPS = 1000

#: Arguments shared by every scheduler: the SD scaled-linear betas.
SCHEDULE = {
    "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}

#: What the network may be trained to predict; the official weights predict ``epsilon``.
#: What a backbone predicts, for every model: the noise (the published models), the clean latent,
#: or the velocity ``v = α ε - σ x0`` (see :func:`geocopgen.copgen.sampler.as_noise`); the names
#: are diffusers' ``prediction_type`` values.
Prediction = Literal["epsilon", "sample", "v_prediction"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)


def check_prediction_type(prediction_type: str) -> str:
    """Return ``prediction_type`` if geocopgen can train and sample it, else raise."""
    if prediction_type not in PREDICTIONS:
        raise ConfigError(
            f"prediction_type must be one of {', '.join(PREDICTIONS)}, got {prediction_type!r}"
        )
    return prediction_type


def model_timestep(timestep: torch.Tensor | int | float) -> torch.Tensor:
    """diffusers timestep (0..999, noised) → the network's timestep (1..1000; 0 = clean)."""
    return torch.as_tensor(timestep, dtype=torch.float32) + 1.0


def training_scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    """The scheduler whose ``add_noise`` (and ``get_velocity``) training uses."""
    return DDPMScheduler(
        **SCHEDULE, prediction_type=check_prediction_type(prediction_type), clip_sample=False
    )


def default_scheduler(prediction_type: str = "epsilon") -> DPMSolverMultistepScheduler:
    """geocopgen's sampler: DPM-Solver++ (2M), data prediction, final step to clean data."""
    return DPMSolverMultistepScheduler(
        **SCHEDULE,
        prediction_type=check_prediction_type(prediction_type),
        algorithm_type="dpmsolver++",
        solver_order=2,
        lower_order_final=True,
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
        prediction_type="epsilon",
        algorithm_type="dpmsolver++",
        solver_order=3,
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="sigma_min",
    )


def scheduler_from_config(config: dict) -> SchedulerMixin:
    """Rebuild a saved scheduler, accepting only diffusers scheduler classes."""
    import diffusers

    name = config.get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise CheckpointError(
            f"scheduler config names {name!r}, which is not a diffusers scheduler class"
        )
    return cls.from_config(config)


def predicted_clean(
    scheduler: SchedulerMixin, noisy: torch.Tensor, output: torch.Tensor, timestep: torch.Tensor
) -> torch.Tensor:
    """The clean latent implied by the network ``output`` on ``noisy`` at diffusers ``timestep``.

    Puts noise and velocity predictions on one scale (the data's), so models trained either way
    can be compared, e.g. on whether a condition improves their estimate of the clean latent.
    """
    a = scheduler.alphas_cumprod.to(noisy.device)[timestep.long()].reshape(-1, 1, 1, 1)
    alpha, sigma = a.sqrt().to(noisy.dtype), (1 - a).sqrt().to(noisy.dtype)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (noisy - sigma * output) / alpha
    if kind == "v_prediction":
        return alpha * noisy - sigma * output
    if kind == "sample":
        return output
    raise ConfigError(f"cannot turn a {kind!r} prediction into a clean latent")
