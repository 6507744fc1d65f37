"""Sampling and the training objective: seeding, held conditions, partial noising, the
denoise-step API a tiler drives, looping, roles and the loss."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from _models_fixtures import tiny_backbone

from geocopgen.errors import ConfigError, ModalityError, UnknownModalityError
from geocopgen.models import (
    RoleProbabilities,
    default_scheduler,
    diffusion_loss,
    draw_roles,
    generators_from_seeds,
    predict_model_output,
    sample,
    sample_chain,
    training_scheduler,
)
from geocopgen.models.objective import Roles
from geocopgen.models.schedule import predicted_clean


@pytest.fixture(scope="module")
def bb():
    return tiny_backbone()


def _cond(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"s2l2a": torch.randn(batch, 4, 8, 8, generator=g)}


def _run(bb, **kw):
    args = dict(num_inference_steps=6, progress=False)
    args.update(kw)
    return sample(bb, default_scheduler(), **args)


def test_seeded_sampling_is_reproducible_and_seeds_matter(bb):
    cond = _cond()
    a = _run(bb, generate=["dem"], conditions=cond, generator=torch.Generator().manual_seed(7))
    b = _run(bb, generate=["dem"], conditions=cond, generator=torch.Generator().manual_seed(7))
    c = _run(bb, generate=["dem"], conditions=cond, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.latents["dem"], b.latents["dem"])
    assert not torch.allclose(a.latents["dem"], c.latents["dem"])


def test_per_item_generators_make_items_independent_of_their_batch(bb):
    """What a translator relies on: a chip's sample depends on its own seed, not its batch."""
    cond = _cond(batch=3)
    together = _run(
        bb, generate=["dem"], conditions=cond, generator=generators_from_seeds([11, 12, 13])
    )
    alone = _run(
        bb,
        generate=["dem"],
        conditions={"s2l2a": cond["s2l2a"][1:2]},
        generator=generators_from_seeds(12),
    )
    torch.testing.assert_close(
        together.latents["dem"][1:2], alone.latents["dem"], atol=1e-5, rtol=1e-5
    )


def test_conditions_come_back_exactly_unchanged(bb):
    cond = _cond()
    before = cond["s2l2a"].clone()
    out = _run(bb, generate=["dem", "s1rtc"], conditions=cond, num_samples=3)
    assert torch.equal(cond["s2l2a"], before)  # the input is not modified
    assert torch.equal(out.latents["s2l2a"], before.repeat_interleave(3, dim=0))
    assert set(out.latents) == {"dem", "s1rtc", "s2l2a"}


def test_n_samples_per_condition_are_condition_major_and_distinct(bb):
    out = _run(
        bb,
        generate=["dem"],
        conditions=_cond(batch=2),
        num_samples=4,
        generator=torch.Generator().manual_seed(0),
    )
    dem = out.latents["dem"]
    assert dem.shape == (8, 4, 8, 8)
    assert not torch.allclose(dem[0], dem[1])


def test_unconditional_joint_generation(bb):
    out = _run(bb, generate=["dem", "s1rtc", "s2l1c", "s2l2a"], batch_size=2, latent_shape=(6, 6))
    assert {k: tuple(v.shape) for k, v in out.latents.items()} == dict.fromkeys(
        ["dem", "s1rtc", "s2l1c", "s2l2a"], (2, 4, 6, 6)
    )


def test_partial_noising_re_imagines_to_the_chosen_strength(bb):
    cond, init = (
        _cond(),
        {"dem": torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))},
    )
    g = torch.Generator().manual_seed(1)

    def dist(strength):
        out = _run(
            bb,
            generate=["dem"],
            conditions=cond,
            init_latents=init,
            strength=strength,
            num_inference_steps=10,
            generator=copy.deepcopy(g),
        )
        return float((out.latents["dem"] - init["dem"]).pow(2).mean())

    assert dist(0.0) == 0.0  # nothing re-imagined: held as it was
    assert dist(0.3) < dist(0.7) < dist(1.0) + 1e-6
    with pytest.raises(ConfigError, match="needs their init_latents"):
        _run(bb, generate=["dem"], conditions=cond, strength=0.5)


def test_denoise_step_api_drives_the_same_loop_as_sample(bb):
    """A tiler calls predict_model_output per chip and steps the scheduler itself on the canvas."""
    cond = _cond()
    ref = _run(bb, generate=["dem"], conditions=cond, generator=torch.Generator().manual_seed(3))
    sch = default_scheduler()
    sch.set_timesteps(6)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * sch.init_noise_sigma
    with torch.no_grad():
        for t in sch.timesteps:
            eps = predict_model_output(bb, {"dem": x}, cond, t)["dem"]
            x = sch.step(eps, t, x).prev_sample
    assert torch.equal(x, ref.latents["dem"])


def test_ignored_modalities_omitted_or_noised_as_officially(bb):
    cond = _cond()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        omit = predict_model_output(bb, {"dem": x}, cond, 500)
        noise_a = predict_model_output(
            bb, {"dem": x}, cond, 500, ignored="noise", generator=torch.Generator().manual_seed(0)
        )
        noise_b = predict_model_output(
            bb, {"dem": x}, cond, 500, ignored="noise", generator=torch.Generator().manual_seed(0)
        )
    assert torch.equal(noise_a["dem"], noise_b["dem"])
    assert not torch.allclose(omit["dem"], noise_a["dem"])


def test_looping_generated_becomes_condition(bb):
    stages = [(["s2l2a"], ["dem"]), (["dem"], ["s2l2a"])]
    outs = sample_chain(
        bb, default_scheduler(), _cond(), stages, num_inference_steps=4, progress=False
    )
    assert torch.equal(outs[1].latents["dem"], outs[0].latents["dem"])  # held as condition
    assert not torch.allclose(outs[1].latents["s2l2a"], _cond()["s2l2a"])  # re-generated
    with pytest.raises(ModalityError, match="neither the inputs nor an earlier stage"):
        sample_chain(bb, default_scheduler(), _cond(), [(["s1rtc"], ["dem"])], progress=False)


def test_bad_sampling_requests_are_named_errors(bb):
    with pytest.raises(UnknownModalityError, match="landsat"):
        _run(bb, generate=["landsat"], conditions=_cond())
    with pytest.raises(ModalityError, match="both a condition and a target"):
        _run(bb, generate=["s2l2a"], conditions=_cond())
    with pytest.raises(ModalityError, match=r"'s2l2a' has shape \(2, 3, 8, 8\)"):
        _run(bb, generate=["dem"], conditions={"s2l2a": torch.zeros(2, 3, 8, 8)})
    with pytest.raises(ModalityError, match="disagree"):
        _run(
            bb,
            generate=["dem"],
            conditions={"s2l2a": torch.zeros(2, 4, 8, 8), "s1rtc": torch.zeros(1, 4, 8, 8)},
        )
    with pytest.raises(ConfigError, match="one per item"):
        _run(bb, generate=["dem"], conditions=_cond(), generator=generators_from_seeds([1, 2, 3]))


# --- training objective ------------------------------------------------------------------------
def test_roles_have_a_generated_modality_per_sample_and_the_asked_absence_rate():
    g = torch.Generator().manual_seed(0)
    probs = RoleProbabilities(generate=0.4, condition=0.4, absent=0.2)
    absent, draws = 0, 400
    for _ in range(draws):
        roles = draw_roles(["dem", "s1rtc", "s2l1c", "s2l2a"], 8, probs, generator=g)
        assert roles.present
        assert torch.stack([roles.generated[n] for n in roles.present]).any(dim=0).all()
        absent += 4 - len(roles.present)
    assert absent / (4 * draws) == pytest.approx(0.2, abs=0.03)
    with pytest.raises(ConfigError):
        RoleProbabilities(generate=0.0)


def test_loss_counts_generated_modalities_only():
    bb = tiny_backbone().train()
    latents = {n: torch.randn(4, 4, 8, 8) for n in ("dem", "s2l2a")}
    everyone, no_one = torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)
    roles = Roles(present=["dem", "s2l2a"], generated={"dem": everyone, "s2l2a": no_one})
    out = diffusion_loss(
        bb, training_scheduler(), latents, roles, generator=torch.Generator().manual_seed(0)
    )
    out.loss.backward()
    assert set(out.per_modality) == {"dem"}
    assert torch.equal(out.loss.detach(), out.per_modality["dem"])
    assert bb.decoder_preds[3].weight.grad.abs().sum() == 0  # s2l2a head: condition only
    assert bb.decoder_preds[0].weight.grad.abs().sum() > 0  # dem head is trained
    assert bb.patch_embeds[1].proj.weight.grad is None  # s1rtc absent: not in the graph


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_loss_target_and_clean_estimate_follow_the_prediction_type(kind):
    """The loss regresses onto the noise, the velocity or the clean latent (the one list of
    predictions every model shares), and ``predicted_clean`` inverts whichever target the
    network was trained on back to the clean latent."""
    sched, g = training_scheduler(kind), torch.Generator().manual_seed(0)
    z0, eps = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0, 250, 700, 999])
    noisy = sched.add_noise(z0, eps, t)
    alpha = sched.alphas_cumprod[t].sqrt().reshape(-1, 1, 1, 1)
    sigma = (1 - sched.alphas_cumprod[t]).sqrt().reshape(-1, 1, 1, 1)
    target = {"epsilon": eps, "v_prediction": alpha * eps - sigma * z0, "sample": z0}[kind]
    torch.testing.assert_close(predicted_clean(sched, noisy, target, t), z0, atol=2e-4, rtol=0)

    class Oracle(torch.nn.Module):  # predicts exactly the target the loss should use
        def forward(self, latents, times):
            return SimpleNamespace(sample={"dem": target})

    roles = Roles(present=["dem"], generated={"dem": torch.ones(4, dtype=torch.bool)})
    draws = {"timesteps": {"dem": t}, "noise": {"dem": eps}}
    out = diffusion_loss(Oracle(), sched, {"dem": z0}, roles, **draws)
    assert float(out.loss) < 1e-10


def test_unknown_prediction_types_are_refused():
    with pytest.raises(ConfigError, match="prediction_type must be one of"):
        training_scheduler("x0")
    with pytest.raises(ConfigError, match="prediction_type must be one of"):
        default_scheduler("x0")
