"""Train the group-causal VAE on recorded episodes: `train_vae(data_dir, out_dir, preset)`.

A run folder holds `train_config.json`, `metrics.jsonl` (one JSON object per line), `checkpoint.pt` (resume
state: plain tensors and numbers, loaded with `weights_only=True`) and, at the end, `vae.safetensors` (the model
with its measured latent shift/scale, see `oniris_env.vae.checkpoint`) and `eval.json`. Checkpoints are written
to a temp file and renamed, every `checkpoint_every` steps, at the end and on KeyboardInterrupt; a resumed run
continues from the saved step with the saved optimizer and RNG states, so no step is lost or repeated.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from oniris_env.spec import DEFAULT_SPEC, GameSpec
from oniris_env.vae import VAE_PRESETS, GroupCausalVAE, load_vae, save_vae
from training.dataset import EpisodeWindows
from training.vae.config import TRAIN_VAE_PRESETS, TrainVAEConfig
from training.vae.evaluate import evaluate_vae
from training.vae.losses import excess_loss, group_kl, reconstruction_loss

CHECKPOINT = "checkpoint.pt"


def frames_to_float(frames_u8: np.ndarray) -> torch.Tensor:
    """uint8 `(B, T, H, W, 3)` -> float32 `(B, T, 3, H, W)` in [-1, 1]."""
    return torch.from_numpy(frames_u8).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0


def learning_rate(cfg: TrainVAEConfig, step: int) -> float:
    """Linear warmup, then cosine decay from `lr` to `lr * min_lr_fraction` at `steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


def vae_loss(model: GroupCausalVAE, x: torch.Tensor, cfg: TrainVAEConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """ELBO-style loss of one batch x `(B, T, 3, H, W)`: reconstruction of a posterior sample + group KL."""
    mean, logvar = model.encode(x)
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()  # reparameterisation (Kingma & Welling 2014)
    x_hat = model.decode(z)
    rec = reconstruction_loss(x_hat, x, cfg.recon_loss, cfg.fg_weight, cfg.worst_k_fraction)
    c = model.config
    kl = group_kl(mean, logvar, c.time_compression * c.image_channels * c.frame_height * c.frame_width)
    loss = rec + cfg.kl_weight * kl
    parts = {"rec": rec.item(), "kl": kl.item()}
    if cfg.excess_weight > 0:
        exc = excess_loss(x_hat, x)
        loss = loss + cfg.excess_weight * exc
        parts["excess"] = exc.item()
    return loss, {"loss": loss.item(), **parts}


@torch.no_grad()
def measure_latent_stats(
    model: GroupCausalVAE, ds: EpisodeWindows, frames: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std `(C,)` of the posterior means over ~`frames` training frames."""
    batches = []
    n = 0
    while n < frames:
        x = frames_to_float(ds.sample_batch(rng, 8)["frames"])
        mean, _ = model.encode(x)  # (8, T', C, h, w)
        batches.append(mean.float().transpose(0, 2).flatten(1))  # (C, N)
        n += x.shape[0] * x.shape[1]
    z = torch.cat(batches, dim=1)
    return z.mean(dim=1), z.std(dim=1).clamp_min(1e-6)


def _rng_state(rng: np.random.Generator) -> tuple[str, torch.Tensor]:
    """Snapshot of the batch-sampling and posterior-noise RNGs, as (JSON text, uint8 tensor)."""
    return json.dumps(rng.bit_generator.state), torch.get_rng_state()


def _save_checkpoint(
    path: Path,
    model: GroupCausalVAE,
    opt: torch.optim.Optimizer,
    step: int,
    rng_state: tuple[str, torch.Tensor],
    cfg: TrainVAEConfig,
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "numpy_rng": rng_state[0],
        "torch_rng": rng_state[1],
        "config": json.dumps(cfg.to_dict()),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics lines logged after `step` (they came from steps a resumed run will redo)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


def train_vae(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    preset: str = "default",
    resume: bool = True,
    config: TrainVAEConfig | None = None,
    steps: int | None = None,
    progress: bool = True,
    spec: GameSpec = DEFAULT_SPEC,
) -> Path:
    """Train a VAE on the episodes in `data_dir`; write the run to `out_dir`; return `out_dir/vae.safetensors`.

    Args:
        data_dir: a folder written by `oniris-env collect` (frames + manifest.json).
        out_dir: run folder; with `resume`, an existing `checkpoint.pt` there is continued.
        preset: name in `TRAIN_VAE_PRESETS` ('tiny' for tests, 'default' for the shipped model).
        config: a full `TrainVAEConfig` instead of a preset.
        steps: override the total number of steps.
        progress: show a tqdm progress bar.
        spec: the game spec the data must have been recorded with.
    """
    if config is None:
        if preset not in TRAIN_VAE_PRESETS:
            raise ValueError(f"preset must be one of {sorted(TRAIN_VAE_PRESETS)}, got {preset!r}")
        config = TRAIN_VAE_PRESETS[preset]
    cfg = replace(config, steps=steps) if steps is not None else config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out / CHECKPOINT, out / "metrics.jsonl"

    train_ds = EpisodeWindows(data_dir, cfg.clip_length, "train", cfg.val_fraction)
    spec.check_matches(train_ds.spec, str(data_dir))
    n_val = len(EpisodeWindows(data_dir, 1, "val", cfg.val_fraction).episodes)

    torch.manual_seed(cfg.seed)
    model = GroupCausalVAE(VAE_PRESETS[cfg.model])
    if cfg.init_from:
        init = load_vae(cfg.init_from, spec=spec)
        if init.config != model.config:
            raise ValueError(f"init_from {cfg.init_from} has config {init.config}, expected {model.config}")
        model.load_state_dict(init.state_dict())
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    step, elapsed = 0, 0.0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        saved = json.loads(state["config"])
        if {**saved, "steps": cfg.steps} != cfg.to_dict():  # only `steps` may change (to extend a run)
            raise ValueError(
                f"{ckpt_path} was trained with another config; use resume=False or a new out dir.\n"
                f"  saved: {saved}\n  now:   {cfg.to_dict()}"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        _truncate_metrics(metrics_path, step)
        elapsed = max([json.loads(x).get("elapsed_s", 0.0) for x in metrics_path.read_text().splitlines()] or [0.0])
    elif metrics_path.exists():
        metrics_path.unlink()
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    frames_per_step = cfg.batch_size * cfg.clip_length
    bar = tqdm(total=cfg.steps, initial=step, desc="train vae", unit="step", disable=not progress)
    t0, t_log, sums = time.perf_counter() - elapsed, time.perf_counter(), {"loss": 0.0, "rec": 0.0, "kl": 0.0}
    n_sum = 0
    rng_state = _rng_state(rng)
    model.train()
    try:
        while step < cfg.steps:
            # RNG states at the start of the step: an interrupted step is redone with the same batch and noise.
            rng_state = _rng_state(rng)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            x = frames_to_float(train_ds.sample_batch(rng, cfg.batch_size)["frames"])
            if cfg.channels_last:
                x = x.contiguous()
            with autocast:
                loss, parts = vae_loss(model, x, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            opt.step()
            step += 1
            bar.update(1)
            for k in parts:
                sums[k] = sums.get(k, 0.0) + parts[k]
            n_sum += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                record = {
                    "step": step,
                    **{k: v / n_sum for k, v in sums.items()},
                    "grad_norm": grad_norm,
                    "lr": opt.param_groups[0]["lr"],
                    "frames_per_s": n_sum * frames_per_step / (now - t_log),
                    "elapsed_s": now - t0,
                }
                _append_metrics(metrics_path, record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", fps=f"{record['frames_per_s']:.0f}")
                sums, n_sum, t_log = dict.fromkeys(sums, 0.0), 0, now
            if cfg.val_every and step % cfg.val_every == 0 and n_val and step < cfg.steps:
                model.eval()
                val = evaluate_vae(model, data_dir, "val", cfg.val_frames, cfg.val_fraction)
                model.train()
                _append_metrics(metrics_path, {"step": step, **{f"val_{k}": v for k, v in val.items()}})
                t_log = time.perf_counter()
            rng_state = _rng_state(rng)
            if step % cfg.checkpoint_every == 0:
                _save_checkpoint(ckpt_path, model, opt, step, rng_state, cfg)
    except KeyboardInterrupt:
        _save_checkpoint(ckpt_path, model, opt, step, rng_state, cfg)
        bar.close()
        raise
    _save_checkpoint(ckpt_path, model, opt, step, _rng_state(rng), cfg)
    bar.close()
    wall = time.perf_counter() - t0

    # Latent normalisation measured on training data and stored as buffers in the shipped file.
    model.eval()
    shift, scale = measure_latent_stats(model, train_ds, cfg.stats_frames, np.random.default_rng(cfg.seed + 1))
    model.latent_shift.copy_(shift)
    model.latent_scale.copy_(scale)
    result = {"step": step, "train_wall_s": wall, "params": model.num_parameters()}
    if n_val:
        final = evaluate_vae(model, data_dir, "val", cfg.eval_frames or None, cfg.val_fraction)
        result |= {f"val_{k}": v for k, v in final.items()}
    _append_metrics(metrics_path, result)
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    notes = {"train_config": cfg.to_dict(), "data": str(data_dir), **result}
    return save_vae(model, out / "vae.safetensors", spec=spec, notes=notes)
