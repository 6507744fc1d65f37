"""COP-GEN's sampler preset against the official fixtures (spec A6, B4 of
``shared/reference/copgen-parity/README.md``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from geocopgen.copgen.published import load_copgen_backbone
from geocopgen.copgen.sampler import (
    COPGEN_SAMPLER,
    CopgenSamplerPreset,
    DiscreteVPSchedule,
    DPMSolverFast,
    as_noise,
    copgen_betas,
    copgen_sample,
    initial_state,
)
from geocopgen.errors import ConfigError, ModalityError
from geocopgen.models.schedule import model_timestep, official_scheduler

REF = (Path(__file__).parents[1] / ".." / "shared" / "reference" / "copgen-parity").resolve()
FIXTURE = REF / "sampler_tiny_io.safetensors"
#: float32 spacing at 1000: one ulp of the largest network time.
TIME_ULP = 1000 * 2**-23
#: Spec B4: compare the final latents relative to their maximum (|max| is 8 to 83 here).
RTOL = 1e-5
API_CASE = "cond_S2L2A_gen_DEM_S1RTC"

pytestmark = pytest.mark.skipif(not REF.is_dir(), reason=f"parity fixtures not at {REF}")


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE)


@pytest.fixture(scope="module")
def cases() -> dict[str, dict]:
    with safe_open(FIXTURE, "pt") as f:
        return json.loads(f.metadata()["json"])["cases"]


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return load_copgen_backbone(REF / "backbone_tiny.pth", embed_dim=64, depth=4, num_heads=2)


def test_schedule_and_grid_match_the_official_solver(io):
    ns = DiscreteVPSchedule.copgen()
    assert torch.equal(copgen_betas(), io["solver.betas"])
    assert torch.equal(ns.t_discrete, io["solver.t_discrete"])
    assert torch.equal(COPGEN_SAMPLER.time_grid(), io["solver.time_grid"])
    # float32 log/cumsum: measured 2.4e-7 here (platform ulps), |log alpha| up to 4.8
    torch.testing.assert_close(
        ns.log_alpha_discrete, io["solver.log_alpha_discrete"], rtol=0, atol=1e-6
    )
    assert COPGEN_SAMPLER.step_orders() == [3] * 16 + [2]


def test_schedule_interpolates_and_inverts():
    ns = DiscreteVPSchedule.copgen()
    t = torch.tensor([0.001, 0.0125, 0.5, 0.98002, 1.0])
    torch.testing.assert_close(ns.inverse_lambda(ns.lambda_(t)), t, rtol=1e-4, atol=1e-6)
    knots = ns.t_discrete[[0, 499, 999]]
    assert torch.equal(ns.log_alpha(knots), ns.log_alpha_discrete[[0, 499, 999]])


def _times(preset: CopgenSamplerPreset = COPGEN_SAMPLER) -> torch.Tensor:
    """Network times ``N t`` of every model call, with a zero noise prediction."""
    calls = []

    def noise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t * 1000)
        return torch.zeros_like(x)

    DPMSolverFast(noise, DiscreteVPSchedule.copgen()).sample(torch.zeros(1, 4), preset)
    return torch.stack(calls)


def test_model_call_times_match_the_official_trace(io, cases):
    """50 calls at float times (1000, 980.01996, ...), the last grid point never evaluated."""
    ours = _times()
    assert ours.shape == (50, 1)
    for case in cases:
        torch.testing.assert_close(ours, io[f"{case}.nnet_t_trace"], rtol=0, atol=TIME_ULP)


def test_the_diffusers_preset_cannot_reproduce_these_times(io):
    """Why COP-GEN has its own solver: diffusers' singlestep scheduler rounds the grid."""
    sch = official_scheduler()
    sch.set_timesteps(50)
    diffusers_times = model_timestep(sch.timesteps)
    official = io[f"{API_CASE}.nnet_t_trace"][:, 0]
    assert (diffusers_times - official).abs().max() > 0.4


class _Stop(Exception):
    pass


def _first_call(backbone, case: dict, io: dict, **kwargs) -> tuple[torch.Tensor, dict]:
    """The network inputs of the first model call (the run stops there)."""
    seen = {}

    def hook(t: torch.Tensor, inputs: dict) -> None:
        seen.update(t=t.clone(), inputs=dict(inputs))
        raise _Stop

    gen = torch.Generator().manual_seed(case["torch_manual_seed"])
    conds = {s: io[f"cond.{s}"] for s in case["condition"]}
    with pytest.raises(_Stop):
        copgen_sample(backbone, case["generate"], conds, generator=gen, on_call=hook, **kwargs)
    return seen["t"], seen["inputs"]


@pytest.mark.parametrize("case_name", [API_CASE, "cond_S2L2A_gen_rest", "unconditional_all"])
def test_rng_protocol_replays_the_official_draws(tiny, io, cases, case_name):
    """x_init: one randn per generated slot in slot order; then per call one randn per ignored
    slot in slot order; conditions unchanged; every non-generated slot at t = 0."""
    case = cases[case_name]
    t, inputs = _first_call(tiny, case, io)
    assert list(inputs) == list(tiny.modality_names)
    for s in case["generate"]:
        assert torch.equal(inputs[s], io[f"{case_name}.x_init.{s}"])
    for s in case["ignored"]:
        assert torch.equal(inputs[s], io[f"{case_name}.first_call_ignored_noise.{s}"])
    for s in case["condition"]:
        assert inputs[s] is not None and torch.equal(inputs[s], io[f"cond.{s}"])
    assert float(t) == 1000.0


def _final(backbone, case_name: str, case: dict, io: dict) -> float:
    """Run the whole preset; return the worst |ours - official| / max |official| over slots."""
    gen = torch.Generator().manual_seed(case["torch_manual_seed"])
    conds = {s: io[f"cond.{s}"] for s in case["condition"]}
    out = copgen_sample(backbone, case["generate"], conds, generator=gen).latents
    for s in case["condition"]:
        assert out[s] is conds[s]
    assert set(out) == set(case["generate"]) | set(case["condition"])
    worst = 0.0
    for s in case["generate"]:
        ref = io[f"{case_name}.final.{s}"]
        worst = max(worst, float((out[s] - ref).abs().max() / ref.abs().max()))
    return worst


def test_final_latents_match_the_official_sampler(tiny, io, cases):
    """The API-style case (conditions, generated and ignored slots): measured 4.9e-7 here."""
    assert _final(tiny, API_CASE, cases[API_CASE], io) < RTOL


@pytest.mark.slow
@pytest.mark.parametrize("case_name", ["cond_S2L2A_gen_rest", "unconditional_all"])
def test_final_latents_of_the_other_cases(tiny, io, cases, case_name):
    """Measured 7.6e-7 and 5.9e-7 relative to the maximum here."""
    assert _final(tiny, case_name, cases[case_name], io) < RTOL


def test_omit_leaves_ignored_slots_out_and_draws_only_the_start(tiny, io, cases):
    """geocopgen's deterministic alternative (not the official behaviour)."""
    case = cases[API_CASE]
    _, inputs = _first_call(tiny, case, io, ignored="omit")
    assert set(inputs) == set(case["generate"]) | set(case["condition"])
    short = CopgenSamplerPreset(steps=3)
    conds = {s: io[f"cond.{s}"] for s in case["condition"]}
    runs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(7)
        out = copgen_sample(
            tiny, ["DEM_DEM"], conds, generator=gen, ignored="omit", preset=short
        ).latents
        runs.append((out["DEM_DEM"], torch.randn(1, generator=gen)))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    gen = torch.Generator().manual_seed(7)
    torch.randn(1, 8, 8, 8, generator=gen)  # the only draw: DEM's x_init
    assert torch.equal(runs[0][1], torch.randn(1, generator=gen))


def test_x_init_replaces_the_initial_noise(tiny, io, cases):
    case = cases[API_CASE]
    start = {s: io[f"{API_CASE}.x_init.{s}"] for s in case["generate"]}
    seen = {}

    def hook(t, inputs):
        seen.update(inputs)
        raise _Stop

    with pytest.raises(_Stop):
        copgen_sample(tiny, case["generate"], x_init=start, on_call=hook, ignored="omit")
    assert all(torch.equal(seen[s], start[s]) for s in start)


def test_bad_requests_are_named(tiny, io):
    cond = {"DEM_DEM": torch.zeros(1, 8, 8, 8)}
    with pytest.raises(ModalityError, match="generated and a condition"):
        copgen_sample(tiny, ["DEM_DEM"], cond)
    with pytest.raises(ModalityError, match="nothing to generate"):
        copgen_sample(tiny, [], cond)
    with pytest.raises(ConfigError, match="ignored must be"):
        copgen_sample(tiny, ["S1RTC_vh_vv"], cond, ignored="zeros")
    with pytest.raises(ConfigError, match="order 3"):
        CopgenSamplerPreset(steps=0).step_orders()


def test_short_presets_follow_the_official_order_rule():
    """DPM-Solver-fast's rule (K = steps // 3 + 1) for the few-call presets benchmarks use."""
    orders = {n: CopgenSamplerPreset(steps=n).step_orders() for n in (1, 2, 3, 4, 5, 6)}
    assert orders == {1: [1], 2: [2], 3: [2, 1], 4: [3, 1], 5: [3, 2], 6: [3, 2, 1]}


@pytest.mark.parametrize("prediction", ["sample", "v_prediction"])
def test_every_prediction_type_hands_the_solver_the_true_noise(prediction):
    """A backbone that predicts exactly what it was trained on (the residual over a first guess,
    or that residual's velocity) gives the solver the exact noise, at every time."""
    gen = torch.Generator().manual_seed(0)
    z, eps, guess = (torch.randn(3, 16, generator=gen) for _ in range(3))
    schedule = DiscreteVPSchedule.copgen()
    t = torch.tensor([0.001, 0.5, 1.0])
    alpha, sigma = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
    x = alpha * z + sigma * eps
    residual = z - guess
    out = residual if prediction == "sample" else alpha * eps - sigma * residual
    noise = as_noise(out, x, t, schedule, prediction, guess)
    torch.testing.assert_close(noise, eps, atol=2e-4, rtol=1e-4)


def test_a_velocity_backbone_returns_its_input_at_low_noise():
    """Why the bundled model predicts a velocity: with a zero output, its data prediction at the
    last solver time is (almost) the input itself, not zero or the guess."""
    schedule = DiscreteVPSchedule.copgen()
    t = torch.tensor([0.001])
    x = torch.randn(1, 16, generator=torch.Generator().manual_seed(1))
    noise = as_noise(torch.zeros_like(x), x, t, schedule, "v_prediction", torch.zeros_like(x))
    x0 = (x - schedule.sigma(t) * noise) / schedule.alpha(t)
    torch.testing.assert_close(x0, x, atol=0.05, rtol=0.05)


def test_a_strength_below_one_starts_from_the_noised_guess():
    schedule = DiscreteVPSchedule.copgen()
    noise = torch.randn(2, 16, generator=torch.Generator().manual_seed(2))
    guess = torch.full_like(noise, 3.0)
    assert torch.equal(initial_state(noise, guess, COPGEN_SAMPLER, schedule), noise)
    low = CopgenSamplerPreset(t_start=0.2)
    t = torch.tensor([0.2])
    expected = schedule.alpha(t) * guess + schedule.sigma(t) * noise
    torch.testing.assert_close(initial_state(noise, guess, low, schedule), expected)
    torch.testing.assert_close(
        initial_state(noise, None, low, schedule), schedule.sigma(t) * noise
    )
