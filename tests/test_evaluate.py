"""``evaluate`` on the real TerraMind places: known answers for the scoring, and the bundled model
end to end.

The scoring is checked with injected translators whose answers are known (the observed raster
itself, or it plus a constant), so every number the report prints can be derived by hand; the
bundled model then runs the real translation path on a shared tile.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _latents_fixtures import terramind_places

from geocopgen.api import load_model
from geocopgen.errors import CheckpointError, ConfigError, ModalityError, UnknownModalityError
from geocopgen.evaluation import LinearBaseline, MeanBaseline, mae
from geocopgen.evaluation.features import (
    FeatureNet,
    frechet_distance,
    load_feature_extractor,
    precision_recall,
    save_feature_net,
)
from geocopgen.evaluation.report import (
    Direction,
    default_directions,
    default_translator,
    evaluate,
    place_arrays,
)
from geocopgen.weights import resolve_model

ALL = ("dem", "s1rtc", "s2l1c", "s2l2a")
TEST = "38D_378R_2_3"


@pytest.fixture(scope="module")
def places():
    places = terramind_places(ALL)
    return [p for p in places if p.name == TEST], [p for p in places if p.name != TEST]


class Stub:
    """Stands in for a pipeline where only the modality list matters (injected translators)."""

    modalities = ALL
    num_inference_steps = 1


def oracle(offset: float = 0.0):
    """A translator that returns the observed target (plus ``offset``) for every sample."""

    def translate(
        pipeline, conditions, target, *, num_samples, seed, num_inference_steps, precision
    ):
        truth = next(p for p in ORACLE_TRUTH if p[0] == target)[1]
        return np.repeat((truth + offset)[None], num_samples, axis=0)

    return translate


ORACLE_TRUTH: list = []


def test_directions_parse_and_default_to_every_sensible_pair() -> None:
    d = Direction.parse("S2L2A + s1 -> DEM")
    assert d == Direction(("s2l2a", "s1rtc"), "dem") and str(d) == "s2l2a+s1rtc->dem"
    dirs = [str(d) for d in default_directions(ALL)]
    assert len(dirs) == 16 and "dem+s1rtc+s2l1c->s2l2a" in dirs and "s1rtc->dem" in dirs
    with pytest.raises(ConfigError, match="COND"):
        Direction.parse("s2l2a")
    with pytest.raises(ConfigError, match="both a condition and the target"):
        Direction.parse("dem->dem")
    with pytest.raises(UnknownModalityError):
        Direction.parse("landsat->dem")


def test_a_perfect_translator_scores_perfectly_and_baselines_match_by_hand(places) -> None:
    test, train = places
    truth = place_arrays(test)[TEST]
    ORACLE_TRUTH[:] = list(truth.items())
    report = evaluate(
        Stub(),
        test,
        train,
        directions=["s2l2a->dem", "s2l2a->s2l1c"],
        num_samples=2,
        translator=oracle(),
        progress=False,
    )
    dem, l1c = report.directions
    model = dem.metrics["model"]
    assert model["mae_m"] == 0 and model["rmse_demeaned_m"] == 0 and model["spread"] == 0
    assert model["wasserstein"] == 0 and model["range_coverage"] == 1
    assert l1c.metrics["model"]["ssim_10m"] == pytest.approx(1.0)
    assert l1c.metrics["model"]["psnr_10m"] == np.inf
    # the baselines, recomputed by hand from the three training places
    train_arrays = place_arrays(train).values()
    mean_bl = MeanBaseline().fit([p["dem"] for p in train_arrays])
    linear = LinearBaseline().fit(
        [p["s2l2a"] for p in train_arrays], [p["dem"] for p in train_arrays]
    )
    expect_mean = mae(mean_bl.predict(truth["dem"]), truth["dem"])[0]
    expect_linear = mae(linear.predict(truth["s2l2a"]), truth["dem"])[0]
    assert dem.metrics["mean_baseline"]["mae_m"] == pytest.approx(expect_mean)
    assert dem.metrics["linear_baseline"]["mae_m"] == pytest.approx(expect_linear)
    assert dem.metrics["mean_baseline"]["range_coverage"] == 0  # a constant covers no range
    assert report.meta["train_places"] == [p.name for p in train]
    assert not report.meta["baselines_in_sample"]


def test_a_height_offset_is_removed_by_the_demeaned_metrics(places) -> None:
    test, train = places
    ORACLE_TRUTH[:] = list(place_arrays(test)[TEST].items())
    report = evaluate(
        Stub(),
        test,
        train,
        directions=["s1rtc->dem"],
        num_samples=1,
        translator=oracle(100.0),
        progress=False,
    )
    m = report.directions[0].metrics["model"]
    assert m["mae_m"] == pytest.approx(100.0) and m["rmse_m"] == pytest.approx(100.0)
    assert m["mae_demeaned_m"] == pytest.approx(0.0, abs=1e-4)


def test_feature_metrics_from_a_local_extractor(tmp_path: Path, places) -> None:
    torch.manual_seed(0)
    path = save_feature_net(FeatureNet(1, (8, 16)), tmp_path / "dem_features")
    net = load_feature_extractor(path)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, a + 3.0) == pytest.approx(4 * 9.0, rel=1e-6)
    assert precision_recall(a, a) == (1.0, 1.0)
    assert precision_recall(a, a + 100.0) == (0.0, 0.0)
    test, train = places
    ORACLE_TRUTH[:] = list(place_arrays(test)[TEST].items())
    report = evaluate(
        Stub(),
        test,
        train,
        directions=["s2l2a->dem"],
        num_samples=1,
        translator=oracle(),
        features={"dem": net},
        progress=False,
    )
    m = report.directions[0].metrics
    assert m["model"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert m["mean_baseline"]["fid"] > 0
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_feature_extractor(tmp_path / "dem_features.json")


def test_the_bundled_model_end_to_end(tmp_path: Path, places) -> None:
    """The bundled COP-GEN model through the evaluation's default translator."""
    test, train = places
    pipeline = load_model(resolve_model("default"), device="cpu")
    translate_arrays = default_translator()
    samples = translate_arrays(
        pipeline,
        {"s2l2a": place_arrays(test)[TEST]["s2l2a"]},
        "dem",
        num_samples=2,
        seed=3,
        num_inference_steps=4,
    )
    assert samples.shape == (2, 1, 224, 224) and np.isfinite(samples).all()
    again = translate_arrays(
        pipeline,
        {"s2l2a": place_arrays(test)[TEST]["s2l2a"]},
        "dem",
        num_samples=2,
        seed=3,
        num_inference_steps=4,
    )
    np.testing.assert_array_equal(samples, again)  # seeded: reruns reproduce
    report = evaluate(
        pipeline,
        test,
        train,
        directions=["s2l2a->dem", "dem+s2l2a->s1rtc"],
        num_samples=2,
        num_inference_steps=4,
        progress=False,
    )
    out = json.loads(report.write_json(tmp_path / "report.json").read_text())
    assert [d["direction"] for d in out["directions"]] == ["s2l2a->dem", "dem+s2l2a->s1rtc"]
    dem = out["directions"][0]["metrics"]
    assert 0 < dem["model"]["mae_m"] < 2000 and dem["model"]["spread"] > 0
    assert set(dem) == {"model", "mean_baseline", "linear_baseline"}
    table = report.table()
    assert "s2l2a->dem" in table and "mae_db_VH" in table and "linear" in table


def test_bad_requests_get_named_errors(places) -> None:
    test, train = places
    pipeline = Stub()
    pipeline.modalities = ("dem", "s2l2a")
    with pytest.raises(ModalityError, match="the model has no s1rtc"):
        evaluate(pipeline, test, train, directions=["s1rtc->dem"], progress=False)
    with pytest.raises(ConfigError, match="no test place"):
        evaluate(pipeline, [], train, progress=False)
