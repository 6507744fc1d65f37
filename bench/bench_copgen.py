"""Benchmark: COP-GEN translation, Sentinel-2 L1C → DEM, on this CPU.

    OMP_NUM_THREADS=1 python bench/bench_copgen.py [--models tiny base bundled] [--size 2000]
        [--steps 1] [--batch-size 8]

What is measured. The Virginia L1C scene (1947 x 1933 px at 10 m) is tiled by VRTs into a
``--size`` x ``--size`` px scene at 10 m (each band at its native 10/20/60 m, see
``bench_scaling.scene``) and translated to DEM (30 m) through ``geocopgen.api.translate`` with
``date="2016-06-01"`` and ``steps=1`` (one model call; the published preset makes 50), streamed to
a temporary GeoTIFF. The condition has three resolution groups (10, 20, 60 m), each encoded chip
by chip by its own VAE; the DEM canvas is denoised and decoded. Models, built in the worker
(nothing saved), weights random:

* ``tiny``: the parity fixture backbone (``shared/reference/copgen-parity``, 0.36M parameters)
  and the fixture DEM VAE; the three S2 L1C VAEs random at the test's tiny width (32);
* ``base``: ``copgen_backbone("base")`` (287M parameters), seeded default init, and the four
  VAEs the direction needs (S2 L1C 10/20/60 m, DEM) at the published config (ch 128,
  ch_mult 1-2-4-4, 2 blocks per level: 83.7M parameters each), seeded random init;
* ``bundled``: the bundled model as shipped (trained weights, patch codecs, first guess).

Each model size runs in its own process (so peak RSS, ``ru_maxrss``, is its own; it includes
building the model). Reported per size: wall time of the translation; ground chips (1920 m,
480 m overlap: ``GroupLayout.chip_shape``) and model calls (backbone chip evaluations / chips);
backbone seconds (forward hooks, ``bench_translate.Timer``) and their share; codec seconds
(every ``encode``/``decode`` call) and share; everything else (reading, resampling, normalising,
cutting and blending chips, solver, writing); **seconds per chip per model call** = backbone s /
(chips x calls); peak RSS.
Reading runs in a prefetch thread during encoding, so with slow VAEs it hides inside their time
and "other" shrinks (base), while fast VAEs wait for it (tiny).
The last table extrapolates to the published preset (50 calls): wall + (50 - calls) x the
measured seconds of one call of the denoising loop (backbone plus blending). An extrapolation,
not a measurement.

Ratios come from one run. Run it with ``OMP_NUM_THREADS=1`` on a shared machine (the figures in
docs/copgen.md were measured on a shared 2-core machine, so absolute times are pessimistic).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench_scaling import scene
from bench_translate import Timer

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / ".." / "shared" / "reference" / "copgen-parity"
TARGET = "dem"
DATE = "2016-06-01"
#: VAE widths (``ch * ch_mult``): the published config, and the tests' tiny random VAEs.
VAE_WIDTHS = {"base": [128, 256, 512, 512], "tiny": [32, 32, 32, 32]}


def random_vae(key: str, widths: list[int], seed: int):
    """A seeded random ``AutoencoderKL`` for image slot ``key`` with the given level widths."""
    import torch

    from geocopgen.copgen.layout import slot
    from geocopgen.copgen.vae import NORM_NUM_GROUPS, build_vae

    s = slot(key)
    torch.manual_seed(seed)
    config = {
        "in_channels": s.image_channels,
        "out_channels": s.image_channels,
        "down_block_types": ["DownEncoderBlock2D"] * len(widths),
        "up_block_types": ["UpDecoderBlock2D"] * len(widths),
        "block_out_channels": widths,
        "layers_per_block": 2,
        "latent_channels": s.latent_shape[0],
        "norm_num_groups": NORM_NUM_GROUPS,
        "scaling_factor": s.scale_factor,
    }
    return build_vae(config).eval()


class CallTimer:
    """Seconds spent inside wrapped method calls (a codec's ``encode``/``decode``)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, obj: object, name: str) -> None:
        method = getattr(obj, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(obj, name, timed)


def build_model(size: str, slots: tuple[str, ...]):
    """The ``size`` model with VAEs for ``slots`` only (see the module docstring)."""
    import torch

    from geocopgen.copgen.backbone import copgen_backbone, load_copgen_backbone
    from geocopgen.copgen.convert import read_backbone_config
    from geocopgen.copgen.model import CopgenModel
    from geocopgen.copgen.vae import load_vae

    if size == "bundled":
        from geocopgen.weights import DEFAULT_MODEL

        return CopgenModel.read(DEFAULT_MODEL)
    vaes = {}
    if size == "tiny":
        dims = read_backbone_config(FIXTURES / "backbone_tiny_config.json")
        backbone = load_copgen_backbone(FIXTURES / "backbone_tiny.pth", **vars(dims))
        for key in slots:
            fixture = FIXTURES / f"vae_tiny_{key}.pth"
            if fixture.exists():
                vaes[key] = load_vae(fixture, key)
    else:
        torch.manual_seed(0)
        backbone = copgen_backbone(size)
    for i, key in enumerate(slots):
        vaes.setdefault(key, random_vae(key, VAE_WIDTHS[size], seed=1 + i))
    return CopgenModel(backbone.eval(), vaes, size=size)


def worker(size: str, args: argparse.Namespace) -> dict:
    import torch

    from geocopgen import api
    from geocopgen.copgen.layout import MODALITY_SLOTS
    from geocopgen.options import ReadOptions
    from geocopgen.raster.grid import grid_of
    from geocopgen.translation import grouped
    from geocopgen.translation.groups import GroupLayout

    slots = (*MODALITY_SLOTS["s2l1c"], *MODALITY_SLOTS[TARGET])
    model = build_model(size, slots)
    backbone = Timer(model.backbone)
    vaes = CallTimer()
    for codec in model.vaes.values():  # encode/decode calls: the same for VAEs and patch codecs
        vaes.wrap(codec, "encode")
        vaes.wrap(codec, "decode")
    evaluations = [0]  # backbone chip evaluations (batch rows), to count the model calls

    def count(_module, inputs) -> None:
        evaluations[0] += len(inputs[0]["DEM_DEM"])

    model.backbone.register_forward_pre_hook(count)
    denoise = [0.0]
    real_denoise = grouped.denoise_groups

    def timed_denoise(*a, **kw):
        start = time.perf_counter()
        try:
            return real_denoise(*a, **kw)
        finally:
            denoise[0] += time.perf_counter() - start

    grouped.denoise_groups = timed_denoise
    folder = Path(args.scene)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: codec-limit warnings are expected
        inputs = api.open_inputs(folder, reading=ReadOptions(s2_offset=0))
        layout = GroupLayout.for_scene(grid_of(inputs["s2l1c"]), ["DEM_DEM"])
        clock = time.perf_counter()
        api.translate(
            folder, TARGET, model=model, date=DATE, steps=args.steps, output=Path(tmp) / "dem.tif",
            s2_offset=0, batch_size=args.batch_size, progress=False,
        )  # fmt: skip
        wall = time.perf_counter() - clock
    rows, cols = layout.chip_shape
    return {
        "size": size,
        "params_m": sum(p.numel() for p in model.backbone.parameters()) / 1e6,
        "vae_params_m": sum(p.numel() for p in model.vaes[slots[0]].parameters()) / 1e6,
        "scene": f"{layout.scene.width}x{layout.scene.height}",
        "chips": rows * cols,
        "chip_shape": [rows, cols],
        "calls": evaluations[0] / (rows * cols),
        "threads": torch.get_num_threads(),
        "wall_s": wall,
        "backbone_s": backbone.seconds,
        "vae_s": vaes.seconds,
        "denoise_s": denoise[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def report(results: list[dict], preset_calls: int) -> None:
    first = results[0]
    print(
        f"COP-GEN S2L1C -> DEM, {'trained' if first['size'] == 'bundled' else 'random'} "
        f"weights, Virginia L1C tiled to {first['scene']} px, "
        f"date {DATE}, {first['chips']} ground chips ({first['chip_shape'][0]} x "
        f"{first['chip_shape'][1]}, 1920 m, 480 m overlap), {first['threads']} torch thread(s)"
    )
    print(f"{'model':<6}{'params':>8}{'calls':>6}{'wall s':>9}{'backbone s':>16}"
          f"{'VAE s':>15}{'other s':>15}{'s/chip/call':>13}{'peak RSS':>11}")  # fmt: skip
    for r in results:
        wall = r["wall_s"]
        other = wall - r["backbone_s"] - r["vae_s"]
        per_chip = r["backbone_s"] / (r["chips"] * r["calls"])
        print(
            f"{r['size']:<6}{r['params_m']:>7.1f}M{r['calls']:>6.0f}{wall:>9.1f}"
            f"{r['backbone_s']:>9.1f} ({r['backbone_s'] / wall:>4.0%})"
            f"{r['vae_s']:>8.1f} ({r['vae_s'] / wall:>4.0%})"
            f"{other:>8.1f} ({other / wall:>4.0%})"
            f"{per_chip:>13.3f}{r['peak_rss_mb']:>8.0f} MB"
        )
    print(f"\nEXTRAPOLATED (not measured) to the published preset, {preset_calls} model calls, "
          "same scene: wall + (calls - measured calls) x one measured denoising call")  # fmt: skip
    print(f"{'model':<6}{'s per call':>12}{'backbone s':>12}{'wall s':>10}{'wall h':>8}")
    for r in results:
        per_call = r["denoise_s"] / r["calls"]
        wall = r["wall_s"] + (preset_calls - r["calls"]) * per_call
        backbone = r["backbone_s"] / r["calls"] * preset_calls
        print(f"{r['size']:<6}{per_call:>12.1f}{backbone:>12.0f}{wall:>10.0f}{wall / 3600:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=["tiny", "base", "bundled"],
                        default=["tiny", "base"])  # fmt: skip
    parser.add_argument("--size", type=int, default=2000, help="scene side in px at 10 m")
    parser.add_argument("--steps", type=int, default=1, help="model calls (the preset: 50)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--worker", choices=["tiny", "base", "bundled"], help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return

    from geocopgen.copgen.sampler import COPGEN_SAMPLER

    results = []
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        scene(args.size, Path(tmp))
        for size in args.models:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", size, "--scene", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{size} failed:\n{done.stderr}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"[{size}: {results[-1]['wall_s']:.0f} s]", file=sys.stderr, flush=True)
    report(results, COPGEN_SAMPLER.steps)


if __name__ == "__main__":
    main()
