"""Train the group-causal VAE on recorded episodes: `train_vae(data_dir, out_dir, preset)`.

Runs in one process or as one rank of a `torchrun` job (`training.distributed`): the encode-sample-decode
forward (`PosteriorReconstruction`) is wrapped in DDP, each rank samples its own shard of the training episodes
with its own seed, `batch_size` is per rank (global batch = `batch_size * world_size`), and rank 0 alone logs,
validates and writes files (the others wait at a barrier). Without `WORLD_SIZE` nothing changes.

A run folder holds `train_config.json`, `metrics.jsonl` (one JSON object per line), `checkpoint.pt` (resume
state: plain tensors and numbers, loaded with `weights_only=True`) and, at the end, `vae.safetensors` (the model
with its measured latent shift/scale, see `oniris_env.vae.checkpoint`) and `eval.json`. The loop, checkpoints,
interruptions and metrics log are `training.harness`'s: checkpoints are written atomically every `checkpoint_every`
steps, at the end, on KeyboardInterrupt and on SIGTERM (after the current step, on every rank, then
`training.interrupt.Terminated`: exit code 143); a resumed run continues from the saved step with the saved
optimizer and RNG states (those after the last finished step), so no step is lost or repeated. Under DDP the file
also holds every rank's RNG states (`rank_numpy_rng`, `rank_torch_rng`); Ctrl-C writes no extra checkpoint there
(a rank may already be gone), a restarted job resumes from the last periodic one.
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
from torch import nn
from tqdm.auto import tqdm

from oniris_env.config_io import atomic_write_text, config_changes
from oniris_env.spec import DEFAULT_SPEC, GameSpec
from oniris_env.vae import VAE_PRESETS, GroupCausalVAE, VAEConfig, load_vae, save_vae
from training import harness
from training.dataset import EpisodeWindows
from training.distributed import DistributedContext, strip_wrapper_prefixes
from training.vae.config import TRAIN_VAE_PRESETS, TrainVAEConfig
from training.vae.evaluate import evaluate_vae
from training.vae.losses import excess_loss, group_kl, reconstruction_loss

CHECKPOINT = "checkpoint.pt"


def frames_to_float(frames_u8: np.ndarray) -> torch.Tensor:
    """uint8 `(B, T, H, W, 3)` -> float32 `(B, T, 3, H, W)` in [-1, 1]."""
    return torch.from_numpy(frames_u8).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0


def learning_rate(step: int, cfg: TrainVAEConfig) -> float:
    """Linear warmup, then cosine decay from `lr` to `lr * min_lr_fraction` at `steps`; `step` is 0-based."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


class PosteriorReconstruction(nn.Module):
    """The VAE's training forward as one module call (what DDP and `torch.compile` wrap).

    x `(B, T, 3, H, W)` -> (x_hat `(B, T, 3, H, W)`, mean and logvar `(B, T', C, h, w)`): encode, draw one
    posterior sample with the global torch RNG, decode.
    """

    def __init__(self, vae: GroupCausalVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.vae.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()  # reparameterisation (Kingma & Welling 2014)
        return self.vae.decode(z), mean, logvar


def vae_loss(
    net: nn.Module, x: torch.Tensor, cfg: TrainVAEConfig, vae_config: VAEConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """ELBO-style loss of one batch x `(B, T, 3, H, W)`: reconstruction of a posterior sample + group KL.

    `net`: a `PosteriorReconstruction` (possibly inside DDP / torch.compile); `vae_config`: its VAE's config.
    """
    x_hat, mean, logvar = net(x)
    rec = reconstruction_loss(x_hat, x, cfg.recon_loss, cfg.fg_weight, cfg.worst_k_fraction)
    c = vae_config
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
        x = frames_to_float(ds.sample_batch(rng, 8)["frames"]).to(next(model.parameters()).device)
        mean, _ = model.encode(x)  # (8, T', C, h, w)
        batches.append(mean.float().transpose(0, 2).flatten(1))  # (C, N)
        n += x.shape[0] * x.shape[1]
    z = torch.cat(batches, dim=1)
    return z.mean(dim=1), z.std(dim=1).clamp_min(1e-6)


def _write_checkpoint(
    path: Path,
    model: GroupCausalVAE,
    opt: torch.optim.Optimizer,
    step: int,
    main: harness.StreamState,
    cfg: TrainVAEConfig,
    ranks: list[harness.StreamState] | None,
) -> None:
    """Write the resume state atomically; `model` is the plain VAE (never the DDP wrapper), `ranks` every rank's
    streams under DDP."""
    state: dict[str, Any] = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "numpy_rng": json.dumps(main.data),
        "torch_rng": main.noise,
        "config": json.dumps(cfg.to_dict()),
    }
    if ranks is not None:
        state["rank_numpy_rng"] = json.dumps([r.data for r in ranks])
        state["rank_torch_rng"] = [r.noise for r in ranks]
    harness.save_state(state, path)


def _resume(
    ctx: DistributedContext,
    path: Path,
    cfg: TrainVAEConfig,
    model: GroupCausalVAE,
    opt: torch.optim.Optimizer,
    streams: harness.RandomStreams,
    resume: bool,
) -> int | None:
    """With `resume`, load the checkpoint at `path` into the model, optimizer and streams and return its step;
    None when there is none to continue."""
    state = harness.load_state(path) if resume and path.exists() else None
    harness.check_same_checkpoint(ctx, None if state is None else int(state["step"]), path.parent)
    if state is None:
        return None
    saved = json.loads(state["config"])
    if changes := config_changes({**saved, "steps": cfg.steps}, cfg.to_dict()):  # only `steps` may change
        raise ValueError(
            f"{path} was trained with another config ({'; '.join(changes)}); resume with its own settings, "
            "or start fresh with resume=False (CLI: --no-resume) or a new out dir"
        )
    model.load_state_dict(strip_wrapper_prefixes(state["model"]))
    opt.load_state_dict(state["optimizer"])
    step = int(state["step"])
    main = harness.StreamState(json.loads(state["numpy_rng"]), state["torch_rng"])
    rank_data = json.loads(state.get("rank_numpy_rng", "null"))
    ranks = None
    if rank_data is not None:  # written under DDP
        ranks = [harness.StreamState(*r) for r in zip(rank_data, state["rank_torch_rng"], strict=True)]
    streams.restore(ctx, ctx.rank_seed(cfg.seed), step, main, ranks)
    return step


def _resolve_config(preset: str, config: TrainVAEConfig | None, steps: int | None) -> TrainVAEConfig:
    if config is None:
        if preset not in TRAIN_VAE_PRESETS:
            raise ValueError(f"preset must be one of {sorted(TRAIN_VAE_PRESETS)}, got {preset!r}")
        config = TRAIN_VAE_PRESETS[preset]
    return replace(config, steps=steps) if steps is not None else config


def _build_model(cfg: TrainVAEConfig, spec: GameSpec, dev: torch.device) -> GroupCausalVAE:
    """The VAE of the preset, seeded with `cfg.seed` (or with the `init_from` weights), on `dev`."""
    torch.manual_seed(cfg.seed)
    model = GroupCausalVAE(VAE_PRESETS[cfg.model])
    if cfg.init_from:
        init = load_vae(cfg.init_from, spec=spec)
        if init.config != model.config:
            raise ValueError(f"init_from {cfg.init_from} has config {init.config}, expected {model.config}")
        model.load_state_dict(init.state_dict())
    model = model.to(dev)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def train_vae(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    preset: str = "default",
    resume: bool = True,
    config: TrainVAEConfig | None = None,
    steps: int | None = None,
    progress: bool = True,
    spec: GameSpec = DEFAULT_SPEC,
    device: str = "cpu",
    compile_model: bool = False,
) -> Path:
    """Train a VAE on the episodes in `data_dir`; write the run to `out_dir`; return `out_dir/vae.safetensors`.

    Args:
        data_dir: a folder written by `oniris-env collect` (frames + manifest.json).
        out_dir: run folder; with `resume`, an existing `checkpoint.pt` there is continued. Under a multi-node
            `torchrun` job it must be on a filesystem that every node sees.
        preset: name in `TRAIN_VAE_PRESETS` ('tiny' for tests, 'default' for the shipped model).
        config: a full `TrainVAEConfig` instead of a preset.
        steps: override the total number of steps.
        progress: show a tqdm progress bar (rank 0 only).
        spec: the game spec the data must have been recorded with.
        device: 'cpu' | 'cuda' | 'auto' (under torchrun on CUDA, rank r uses `cuda:{LOCAL_RANK}`).
        compile_model: `torch.compile` the training forward (off by default: small convolutions on CPU).
    """
    cfg = _resolve_config(preset, config, steps)
    ctx = DistributedContext.from_env(device)
    try:
        return _train(ctx, cfg, data_dir, Path(out_dir), resume, progress, spec, compile_model)
    finally:
        ctx.destroy()


def _train(
    ctx: DistributedContext,
    cfg: TrainVAEConfig,
    data_dir: str | os.PathLike,
    out: Path,
    resume: bool,
    progress: bool,
    spec: GameSpec,
    compile_model: bool,
) -> Path:
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    dev = torch.device(ctx.device)
    train_ds = EpisodeWindows(data_dir, cfg.clip_length, "train", cfg.val_fraction, shard=ctx.shard)
    spec.check_matches(train_ds.spec, str(data_dir))
    n_val = len(EpisodeWindows(data_dir, 1, "val", cfg.val_fraction).episodes) if ctx.is_main else 0

    model = _build_model(cfg, spec, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    # Rank 0 keeps the configured seed (one process is unchanged); other ranks get their own streams. The noise
    # is torch's global generator (`randn_like` in `PosteriorReconstruction`).
    streams = harness.RandomStreams(np.random.default_rng(ctx.rank_seed(cfg.seed)))
    if ctx.rank:
        torch.manual_seed(ctx.rank_seed(cfg.seed))  # the init above is the same on every rank
    resumed = _resume(ctx, out / CHECKPOINT, cfg, model, opt, streams, resume)
    step = resumed or 0
    metrics = harness.MetricsLog(out / "metrics.jsonl", ctx)
    elapsed = max([r.get("elapsed_s", 0.0) for r in metrics.start(resumed)] or [0.0])
    if ctx.is_main:
        atomic_write_text(out / "train_config.json", json.dumps(cfg.to_dict(), indent=1))
    forward = PosteriorReconstruction(model)
    if compile_model:
        forward.compile()  # in place: the VAE's state_dict keys do not change
    net = ctx.wrap(forward)

    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    bar = tqdm(total=cfg.steps, initial=step, desc="train vae", unit="step", disable=not (progress and ctx.is_main))
    t0, throughput, means = time.perf_counter() - elapsed, harness.Throughput(), harness.RunningMean()

    def write(step: int, main: harness.StreamState, ranks: list[harness.StreamState] | None, note: Any) -> None:
        _write_checkpoint(out / CHECKPOINT, model, opt, step, main, cfg, ranks)

    run = harness.TrainingRun(ctx, out, streams, write, bar)

    def train_step(step: int) -> float:
        """One optimizer step; returns the gradient norm before clipping."""
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        x = frames_to_float(train_ds.sample_batch(streams.data, cfg.batch_size)["frames"]).to(dev)
        if cfg.channels_last:
            x = x.contiguous()
        with autocast:
            loss, parts = vae_loss(net, x, cfg, model.config)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP the gradients are averaged over the ranks here
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        opt.step()
        means.add(parts)
        throughput.add(cfg.batch_size * cfg.clip_length)
        return grad_norm

    def after_step(step: int, grad_norm: float) -> None:
        """Log, validate and save as configured, after `step` finished steps."""
        if step % cfg.log_every == 0 or step == cfg.steps:
            record = {"step": step, **ctx.mean(means.take()), "grad_norm": grad_norm, "lr": opt.param_groups[0]["lr"]}
            record |= {"frames_per_s": throughput.take(), "elapsed_s": time.perf_counter() - t0}
            metrics.append(record | harness.ddp_fields(ctx, cfg.batch_size, record["frames_per_s"]))
            bar.set_postfix(loss=f"{record['loss']:.4f}", fps=f"{record['frames_per_s']:.0f}")
        if cfg.val_every and step % cfg.val_every == 0 and n_val and step < cfg.steps:
            model.eval()
            val = evaluate_vae(model, data_dir, "val", cfg.val_frames, cfg.val_fraction)
            model.train()
            metrics.append({"step": step, **{f"val_{k}": v for k, v in val.items()}})
            throughput.restart()
        if step % cfg.checkpoint_every == 0:
            run.save(step)

    model.train()
    step = run.loop(step, cfg.steps, train_step, after_step)
    run.save(step)
    wall = time.perf_counter() - t0
    harness.check_sync(ctx, step, metrics, model.state_dict())
    path = out / "vae.safetensors"
    if ctx.is_main:
        _finish(model, cfg, train_ds, data_dir, n_val, path, spec, {"step": step, "train_wall_s": wall}, metrics)
    ctx.barrier()
    return path


def _finish(
    model: GroupCausalVAE,
    cfg: TrainVAEConfig,
    train_ds: EpisodeWindows,
    data_dir: str | os.PathLike,
    n_val: int,
    path: Path,
    spec: GameSpec,
    result: dict[str, Any],
    metrics: harness.MetricsLog,
) -> None:
    """Rank 0, after training: measure the latent normalisation, evaluate, write `eval.json` and the weights
    (`path`)."""
    # Latent normalisation measured on training data (rank 0's episodes) and stored as buffers in the file.
    model.eval()
    shift, scale = measure_latent_stats(model, train_ds, cfg.stats_frames, np.random.default_rng(cfg.seed + 1))
    model.latent_shift.copy_(shift)
    model.latent_scale.copy_(scale)
    result = {**result, "params": model.num_parameters()}
    if n_val:
        final = evaluate_vae(model, data_dir, "val", cfg.eval_frames or None, cfg.val_fraction)
        result |= {f"val_{k}": v for k, v in final.items()}
    metrics.append(result)
    atomic_write_text(path.with_name("eval.json"), json.dumps(result, indent=1))
    notes = {"train_config": cfg.to_dict(), "data": str(data_dir), **result}
    save_vae(model, path, spec=spec, notes=notes)
