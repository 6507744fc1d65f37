"""Backbone throughput on this CPU, as a share of its measured fp32 matmul peak.

Prints, all measured in this run:

* the matmul peak (a 2048x2048 fp32 matmul, GFLOP/s);
* forward throughput of the default backbone config with all 4 modalities and with the 2 of
  S2L2A→DEM (analytic FLOPs, share of peak), and the speed-up of omitting absent modalities;
* forward+backward throughput with all 4 modalities (what training pays per sample);
* the same forward for patch size 2 (the official token density), to show why the default is 4;
* peak RSS.

Run: ``python bench/bench_backbone.py`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import psutil
import torch

from geocopgen.models import MultimodalUViT


def matmul_peak(n: int = 2048, reps: int = 7) -> float:
    """GFLOP/s of an n x n fp32 matmul (best of ``reps``: the least disturbed run)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e9


def forward_flops(bb: MultimodalUViT, n_modalities: int, grid: int) -> float:
    """Analytic forward FLOPs per sample (matmuls only; norms and softmax are negligible)."""
    cfg = bb.config
    d, p, c = cfg.embed_dim, cfg.patch_size, bb.channels_of(bb.modality_names[0])
    n_tok = grid * grid
    length = n_modalities * (1 + n_tok)
    hidden = int(d * cfg.mlp_ratio)
    per_block = 2 * length * d * (3 * d + d + 2 * hidden) + 4 * length * length * d
    blocks = (cfg.depth + 1) * per_block + (cfg.depth // 2) * 2 * length * 2 * d * d
    embeds = n_modalities * 2 * (2 * n_tok * c * p * p * d)
    return blocks + embeds


def make_call(bb: MultimodalUViT, names: list[str], batch: int, backward: bool):
    """A zero-argument callable running one forward (or forward+backward) on random latents."""
    size = bb.config.latent_size
    z = {n: torch.randn(batch, bb.channels_of(n), size, size) for n in names}
    t = {n: torch.rand(batch) * 1000 for n in names}
    if not backward:

        def forward():
            with torch.no_grad():
                bb(z, t)

        return forward

    def step():
        bb.zero_grad(set_to_none=True)
        out = bb(z, t).sample
        sum(v.square().mean() for v in out.values()).backward()

    return step


def best_times(calls: list, reps: int) -> list[float]:
    """Best-of-``reps`` seconds per call, the calls interleaved so that load from other
    processes on the machine hits them alike (ratios stay meaningful on a shared CPU)."""
    for call in calls:
        call()
    best = [float("inf")] * len(calls)
    for _ in range(reps):
        for i, call in enumerate(calls):
            t0 = time.perf_counter()
            call()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def report(label: str, seconds: float, batch: int, flops: float, peak: float) -> None:
    rate = flops * batch / seconds / 1e9
    print(
        f"{label:<46} {batch / seconds:7.2f} samples/s  {rate:6.1f} GFLOP/s  "
        f"{100 * rate / peak:5.1f}% of peak"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak = matmul_peak()
    print(f"matmul peak (2048^2 fp32): {peak:.1f} GFLOP/s")

    bb = MultimodalUViT().eval()  # the default config
    cfg = bb.config
    grid = cfg.latent_size // cfg.patch_size
    params = sum(p.numel() for p in bb.parameters())
    print(
        f"default backbone: d={cfg.embed_dim} depth={cfg.depth} heads={cfg.num_heads} "
        f"patch={cfg.patch_size} latent {bb.channels_of('dem')}x{cfg.latent_size}^2, "
        f"{params / 1e6:.2f}M parameters, {grid * grid} tokens per modality"
    )

    four, two = list(bb.modality_names), ["s2l2a", "dem"]
    f4, f2 = forward_flops(bb, 4, grid), forward_flops(bb, 2, grid)
    calls = [make_call(bb, four, args.batch, False), make_call(bb, two, args.batch, False)]
    s4, s2 = best_times(calls, args.reps)
    report("forward, 4 modalities (1 generated + 3 cond.)", s4, args.batch, f4, peak)
    report("forward, S2L2A->DEM (2 modalities)", s2, args.batch, f2, peak)
    print(
        f"speed-up from omitting absent modalities: {s4 / s2:.2f}x "
        f"(FLOP ratio {f4 / f2:.2f}x; target >= 1.8x)"
    )

    bb.train()
    (sb,) = best_times([make_call(bb, four, args.batch, True)], max(2, args.reps // 2))
    report("forward+backward, 4 modalities", sb, args.batch, 3 * f4, peak)
    print(f"forward+backward / forward time: {sb / s4:.2f} (the FLOP ratio is about 3)")
    bb.eval()

    dense = MultimodalUViT(patch_size=2).eval()
    b2 = max(1, args.batch // 4)
    (sp,) = best_times([make_call(dense, four, b2, False)], 2)
    f_dense = forward_flops(dense, 4, cfg.latent_size // 2)
    report("forward, 4 modalities, patch 2 (alternative)", sp, b2, f_dense, peak)
    print(f"patch 4 vs patch 2 forward speed-up per sample: {(sp / b2) / (s4 / args.batch):.1f}x")
    print(
        f"peak RSS: {psutil.Process().memory_info().rss / 2**20:.0f} MiB (current); "
        f"max {_max_rss_mib():.0f} MiB"
    )


def _max_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
