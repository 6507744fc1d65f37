"""Benchmark: COP-GEN translation, Sentinel-2 L1C → DEM, per device × precision × batch size.

    OMP_NUM_THREADS=2 python bench/bench_copgen.py [--models tiny base bundled] [--size 2000]
        [--steps 1] [--precisions fp32 bf16] [--batch-sizes 8] [--device cpu|cuda]

What is measured. The Virginia L1C scene (1947 x 1933 px at 10 m) is tiled by VRTs into a
``--size`` x ``--size`` px scene at 10 m (each band at its native 10/20/60 m, see
``bench_scaling.scene``) and translated to DEM (30 m) through ``geocopgen.api.translate`` with
``date="2016-06-01"`` and ``--steps`` model calls (the published preset makes 50), streamed to a
temporary GeoTIFF. The condition has three resolution groups (10, 20, 60 m), each encoded chip
by chip by its own VAE; the DEM canvas is denoised and decoded. Models, built in the worker
(nothing saved), weights random:

* ``tiny``: the parity fixture backbone (``shared/reference/copgen-parity``, 0.36M parameters)
  and the fixture DEM VAE; the three S2 L1C VAEs random at the test's tiny width (32);
* ``base``: ``copgen_backbone("base")`` (287M parameters), seeded default init, and the four
  VAEs the direction needs at the published config (ch 128, ch_mult 1-2-4-4, 2 blocks per
  level: 83.7M parameters each), seeded random init;
* ``bundled``: the bundled model as shipped (trained weights, patch codecs, first guess).

Each (model, precision, batch size) runs in its own process, so peak memory (``ru_maxrss``; on
CUDA also ``max_memory_allocated``) is its own; it includes building the model. Reported: wall
time; ground chips (1920 m, 480 m overlap) and model calls; **backbone seconds per chip per
call** (forward hooks, synchronised on CUDA); **VAE seconds per chip** (every ``encode`` and
``decode`` call: once per chip, not per call); chips per second end to end; the share of the
wall time the device is busy (backbone + VAEs); peak memory. The second table extrapolates to
the published preset (50 calls): wall + (50 - calls) x one measured denoising call, per chip and
call end to end against the backbone's, and for a **full Sentinel-2 tile** (10 980 px square,
default overlap) by the chips ratio. Extrapolations, not measurements.

``--backbone-only REPS`` times the backbone alone instead, the precisions interleaved, best of
REPS rounds each: the figure to compare precisions by on a machine shared with other jobs.

Without a GPU, ``--gpu-projection`` adds rows for one H100 **projected from FLOPs, not
measured**: the backbone's and the VAEs' FLOPs per chip are counted by
``torch.utils.flop_counter`` on one chip, and divided by an assumed sustained rate (see
``H100``).

Ratios come from one run on one machine; the figures in docs/copgen.md name the hardware.
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
    """Seconds spent inside wrapped method calls (a codec's ``encode``/``decode``); ``sync``
    waits for the GPU at both ends, so the seconds are the device's, not the launch's."""

    def __init__(self, sync: bool = False) -> None:
        self.seconds = 0.0
        self.sync = sync

    def wrap(self, obj: object, name: str) -> None:
        import torch

        method = getattr(obj, name)

        def timed(*args, **kwargs):
            if self.sync:
                torch.cuda.synchronize()
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                if self.sync:
                    torch.cuda.synchronize()
                self.seconds += time.perf_counter() - start

        setattr(obj, name, timed)


def build_model(size: str, slots: tuple[str, ...]):
    """The ``size`` model with VAEs for ``slots`` only (see the module docstring)."""
    import torch

    from geocopgen.copgen.convert import read_backbone_config
    from geocopgen.copgen.model import CopgenModel
    from geocopgen.copgen.published import copgen_backbone, load_copgen_backbone
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


#: One H100 SXM: dense float16/bfloat16 tensor-core peak (FLOP/s), and the shares of it assumed
#: sustained by a transformer at this size and by the VAEs' convolutions (assumptions, stated).
H100 = {"peak": 989e12, "backbone_share": 0.40, "vae_share": 0.30}
#: A full Sentinel-2 tile (px at 10 m) and the published preset's model calls.
TILE_PX = 10980


def worker(size: str, precision: str, batch: str, args: argparse.Namespace) -> dict:
    import torch

    from geocopgen import api
    from geocopgen.copgen.layout import MODALITY_SLOTS
    from geocopgen.options import ReadOptions
    from geocopgen.raster.grid import grid_of
    from geocopgen.translation import grouped
    from geocopgen.translation.groups import GroupLayout

    device = torch.device(args.device)
    slots = (*MODALITY_SLOTS["s2l1c"], *MODALITY_SLOTS[TARGET])
    model = build_model(size, slots).to(device)
    backbone = Timer(model.backbone, sync=device.type == "cuda")
    vaes = CallTimer(sync=device.type == "cuda")
    for codec in model.vaes.values():  # encode/decode calls: the same for VAEs and patch codecs
        vaes.wrap(codec, "encode")
        vaes.wrap(codec, "decode")
    evaluations = [0]  # backbone chip evaluations (batch rows), to count the model calls

    def count(_module, inputs) -> None:
        evaluations[0] += len(inputs[0]["DEM_DEM"])

    model.backbone.register_forward_pre_hook(count)
    denoise = [0.0]
    real_denoise = grouped.denoise_groups
    used = {}

    def timed_denoise(model_, plan, *a, **kw):
        used.update(batch=plan.options.batch_size, precision=plan.precision.tag)
        start = time.perf_counter()
        try:
            return real_denoise(model_, plan, *a, **kw)
        finally:
            denoise[0] += time.perf_counter() - start

    grouped.denoise_groups = timed_denoise
    folder = Path(args.scene)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: codec-limit warnings are expected
        inputs = api.open_inputs(folder, reading=ReadOptions(s2_offset=0))
        layout = GroupLayout.for_scene(grid_of(inputs["s2l1c"].array), ["DEM_DEM"])
        clock = time.perf_counter()
        api.translate(
            folder, TARGET, model=model, date=DATE, steps=args.steps, output=Path(tmp) / "dem.tif",
            s2_offset=0, batch_size=batch if batch == "auto" else int(batch), progress=False,
            precision=precision,
        )  # fmt: skip
        wall = time.perf_counter() - clock
    rows, cols = layout.chip_shape
    result = {
        "size": size,
        "precision": precision,
        "ran": used["precision"],
        "batch": used["batch"],
        "device": device_name(device),
        "params_m": sum(p.numel() for p in model.backbone.parameters()) / 1e6,
        "scene": f"{layout.scene.width}x{layout.scene.height}",
        "chips": rows * cols,
        "chip_shape": [rows, cols],
        "tile_chips": tile_chips(),
        "calls": evaluations[0] / (rows * cols),
        "threads": torch.get_num_threads(),
        "wall_s": wall,
        "backbone_s": backbone.seconds,
        "vae_s": vaes.seconds,
        "denoise_s": denoise[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0,
    }
    if args.gpu_projection:
        result["flops"] = chip_flops(model, slots)
    return result


def device_name(device) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def tile_chips() -> int:
    """Ground chips of a full Sentinel-2 tile at the default overlap."""
    from odc.geo.geobox import GeoBox

    from geocopgen.translation.groups import GroupLayout

    tile = GeoBox.from_bbox((600000, 5000040 - TILE_PX * 10, 600000 + TILE_PX * 10, 5000040),
                            "EPSG:32633", resolution=10)  # fmt: skip
    rows, cols = GroupLayout.for_scene(tile, ["DEM_DEM"]).chip_shape
    return rows * cols


def chip_flops(model, slots) -> dict[str, float]:
    """FLOPs of one backbone call on one chip, and of the VAEs' work on one chip (encoding the
    S2 L1C groups, decoding the DEM), counted by ``torch.utils.flop_counter``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from geocopgen.copgen.layout import slot

    bb = model.backbone
    inputs = {n: torch.zeros(1, *bb.latent_shape_of(n)) for n in bb.modality_names}
    times = {n: torch.zeros(1) for n in bb.modality_names}
    with torch.inference_mode(), FlopCounterMode(display=False) as backbone:
        bb(inputs, times)
    with torch.inference_mode(), FlopCounterMode(display=False) as vaes:
        for key in slots:
            s = slot(key)
            side = s.chip_px
            if key == "DEM_DEM":
                model.decode(key, torch.zeros(1, s.latent_shape[0], side // 8, side // 8))
            else:
                model.encode(key, torch.zeros(1, s.image_channels, side, side))
    return {"backbone": backbone.get_total_flops(), "vae": vaes.get_total_flops()}


def backbone_only(size: str, precisions: list[str], batch: int, reps: int) -> None:
    """The backbone alone, precisions interleaved, best of ``reps`` each: on a shared machine the
    least disturbed run is the one closest to what the hardware does, and interleaving exposes
    every precision to the same load."""
    import torch

    from geocopgen.precision import resolve_precision

    model = build_model(size, ())
    bb = model.backbone
    generator = torch.Generator().manual_seed(0)
    inputs = {n: torch.randn(batch, *bb.latent_shape_of(n), generator=generator)
              for n in bb.modality_names}  # fmt: skip
    times = {n: torch.full((batch,), 500.0) for n in bb.modality_names}
    best = {p: float("inf") for p in precisions}
    with torch.inference_mode():
        for p in precisions:  # warm-up: first calls pay one-off costs
            with resolve_precision(p, "cpu").for_backbone():
                bb(inputs, times)
        for _ in range(reps):
            for p in precisions:
                start = time.perf_counter()
                with resolve_precision(p, "cpu").for_backbone():
                    bb(inputs, times)
                best[p] = min(best[p], time.perf_counter() - start)
    reference = best[precisions[0]]
    print(f"{size} backbone alone, all 12 slots, batch {batch}, {torch.get_num_threads()} "
          f"threads, best of {reps}, precisions interleaved")  # fmt: skip
    for p in precisions:
        print(f"  {p:<5} {best[p] / batch:8.3f} s per chip per call   "
              f"{reference / best[p]:5.2f}x {precisions[0]}'s speed")  # fmt: skip


def report(results: list[dict], preset_calls: int) -> None:
    first = results[0]
    print(
        f"COP-GEN S2L1C -> DEM, {'trained' if first['size'] == 'bundled' else 'random'} "
        f"weights, Virginia L1C tiled to {first['scene']} px, date {DATE}, {first['chips']} "
        f"ground chips ({first['chip_shape'][0]} x {first['chip_shape'][1]}, 1920 m, 480 m "
        f"overlap), {first['calls']:.0f} model call(s); device: {first['device']}"
    )
    print(f"{'model':<8}{'prec':<6}{'batch':>6}{'wall s':>9}{'bb s/chip/call':>16}"
          f"{'VAE s/chip':>12}{'chips/s':>9}{'busy':>6}{'peak RSS':>10}"
          f"{'peak GPU':>10}")  # fmt: skip
    for r in results:
        busy = (r["backbone_s"] + r["vae_s"]) / r["wall_s"]
        print(
            f"{r['size']:<8}{r['precision']:<6}{r['batch']:>6}{r['wall_s']:>9.1f}"
            f"{r['backbone_s'] / (r['chips'] * r['calls']):>16.3f}"
            f"{r['vae_s'] / r['chips']:>12.3f}{r['chips'] / r['wall_s']:>9.2f}{busy:>6.0%}"
            f"{r['peak_rss_mb']:>7.0f} MB{r['peak_gpu_mb']:>7.0f} MB"
        )
    print(f"\nEXTRAPOLATED (not measured) to the published preset, {preset_calls} model calls: "
          "wall + (calls - measured) x one measured denoising call; a full Sentinel-2 tile "
          f"({TILE_PX} px, {first['tile_chips']} chips) by the chips ratio")  # fmt: skip
    print(f"{'model':<8}{'prec':<6}{'batch':>6}{'e2e s/chip/call':>17}{'vs backbone':>13}"
          f"{'scene h':>9}{'S2 tile h':>11}")  # fmt: skip
    for r in results:
        per_call = r["denoise_s"] / r["calls"]
        wall = r["wall_s"] + (preset_calls - r["calls"]) * per_call
        e2e = wall / (r["chips"] * preset_calls)
        bb = r["backbone_s"] / (r["chips"] * r["calls"])
        tile = wall / r["chips"] * r["tile_chips"]
        print(f"{r['size']:<8}{r['precision']:<6}{r['batch']:>6}{e2e:>17.3f}{e2e / bb - 1:>+13.0%}"
              f"{wall / 3600:>9.2f}{tile / 3600:>11.1f}")  # fmt: skip
    projected = [r for r in results if "flops" in r]
    if projected:
        print(f"\nPROJECTED FROM FLOPs, NOT MEASURED: one H100 at {H100['peak'] / 1e12:.0f} "
              f"TFLOP/s dense fp16/bf16, assuming {H100['backbone_share']:.0%} sustained by the "
              f"backbone and {H100['vae_share']:.0%} by the VAEs")  # fmt: skip
        print(f"{'model':<8}{'GFLOP/chip/call':>16}{'VAE GFLOP/chip':>16}{'bb ms/chip/call':>17}"
              f"{'S2 tile min':>13}")  # fmt: skip
        seen = set()
        for r in projected:
            if r["size"] in seen:
                continue
            seen.add(r["size"])
            f = r["flops"]
            bb = f["backbone"] / (H100["peak"] * H100["backbone_share"])
            vae = f["vae"] / (H100["peak"] * H100["vae_share"])
            tile = r["tile_chips"] * (preset_calls * bb + vae)
            print(f"{r['size']:<8}{f['backbone'] / 1e9:>16.1f}{f['vae'] / 1e9:>16.1f}"
                  f"{bb * 1e3:>17.2f}{tile / 60:>13.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=["tiny", "base", "bundled"],
                        default=["tiny", "base"])  # fmt: skip
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                        choices=["auto", "fp32", "bf16", "fp16"])  # fmt: skip
    parser.add_argument("--batch-sizes", nargs="+", default=["8"], help="counts or 'auto'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=2000, help="scene side in px at 10 m")
    parser.add_argument("--steps", type=int, default=1, help="model calls (the preset: 50)")
    parser.add_argument("--gpu-projection", action="store_true",
                        help="add H100 rows projected from counted FLOPs (not measured)")
    parser.add_argument("--backbone-only", type=int, metavar="REPS",
                        help="time the backbone alone, precisions interleaved, REPS rounds")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return
    if args.backbone_only:
        for size in args.models:
            for batch in args.batch_sizes:
                backbone_only(size, args.precisions, int(batch), args.backbone_only)
        return

    from geocopgen.copgen.sampler import COPGEN_SAMPLER

    results = []
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        scene(args.size, Path(tmp))
        for size in args.models:
            for precision in args.precisions:
                for batch in args.batch_sizes:
                    case = [size, precision, batch]
                    cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", *case,
                           "--scene", tmp]  # fmt: skip
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode:
                        sys.exit(f"{case} failed:\n{done.stderr}")
                    results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                    print(f"[{' '.join(case)}: {results[-1]['wall_s']:.0f} s]", file=sys.stderr,
                          flush=True)  # fmt: skip
    report(results, COPGEN_SAMPLER.steps)


if __name__ == "__main__":
    main()
