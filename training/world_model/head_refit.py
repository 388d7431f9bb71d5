"""Refit the reward / termination heads on a frozen world-model trunk, from more real episodes than the trunk saw.

Why: the heads are a small MLP on one `D`-vector per frame (`WorldModel.head_input`), trained with the trunk on
the training split, about one episode end per episode. Episodes are cheap to record, the trunk is expensive to
train: refitting the heads alone on thousands of episodes costs minutes and leaves the dreams unchanged (the
denoiser never reads the heads).

How: the head input of every transition is recorded once, on real frames (each committed to the cache exactly
as the sampler commits a generated one: x + sigma_min * n, labelled sigma_min; `teacher_forced_heads`) and in
short dreams of each episode started from real frames like the env's resets (`dreamt_heads`): the env's heads read
dreamt frames, and a head fitted on real frames alone did worse there than the one trained with the trunk
(docs/RESULTS.md). The head MLP alone is then trained on those vectors with the world model's own head losses
(two-hot reward cross-entropy + class-weighted termination BCE), from fresh weights, against the real episode's
rewards and terminations. Episodes are split by seed (`training.dataset.is_validation`); held-out episodes judge
the refit as events, like `oniris-env evaluate`.

This module is the stage (`refit_bundle`); the parts live in `training.heads`, one module per job, and the names
other code imports from here are re-exported.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from oniris_env.config_io import atomic_write_text
from oniris_env.sampler import SamplerConfig
from oniris_env.world_model import WorldModel
from training.episodes import require_manifest
from training.heads.cache import cached_traces, read_traces, save_traces
from training.heads.config import HEAD_REFIT_PRESETS, HeadRefitConfig
from training.heads.episodes import RealLatentEpisode, dream_segment, load_latent_episodes, split_episodes
from training.heads.fit import fit_head, head_predictions
from training.heads.record import HeadTrace, dreamt_heads, teacher_forced_heads
from training.heads.report import held_out_report, termination_report

if TYPE_CHECKING:
    from oniris_env.bundle import Bundle

REPORT_FILE = "head_refit.json"
"""What `refit_bundle` writes last, next to OUT/bundle: its report (a refit without it did not finish)."""


def refit_bundle(
    weights: Path | None,
    latent_roots: list[Path],
    out: Path,
    config: HeadRefitConfig,
    sampler: SamplerConfig,
    tolerance: int = 2,
    progress: bool = True,
) -> tuple[Path, dict]:
    """Refit the heads of the bundle `weights` (None: the shipped one) on the episodes of `latent_roots`, write
    `out/bundle` (the same VAE, trunk and start contexts, new head weights) and `out/head_refit.json` (last); return
    the bundle's path and the report (held-out termination before and after, on real frames and in the
    terminal-anchored dreams; reward MAE on real frames). Recorded head inputs are kept in `out` and reused."""
    from oniris_env.bundle import WORLD_MODEL_FILE, load_bundle
    from oniris_env.checksums import sha256

    bundle = load_bundle(weights)
    manifests = _checked_manifests(latent_roots, bundle.path)
    model = bundle.world_model
    episodes = load_latent_episodes(latent_roots)
    train_idx, val_idx = split_episodes(episodes, config.val_fraction)
    if not train_idx or not val_idx:
        raise ValueError(
            f"{len(episodes)} episodes give {len(train_idx)} training and {len(val_idx)} held-out "
            "ones; record more (oniris-env collect) or change val_fraction"
        )
    key = {
        "world_model": sha256(bundle.path / WORLD_MODEL_FILE),
        "episodes": [[str(r), len(m["episodes"])] for r, m in zip(latent_roots, manifests, strict=True)],
        "sigma": sampler.sigma_min,
        "seed": config.seed,
    }
    context = bundle.contexts.frames.shape[1]  # a dream starts from as many real frames as the env's resets
    real, dreams = _record(model, episodes, Path(out), key, context, config, sampler, progress)
    inputs, rewards, terminated = _training_transitions(episodes, train_idx, real, dreams, config.dream_steps)
    head = fit_head(
        model.head, torch.cat(inputs), torch.cat(rewards).float(), torch.cat(terminated), model.bins, config, progress
    )
    real_transitions = sum(len(real[i].head_inputs) for i in train_idx)
    report = {
        "config": asdict(config),
        "source_weights": str(bundle.path),
        "latents": [str(r) for r in latent_roots],
        "episodes": {"train": len(train_idx), "held_out": len(val_idx)},
        "training_transitions": {
            "real": real_transitions,
            "dreamt": sum(len(x) for x in inputs) - real_transitions,
        },
        "held_out": held_out_report(head, model.bins, episodes, val_idx, real, dreams, config.dream_steps, tolerance),
    }
    dest = _write_bundle(bundle, head, Path(out) / "bundle", report)
    atomic_write_text(Path(out) / REPORT_FILE, json.dumps(report, indent=1))
    return dest, report


def _checked_manifests(latent_roots: list[Path], bundle_path: Path) -> list[dict]:
    """The manifests of the latent folders; a ValueError unless each was encoded with the bundle's VAE."""
    from oniris_env.checksums import sha256

    vae_sha = sha256(bundle_path / "vae.safetensors")
    manifests = [require_manifest(root, "oniris-env encode") for root in latent_roots]
    for root, manifest in zip(latent_roots, manifests, strict=True):
        if manifest.get("vae", {}).get("sha256") != vae_sha:
            raise ValueError(
                f"{root} was encoded with another VAE than {bundle_path}'s; re-encode it with "
                f"oniris-env encode --vae {bundle_path / 'vae.safetensors'}"
            )
    return manifests


def _record(
    model: WorldModel,
    episodes: list[RealLatentEpisode],
    out: Path,
    key: dict,
    context: int,
    config: HeadRefitConfig,
    sampler: SamplerConfig,
    progress: bool,
) -> tuple[list[HeadTrace], dict[int, list[HeadTrace | None]]]:
    """The head inputs on real frames and in the dreams ending `config.dream_offsets` transitions before each
    episode's end, read from `out`'s cache when they were recorded from the same `key`, else recorded and kept."""
    latents, actions = [e.latents for e in episodes], [e.actions for e in episodes]

    def recorded(name: str, extra: dict, record: Callable[[], list]) -> list:
        path, full_key = out / f"head_inputs_{name}.pt", {**key, **extra}
        traces = cached_traces(path, full_key)
        if traces is None:
            traces = record()
            save_traces(path, full_key, traces)
        return traces

    real = recorded(
        "real",
        {},
        lambda: teacher_forced_heads(
            model, latents, actions, sampler.sigma_min, config.seed, config.episode_batch, progress
        ),
    )
    dreams = {
        off: recorded(
            f"dream{off}",
            {"steps": config.dream_steps, "context": context, "end_offset": off, "sampler": asdict(sampler)},
            lambda off=off: dreamt_heads(
                model,
                latents,
                actions,
                config.dream_steps,
                context,
                sampler,
                config.seed,
                config.episode_batch,
                progress,
                end_offset=off,
            ),
        )
        for off in config.dream_offsets
    }
    return real, dreams


def _training_transitions(
    episodes: list[RealLatentEpisode],
    train_idx: list[int],
    real: list[HeadTrace],
    dreams: dict[int, list[HeadTrace | None]],
    dream_steps: int,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Head inputs `(L, D)`, real rewards and terminations `(L,)` of the training episodes: every real transition
    first, then those of each dream."""
    inputs = [real[i].head_inputs for i in train_idx]
    rewards = [torch.as_tensor(episodes[i].rewards) for i in train_idx]
    terminated = [torch.as_tensor(episodes[i].terminated) for i in train_idx]
    for off, traces in dreams.items():
        for i in train_idx:
            if traces[i] is not None:
                r, t = dream_segment(episodes[i], dream_steps, off)
                inputs.append(traces[i].head_inputs)
                rewards.append(torch.as_tensor(r))
                terminated.append(torch.as_tensor(t))
    return inputs, rewards, terminated


def _write_bundle(bundle: Bundle, head: nn.Module, dest: Path, report: dict) -> Path:
    """`dest`: the bundle's files with the refitted `head` in its world model (whose metadata notes the refit)."""
    from oniris_env.bundle import BUNDLE_FILES, WORLD_MODEL_FILE
    from oniris_env.world_model import read_metadata, save_world_model

    dest.mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_FILES:
        if name != WORLD_MODEL_FILE:
            shutil.copy2(bundle.path / name, dest / name)
    refitted = copy.deepcopy(bundle.world_model)
    refitted.head.load_state_dict(head.state_dict())
    notes = read_metadata(bundle.path / WORLD_MODEL_FILE)["notes"]
    notes["head_refit"] = {"episodes": report["episodes"], "latents": report["latents"], "config": report["config"]}
    save_world_model(refitted, dest / WORLD_MODEL_FILE, bundle.spec, notes)
    return dest


__all__ = [
    "HEAD_REFIT_PRESETS",
    "REPORT_FILE",
    "HeadRefitConfig",
    "HeadTrace",
    "RealLatentEpisode",
    "cached_traces",
    "dream_segment",
    "dreamt_heads",
    "fit_head",
    "head_predictions",
    "load_latent_episodes",
    "read_traces",
    "refit_bundle",
    "save_traces",
    "split_episodes",
    "teacher_forced_heads",
    "termination_report",
]
