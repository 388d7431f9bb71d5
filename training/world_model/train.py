"""The world-model training run: DART batches, Adam + EDM2 schedule, power EMA, validation, resume.

`train_world_model(latents_dir, out_dir, preset)` is what `oniris-env train world-model` calls. Side effects
(files, threads, progress bar) live here; the math lives in `loss.py` and `oniris_env.world_model`; the loop,
checkpoints, interruptions and metrics log are `training.harness`'s, as for the VAE.
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
from torch import Tensor
from tqdm.auto import tqdm

from oniris_env.config_io import config_changes
from oniris_env.spec import GameSpec
from oniris_env.world_model import WorldModel, WorldModelConfig, load_world_model, save_world_model
from training import harness
from training.distributed import DistributedContext
from training.world_model.checkpoint import CHECKPOINT_NAME, TrainState, load_checkpoint, save_checkpoint
from training.world_model.config import TrainWorldModelConfig
from training.world_model.ema import PowerFunctionEMA
from training.world_model.loss import DartBatch, DartLosses, DartObjective, LossUncertainty, dart_losses

WEIGHTS_NAME = "world_model.safetensors"
METRICS_NAME = "metrics.jsonl"


class BatchSource(Protocol):
    """What the trainer needs from a dataset (`training.dataset.EpisodeWindows` with key 'latents')."""

    spec: GameSpec

    def sample_batch(
        self, rng: np.random.Generator, batch_size: int, start_fraction: float = 0.0, end_fraction: float = 0.0
    ) -> dict[str, np.ndarray]: ...


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
        cfg.model_preset,
        latent_channels=int(c),
        latent_height=int(h),
        latent_width=int(w),
        num_actions=data.spec.num_actions,
        sigma_data=round(sigma_data, 4),
    )


@torch.no_grad()
def validate(
    model: WorldModel, uncertainty: LossUncertainty, batches: list[DartBatch], cfg: TrainWorldModelConfig
) -> dict[str, float]:
    """Mean losses of `model` (the EMA weights) on fixed held-out batches with fixed noise (comparable curves)."""
    generator = torch.Generator(device=batches[0].latents.device).manual_seed(cfg.seed + 99)
    totals: dict[str, float] = {}
    for batch in batches:
        losses = dart_losses(model, uncertainty, batch, cfg, generator, autocast=False)
        for name in ("denoise_raw", "denoise_normalised", "reward", "term", "reward_mae"):
            totals[name] = totals.get(name, 0.0) + float(getattr(losses, name)) / len(batches)
    return totals


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
    device: str = "cpu",
    compile_model: bool | None = None,
) -> Path:
    """Train (or resume) a world model on encoded latents; returns the path of `world_model.safetensors`.

    Runs in one process, or as one rank of a `torchrun` job (`training.distributed`: DDP, each rank sampling
    its own shard of the training episodes; `cfg.batch_size` is per rank, so the global batch is
    `batch_size * world_size`; rank 0 alone logs, validates and writes files).

    Checkpoints (resume state + EMA weights) are written every `cfg.val_every` steps, at the end, on SIGTERM on
    every rank (after the current step, then `training.interrupt.Terminated`: exit code 143) and, in one process,
    on KeyboardInterrupt (the interrupted step is redone on resume with the same batch and noise). Under DDP
    Ctrl-C writes none (a rank may already be gone): a restarted job resumes from the last periodic one.

    Args:
        latents_dir: folder written by `oniris-env encode` (ignored when `train_data` is given).
        out_dir: run folder: `checkpoint.pt` (resume), `metrics.jsonl`, `world_model.safetensors` (EMA weights).
            Under a multi-node job it must be on a filesystem that every node sees.
        preset: `TrainWorldModelConfig` preset, used when `config` is None.
        resume: continue from `out_dir/checkpoint.pt` when present; a config that differs from the saved one in
            more than `steps` and `num_threads` is refused (ValueError naming the fields), as `train_vae` does.
        train_data, val_data: objects with `sample_batch` and `spec` (default: `EpisodeWindows` splits).
        stop_after: stop (with a checkpoint) after this many steps in this call, as an interruption would.
        device: 'cpu' | 'cuda' | 'auto' (under torchrun on CUDA, rank r uses `cuda:{LOCAL_RANK}`).
        compile_model: `torch.compile` the world model (FlexAttention then runs compiled); None = on CUDA only
            (on CPU, an early design measurement found compiling ~6% faster for 77-94 s of compile time).
    """
    ctx = DistributedContext.from_env(device)
    try:
        data = (latents_dir, train_data, val_data)
        return _train(
            ctx,
            config or TrainWorldModelConfig.preset(preset),
            data,
            Path(out_dir),
            resume,
            progress,
            stop_after,
            compile_model,
        )
    finally:
        ctx.destroy()


def _init_config(path: str, data: BatchSource) -> WorldModelConfig:
    """The config of the weights a run starts from, checked against the dataset (spec, latent shape)."""
    config = load_world_model(path, spec=data.spec).config
    sample = data.sample_batch(np.random.default_rng(0), 1)["latents"]
    if tuple(sample.shape[2:]) != config.latent_shape:
        raise ValueError(
            f"init_from {path} was trained on latents of shape {config.latent_shape}, "
            f"the dataset has {tuple(sample.shape[2:])}"
        )
    return config


RESUME_MAY_CHANGE = ("steps", "num_threads")
"""Settings a resumed run may change: a longer run, and the threads of this machine."""


def _check_resumable(cfg: TrainWorldModelConfig, saved: dict[str, Any], out: Path) -> None:
    """Raise ValueError naming the differing fields unless `cfg` is the saved config up to `RESUME_MAY_CHANGE`
    (and a `bf16` left to be measured, None)."""
    now = json.loads(json.dumps(cfg.to_dict()))  # the saved config's JSON form: tuples as lists
    now |= {k: saved.get(k) for k in RESUME_MAY_CHANGE}
    if now["bf16"] is None:
        now["bf16"] = saved.get("bf16")
    if changes := config_changes(saved, now):
        raise ValueError(
            f"{out / CHECKPOINT_NAME} was trained with another config ({'; '.join(changes)}); resume with its own "
            "settings (only steps and threads may change), or start fresh with resume=False (CLI: --no-resume) or a "
            "new out dir"
        )


def _resumed_config(cfg: TrainWorldModelConfig, state: TrainState | None, out: Path) -> TrainWorldModelConfig:
    """`cfg`, or for a resumed run the saved config with `cfg`'s `RESUME_MAY_CHANGE` settings (and more steps)."""
    if state is None:
        return cfg
    _check_resumable(cfg, state.train_config, out)
    return TrainWorldModelConfig(
        **{
            **state.train_config,
            "adam_betas": tuple(state.train_config["adam_betas"]),
            "steps": max(cfg.steps, state.train_config["steps"]),
            "num_threads": cfg.num_threads,
        }
    )


def _datasets(
    ctx: DistributedContext,
    cfg: TrainWorldModelConfig,
    data: tuple[Path | str | None, BatchSource | None, BatchSource | None],
    progress: bool,
) -> tuple[BatchSource, BatchSource | None]:
    """This rank's training shard and (on rank 0 only) the validation split: the given ones, or `EpisodeWindows`
    of the latents folder."""
    latents_dir, train_data, val_data = data
    if train_data is not None:
        return train_data, val_data if ctx.is_main else None
    from training.dataset import EpisodeWindows

    train_data = EpisodeWindows(
        latents_dir, cfg.clip_frames, split="train", key="latents", progress=progress and ctx.is_main, shard=ctx.shard
    )
    val_data = EpisodeWindows(latents_dir, cfg.clip_frames, split="val", key="latents") if ctx.is_main else None
    return train_data, val_data


def _model_config(
    ctx: DistributedContext, cfg: TrainWorldModelConfig, state: TrainState | None, data: BatchSource, source: str
) -> tuple[WorldModelConfig, GameSpec]:
    """The architecture and game spec of the run: the checkpoint's, or (fresh run) fitted to the data on rank 0
    and shared with every rank."""
    if state is not None:
        spec = GameSpec.from_dict(state.spec)
        spec.check_matches(data.spec, f"latent dataset {source}")
        return WorldModelConfig.from_dict(state.model_config), spec
    model_cfg = None
    if cfg.init_from:
        model_cfg = _init_config(cfg.init_from, data) if ctx.is_main else None
    elif ctx.is_main:  # sigma_data is measured once, on rank 0's episodes, and shared
        probe = data.sample_batch(np.random.default_rng(cfg.seed + 1), 1)
        model_cfg = model_config_for(data, cfg, probe)
    shared: dict[str, Any] | None = ctx.broadcast(model_cfg.to_dict() if model_cfg else None)
    assert shared is not None  # rank 0 always measures it
    model_cfg = WorldModelConfig.from_dict(shared)
    if cfg.window is not None:  # fresh or init_from alike: no weight depends on the window
        model_cfg = replace(model_cfg, window=cfg.window)
    return model_cfg, data.spec


def _validation_batches(val_data: BatchSource | None, cfg: TrainWorldModelConfig, dev: torch.device) -> list[DartBatch]:
    """Fixed held-out batches (the same at every validation); none without validation data."""
    if val_data is None:
        return []
    val_rng = np.random.default_rng(cfg.seed + 12345)
    try:
        return [
            DartBatch.from_numpy(val_data.sample_batch(val_rng, cfg.batch_size), dev) for _ in range(cfg.val_batches)
        ]
    except ValueError as e:
        warnings.warn(f"no validation: {e}", stacklevel=3)
        return []


def _with_precision(
    ctx: DistributedContext, cfg: TrainWorldModelConfig, model_cfg: WorldModelConfig, dev: torch.device
) -> TrainWorldModelConfig:
    """`cfg` with `bf16` decided (always on CUDA; on CPU rank 0 measures and every rank uses its answer); warns
    when the clips are too short for the attention window."""
    if cfg.clip_frames <= model_cfg.window and ctx.is_main:
        warnings.warn(
            f"clip_frames {cfg.clip_frames} <= window {model_cfg.window}: training never shows the model a full "
            "attention window, which inference uses at every step after the first W frames",
            stacklevel=3,
        )
    if cfg.bf16 is not None:
        return cfg
    bf16 = True if dev.type == "cuda" else (bf16_is_faster(model_cfg.width) if ctx.is_main else None)
    return replace(cfg, bf16=ctx.broadcast(bf16))


def _build(
    cfg: TrainWorldModelConfig, model_cfg: WorldModelConfig, spec: GameSpec, dev: torch.device, state: TrainState | None
) -> tuple[WorldModel, LossUncertainty, DartObjective, torch.optim.Adam, PowerFunctionEMA]:
    """The model (seeded with `cfg.seed`, or `init_from`'s weights), loss uncertainty, objective, optimiser and EMA
    on `dev`, loaded from the checkpoint `state` when there is one."""
    torch.manual_seed(cfg.seed)
    model = WorldModel(model_cfg)
    if state is None and cfg.init_from:  # every rank loads the same file: identical starting weights
        model.load_state_dict(load_world_model(cfg.init_from, spec=spec).state_dict())
    model = model.to(dev)
    uncertainty = LossUncertainty().to(dev)
    objective = DartObjective(model, uncertainty, cfg)
    optimizer = torch.optim.Adam(list(objective.parameters()), lr=cfg.lr_ref, betas=cfg.adam_betas)
    ema = PowerFunctionEMA(model, cfg.ema_std)
    if state is not None:
        model.load_state_dict(state.model)
        uncertainty.load_state_dict(state.uncertainty)
        optimizer.load_state_dict(state.optimizer)
        ema.load_state_dict(state.ema)
    return model, uncertainty, objective, optimizer, ema


LOGGED_LOSSES = ("denoise_raw", "denoise_normalised", "reward", "term", "reward_mae")


def _train(
    ctx: DistributedContext,
    cfg: TrainWorldModelConfig,
    data: tuple[Path | str | None, BatchSource | None, BatchSource | None],
    out: Path,
    resume: bool,
    progress: bool,
    stop_after: int | None,
    compile_model: bool | None,
) -> Path:
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    state = load_checkpoint(out) if resume else None
    harness.check_same_checkpoint(ctx, None if state is None else state.step, out)
    cfg = _resumed_config(cfg, state, out)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    train_data, val_data = _datasets(ctx, cfg, data, progress)
    dev = torch.device(ctx.device)
    # Rank 0 keeps the configured seed (one process is unchanged); other ranks get their own streams.
    seed = ctx.rank_seed(cfg.seed)
    streams = harness.RandomStreams(np.random.default_rng(seed), torch.Generator(device=dev).manual_seed(seed))
    model_cfg, spec = _model_config(ctx, cfg, state, train_data, str(data[0]))
    cfg = _with_precision(ctx, cfg, model_cfg, dev)
    model, uncertainty, objective, optimizer, ema = _build(cfg, model_cfg, spec, dev, state)
    params = list(objective.parameters())  # model's, then the uncertainty's (the checkpoint's optimiser layout)
    step = 0 if state is None else state.step
    if state is not None:
        streams.restore(ctx, seed, step, state.streams, state.rank_rngs)
    compiled = dev.type == "cuda" if compile_model is None else compile_model
    if compiled:
        model.compile()  # in place: the state_dict keys stay those of the plain model
    backend = "flex" if compiled and dev.type == "cuda" else "fast"  # FlexAttention only compiled, on CUDA
    net = ctx.wrap(objective)
    metrics = harness.MetricsLog(out / METRICS_NAME, ctx)
    metrics.start(None if state is None else step)
    val_batches = _validation_batches(val_data, cfg, dev)
    ema_model = WorldModel(model_cfg).to(dev).eval() if ctx.is_main else None

    def write(
        step: int, main: harness.StreamState, ranks: list[harness.StreamState] | None, val: dict[str, float] | None
    ) -> None:
        """Rank 0: the EMA weights, then the resume state (with every rank's random streams)."""
        assert ema_model is not None
        ema.copy_to(ema_model)
        notes = {"step": step, "train_config": cfg.to_dict(), **({"val": val} if val else {})}
        save_world_model(ema_model, out / WEIGHTS_NAME, spec, notes)
        model_state, ema_state, uncertainty_state = model.state_dict(), ema.state_dict(), uncertainty.state_dict()
        train_state = TrainState(
            step, model_state, ema_state, uncertainty_state, optimizer.state_dict(), main,
            model_cfg.to_dict(), cfg.to_dict(), spec.to_dict(), ranks,
        )  # fmt: skip
        save_checkpoint(train_state, out)

    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    bar = tqdm(total=cfg.steps, initial=step, desc="world model", unit="step", disable=not (progress and ctx.is_main))
    run, throughput = harness.TrainingRun(ctx, out, streams, write, bar), harness.Throughput()

    def train_step(step: int) -> tuple[DartLosses, Tensor, float]:
        """One optimizer step and EMA update; returns the losses, the gradient norm and the learning rate."""
        clips = train_data.sample_batch(streams.data, cfg.batch_size, cfg.start_clip_fraction, cfg.end_clip_fraction)
        batch = DartBatch.from_numpy(clips, dev)
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = net(batch, streams.noise, autocast=cfg.bf16, backend=backend)  # DDP averages the gradients
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.nan
        if not torch.isfinite(losses.total):
            raise FloatingPointError(f"non-finite loss at step {step} on rank {ctx.rank}: {losses}")
        optimizer.step()
        ema.update(model, step + 1)
        throughput.add(batch.latents.shape[0] * batch.latents.shape[1])
        return losses, grad_norm, lr

    def after_step(step: int, result: tuple[DartLosses, Tensor, float]) -> None:
        """Log, validate and save as configured, after `step` finished steps."""
        losses, grad_norm, lr = result
        if step % cfg.log_every == 0 or step == end:
            values = {"loss": float(losses.total.detach()), **{k: float(getattr(losses, k)) for k in LOGGED_LOSSES}}
            record = {"step": step, "split": "train", "lr": lr, **ctx.mean(values), "grad_norm": float(grad_norm)}
            record["frames_per_s"] = throughput.take()
            metrics.append(record | harness.ddp_fields(ctx, cfg.batch_size, record["frames_per_s"]))
            bar.set_postfix(loss=f"{record['loss']:.3f}", fps=f"{record['frames_per_s']:.0f}")
        if step % cfg.val_every == 0 or step == end:
            val = None
            if val_batches and ema_model is not None:
                ema.copy_to(ema_model)
                val = validate(ema_model, uncertainty, val_batches, cfg)
                metrics.append({"step": step, "split": "val", **val})
            run.save(step, val)

    model.train()
    step = run.loop(step, end, train_step, after_step)
    if ctx.broadcast(step >= cfg.steps and not (out / WEIGHTS_NAME).is_file()):
        run.save(step)
    harness.check_sync(ctx, step, metrics, model.state_dict(), ema.state_dict(), uncertainty.state_dict(), split="sync")
    ctx.barrier()
    return out / WEIGHTS_NAME


__all__ = ["TrainWorldModelConfig", "learning_rate", "train_world_model"]
