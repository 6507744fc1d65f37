"""Encoding throughput into a zarr latent store, as a share of the autoencoder-only throughput.

Both runs encode the same 256 px chips of the largest real raster here (the Virginia S2 L1C
scene, 1947 x 1933 px at 10 m, 13 bands) with the default-size ``ModalityAutoencoder``
(3.9M parameters, random weights: speed does not depend on training), or with ``--codec
bundled`` the bundled model's much smaller codec (0.66M), next to which reading 13 bands costs
more than encoding them. "Autoencoder only" is
``encode_moments`` on chips already in memory; "pipeline" is ``encode_places``: lazy reads,
20/60 m resampling, normalisation, encoding, zarr writes, chip table and complete flags.
Target: pipeline overhead <= 20 %.

Both runs use the same parallelism, so the ratio measures the pipeline's own work and nothing
else: the same batches as dask tasks on the same threaded scheduler with the same number of
workers (``--workers``, default dask's: one per core), and the same torch intra-op threads
(``--torch-threads``, default torch's). The autoencoder-only run is timed before and after the
pipeline and the ratio uses their mean, so a change in machine load during the run shows (the
two baseline figures differ) instead of silently biasing the ratio. ``--workers 1
--torch-threads 1`` compares both single-threaded. ``--repeats`` (default 3) alternates baseline
and pipeline runs and reports every overhead and their median: one 10 s run on a 2-core machine
moves by several points from one try to the next.

    python bench/bench_encoding.py [--workers N] [--torch-threads T] [--batch-size B] [--codec C]
        [--repeats R]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import tempfile
import time
import warnings
from pathlib import Path

import dask
import numpy as np
import torch

from geocopgen.io.readers import open_raster
from geocopgen.latents import Place, chip_windows, encode_places
from geocopgen.modalities import get_modality
from geocopgen.models.autoencoder import ModalityAutoencoder

SCENE = (Path(__file__).parents[1] / ".." / "shared" / "data" / "s2" / "virginia_L1C").resolve()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16, help="encode_places' default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chip-size", type=int, default=256)
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument(
        "--codec",
        choices=["default-config", "bundled"],
        default="default-config",
        help="ModalityAutoencoder() at its default size, or the bundled model's S2 L1C codec",
    )
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    torch.manual_seed(0)
    if args.codec == "bundled":
        from geocopgen.api import load_model

        model = load_model("default", device="cpu").autoencoders["s2l1c"]
    else:
        model = ModalityAutoencoder("s2l1c").for_inference()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = open_raster(SCENE, "s2l1c", offset=0)
    windows = chip_windows(arr.sizes["y"], arr.sizes["x"], args.chip_size)
    n = len(windows)

    # Autoencoder only: the same chips, already read and normalised, in the same batches and
    # dask tasks as the pipeline.
    full = arr.values
    s = args.chip_size
    chips = np.stack([full[:, r : r + s, c : c + s] for r, c in windows])

    x = get_modality("s2l1c").normalize(chips, axis=1)
    x = torch.from_numpy(np.nan_to_num(x).astype(np.float32))
    with torch.inference_mode():  # warm-up: first calls build oneDNN kernels
        model.encode_moments(x[: args.batch_size])
    baselines = [_autoencoder_only(model, x, args.batch_size, args.workers)]
    pipes = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            report = encode_places(
                [Place("virginia", {"s2l1c": arr})],
                Path(tmp) / "bench.zarr",
                {"s2l1c": model},
                chip_size=s,
                batch_size=args.batch_size,
                num_workers=args.workers,
                progress=False,
            )
            pipes.append(time.perf_counter() - t)
        assert report.encoded == n, report
        baselines.append(_autoencoder_only(model, x, args.batch_size, args.workers))
    # each pipeline run against the mean of the baseline runs just before and after it
    around = [(a + b) / 2 for a, b in itertools.pairwise(baselines)]
    overheads = [100 * (p / m - 1) for p, m in zip(pipes, around, strict=True)]
    median = int(np.argsort(overheads)[len(overheads) // 2])
    t_model, t_pipe = around[median], pipes[median]

    print(
        f"{n} chips of {s} px, 13 bands, {args.codec} codec "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters), "
        f"batch {args.batch_size}, torch threads "
        f"{torch.get_num_threads()}, dask workers {args.workers or 'default'} (both runs)"
    )
    print(
        "autoencoder-only runs (s): "
        + ", ".join(f"{b:.1f}" for b in baselines)
        + "; pipeline runs (s): "
        + ", ".join(f"{p:.1f}" for p in pipes)
    )
    print("overhead per pipeline run: " + ", ".join(f"{o:.0f} %" for o in overheads))
    print(
        f"median run: autoencoder only {n / t_model:.2f} chips/s, pipeline {n / t_pipe:.2f} chips/s"
    )
    print(
        f"pipeline / autoencoder-only throughput: {t_model / t_pipe:.2f} "
        f"(median overhead {overheads[median]:.0f} %, target <= 20 %)"
    )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _autoencoder_only(
    model: ModalityAutoencoder, x: torch.Tensor, batch_size: int, workers: int | None
) -> float:
    """Seconds to encode ``x`` in batches, one dask task per batch, on the threaded scheduler
    with ``workers`` workers: the parallel structure ``encode_places`` runs its batches in."""

    def encode(batch: torch.Tensor) -> None:
        with torch.inference_mode():
            model.encode_moments(batch)

    tasks = [
        dask.delayed(encode, pure=False)(x[k : k + batch_size])
        for k in range(0, len(x), batch_size)
    ]
    t = time.perf_counter()
    dask.compute(*tasks, scheduler="threads", num_workers=workers)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
