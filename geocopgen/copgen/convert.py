"""The published COP-GEN files → a geocopgen COP-GEN model folder (``geocopgen convert copgen``).

Inputs are what the hub serves (spec A5): the backbone ``500000_nnet_ema.pth`` from
``mespinosami/copgen-base`` and the VAE folder ``mespinosami/copgen-vaes``
(``<NAME>/model-50-ema.pth``, cloned to ``models/vae/`` by the official README), both flat state
dicts read with ``torch.load(weights_only=True)``. Everything is read and checked before anything
is written, and the folder appears atomically, so a refusal leaves no output.

**Which VAE file is which slot.** Every ``*.pth`` under the VAE folder is taken; its slot is read
off its path, the file name first, then its folders from the innermost out. A name stands for a
slot when it contains (case-insensitively) the slot key (``S2L2A_B02_B03_B04_B08``) or the
official folder name (``S2L2A_192x192_B4_3_2_8_latent_8``, :data:`OFFICIAL_VAE_NAMES`). So the hub
layout, ``<slot>.pth``, ``<slot>/model-50-ema.pth`` and ``vae_tiny_<slot>.pth`` all work. A file
no name places is skipped with a note (the official repository also holds a ``GOOGLE_EMBEDS``
VAE, for which the layout has no slot); a name that fits two slots and two files for one slot
are refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from geocopgen.copgen.layout import COPGEN_SLOTS
from geocopgen.copgen.model import (
    HUB_BACKBONE_REPO,
    HUB_VAE_REPO,
    OFFICIAL_COMMIT,
    CopgenModel,
    Progress,
)
from geocopgen.copgen.published import (
    COPGEN_SIZES,
    CopgenSize,
    checkpoint_dims,
    copgen_backbone,
    guess_copgen_size,
    import_copgen_weights,
    read_copgen_state_dict,
)
from geocopgen.copgen.vae import load_vae
from geocopgen.errors import CheckpointError, ConfigError, GeoCopGenError, OutputError
from geocopgen.models.checkpoints import read_config
from geocopgen.models.pipeline import PIPELINE_CONFIG
from geocopgen.outputs import check_model_folder

#: The published backbone file and the VAE file name inside each hub folder.
BACKBONE_FILE = "500000_nnet_ema.pth"
VAE_FILE = "model-50-ema.pth"

#: Slot → the official VAE folder name (``config.autoencoders[*].autoencoder_path``).
OFFICIAL_VAE_NAMES: dict[str, str] = {
    "DEM_DEM": "DEM_64x64_DEM_latent_8",
    "LULC_LULC": "LULC_192x192_LULC_latent_8",
    "S1RTC_vh_vv": "S1RTC_192x192_VV_VH_latent_8",
    "S2L1C_B01_B09_B10": "S2L1C_32x32_B1_9_10_latent_8",
    "S2L1C_B02_B03_B04_B08": "S2L1C_192x192_B4_3_2_8_latent_8",
    "S2L1C_B05_B06_B07_B11_B12_B8A": "S2L1C_96x96_B5_6_7_8A_11_12_latent_8",
    "S2L1C_cloud_mask": "S2L1C_192x192_cloud_mask_latent_8",
    "S2L2A_B01_B09": "S2L2A_32x32_B1_9_latent_8",
    "S2L2A_B02_B03_B04_B08": "S2L2A_192x192_B4_3_2_8_latent_8",
    "S2L2A_B05_B06_B07_B11_B12_B8A": "S2L2A_96x96_B5_6_7_8A_11_12_latent_8",
}

ConfigLike = str | os.PathLike | Mapping[str, Any]
_DIMS = ("embed_dim", "depth", "num_heads")


def _quiet(_message: str) -> None:
    """The default progress callback: say nothing."""


# --- conversion ---------------------------------------------------------------------------------
def convert_copgen(
    backbone_pth: str | os.PathLike,
    vae_folder: str | os.PathLike | None,
    output: str | os.PathLike,
    *,
    config: ConfigLike | None = None,
    size: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> CopgenModel:
    """Convert the official backbone and VAE folder into the model folder ``output``.

    The backbone size comes from ``config`` (a JSON file or mapping with ``embed_dim``, ``depth``
    and ``num_heads``, at the top level, under ``constructor_kwargs`` or ``nnet``), or ``size``
    (``base``, ``large``, ``huge``), or is read off the checkpoint. ``vae_folder=None`` makes a
    latents-only model. Returns the converted model (the same weights the folder holds).
    """
    say = progress or _quiet
    output = check_model_folder(output, overwrite=overwrite, marker=PIPELINE_CONFIG)
    model = read_official(
        backbone_pth, vae_folder, config=config, size=size, progress=say, provenance=provenance
    )
    say(f"writing {output}")
    try:
        model.save_pretrained(output)
    except OSError as err:  # disk full, permissions: atomic_folder has removed its temporary
        if isinstance(err, GeoCopGenError):
            raise
        raise OutputError(f"{output}: could not be written ({err}); nothing was left") from None
    return model


def read_official(
    backbone_pth: str | os.PathLike,
    vae_folder: str | os.PathLike | None = None,
    *,
    config: ConfigLike | None = None,
    size: str | None = None,
    progress: Progress | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> CopgenModel:
    """The official files as a :class:`CopgenModel` in memory, every tensor checked."""
    say = progress or _quiet
    backbone_pth = Path(backbone_pth)
    vae_files = find_vae_files(vae_folder, say) if vae_folder is not None else {}
    state = read_copgen_state_dict(backbone_pth)
    name, dims = backbone_dims(state, config=config, size=size, source=str(backbone_pth))
    say(
        f"reading the COP-GEN {name or 'custom-size'} backbone {backbone_pth} (embed_dim "
        f"{dims.embed_dim}, depth {dims.depth}, {dims.num_heads} heads)"
    )
    backbone = copgen_backbone(embed_dim=dims.embed_dim, depth=dims.depth, num_heads=dims.num_heads)
    import_copgen_weights(backbone, state, source=str(backbone_pth))
    del state
    vaes = {}
    for key, path in vae_files.items():
        say(f"converting the {key} VAE {path}")
        vaes[key] = load_vae(path, key)
    record = {
        "official_commit": OFFICIAL_COMMIT,
        "backbone": file_record(backbone_pth),
        "vaes": {k: file_record(p, root=vae_folder) for k, p in vae_files.items()},
        **(provenance or {}),
    }
    return CopgenModel(backbone.eval(), vaes, size=name, provenance=record)


# --- the backbone's size ------------------------------------------------------------------------
def backbone_dims(
    state_dict: Mapping[str, torch.Tensor],
    *,
    config: ConfigLike | None = None,
    size: str | None = None,
    source: str = "COP-GEN backbone",
) -> tuple[str | None, CopgenSize]:
    """``(published size name or None, dims)`` to build for ``state_dict``, refusing a checkpoint
    whose width and depth are not what ``config`` or ``size`` ask for (it names the size the
    checkpoint looks like). Works on meta tensors."""
    if config is not None and size is not None:
        raise ConfigError("give a backbone config or a size, not both")
    found = checkpoint_dims(state_dict)
    if config is not None:
        dims, asked = read_backbone_config(config), "the config"
    elif size is not None:
        if size not in COPGEN_SIZES:
            raise ConfigError(f"no COP-GEN size {size!r}; the sizes are {', '.join(COPGEN_SIZES)}")
        dims, asked = COPGEN_SIZES[size], f"size {size}"
    elif found is None:  # no norm.weight: let the strict import name what is missing
        dims, asked = COPGEN_SIZES["base"], "size base"
    else:
        guess = guess_copgen_size(state_dict)
        if guess is None:
            raise CheckpointError(
                f"{source}: embed_dim {found[0]}, depth {found[1]} is no published COP-GEN size "
                f"({_sizes()}); pass --config with its embed_dim, depth and num_heads"
            )
        dims, asked = COPGEN_SIZES[guess], f"size {guess}"
    if found is not None and found != (dims.embed_dim, dims.depth):
        raise CheckpointError(f"{source}: {_misfit(state_dict, found, dims, asked)}")
    return _published_name(dims), dims


def _misfit(
    state_dict: Mapping[str, torch.Tensor], found: tuple[int, int], dims: CopgenSize, asked: str
) -> str:
    guess = guess_copgen_size(state_dict)
    looks = f"COP-GEN {guess}" if guess else "no published COP-GEN size"
    advice = f"pass --size {guess}" if guess else "pass --config with its dims and num_heads"
    return (
        f"the checkpoint has embed_dim {found[0]}, depth {found[1]} ({looks}), but {asked} "
        f"means embed_dim {dims.embed_dim}, depth {dims.depth}; {advice}"
    )


def _sizes() -> str:
    return ", ".join(f"{k} {v.embed_dim}/{v.depth}" for k, v in COPGEN_SIZES.items())


def _published_name(dims: CopgenSize) -> str | None:
    return next((k for k, v in COPGEN_SIZES.items() if v == dims), None)


def read_backbone_config(config: ConfigLike) -> CopgenSize:
    """Backbone dims from a JSON config: the parity fixture's ``backbone_tiny_config.json``
    (``constructor_kwargs``), an official ``config.nnet`` dump (``nnet``), or a flat mapping such
    as a converted folder's ``backbone/config.json``. Layout fields present are checked too."""
    source = "the backbone config" if isinstance(config, Mapping) else str(config)
    data = config if isinstance(config, Mapping) else read_config(config)
    kwargs = data.get("constructor_kwargs", data)
    kwargs = kwargs.get("nnet", kwargs)
    missing = [k for k in _DIMS if not isinstance(kwargs.get(k), int) or kwargs[k] <= 0]
    if missing:
        raise ConfigError(
            f"{source}: no positive integer {', '.join(missing)}; a COP-GEN backbone config "
            "gives embed_dim, depth and num_heads (top level, constructor_kwargs or nnet)"
        )
    _check_config_layout(kwargs, source)
    return CopgenSize(**{k: int(kwargs[k]) for k in _DIMS})


def _check_config_layout(kwargs: Mapping[str, Any], source: str) -> None:
    """An official config's per-slot sizes, channels and patches, where given, must be the
    published layout's (a config for another layout would convert to a wrong model)."""
    expected = {
        "img_sizes": {s.key: s.latent_shape[1] for s in COPGEN_SLOTS},
        "in_chans": {s.key: s.latent_shape[0] for s in COPGEN_SLOTS},
        "patch_size": {s.key: s.patch_size for s in COPGEN_SLOTS},
    }
    for field, want in expected.items():
        got = kwargs.get(field)
        if isinstance(got, Mapping) and dict(got) != want:
            differ = sorted(set(got) ^ set(want) | {k for k in want if got.get(k) != want[k]})
            raise ConfigError(
                f"{source}: {field} differs from the published COP-GEN layout at "
                f"{', '.join(differ)}"
            )


# --- VAE files ----------------------------------------------------------------------------------
def find_vae_files(folder: str | os.PathLike, progress: Progress | None = None) -> dict[str, Path]:
    """Slot → VAE file under ``folder``, in slot order (the naming rule is the module's). A file
    whose path names no slot is skipped with a note to ``progress``: the official copgen-vaes
    repository, cloned whole as its README says, also holds VAEs of modalities the COP-GEN
    layout has no slot for (``GOOGLE_EMBEDS``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: no such folder; pass the COP-GEN VAE folder (the hub's "
            f"{HUB_VAE_REPO}: <NAME>/{VAE_FILE}, or <slot>.pth files)"
        )
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.pth")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue  # .git, .cache
        key = _named_slot(relative, path)
        if key is None:
            (progress or _quiet)(f"skipped {path}: its name names no COP-GEN slot")
            continue
        if key in found:
            raise CheckpointError(
                f"{path}: a second VAE for {key} (the first is {found[key]}); keep one"
            )
        found[key] = path
    if not found:
        raise CheckpointError(
            f"{folder}: no VAE .pth file named after a COP-GEN slot; expected <NAME>/{VAE_FILE} "
            f"as on {HUB_VAE_REPO}, or <slot>.pth (a model-50.pt training checkpoint needs the "
            "official extract_ema_convert_model.py)"
        )
    return {s.key: found[s.key] for s in COPGEN_SLOTS if s.key in found}


def _named_slot(relative: Path, source: Path | None = None) -> str | None:
    """The slot a VAE file's path names, from its file name, then its folders inwards-out;
    ``None`` when no name does; a name that fits two slots is refused."""
    for name in [relative.stem, *reversed(relative.parent.parts)]:
        keys = slots_named(name)
        if len(keys) > 1:
            raise CheckpointError(
                f"{source or relative}: the name {name!r} fits several slots ({', '.join(keys)})"
            )
        if keys:
            return keys[0]
    return None


def slot_of_vae_file(relative: Path, *, source: Path | None = None) -> str:
    """The slot a VAE file is for (:func:`_named_slot`), refusing a path that names none."""
    key = _named_slot(relative, source)
    if key is not None:
        return key
    raise CheckpointError(
        f"{source or relative}: cannot tell which COP-GEN slot this VAE is for; name the file "
        "or its folder after the slot (e.g. S2L2A_B02_B03_B04_B08.pth) or the official folder "
        "(e.g. S2L2A_192x192_B4_3_2_8_latent_8/model-50-ema.pth)"
    )


def slots_named(name: str) -> list[str]:
    """Image slots whose key or official VAE folder name ``name`` contains (any case)."""
    lower = name.lower()
    return [
        key
        for key, official in OFFICIAL_VAE_NAMES.items()
        if key.lower() in lower or official.lower() in lower
    ]


# --- provenance ---------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in chunks (the backbone is 1.1 GB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_record(path: Path, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """File name (relative to ``root`` when given), size and sha256, for ``provenance``."""
    name = path.relative_to(root).as_posix() if root is not None else path.name
    return {"file": name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


# --- the hub ------------------------------------------------------------------------------------
def download_official(
    *,
    revision: str | None = None,
    vae_revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> tuple[Path, Path, dict[str, Any]]:
    """Fetch only the needed files: ``500000_nnet_ema.pth`` and the ten ``model-50-ema.pth``.

    Returns the backbone path, the VAE snapshot folder and a provenance record (repos, revisions
    asked for, snapshot commits). Any failure (offline, missing repo) is one
    :class:`CheckpointError` that says how to convert downloaded files instead; an unreachable
    hub (:func:`hub_unreachable`) is found in seconds, and then only the hub cache is looked at.
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    patterns = [f"*{name}/{VAE_FILE}" for name in OFFICIAL_VAE_NAMES.values()]
    unreachable = hub_unreachable()
    offline = {"local_files_only": True} if unreachable else {}  # the hub cache may hold them
    if not unreachable:
        (progress or _quiet)(
            f"downloading {BACKBONE_FILE} from {HUB_BACKBONE_REPO} and the VAEs from {HUB_VAE_REPO}"
        )
    try:
        backbone = Path(
            hf_hub_download(
                HUB_BACKBONE_REPO, BACKBONE_FILE, revision=revision, cache_dir=cache_dir, **offline
            )
        )
        vaes = Path(
            snapshot_download(
                HUB_VAE_REPO, revision=vae_revision, allow_patterns=patterns, cache_dir=cache_dir,
                **offline,
            )
        )  # fmt: skip
    except Exception as err:  # offline, no such revision, auth: one line, one remedy
        first = (str(err).strip().splitlines() or [""])[0][:200]
        why = (
            f"the hub cannot be reached ({unreachable}) and its cache lacks the files"
            if unreachable
            else f"{type(err).__name__}: {first}"
        )
        raise CheckpointError(
            f"downloading COP-GEN from the Hugging Face hub failed ({why}); download "
            f"{BACKBONE_FILE} from {HUB_BACKBONE_REPO} and the VAE folder {HUB_VAE_REPO} "
            "yourself and run: geocopgen convert copgen BACKBONE.pth VAE_FOLDER -o OUT"
        ) from None
    hub = {
        "backbone": _hub_record(HUB_BACKBONE_REPO, revision, backbone),
        "vaes": _hub_record(HUB_VAE_REPO, vae_revision, vaes),
    }
    return backbone, vaes, {"hub": hub}


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub (``HF_ENDPOINT``) cannot be reached, or ``None``: one TCP
    connection with a ``timeout``, so that offline fails in seconds, not after the hub
    client's minute of retries. Behind a proxy (``HTTPS_PROXY`` and co.) the client knows best,
    so nothing is checked."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in _PROXIES + tuple(p.lower() for p in _PROXIES)):
        return None
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return None
    except OSError as err:
        return f"{url.hostname}:{port}: {err.strerror or err}"


_PROXIES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


def _hub_record(repo: str, revision: str | None, path: Path) -> dict[str, Any]:
    commit = re.search(r"snapshots[/\\]([0-9a-f]{40})", str(path))
    return {"repo": repo, "revision": revision, "commit": commit.group(1) if commit else None}


def convert_copgen_from_hub(
    output: str | os.PathLike,
    *,
    revision: str | None = None,
    vae_revision: str | None = None,
    config: ConfigLike | None = None,
    size: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> CopgenModel:
    """Download the published files (hub cache) and convert them into ``output``."""
    say = progress or _quiet
    check_model_folder(output, overwrite=overwrite, marker=PIPELINE_CONFIG)
    backbone, vaes, hub = download_official(
        revision=revision, vae_revision=vae_revision, progress=say
    )
    return convert_copgen(
        backbone, vaes, output, config=config, size=size, overwrite=overwrite, progress=say,
        provenance=hub,
    )  # fmt: skip


def load_official_from_hub(
    *,
    revision: str | None = None,
    vae_revision: str | None = None,
    config: ConfigLike | None = None,
    size: str | None = None,
) -> CopgenModel:
    """The published model straight from the hub, converted in memory (nothing written but the
    hub cache); converting once with :func:`convert_copgen_from_hub` loads faster afterwards."""
    backbone, vaes, hub = download_official(revision=revision, vae_revision=vae_revision)
    return read_official(backbone, vaes, config=config, size=size, provenance=hub)


def load_copgen(path_or_repo: str | os.PathLike, *, revision: str | None = None) -> CopgenModel:
    """A COP-GEN model from a converted folder, a converted folder on the hub, or the published
    hub id (``mespinosami/copgen-base``, downloaded and converted in memory)."""
    if str(path_or_repo) == HUB_BACKBONE_REPO and not Path(path_or_repo).exists():
        return load_official_from_hub(revision=revision)
    return CopgenModel.from_pretrained(path_or_repo, revision=revision)


__all__ = [
    "BACKBONE_FILE",
    "OFFICIAL_VAE_NAMES",
    "VAE_FILE",
    "backbone_dims",
    "convert_copgen",
    "convert_copgen_from_hub",
    "download_official",
    "file_sha256",
    "find_vae_files",
    "hub_unreachable",
    "load_copgen",
    "load_official_from_hub",
    "read_backbone_config",
    "read_official",
    "slot_of_vae_file",
    "slots_named",
]
