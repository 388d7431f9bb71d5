"""Train the group-causal VAE on recorded episodes: `train_vae(data_dir, out_dir, preset)`.

Runs in one process or as one rank of a `torchrun` job (`training.distributed`): the encode-sample-decode
forward (`PosteriorReconstruction`) is wrapped in DDP, each rank samples its own shard of the training episodes
with its own seed, `batch_size` is per rank (global batch = `batch_size * world_size`), and rank 0 alone logs,
validates and writes files (the others wait at a barrier). Without `WORLD_SIZE` nothing changes.

A run folder holds `train_config.json`, `metrics.jsonl` (one JSON object per line), `checkpoint.pt` (resume
state: plain tensors and numbers, loaded with `weights_only=True`) and, at the end, `vae.safetensors` (the model
with its measured latent shift/scale, see `oniris_env.vae.checkpoint`) and `eval.json`. Checkpoints are written
to a temp file and renamed, every `checkpoint_every` steps, at the end, on KeyboardInterrupt and on SIGTERM (after
the current step, on every rank, then `training.interrupt.Terminated`: exit code 143); a resumed run continues
from the saved step with the saved optimizer and RNG states, so no step is lost or repeated. Under DDP the file
also holds every rank's RNG states (`rank_rngs`); Ctrl-C writes no extra checkpoint there (a rank may already be
gone), a restarted job resumes from the last periodic one.
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

from oniris_env.config_io import config_changes
from oniris_env.spec import DEFAULT_SPEC, GameSpec
from oniris_env.vae import VAE_PRESETS, GroupCausalVAE, VAEConfig, load_vae, save_vae
from training.dataset import EpisodeWindows
from training.distributed import DistributedContext, strip_wrapper_prefixes, sync_record
from training.interrupt import StopOnSigterm, report_stop
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


def _rng_state(rng: np.random.Generator) -> tuple[str, torch.Tensor]:
    """Snapshot of the batch-sampling and posterior-noise RNGs, as (JSON text, uint8 tensor)."""
    return json.dumps(rng.bit_generator.state), torch.get_rng_state()


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """The resume state at `path` (`weights_only=True`), or a ValueError naming the file when it is unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (truncated, foreign or corrupt: any failure means the file is unusable)
        raise ValueError(f"cannot resume from {path}: {e}; delete it (or pass --no-resume) to start over") from e


def _save_checkpoint(
    path: Path,
    model: GroupCausalVAE,
    opt: torch.optim.Optimizer,
    step: int,
    rng_state: tuple[str, torch.Tensor],
    cfg: TrainVAEConfig,
    rank_rngs: list[tuple[str, torch.Tensor]] | None = None,
) -> None:
    """Write the resume state atomically; `model` is the plain VAE (never the DDP wrapper), `rank_rngs` every
    rank's `_rng_state` under DDP."""
    state: dict[str, Any] = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "numpy_rng": rng_state[0],
        "torch_rng": rng_state[1],
        "config": json.dumps(cfg.to_dict()),
    }
    if rank_rngs is not None:
        state["rank_numpy_rng"] = json.dumps([r[0] for r in rank_rngs])
        state["rank_torch_rng"] = [r[1] for r in rank_rngs]
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
    ctx = DistributedContext.from_env(device)
    try:
        return _train(ctx, data_dir, out_dir, preset, resume, config, steps, progress, spec, compile_model)
    finally:
        ctx.destroy()


def _train(
    ctx: DistributedContext,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    preset: str,
    resume: bool,
    config: TrainVAEConfig | None,
    steps: int | None,
    progress: bool,
    spec: GameSpec,
    compile_model: bool,
) -> Path:
    if config is None:
        if preset not in TRAIN_VAE_PRESETS:
            raise ValueError(f"preset must be one of {sorted(TRAIN_VAE_PRESETS)}, got {preset!r}")
        config = TRAIN_VAE_PRESETS[preset]
    cfg = replace(config, steps=steps) if steps is not None else config
    out = Path(out_dir)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    ckpt_path, metrics_path = out / CHECKPOINT, out / "metrics.jsonl"
    dev = torch.device(ctx.device)

    train_ds = EpisodeWindows(data_dir, cfg.clip_length, "train", cfg.val_fraction, shard=ctx.shard)
    spec.check_matches(train_ds.spec, str(data_dir))
    n_val = len(EpisodeWindows(data_dir, 1, "val", cfg.val_fraction).episodes) if ctx.is_main else 0

    torch.manual_seed(cfg.seed)
    model = GroupCausalVAE(VAE_PRESETS[cfg.model])
    if cfg.init_from:
        init = load_vae(cfg.init_from, spec=spec)
        if init.config != model.config:
            raise ValueError(f"init_from {cfg.init_from} has config {init.config}, expected {model.config}")
        model.load_state_dict(init.state_dict())
    model = model.to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    # Rank 0 keeps the configured seed (one process is unchanged); other ranks get their own streams.
    rng = np.random.default_rng(ctx.rank_seed(cfg.seed))
    if ctx.rank:
        torch.manual_seed(ctx.rank_seed(cfg.seed))  # posterior noise (the init above is the same on every rank)
    step, elapsed = 0, 0.0
    state = _load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    if len(set(ctx.all_gather(-1 if state is None else int(state["step"])))) > 1:
        raise ValueError(f"the ranks see different checkpoints in {out}: put --out on a filesystem all nodes share")
    if state is not None:
        saved = json.loads(state["config"])
        if changes := config_changes({**saved, "steps": cfg.steps}, cfg.to_dict()):  # only `steps` may change
            raise ValueError(
                f"{ckpt_path} was trained with another config ({'; '.join(changes)}); resume with its own settings, "
                "or start fresh with resume=False (CLI: --no-resume) or a new out dir"
            )
        model.load_state_dict(strip_wrapper_prefixes(state["model"]))
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        numpy_rngs = json.loads(state.get("rank_numpy_rng", "[]"))
        if len(numpy_rngs) == ctx.world_size > 1:  # same world size: every rank continues its own streams
            torch.set_rng_state(state["rank_torch_rng"][ctx.rank])
            rng.bit_generator.state = numpy_rngs[ctx.rank]
        elif ctx.is_main:  # rank 0 (and one process) continues the saved streams
            torch.set_rng_state(state["torch_rng"])
            rng.bit_generator.state = json.loads(state["numpy_rng"])
        else:  # another world size: fresh streams, distinct per rank and per step
            torch.manual_seed(ctx.rank_seed(cfg.seed) + step)
            rng = np.random.default_rng([ctx.rank_seed(cfg.seed), step])
        if ctx.is_main:
            _truncate_metrics(metrics_path, step)
            lines = metrics_path.read_text().splitlines() if metrics_path.exists() else []
            elapsed = max([json.loads(x).get("elapsed_s", 0.0) for x in lines] or [0.0])
    elif metrics_path.exists() and ctx.is_main:
        metrics_path.unlink()
    if ctx.is_main:
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    forward = PosteriorReconstruction(model)
    if compile_model:
        forward.compile()  # in place: the VAE's state_dict keys do not change
    net = ctx.wrap(forward)

    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    frames_per_step = cfg.batch_size * cfg.clip_length
    bar = tqdm(total=cfg.steps, initial=step, desc="train vae", unit="step", disable=not (progress and ctx.is_main))
    t0, t_log, sums = time.perf_counter() - elapsed, time.perf_counter(), {"loss": 0.0, "rec": 0.0, "kl": 0.0}
    n_sum = 0
    rng_state = _rng_state(rng)

    def checkpoint(rng_state: tuple[str, torch.Tensor]) -> None:
        """Collective under DDP: rank 0 writes the resume state with every rank's RNG states."""
        ranks = ctx.all_gather(rng_state) if ctx.distributed else None
        if ctx.is_main:
            _save_checkpoint(ckpt_path, model, opt, step, rng_state, cfg, ranks)
        ctx.barrier()

    model.train()
    stop, saved_step = StopOnSigterm().install(), step
    try:
        while step < cfg.steps and not stop.requested(ctx):  # every rank stops after the same step
            # RNG states at the start of the step: an interrupted step is redone with the same batch and noise.
            rng_state = _rng_state(rng)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            x = frames_to_float(train_ds.sample_batch(rng, cfg.batch_size)["frames"]).to(dev)
            if cfg.channels_last:
                x = x.contiguous()
            with autocast:
                loss, parts = vae_loss(net, x, cfg, model.config)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # under DDP the gradients are averaged over the ranks here
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            opt.step()
            step += 1
            rng_state = _rng_state(rng)  # what a checkpoint of `step` finished steps holds (Ctrl-C in validation)
            bar.update(1)
            for k in parts:
                sums[k] = sums.get(k, 0.0) + parts[k]
            n_sum += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                means = ctx.mean({k: v / n_sum for k, v in sums.items()})  # over the ranks under DDP
                record: dict[str, Any] = {
                    "step": step,
                    **means,
                    "grad_norm": grad_norm,
                    "lr": opt.param_groups[0]["lr"],
                    "frames_per_s": n_sum * frames_per_step / (now - t_log),
                    "elapsed_s": now - t0,
                }
                if ctx.distributed:  # frames_per_s is rank 0's
                    record |= {
                        "world_size": ctx.world_size,
                        "global_batch": cfg.batch_size * ctx.world_size,
                        "global_frames_per_s": record["frames_per_s"] * ctx.world_size,
                    }
                if ctx.is_main:
                    _append_metrics(metrics_path, record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", fps=f"{record['frames_per_s']:.0f}")
                sums, n_sum, t_log = dict.fromkeys(sums, 0.0), 0, now
            if cfg.val_every and step % cfg.val_every == 0 and n_val and step < cfg.steps:
                model.eval()
                val = evaluate_vae(model, data_dir, "val", cfg.val_frames, cfg.val_fraction)
                model.train()
                _append_metrics(metrics_path, {"step": step, **{f"val_{k}": v for k, v in val.items()}})
                t_log = time.perf_counter()
            if step % cfg.checkpoint_every == 0:
                checkpoint(rng_state)
                saved_step = step
        if step < cfg.steps and stop.requested(ctx):  # SIGTERM: save as Ctrl-C does, on every rank
            bar.close()
            if saved_step != step:
                checkpoint(_rng_state(rng))
            raise report_stop(step, out, ctx)
    except KeyboardInterrupt:
        if not ctx.distributed:
            _save_checkpoint(ckpt_path, model, opt, step, rng_state, cfg)
        bar.close()
        raise
    finally:
        stop.restore()
    checkpoint(_rng_state(rng))
    bar.close()
    wall = time.perf_counter() - t0
    sync = sync_record(ctx, step, model.state_dict())
    if sync is not None:
        _append_metrics(metrics_path, sync)
        if not sync["ranks_in_sync"]:
            raise RuntimeError(f"DDP ranks hold different weights at step {step}: {sync['rank_digests']}")
    if not ctx.is_main:
        ctx.barrier()
        return out / "vae.safetensors"

    # Latent normalisation measured on training data (rank 0's episodes) and stored as buffers in the file.
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
    path = save_vae(model, out / "vae.safetensors", spec=spec, notes=notes)
    ctx.barrier()
    return path
