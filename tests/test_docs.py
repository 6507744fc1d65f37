"""The documentation builds (mkdocs --strict: no broken link, every nav page present), and every
example script the docs list exists with its picture."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
    assert len(scripts) == 6
    for script in scripts:
        assert (ROOT / "examples" / script).is_file(), script
        assert (ROOT / "examples" / script.replace(".py", ".png")).is_file(), script
