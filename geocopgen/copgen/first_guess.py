"""A per-pixel first guess in latent space, so that a small backbone only learns what a linear
map cannot say, and says nothing a linear map would get wrong at a new place.

CorrDiff's lesson for weather downscaling: let a regression give the mean and diffusion the
detail. Here the regression is one map per (condition modality, target slot): the condition's
latents (every group, resampled onto the target's latent grid: area averages onto a coarser
grid, nearest cells onto a finer one) → the target's latent, per latent cell, fitted in closed
form on every training chip that has both. With several conditions the guesses are averaged;
with none the guess is zero, the whitened latents' mean over every place the codec saw.

**Each map's form is chosen by leave-one-place-out**, because a map fitted on four places
predicts a fifth worse than no map at all in most cross-modal directions (measured on the
bundled model's places, latent mean squared error at the held-out place: S2 L2A → DEM 5.6 with
a ridge of 1e-3, 1.3 with the intercept alone; L1C → L2A 10 m 0.75 with a ridge of 0.1, 3.2
with no map). The
candidates are *mean* (no map: the zero latent), *intercept* (the paired places' mean latent)
and ridge regressions of strengths :data:`RIDGES`; the one with the lowest mean squared error
on held-out places, averaged over places, wins. A pair seen at one place only cannot be
validated and gets :data:`RIDGE`.

:class:`GuessStatistics` holds each place's sufficient statistics, so the choice, the final
maps and *cross-fitted* maps (each fitted without one place, for training the backbone on the
errors a guess makes at places it never saw) all come from one pass over the chips.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from geocopgen.copgen.layout import MODALITY_SLOTS
from geocopgen.errors import ConfigError

#: Ridge strength of a map that cannot be validated, relative to the mean diagonal of the
#: feature Gram matrix.
RIDGE = 1e-3
#: Ridge strengths tried by leave-one-place-out (same units as :data:`RIDGE`).
RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
MEAN, INTERCEPT = "mean", "intercept"
#: A map's form: no map, an intercept, or a ridge strength.
Form = str | float
Pair = tuple[str, str]


def resample_latent(z: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, C, h, w)`` onto ``size`` cells covering the same ground: averages onto a coarser
    grid, nearest cells onto a finer one (local, so chips and canvases agree)."""
    size = tuple(int(s) for s in size)
    if tuple(z.shape[-2:]) == size:
        return z
    mode = "area" if z.shape[-1] >= size[-1] else "nearest"
    return F.interpolate(z, size=size, mode=mode)


def features(
    latents: Mapping[str, torch.Tensor], modality: str, size: Sequence[int]
) -> torch.Tensor:
    """Every group of ``modality`` resampled onto ``size``, stacked: ``(B, 8·groups, h, w)``."""
    return torch.cat([resample_latent(latents[k], size) for k in MODALITY_SLOTS[modality]], dim=1)


class FirstGuess(ModelMixin, ConfigMixin):
    """Linear maps ``condition modality → target slot`` on latent cells (see module docstring).

    ``pairs``: ``[modality, slot key, n_features, n_outputs]`` for every map in use; ``forms``:
    ``"modality→key": form`` for every pair the fitting data held, mapped or not, as a record
    of the choice.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self, pairs: Sequence[Sequence[object]] = (), forms: Mapping[str, Form] | None = None
    ) -> None:
        super().__init__()
        for modality, key, n_in, n_out in pairs:
            self.register_buffer(
                _name(str(modality), str(key)), torch.zeros(int(n_in) + 1, int(n_out))
            )

    @property
    def pairs(self) -> list[Pair]:
        return [(str(m), str(k)) for m, k, *_ in self.config.pairs]

    def weights(self, modality: str, key: str) -> torch.Tensor:
        return getattr(self, _name(modality, key))

    def guess(
        self, conditions: Mapping[str, torch.Tensor], key: str, like: torch.Tensor
    ) -> torch.Tensor:
        """The first guess of slot ``key``'s latent, shaped like ``like`` ``(B, C, h, w)``, from
        the condition latents present (slot → ``(B, C, h', w')``); zeros when none applies."""
        guesses = []
        for modality, target in self.pairs:
            if target != key or not all(k in conditions for k in MODALITY_SLOTS[modality]):
                continue
            x = features(conditions, modality, like.shape[-2:]).to(like)
            w = self.weights(modality, key).to(like)
            guesses.append(torch.einsum("bfhw,fc->bchw", x, w[:-1]) + w[-1][None, :, None, None])
        if not guesses:
            return torch.zeros_like(like)
        return torch.stack(guesses).mean(dim=0).expand_as(like)


# --- fitting --------------------------------------------------------------------------------
@dataclass
class Moments:
    """Sufficient statistics of one map at one place: feature Gram matrix (with a constant
    feature last), feature-target products, the targets' sum of squares and the cell count."""

    gram: torch.Tensor
    cross: torch.Tensor
    square: torch.Tensor
    n: int

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.gram + other.gram, self.cross + other.cross,
                       self.square + other.square, self.n + other.n)  # fmt: skip

    def solve(self, form: Form) -> torch.Tensor | None:
        """The map's weights ``(features + 1, outputs)`` in this form; ``None`` for no map."""
        if form == MEAN:
            return None
        if form == INTERCEPT:
            w = torch.zeros_like(self.cross)
            w[-1] = self.cross[-1] / self.gram[-1, -1]
            return w
        ridge = float(form) * torch.diagonal(self.gram).mean()
        eye = torch.eye(len(self.gram), dtype=self.gram.dtype)
        eye[-1, -1] = 0.0  # the intercept is not shrunk
        return torch.linalg.solve(self.gram + ridge * eye, self.cross)

    def error(self, w: torch.Tensor | None) -> float:
        """Mean squared error of weights ``w`` (``None``: the zero latent) on these cells."""
        fit = 0.0 if w is None else -2 * (w * self.cross).sum() + (w * (self.gram @ w)).sum()
        return float((self.square.sum() + fit) / (self.n * len(self.square)))


def chip_moments(chip: Mapping[str, torch.Tensor]) -> dict[Pair, Moments]:
    """The moments of every (modality, slot) pair that one chip's latents hold together."""
    present = [m for m, keys in MODALITY_SLOTS.items() if all(k in chip for k in keys)]
    out = {}
    for modality in present:
        for target in present:
            if target == modality:
                continue
            for key in MODALITY_SLOTS[target]:
                y = chip[key]
                x = features(chip, modality, y.shape[-2:])
                x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
                xf = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).double()
                yf = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]).double()
                out[(modality, key)] = Moments(xf.T @ xf, xf.T @ yf, (yf**2).sum(0), len(yf))
    return out


class GuessStatistics:
    """Every place's moments for every pair: what the maps, their forms and the cross-fitted
    maps are computed from."""

    def __init__(self, by_place: Mapping[str, Mapping[Pair, Moments]]) -> None:
        self.by_place = {p: dict(m) for p, m in by_place.items() if m}
        if not self.by_place:
            raise ConfigError("no chip holds two modalities: nothing to fit a first guess on")

    @classmethod
    @torch.no_grad()
    def collect(cls, chips: Mapping[str, Iterable[Mapping[str, torch.Tensor]]]) -> GuessStatistics:
        """From each place's chips (slot key → clean latent ``(B, C, h, w)``)."""
        by_place = {}
        for place, place_chips in chips.items():
            sums: dict[Pair, Moments] = {}
            for chip in place_chips:
                for pair, m in chip_moments(chip).items():
                    sums[pair] = sums[pair] + m if pair in sums else m
            by_place[place] = sums
        return cls(by_place)

    @property
    def pairs(self) -> list[Pair]:
        return sorted({pair for m in self.by_place.values() for pair in m})

    def held_out_errors(self, pair: Pair) -> dict[Form, float]:
        """Each form's mean squared error at a held-out place, averaged over the places (each
        held out in turn, the map fitted on the others); empty below two places."""
        places = [p for p, m in self.by_place.items() if pair in m]
        if len(places) < 2:
            return {}
        scores: dict[Form, float] = {}
        for form in (MEAN, INTERCEPT, *RIDGES):
            errors = []
            for held in places:
                fit = _total(self.by_place[p][pair] for p in places if p != held)
                errors.append(self.by_place[held][pair].error(fit.solve(form)))
            scores[form] = sum(errors) / len(errors)
        return scores

    def held_out_scores(self) -> dict[Pair, dict[Form, float]]:
        """:meth:`held_out_errors` of every pair."""
        return {pair: self.held_out_errors(pair) for pair in self.pairs}

    def forms(self, scores: Mapping[Pair, Mapping[Form, float]] | None = None) -> dict[Pair, Form]:
        """Every pair's form: the lowest held-out error, or :data:`RIDGE` when unvalidated;
        ``scores`` (:meth:`held_out_scores`, when the caller has them) are not recomputed."""
        scores = self.held_out_scores() if scores is None else scores
        return {
            pair: min(s, key=s.__getitem__) if (s := scores[pair]) else RIDGE
            for pair in self.pairs
        }

    def fit(self, forms: Mapping[Pair, Form], *, without: str | None = None) -> FirstGuess:
        """The maps in ``forms`` fitted on every place (or every place but ``without``)."""
        maps = {}
        for pair, form in forms.items():
            moments = [m[pair] for p, m in self.by_place.items() if pair in m and p != without]
            w = _total(moments).solve(form) if moments else None
            if w is not None:
                maps[pair] = w
        pairs = [[m, k, int(w.shape[0]) - 1, int(w.shape[1])] for (m, k), w in maps.items()]
        model = FirstGuess(pairs=pairs, forms={f"{m}→{k}": f for (m, k), f in forms.items()})
        for (m, k), w in maps.items():
            model.weights(m, k).copy_(w.float())
        return model.eval()


def _total(moments: Iterable[Moments]) -> Moments:
    first, *rest = moments
    return sum(rest, start=first)


def _name(modality: str, key: str) -> str:
    return f"w__{modality}__{key}"


__all__ = [
    "INTERCEPT",
    "MEAN",
    "RIDGE",
    "RIDGES",
    "FirstGuess",
    "GuessStatistics",
    "Moments",
    "chip_moments",
    "features",
    "resample_latent",
]
