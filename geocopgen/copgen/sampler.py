"""COP-GEN's sampler preset (spec A6): singlestep DPM-Solver-3 with data prediction on the
discrete VP schedule, run on the joint vector of the generated slots.

Why not a diffusers scheduler: the official solver evaluates the network at float times
(``N t = 1000, 980.01996, 960.03998, ...``) on ``log alpha`` interpolated piecewise linearly in
``t``, and puts each step's intermediate evaluations at ``inverse_lambda`` of the grid's
``lambda`` values. diffusers' ``DPMSolverSinglestepScheduler`` (geocopgen's
:func:`~geocopgen.models.schedule.official_scheduler` for COP-GEN-Beta) rounds the grid to
integer timesteps and interpolates sigmas over integer indices, so it calls the network at
1000, 980, 960, ... and cannot agree to float tolerance. This module is a small solver written
for the one method COP-GEN uses (own code, after the spec).

The RNG protocol is the official one, so a ``torch.Generator`` seeded like the official global
seed reproduces the official samples: one ``randn(B, C, H, W)`` per generated slot in slot order
for the initial noise, then at every model call one ``randn`` per *ignored* slot (neither
generated nor a condition) in slot order, fed at time 0 as if it were clean evidence
(``ignored="noise"``). ``ignored="omit"`` is geocopgen's deterministic alternative: ignored slots
are left out of the token sequence (the backbone's "absent" feature). It is **not** the official
behaviour and gives different samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor

from geocopgen.copgen.first_guess import FirstGuess
from geocopgen.errors import ConfigError, ModalityError, warn
from geocopgen.models.sampling import Ignored, SamplingOutput
from geocopgen.models.schedule import (
    NUM_TRAIN_TIMESTEPS,
    PREDICTIONS,
    SCHEDULE,
    Prediction,
    check_prediction_type,
)
from geocopgen.models.uvit import MultimodalUViT
from geocopgen.precision import resolve_precision

#: Called before every network evaluation with the network times (``N t``, shape ``(B,)``) and
#: the full input dict (slot → latent); for traces and tests.
CallHook = Callable[[torch.Tensor, Mapping[str, torch.Tensor]], None]


def copgen_betas(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """Training betas, float64: ``linspace(sqrt(b0), sqrt(b1), N) ** 2`` (SD scaled linear)."""
    start, end = SCHEDULE["beta_start"] ** 0.5, SCHEDULE["beta_end"] ** 0.5
    return torch.linspace(start, end, num_train_timesteps, dtype=torch.float64) ** 2


def interpolate(x: torch.Tensor, xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``y(x)`` through the knots ``(xp, yp)`` (``xp`` increasing), extended
    beyond the ends by the outermost segments."""
    i = (torch.searchsorted(xp, x.contiguous(), right=True) - 1).clamp(0, xp.numel() - 2)
    x0, x1, y0, y1 = xp[i], xp[i + 1], yp[i], yp[i + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


class DiscreteVPSchedule:
    """The discrete VP schedule in continuous time ``t`` in ``[1/N, 1]``.

    ``log alpha`` at the knots ``t_k = k/N`` is ``0.5 cumsum(log(1 - beta))`` in the betas'
    dtype (float32 in COP-GEN) and is linear in ``t`` between knots; ``sigma = sqrt(1 - alpha^2)``
    and ``lambda = log alpha - log sigma``. ``inverse_lambda`` recovers ``log alpha`` from
    ``lambda`` and interpolates ``t`` over the flipped knots.
    """

    def __init__(self, betas: torch.Tensor) -> None:
        self.log_alpha_discrete = 0.5 * torch.log(1 - betas).cumsum(dim=0)
        n = betas.numel()
        self.t_discrete = torch.linspace(1.0 / n, 1.0, n)
        self.total_n = n

    @classmethod
    def copgen(cls) -> DiscreteVPSchedule:
        """COP-GEN's schedule: the float64 training betas cast to float32."""
        return cls(copgen_betas().float())

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return interpolate(t, self.t_discrete.to(t.device), self.log_alpha_discrete.to(t.device))

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(t)))

    def lambda_(self, t: torch.Tensor) -> torch.Tensor:
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))

    def inverse_lambda(self, lam: torch.Tensor) -> torch.Tensor:
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lam), -2.0 * lam)
        knots = torch.flip(self.log_alpha_discrete.to(lam.device), [0])
        return interpolate(log_alpha, knots, torch.flip(self.t_discrete.to(lam.device), [0]))


#: Model calls above which more steps no longer change a sample materially: third-order
#: DPM-Solver's step error falls as (1/steps)^3, so at 200 calls (4x the published 50, a step of
#: 5 of the 1000 training timesteps) it is far below the model's own error, while every call
#: costs one backbone forward per chip batch.
USEFUL_STEPS = 200


def check_steps(steps: int) -> None:
    """Warn (attributed to the caller) when ``steps`` is above :data:`USEFUL_STEPS`."""
    if steps > USEFUL_STEPS:
        warn(
            f"{steps} sampler steps is far above the useful range of DPM-Solver (COP-GEN's "
            f"published preset makes 50 model calls; beyond {USEFUL_STEPS} samples hardly "
            f"change) and costs {steps} backbone calls per chip batch"
        )


@dataclass(frozen=True)
class CopgenSamplerPreset:
    """COP-GEN's sampler settings (``CopgenModel._sample_batch``): DPM-Solver ``fast``, order 3,
    data prediction, ``steps`` model calls on a time-uniform grid from ``t_start`` to
    ``t_end = 1/N``, no guidance, conditions and ignored slots at time 0."""

    steps: int = 50
    order: int = 3
    t_start: float = 1.0
    t_end: float = 1.0 / NUM_TRAIN_TIMESTEPS

    def __post_init__(self) -> None:
        check_steps(self.steps)

    def time_grid(self) -> torch.Tensor:
        """``linspace(t_start, t_end, steps + 1)`` in float32 (the 'time_uniform' grid)."""
        return torch.linspace(self.t_start, self.t_end, self.steps + 1)

    def step_orders(self) -> list[int]:
        """DPM-Solver-fast's orders, summing to ``steps``: ``[3] * 16 + [2]`` for 50 calls; a
        multiple of 3 ends with ``[2, 1]``, one more than a multiple with ``[1]`` (1 and 2 calls
        are a single first- or second-order step, as in the official solver)."""
        if self.order != 3 or self.steps < 1:
            raise ConfigError(f"the COP-GEN preset is order 3 with >= 1 step, got {self}")
        k, rest = divmod(self.steps, 3)
        return [3] * k + [rest] if rest else [3] * (k - 1) + [2, 1]


#: The published preset.
COPGEN_SAMPLER = CopgenSamplerPreset()


class DPMSolverFast:
    """Singlestep DPM-Solver with data prediction (``predict_x0``) over a float time grid.

    ``denoise(x, t)`` is the data prediction ``(x - sigma_t eps(x, t)) / alpha_t``. A step of
    order ``o`` from grid point ``g_i`` to ``g_{i+o}`` takes its intermediate times at
    ``inverse_lambda`` of ``lambda`` moved by ``r_j h`` with ``r_j = (lambda(g_{i+j}) -
    lambda(g_i)) / h``, ``h = lambda(g_{i+o}) - lambda(g_i)``; the update formulas are spec A6's.
    """

    def __init__(
        self,
        noise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        schedule: DiscreteVPSchedule,
    ) -> None:
        self.noise = noise
        self.schedule = schedule

    def denoise(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The data prediction at ``(x, t)``: one network call."""
        ns = self.schedule
        alpha, sigma = ns.alpha(t), ns.sigma(t)
        return (x - _col(sigma, x) * self.noise(x, t)) / _col(alpha, x)

    def sample(self, x: torch.Tensor, preset: CopgenSamplerPreset = COPGEN_SAMPLER) -> torch.Tensor:
        """Carry ``x`` (noise at ``t_start``) to ``t_end`` in ``preset.steps`` network calls."""
        grid = preset.time_grid().to(x.device)
        i = 0
        for order in preset.step_orders():
            lam = [self.schedule.lambda_(grid[i + j].reshape(1)) for j in range(order + 1)]
            h = lam[order] - lam[0]
            ratios = [(lam[j] - lam[0]) / h for j in range(1, order)]
            s = torch.ones(x.shape[0], device=x.device) * grid[i]
            t = torch.ones(x.shape[0], device=x.device) * grid[i + order]
            x = self.step(x, s, t, ratios)
            i += order
        return x

    def step(
        self, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor, ratios: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """One step of order ``len(ratios) + 1`` (1, 2 or 3) from time ``s`` to ``t``."""
        ns = self.schedule
        lambda_s = ns.lambda_(s)
        h = ns.lambda_(t) - lambda_s
        sigma_s, sigma_t, alpha_t = ns.sigma(s), ns.sigma(t), ns.alpha(t)
        phi_1 = torch.expm1(-h)
        d0 = self.denoise(x, s)
        x_t = _col(sigma_t / sigma_s, x) * x - _col(alpha_t * phi_1, x) * d0
        if not ratios:
            return x_t
        r1 = ratios[0]
        s1 = ns.inverse_lambda(lambda_s + r1 * h)
        u1 = _col(ns.sigma(s1) / sigma_s, x) * x - _col(ns.alpha(s1) * torch.expm1(-r1 * h), x) * d0
        d1 = self.denoise(u1, s1)
        if len(ratios) == 1:
            return x_t - _col((0.5 / r1) * (alpha_t * phi_1), x) * (d1 - d0)
        r2 = ratios[1]
        s2 = ns.inverse_lambda(lambda_s + r2 * h)
        alpha_s2, phi_12 = ns.alpha(s2), torch.expm1(-r2 * h)
        phi_22 = phi_12 / (r2 * h) + 1.0
        u2 = (
            _col(ns.sigma(s2) / sigma_s, x) * x
            - _col(alpha_s2 * phi_12, x) * d0
            + _col(r2 / r1 * (alpha_s2 * phi_22), x) * (d1 - d0)
        )
        d2 = self.denoise(u2, s2)
        phi_2 = phi_1 / h + 1.0
        return x_t + _col((1.0 / r2) * (alpha_t * phi_2), x) * (d2 - d0)


@torch.no_grad()
def copgen_sample(
    backbone: MultimodalUViT,
    generate: Sequence[str],
    conditions: Mapping[str, torch.Tensor] | None = None,
    *,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    ignored: Ignored = "noise",
    preset: CopgenSamplerPreset = COPGEN_SAMPLER,
    x_init: Mapping[str, torch.Tensor] | None = None,
    on_call: CallHook | None = None,
    prediction: Prediction = "epsilon",
    first_guess: FirstGuess | None = None,
    precision: str = "fp32",
) -> SamplingOutput:
    """Generate the slots ``generate`` from ``conditions`` (slot → clean latent ``(B, C, H, W)``)
    with COP-GEN's sampler; returns the generated latents and the conditions, unchanged.

    ``generator`` (or the global RNG when ``None``) draws the initial noise and, with
    ``ignored="noise"`` (official), the per-call noise of the ignored slots; ``ignored="omit"``
    leaves them out instead (deterministic, not the official behaviour). ``x_init`` replaces the
    initial noise (slot → latent). Without conditions, ``batch_size`` items (default 1) are drawn.
    ``precision`` is what the backbone runs in (:mod:`geocopgen.precision`; default ``"fp32"``,
    the exact reference; the official ``_sample_batch`` runs ``"bf16"`` on a CPU and ``"fp16"``
    on CUDA); the solver's arithmetic stays float32.
    """
    conditions = {backbone.canonical(k): v for k, v in (conditions or {}).items()}
    names = backbone.present(generate)
    _check_roles(names, conditions, ignored)
    param = next(backbone.parameters())
    policy = resolve_precision(precision, param.device)
    batch = _batch(conditions, batch_size)
    shapes = {n: (batch, *backbone.latent_shape_of(n)) for n in backbone.modality_names}
    given = {backbone.canonical(k): v for k, v in (x_init or {}).items()}
    start = [
        given[n] if n in given else randn_tensor(shapes[n], generator, param.device, param.dtype)
        for n in names
    ]
    sizes = [z[0].numel() for z in start]
    guess = flat_guesses(first_guess, conditions, names, start, batch)

    def noise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t_net = t * NUM_TRAIN_TIMESTEPS
        pieces = dict(zip(names, x.split(sizes, dim=1), strict=True))
        inputs, times = {}, {}
        for n in backbone.modality_names:
            if n in pieces:
                inputs[n], times[n] = pieces[n].reshape(shapes[n]), t_net
            elif n in conditions or ignored == "noise":
                fresh = n not in conditions
                inputs[n] = (
                    randn_tensor(shapes[n], generator, x.device, x.dtype)
                    if fresh
                    else conditions[n]
                )
                times[n] = torch.zeros_like(t_net)
        if on_call is not None:
            on_call(t_net, inputs)
        with policy.for_backbone():
            out = backbone(inputs, times).sample
        flat = torch.cat([out[n].reshape(batch, -1) for n in names], dim=1).float()
        return as_noise(flat, x, t, schedule, prediction, guess)

    schedule = DiscreteVPSchedule.copgen()
    solver = DPMSolverFast(noise, schedule)
    flat_start = torch.cat([z.reshape(batch, -1) for z in start], dim=1)
    x = solver.sample(initial_state(flat_start, guess, preset, schedule), preset)
    final = {n: z.reshape(shapes[n]) for n, z in zip(names, x.split(sizes, dim=1), strict=True)}
    return SamplingOutput(latents={**final, **conditions})


def as_noise(
    out: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor,
    schedule: DiscreteVPSchedule,
    prediction: Prediction,
    guess: torch.Tensor | None = None,
) -> torch.Tensor:
    """The backbone's output as the noise prediction the solver takes.

    The published COP-GEN predicts the noise (``"epsilon"``). A small model trained for minutes
    predicts it poorly at high noise, and the solver's first data prediction ``(x - σ ε)/α``
    divides that error by ``α`` (0.07 at t = 1): samples explode. Such a model predicts the
    clean latent instead (``"sample"``) or, better, the velocity ``v = α ε - σ x0``
    (``"v_prediction"``): its data prediction ``α x - σ v`` is the input itself at low noise, so
    the network need not learn the identity there (measured: a 1200-step ``"sample"`` backbone
    given a held-out latent at t = 1 returned it with mean squared error 0.44, which the
    solver's last steps hand on to the output). With a first ``guess``, the backbone works on
    the residual ``x0 - guess``: the guess is added to a clean-latent prediction, and a velocity
    is over the residual's noisy version ``x - α guess``. ``ε = (x - α x0)/σ`` makes the solver
    recover exactly that ``x0``. The map is affine per item, so it commutes with blending chip
    predictions.
    """
    if prediction == "epsilon":
        if guess is not None:
            raise ConfigError("a first guess needs a 'sample' or 'v_prediction' backbone")
        return out
    check_prediction_type(prediction)
    alpha = _col(schedule.alpha(t), x)
    sigma = _col(schedule.sigma(t), x)
    base = 0.0 if guess is None else guess
    velocity = prediction == "v_prediction"
    x0 = base + (alpha * (x - alpha * base) - sigma * out if velocity else out)
    return (x - alpha * x0) / sigma


def initial_state(
    noise: torch.Tensor,
    guess: torch.Tensor | None,
    preset: CopgenSamplerPreset,
    schedule: DiscreteVPSchedule,
) -> torch.Tensor:
    """Where the solver starts: the ``noise`` itself at ``t_start = 1`` (the published sampler),
    or the first ``guess`` (zero without one: the latents' mean) noised to ``t_start < 1``.

    Starting part-way (SDEdit; diffusers' ``strength``) lets the backbone change only what a
    sample at that noise level still leaves open: the bundled model's backbone, trained on nine
    places, moves a held-out place's latents further from the truth than its first guess is,
    and its ``strength`` is chosen by leave-one-place-out."""
    if preset.t_start >= 1.0:
        return noise
    t = torch.full((noise.shape[0],), preset.t_start, device=noise.device)
    base = 0.0 if guess is None else guess
    return _col(schedule.alpha(t), noise) * base + _col(schedule.sigma(t), noise) * noise


def flat_guesses(
    first_guess: FirstGuess | None,
    conditions: Mapping[str, torch.Tensor],
    names: Sequence[str],
    start: Sequence[torch.Tensor],
    batch: int,
) -> torch.Tensor | None:
    """The first guesses of the generated slots, flattened like the solver's state (``start``:
    each slot's initial state, whose shape and device the guess takes); ``None`` without a
    first guess. A per-cell linear map: on canvases it equals the guess made chip by chip."""
    if first_guess is None:
        return None
    parts = [
        first_guess.guess(conditions, n, like=z).reshape(batch, -1)
        for n, z in zip(names, start, strict=True)
    ]
    return torch.cat(parts, dim=1)


def _check_roles(
    names: Sequence[str], conditions: Mapping[str, torch.Tensor], ignored: str
) -> None:
    if not names:
        raise ModalityError("nothing to generate: pass at least one slot in generate")
    both = set(names) & set(conditions)
    if both:
        raise ModalityError(f"{sorted(both)} cannot be generated and a condition at once")
    if ignored not in ("noise", "omit"):
        raise ConfigError(f"ignored must be 'noise' (official) or 'omit', got {ignored!r}")


def _batch(conditions: Mapping[str, torch.Tensor], batch_size: int | None) -> int:
    sizes = {z.shape[0] for z in conditions.values()}
    if len(sizes) > 1:
        raise ModalityError(f"conditions disagree in batch size: {sorted(sizes)}")
    batch = sizes.pop() if sizes else batch_size or 1
    if batch_size is not None and batch_size != batch:
        raise ModalityError(f"batch_size {batch_size} differs from the conditions' {batch}")
    return batch


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-item ``(B,)`` coefficient broadcast over ``like``'s trailing dimensions."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


__all__ = [
    "COPGEN_SAMPLER",
    "PREDICTIONS",
    "CallHook",
    "CopgenSamplerPreset",
    "DPMSolverFast",
    "DiscreteVPSchedule",
    "Prediction",
    "as_noise",
    "copgen_betas",
    "copgen_sample",
    "flat_guesses",
    "initial_state",
    "interpolate",
]
