"""The training loop shared by both stages (autoencoders, then the backbone).

It knows nothing about geography or diffusion: a stage hands it a model, a dataset and a loss
function. What it owns is what makes long runs trustworthy — AdamW with warm-up, EMA weights,
gradient clipping, mixed precision on GPU, DDP under torchrun, atomic checkpoints and *exact*
resumption. Exactness comes from deriving every random draw from ``(seed, step, sample
position)``: the batch order, each sample's augmentation and each sample's noise. A resumed run
therefore replays the same numbers as an uninterrupted one, and a 2-process run at the same global
batch sees the same samples with the same noise as a 1-process run.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from geocopgen.errors import ConfigError
from geocopgen.training.checkpoint import (
    TrainingState,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from geocopgen.training.config import TrainConfig, config_to_dict
from geocopgen.training.distributed import DistInfo, all_reduce_mean, init_distributed, local_slice

log = logging.getLogger(__name__)

#: Loop keys that may change between a run and its resumption without changing the maths.
RESUMABLE_CHANGES = {
    "steps",
    "log_every",
    "val_every",
    "ckpt_every",
    "keep_checkpoints",
    "progress",
    "minutes",
}


class LossFn(Protocol):
    """``loss_fn(model, batch, seeds) -> (loss, {name: value})``; one seed per sample."""

    def __call__(
        self, model: nn.Module, batch: Any, seeds: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


class EMA:
    """Shadow copy of the floating-point parameters and buffers, updated after every step.
    Frozen parameters (``requires_grad=False`` when it is built) are left as they are: an
    average of a constant is not always the constant in floating point."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay, self.warmup = decay, warmup
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.frozen = {n for n, p in model.named_parameters() if not p.requires_grad}

    def rate(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = self.rate(step)
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if k in self.frozen:
                continue
            if s.is_floating_point():
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)

    def copy_to(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the EMA weights (for validation and shipping)."""
        clone = copy.deepcopy(model)
        clone.load_state_dict(self.shadow)
        return clone.eval()


@dataclass
class TrainResult:
    step: int
    checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)


def warmup_lambda(warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to the base learning rate, then constant."""
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def sample_seed(seed: int, step: int, position: int, batch_size: int) -> int:
    """The seed of one sample of one step: distinct for every (step, position), stable forever."""
    return (seed * 1_000_003 + step * batch_size + position) % (2**63 - 1)


class Trainer:
    """Runs one stage. ``out_dir`` holds checkpoints; ``resume=True`` continues from ``latest``."""

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset,
        loss_fn: LossFn,
        config: TrainConfig,
        out_dir: str | Path,
        *,
        val_fn: Callable[[nn.Module], dict[str, float]] | None = None,
        collate: Callable[[list[Any]], Any] = default_collate,
        device: str | torch.device | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ConfigError(f"{out_dir}: the training dataset is empty; nothing to train on")
        self.config = config
        self.out_dir = Path(out_dir)
        self.dataset, self.loss_fn, self.val_fn, self.collate = dataset, loss_fn, val_fn, collate
        self.dist = dist_info or init_distributed()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)
        self.ema = EMA(self.model, config.ema.decay, config.ema.warmup)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.optim.lr,
            betas=tuple(config.optim.betas),
            eps=config.optim.eps,
            weight_decay=config.optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_lambda(config.optim.warmup_steps)
        )
        self.autocast_dtype = self._autocast_dtype(config.loop.precision)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.autocast_dtype == torch.float16
        )
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.step = 0
        self.seconds = 0.0  # training time so far, over every resumption (loop.minutes)

    # --- configuration ------------------------------------------------------------------
    def _autocast_dtype(self, precision: str) -> torch.dtype | None:
        choices = {"auto", "fp32", "bf16", "fp16"}
        if precision not in choices:
            raise ConfigError(f"loop.precision={precision!r}; choose one of {sorted(choices)}")
        if precision == "fp32" or (precision == "auto" and self.device.type != "cuda"):
            return None
        if precision in ("auto", "bf16"):
            return torch.bfloat16
        if self.device.type != "cuda":
            raise ConfigError("loop.precision='fp16' needs a CUDA device; use fp32 or bf16 on CPU")
        return torch.float16

    def _check_resumable(self, saved: dict[str, Any]) -> None:
        now = config_to_dict(self.config)
        diffs = []
        for section, values in now.items():
            for key, value in (values or {}).items() if isinstance(values, dict) else []:
                if section == "loop" and key in RESUMABLE_CHANGES:
                    continue
                old = (saved.get(section) or {}).get(key)
                if old != value:
                    diffs.append(f"{section}.{key}: checkpoint {old!r}, now {value!r}")
        if saved.get("world_size", 1) != self.dist.world_size and diffs:
            diffs.append("process count changed as well")
        if diffs:
            raise ConfigError(
                f"{self.out_dir}: cannot resume, the config differs from the checkpoint's: "
                + "; ".join(diffs)
                + ". Start a new output folder, or restore those values."
            )

    # --- batches ------------------------------------------------------------------------
    def _global_indices(self, step: int) -> list[int]:
        """Indices of the global batch of ``step``: epochs are seeded permutations, concatenated."""
        n, b, seed = len(self.dataset), self.config.loop.batch_size, self.config.loop.seed  # type: ignore[arg-type]
        start, out = step * b, []
        while len(out) < b:
            epoch, offset = divmod(start + len(out), n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919 * epoch))
            out.extend(perm[offset : offset + b - len(out)].tolist())
        return out

    def _batch(self, step: int) -> tuple[Any, torch.Tensor]:
        cfg = self.config.loop
        part = local_slice(cfg.batch_size, self.dist)
        indices = self._global_indices(step)[part]
        seeds = [
            sample_seed(cfg.seed, step, pos, cfg.batch_size) for pos in range(part.start, part.stop)
        ]
        samples = []
        for index, s in zip(indices, seeds, strict=True):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)  # augmentation inside the dataset is tied to the sample seed
                samples.append(self.dataset[index])
        return _to_device(self.collate(samples), self.device), torch.tensor(seeds)

    # --- the loop -----------------------------------------------------------------------
    def resume(self) -> bool:
        path = latest_checkpoint(self.out_dir)
        if path is None:
            return False
        state = load_checkpoint(path)
        self._check_resumable(state.meta.get("config", {}))
        self.model.load_state_dict(state.model)
        self.ema.shadow = {k: v.to(self.device) for k, v in state.ema.items()}
        self.optimizer.load_state_dict(state.optimizer["optimizer"])
        self.scheduler.load_state_dict(state.optimizer["scheduler"])
        self.scaler.load_state_dict(state.optimizer["scaler"])
        restore_rng(state.rng)
        self.step = state.step
        self.seconds = float(state.meta.get("seconds", 0.0))
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def train_step(self) -> dict[str, float]:
        self.ddp_model.train()
        batch, seeds = self._batch(self.step)
        ctx = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype
            else nullcontext()
        )
        with ctx:
            loss, logs = self.loss_fn(self.ddp_model, batch, seeds)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        reduced = all_reduce_mean(loss.detach().float(), self.dist)
        return {"loss": float(reduced), "grad_norm": float(grad_norm), **logs}

    def save(self) -> Path | None:
        path = None
        if self.dist.is_main:
            state = TrainingState(
                step=self.step,
                model=self.model.state_dict(),
                ema=self.ema.shadow,
                optimizer={
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                },
                rng=capture_rng(),
                meta={
                    "config": config_to_dict(self.config),
                    "world_size": self.dist.world_size,
                    "seconds": self.seconds,
                },
            )
            path = save_checkpoint(self.out_dir, state, keep=self.config.loop.keep_checkpoints)
        if self.dist.enabled:
            torch.distributed.barrier()
        return path

    def fit(self, resume: bool = True) -> TrainResult:
        """Train until ``loop.steps``; checkpoints periodically and at the end."""
        cfg = self.config.loop
        if resume:
            self.resume()
        result = TrainResult(step=self.step, checkpoint=None)
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc="train",
            disable=not (cfg.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        running: dict[str, float] = {}
        for logs in self._steps(cfg.steps):
            running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in logs.items()}
            if self.step % max(cfg.log_every, 1) == 0 or self.step == cfg.steps:
                result.history.append({"step": self.step, **logs})
                bar.set_postfix({k: f"{v:.4g}" for k, v in running.items() if k != "grad_norm"})
            bar.update(1)
            if self.val_fn and cfg.val_every and self.step % cfg.val_every == 0:
                result.validation.append({"step": self.step, **self.validate()})
            if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
                self.save()
        bar.close()
        result.step = self.step
        result.checkpoint = self.save()
        return result

    def _steps(self, total: int) -> Iterator[dict[str, float]]:
        """Steps until ``total``, or until ``loop.minutes`` of training (0: no time limit);
        every process stops at the same step (rank 0's clock decides)."""
        budget = self.config.loop.minutes * 60.0
        while self.step < total and not self._out_of_time(budget):
            start = time.perf_counter()
            logs = self.train_step()
            self.seconds += time.perf_counter() - start
            yield logs

    def _out_of_time(self, budget: float) -> bool:
        if budget <= 0:
            return False
        over = torch.tensor(float(self.seconds >= budget), device=self.device)
        if self.dist.enabled:
            torch.distributed.broadcast(over, src=0)
        return bool(over.item())

    def validate(self) -> dict[str, float]:
        if self.val_fn is None:
            return {}
        with torch.no_grad():
            return self.val_fn(self.ema.copy_to(self.model))

    def ema_model(self) -> nn.Module:
        return self.ema.copy_to(self.model)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
