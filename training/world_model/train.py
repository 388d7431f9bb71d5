"""The world-model training run: DART batches, Adam + EDM2 schedule, power EMA, validation, resume.

`train_world_model(latents_dir, out_dir, preset)` is what `oniris-env train world-model` calls. Side effects
(files, threads, progress bar) live here; the math lives in `loss.py` and `oniris_env.world_model`.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from oniris_env.spec import GameSpec
from oniris_env.world_model import WorldModel, WorldModelConfig, save_world_model
from training.world_model.checkpoint import TrainState, load_checkpoint, restore_rng, rng_state, save_checkpoint
from training.world_model.config import TrainWorldModelConfig
from training.world_model.ema import PowerFunctionEMA
from training.world_model.loss import DartBatch, LossUncertainty, dart_losses

WEIGHTS_NAME = "world_model.safetensors"
METRICS_NAME = "metrics.jsonl"


class BatchSource(Protocol):
    """What the trainer needs from a dataset (`training.dataset.EpisodeWindows` with key 'latents')."""

    spec: GameSpec

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]: ...


def learning_rate(step: int, cfg: TrainWorldModelConfig) -> float:
    """EDM2 eq. 67 inverse-sqrt decay after a linear warm-up; `step` is 0-based."""
    lr = cfg.lr_ref / math.sqrt(max(step / cfg.lr_t_ref, 1.0))
    if cfg.lr_warmup > 0:
        lr *= min(step / cfg.lr_warmup, 1.0)
    return lr


def bf16_is_faster(width: int, tokens: int = 4096, repeats: int = 5) -> bool:
    """Time a (tokens, width) x (width, 3 width) linear layer, forward + backward, in fp32 and under bf16 autocast."""
    layer = torch.nn.Linear(width, 3 * width)
    x = torch.randn(tokens, width, requires_grad=True)

    def run(bf16: bool) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                y = layer(x)
            y.float().sum().backward()
            best = min(best, time.process_time() - start)
        return best

    run(True)
    return run(True) < run(False)


def measure_sigma_data(data: BatchSource, cfg: TrainWorldModelConfig, batches: int = 8) -> float:
    """Std of the training latents over a few batches (EDM's sigma_data)."""
    rng = np.random.default_rng(cfg.seed + 7)
    values = [data.sample_batch(rng, cfg.batch_size)["latents"].astype(np.float64) for _ in range(batches)]
    return float(np.concatenate([v.ravel() for v in values]).std())


def model_config_for(data: BatchSource, cfg: TrainWorldModelConfig, sample: dict[str, np.ndarray]) -> WorldModelConfig:
    """The preset's architecture fitted to the dataset's latent shape, action count and latent std."""
    c, h, w = sample["latents"].shape[2:]
    sigma_data = cfg.sigma_data if cfg.sigma_data is not None else measure_sigma_data(data, cfg)
    return WorldModelConfig.preset(
        cfg.model_preset, latent_channels=int(c), latent_height=int(h), latent_width=int(w),
        num_actions=data.spec.num_actions, sigma_data=round(sigma_data, 4),
    )


@torch.no_grad()
def validate(
    model: WorldModel, uncertainty: LossUncertainty, batches: list[DartBatch], cfg: TrainWorldModelConfig
) -> dict[str, float]:
    """Mean losses of `model` (the EMA weights) on fixed held-out batches with fixed noise (comparable curves)."""
    generator = torch.Generator().manual_seed(cfg.seed + 99)
    totals: dict[str, float] = {}
    for batch in batches:
        losses = dart_losses(model, uncertainty, batch, cfg, generator, autocast=False)
        for name in ("denoise_raw", "denoise_normalised", "reward", "term", "reward_mae"):
            totals[name] = totals.get(name, 0.0) + float(getattr(losses, name)) / len(batches)
    return totals


def _rewrite_metrics(path: Path, up_to_step: int) -> None:
    """On resume, drop records logged after the checkpoint (they will be logged again)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= up_to_step]
    path.write_text("".join(line + "\n" for line in kept))


def train_world_model(
    latents_dir: Path | str | None,
    out_dir: Path | str,
    preset: str = "default",
    resume: bool = True,
    config: TrainWorldModelConfig | None = None,
    train_data: BatchSource | None = None,
    val_data: BatchSource | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Train (or resume) a world model on encoded latents; returns the path of `world_model.safetensors`.

    Args:
        latents_dir: folder written by `oniris-env encode` (ignored when `train_data` is given).
        out_dir: run folder: `checkpoint.pt` (resume), `metrics.jsonl`, `world_model.safetensors` (EMA weights).
        preset: `TrainWorldModelConfig` preset, used when `config` is None.
        resume: continue from `out_dir/checkpoint.pt` when present (the saved configs win).
        train_data, val_data: objects with `sample_batch` and `spec` (default: `EpisodeWindows` splits).
        stop_after: stop (with a checkpoint) after this many steps in this call, as an interruption would.
    """
    cfg = config or TrainWorldModelConfig.preset(preset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(out) if resume else None
    if state is not None:
        cfg = TrainWorldModelConfig(**{**state.train_config, "adam_betas": tuple(state.train_config["adam_betas"]),
                                       "steps": max(cfg.steps, state.train_config["steps"])})
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if train_data is None:
        from training.dataset import EpisodeWindows

        train_data = EpisodeWindows(latents_dir, cfg.clip_frames, split="train", key="latents", progress=progress)
        val_data = EpisodeWindows(latents_dir, cfg.clip_frames, split="val", key="latents")

    data_rng = np.random.default_rng(cfg.seed)
    noise_rng = torch.Generator().manual_seed(cfg.seed)
    if state is None:
        probe = train_data.sample_batch(np.random.default_rng(cfg.seed + 1), 1)
        model_cfg = model_config_for(train_data, cfg, probe)
        spec = train_data.spec
    else:
        model_cfg = WorldModelConfig.from_dict(state.model_config)
        spec = GameSpec.from_dict(state.spec)
        spec.check_matches(train_data.spec, f"latent dataset {latents_dir}")

    if cfg.clip_frames <= model_cfg.window:
        warnings.warn(
            f"clip_frames {cfg.clip_frames} <= window {model_cfg.window}: training never shows the model a full "
            "attention window, which inference uses at every step after the first W frames",
            stacklevel=2,
        )
    if cfg.bf16 is None:
        cfg = replace(cfg, bf16=bf16_is_faster(model_cfg.width))
    torch.manual_seed(cfg.seed)
    model = WorldModel(model_cfg)
    uncertainty = LossUncertainty()
    params = list(model.parameters()) + list(uncertainty.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr_ref, betas=cfg.adam_betas)
    ema = PowerFunctionEMA(model, cfg.ema_std)
    step = 0
    if state is not None:
        model.load_state_dict(state.model)
        uncertainty.load_state_dict(state.uncertainty)
        optimizer.load_state_dict(state.optimizer)
        ema.load_state_dict(state.ema)
        noise_rng.set_state(state.noise_rng)
        data_rng = restore_rng(state.data_rng)
        step = state.step
    metrics_path = out / METRICS_NAME
    if state is not None:
        _rewrite_metrics(metrics_path, step)
    else:
        metrics_path.unlink(missing_ok=True)

    val_batches: list[DartBatch] = []
    if val_data is not None:
        try:
            val_rng = np.random.default_rng(cfg.seed + 12345)
            val_batches = [
                DartBatch.from_numpy(val_data.sample_batch(val_rng, cfg.batch_size)) for _ in range(cfg.val_batches)
            ]
        except ValueError as e:
            warnings.warn(f"no validation: {e}", stacklevel=2)
    ema_model = WorldModel(model_cfg).eval()

    def checkpoint(val: dict[str, float] | None) -> None:
        ema.copy_to(ema_model)
        extra = {"step": step, "train_config": cfg.to_dict(), **({"val": val} if val else {})}
        save_world_model(ema_model, out / WEIGHTS_NAME, spec, extra)
        save_checkpoint(
            TrainState(step, model.state_dict(), ema.state_dict(), uncertainty.state_dict(), optimizer.state_dict(),
                       noise_rng.get_state(), rng_state(data_rng), model_cfg.to_dict(), cfg.to_dict(),
                       spec.to_dict()),
            out,
        )

    def log(record: dict[str, Any]) -> None:
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    bar = tqdm(total=cfg.steps, initial=step, desc="world model", unit="step", disable=not progress)
    window_start, window_frames = time.perf_counter(), 0
    model.train()
    while step < end:
        batch = DartBatch.from_numpy(train_data.sample_batch(data_rng, cfg.batch_size))
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = dart_losses(model, uncertainty, batch, cfg, noise_rng, autocast=cfg.bf16)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.nan
        if not torch.isfinite(losses.total):
            raise FloatingPointError(f"non-finite loss at step {step}: {losses}")
        optimizer.step()
        step += 1
        ema.update(model, step)
        window_frames += batch.latents.shape[0] * batch.latents.shape[1]
        bar.update(1)
        if step % cfg.log_every == 0 or step == end:
            elapsed = time.perf_counter() - window_start
            record = {
                "step": step, "split": "train", "lr": lr, "loss": float(losses.total.detach()),
                "denoise_raw": float(losses.denoise_raw), "denoise_normalised": float(losses.denoise_normalised),
                "reward": float(losses.reward), "term": float(losses.term), "reward_mae": float(losses.reward_mae),
                "grad_norm": float(grad_norm), "frames_per_s": window_frames / max(elapsed, 1e-9),
            }
            log(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", fps=f"{record['frames_per_s']:.0f}")
            window_start, window_frames = time.perf_counter(), 0
        if step % cfg.val_every == 0 or step == end:
            val = None
            if val_batches:
                ema.copy_to(ema_model)
                val = validate(ema_model, uncertainty, val_batches, cfg)
                log({"step": step, "split": "val", **val})
            checkpoint(val)
    bar.close()
    if step >= cfg.steps and not (out / WEIGHTS_NAME).is_file():
        checkpoint(None)
    return out / WEIGHTS_NAME


__all__ = ["TrainWorldModelConfig", "learning_rate", "train_world_model"]
