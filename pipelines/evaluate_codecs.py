"""How well each codec of the bundled model reconstructs a place it never saw, beside the
previous bundled model's autoencoders on the same place.

    python pipelines/evaluate_codecs.py [--held-out 38D_378R_2_3] [--previous DIR]
        [--decoder-reach 1]

The codecs are fitted on every place of ``shared_places`` except the held-out TerraMind tile,
then each slot of that tile is encoded and decoded whole. Errors are in physical units on the
valid pixels: reflectance MAE for Sentinel-2, dB MAE for Sentinel-1, metres (mean and worst
pixel) for the DEM, pixel agreement for land cover, and the blockiness of each reconstruction
at the codec's patch size (``bench/blockiness.py``: 1.0 = no lattice of edges). ``--previous``
(a folder of the earlier 4-modality kind) adds its autoencoders through
``geocopgen.encode``/``decode``; ``--decoder-reach 1`` fits decoders with overlapping footprints
(issue 28).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import shared_places
from blockiness import blockiness

from geocopgen.copgen.codec import PatchCodec
from geocopgen.copgen.layout import MODALITY_SLOTS, registry_band
from geocopgen.copgen.places import IMAGE_SLOTS, SlotPlace
from geocopgen.copgen.train import fit_codecs
from geocopgen.copgen.units import CATEGORIES, physical_from_model


def physical(key: str, y: torch.Tensor) -> np.ndarray:
    """Model units → physical (reflectance, dB, m), or class index for a categorical slot."""
    if key in CATEGORIES:
        return torch.argmax(y, dim=0, keepdim=True).numpy()
    return physical_from_model(key, y[None], 0)[0].numpy()


def score(key: str, truth: np.ndarray, got: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """The slot's error measures on the valid pixels."""
    if key in CATEGORIES:
        return {"agreement": float((truth == got)[:, valid].mean())}
    err = np.abs(got - truth)[:, valid]
    out = {"mae": float(err.mean())}
    if key == "DEM_DEM":
        out["max"] = float(err.max())
    return out


def reconstruct(codec: PatchCodec, place: SlotPlace, key: str) -> dict[str, float]:
    f = codec.config.downsample
    x = place.pixels[key]
    h, w = x.shape[1] // f * f, x.shape[2] // f * f
    x, valid = x[:, :h, :w], place.valid[key][:h, :w].numpy()
    with torch.no_grad():
        y = codec.decode(codec.encode(x[None]).latent_dist.mean).sample[0]
    got = physical(key, y)
    out = score(key, physical(key, x), got, valid)
    if key not in CATEGORIES:
        out["blockiness"] = max(blockiness(band.astype(np.float64), f) for band in got)
    return out


def previous_codecs(folder: Path, place: SlotPlace, tile: str) -> dict[str, dict[str, float]]:
    """The earlier model's autoencoders on the same tile, scored per COP-GEN slot's bands."""
    from geocopgen import decode, encode

    out = {}
    for modality in ("s2l1c", "s2l2a", "s1rtc", "dem"):
        path = shared_places.DATA / "terramind" / shared_places.TERRAMIND_DIRS[modality]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            truth = shared_places._quiet_open(path / f"{tile}.tif", modality)
            got = decode(encode(truth, model=folder, progress=False), model=folder, progress=False)
        for key in MODALITY_SLOTS[modality]:
            s = IMAGE_SLOTS[key]
            if s.resolution != 10 and key != "DEM_DEM":
                continue  # the earlier model works at 10 m only; compare its 10 m groups
            bands = [registry_band(s, b) for b in s.bands]
            t = np.asarray(truth.sel(band=bands).values, np.float64)
            g = np.asarray(got.sel(band=bands).values, np.float64)
            valid = np.isfinite(t).all(0) & np.isfinite(g).all(0)
            out[key] = score(key, t, g, valid)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", default="38D_378R_2_3")
    parser.add_argument("--previous", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--decoder-reach", type=int, default=0)
    args = parser.parse_args(argv)
    places = shared_places.all_places(log=lambda _: None)
    held = next(p for p in places if p.name == args.held_out)
    codecs = fit_codecs([p for p in places if p is not held], decoder_reach=args.decoder_reach,
                        log=lambda _: None)  # fmt: skip
    rows = {key: reconstruct(codecs[key], held, key) for key in held.pixels}
    previous = previous_codecs(args.previous, held, args.held_out) if args.previous else {}
    print(f"held-out place: {args.held_out}")
    print(f"{'slot':34} {'patch codec':>26} {'previous autoencoder':>26}")
    for key, m in rows.items():
        prev = previous.get(key, {})
        print(f"{key:34} {_fmt(m):>26} {_fmt(prev):>26}")
    if args.json:
        args.json.write_text(json.dumps({"held_out": args.held_out, "codec": rows,
                                         "previous": previous}, indent=2))  # fmt: skip


def _fmt(m: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in m.items()) or "-"


if __name__ == "__main__":
    main()
