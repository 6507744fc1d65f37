"""``geocopgen train`` and ``geocopgen evaluate`` from the command line, on the real tiles."""

from __future__ import annotations

import json
from pathlib import Path

from _latents_fixtures import TERRAMIND
from typer.testing import CliRunner

from geocopgen.cli import app
from geocopgen.models import ModalityAutoencoder

runner = CliRunner()

AE_YAML = """
model: {{modality: dem, latent_channels: 4, block_out_channels: [8, 8, 16, 16],
         norm_num_groups: 4, mid_block_add_attention: false}}
data: {{sources: ["{dem}/*.tif"], crop_size: 32, scaling_crops: 4, val_crops: 2, val_crop_size: 64}}
optim: {{lr: 3.0e-3, warmup_steps: 1}}
loop: {{steps: {steps}, batch_size: 2, ckpt_every: 1, val_every: 2, log_every: 1}}
"""


def write_config(path: Path, steps: int, extra: str = "") -> Path:
    path.write_text(AE_YAML.format(dem=TERRAMIND / "DEM", steps=steps) + extra)
    return path


def test_train_autoencoder_runs_resumes_and_exports(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = write_config(tmp_path / "a.yaml", 2)
    result = runner.invoke(app, ["train", "autoencoder", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "autoencoder: step 2" in result.stdout and "validation: step 2" in result.stdout
    config = write_config(tmp_path / "a.yaml", 3)
    result = runner.invoke(app, ["train", "autoencoder", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "autoencoder: step 3" in result.stdout  # resumed: only step 3 ran
    assert (out / "checkpoints" / "latest").read_text() == "step-00000003"
    ae = ModalityAutoencoder.from_pretrained(str(out / "autoencoder"))
    assert ae.config.modality == "dem"


def test_train_reports_config_errors_without_a_traceback(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.yaml", 2, "ema: {decay: 0.9, dacey: 1}\n")
    result = runner.invoke(app, ["train", "autoencoder", str(bad), "-o", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "ema: unknown key(s) dacey" in result.stderr
    assert "Traceback" not in result.output
    missing = runner.invoke(app, ["train", "backbone", str(tmp_path / "nope.yaml"), "-o", "x"])
    assert missing.exit_code == 1 and "cannot read the config file" in missing.stderr
    out = tmp_path / "run"
    runner.invoke(
        app,
        ["-q", "train", "autoencoder", str(write_config(tmp_path / "a.yaml", 1)), "-o", str(out)],
    )
    changed = write_config(tmp_path / "b.yaml", 2).read_text().replace("lr: 3.0e-3", "lr: 1.0e-2")
    (tmp_path / "b.yaml").write_text(changed)
    resumed = runner.invoke(app, ["train", "autoencoder", str(tmp_path / "b.yaml"), "-o", str(out)])
    assert resumed.exit_code == 1 and "cannot resume" in resumed.stderr
    assert "optim.lr: checkpoint 0.003, now 0.01" in resumed.stderr


def test_evaluate_the_bundled_model_on_a_shared_tile(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    args = [
        "-q",
        "evaluate",
        "default",
        str(TERRAMIND),
        "-t",
        "38D_378R_2_3",
        "-d",
        "s2l2a->dem",
        "--samples",
        "2",
        "--steps",
        "3",
        "--json",
        str(report),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "s2l2a->dem" in result.stdout and "mae_demeaned_m" in result.stdout
    data = json.loads(report.read_text())
    assert data["meta"]["test_places"] == ["38D_378R_2_3"]
    assert len(data["meta"]["train_places"]) == 3 and not data["meta"]["baselines_in_sample"]
    assert data["directions"][0]["metrics"]["linear_baseline"]["mae_m"] > 0


def test_evaluate_names_unknown_places_and_directions(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "default", str(TERRAMIND), "-t", "Atlantis"])
    assert result.exit_code == 1 and "no place Atlantis" in result.stderr
    result = runner.invoke(app, ["evaluate", "default", str(TERRAMIND), "-d", "s2l2a"])
    assert result.exit_code == 1 and "COND[+COND...]->TARGET" in result.stderr
    result = runner.invoke(app, ["evaluate", str(tmp_path), str(TERRAMIND)])
    assert result.exit_code == 1 and "pipeline.json" in result.stderr
