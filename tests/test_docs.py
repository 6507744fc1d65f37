"""The documentation builds (mkdocs --strict: no broken link, every nav page present), every
example script the docs list exists with its picture, and the guides' Python examples run as
written on real rasters."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).parents[1]


def test_mkdocs_builds_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "quickstart" / "index.html").is_file()


def test_nav_lists_the_user_guides():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = re.findall(r"[\w-]+\.md", str(config["nav"]))
    for page in ("quickstart.md", "guide-cli.md", "guide-python.md", "guide-xarray.md",
                 "scaling-out.md", "modalities.md", "official-weights.md", "architecture.md",
                 "licences.md"):  # fmt: skip
        assert page in pages
        assert (ROOT / "docs" / page).is_file()


def test_examples_in_the_quick_start_exist_with_their_pictures():
    quickstart = (ROOT / "docs" / "quickstart.md").read_text()
    scripts = sorted(set(re.findall(r"`(\w+\.py)`", quickstart)))
    assert len(scripts) == 7
    for script in scripts:
        assert (ROOT / "examples" / script).is_file(), script
        assert (ROOT / "examples" / script.replace(".py", ".png")).is_file(), script


# --- the guides' Python examples run as written ----------------------------------------------
GUIDES = ("quickstart.md", "guide-python.md", "guide-xarray.md")
_BLOCK = re.compile(r"(<!-- not run[^>]*-->\s*\n)?```python\n(.*?)```", re.DOTALL)


def python_examples(page: str) -> list[str]:
    """The page's fenced Python blocks, but those marked ``<!-- not run: why -->`` (signatures)."""
    text = (ROOT / "docs" / page).read_text()
    return [code for marker, code in _BLOCK.findall(text) if not marker]


@pytest.fixture
def guide_folder(tmp_path, monkeypatch):
    """A working folder as a reader has it: real rasters saved as ``s2.tif`` (TerraMind S2 L2A)
    and ``s1.tif`` (S1 RTC, two dB bands with no names), the repository's ``examples/``, the
    ``out/`` the quick start's commands made, and a 4-modality pipeline where ``geocopgen train
    backbone --output runs/backbone`` exports one (a tiny random one: encode and decode need such
    a model, the bundled COP-GEN model has none of their single canvas). The bundled model runs
    2 solver steps, to keep it quick."""
    from _translate_fixtures import save_tiny
    from conftest import terramind

    from geocopgen.copgen import model as copgen_model
    from geocopgen.copgen.sampler import COPGEN_SAMPLER

    shutil.copy(terramind("S2L2A"), tmp_path / "s2.tif")
    shutil.copy(terramind("S1RTC"), tmp_path / "s1.tif")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "out").mkdir()
    save_tiny(tmp_path / "runs" / "backbone" / "pipeline")
    monkeypatch.chdir(tmp_path)
    # the bundled model is a COP-GEN model: its steps are its sampler preset's (CopgenModel.preset)
    quick = dataclasses.replace(COPGEN_SAMPLER, steps=2)
    monkeypatch.setitem(copgen_model.SAMPLER_PRESETS, "copgen", quick)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small model on a shared machine: one thread is faster
    yield tmp_path
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("page", GUIDES)
def test_the_guides_python_examples_run_as_written(guide_folder, page):
    examples = python_examples(page)
    assert examples, f"{page} has no Python example"
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the S1 detection warning is the guide's point
        for i, code in enumerate(examples, start=1):
            exec(compile(code, f"docs/{page}, example {i}", "exec"), namespace)


def test_signatures_are_the_only_examples_not_run():
    for page in GUIDES:
        text = (ROOT / "docs" / page).read_text()
        for marker in re.findall(r"<!-- not run[^>]*-->", text):
            assert marker == "<!-- not run: a signature -->", (page, marker)
