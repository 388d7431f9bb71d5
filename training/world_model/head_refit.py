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
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from oniris_env.sampler import SamplerConfig, commit_context, sample_next
from oniris_env.world_model import WorldModel, frame_actions
from oniris_env.world_model.heads import reward_loss, reward_value
from training.dataset import is_validation
from training.episodes import load_episode, require_manifest

REPORT_FILE = "head_refit.json"
"""What `refit_bundle` writes last, next to OUT/bundle: its report (a refit without it did not finish)."""


@dataclass(frozen=True)
class HeadRefitConfig:
    steps: int = 6000
    """Optimiser steps on the recorded head inputs."""
    batch_size: int = 1024
    """Transitions per step (drawn uniformly from the training split)."""
    lr: float = 1e-3
    """AdamW learning rate, cosine-decayed to 0."""
    weight_decay: float = 0.01
    term_pos_weight: float = 10.0
    """Termination BCE pos_weight (as in `TrainWorldModelConfig`)."""
    reward_weight: float = 1.0
    """Weight of the reward cross-entropy next to the termination BCE."""
    val_fraction: float = 0.1
    """Held-out share of episodes, split by seed as the world model's training split."""
    episode_batch: int = 64
    """Episodes committed side by side when recording head inputs (by length, to waste little padding)."""
    seed: int = 0
    dream_steps: int = 16
    """Transitions per dream (`dreamt_heads`); the evaluation's terminal-anchored replays are 16 long."""
    dream_offsets: tuple[int, ...] = (0, 16)
    """Dreams end this many transitions before each episode's end (0: at the end, where the heads must fire;
    16: the stretch before it, where they must not). Empty: real frames only."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dream_offsets", tuple(int(o) for o in self.dream_offsets))
        if any(o < 0 for o in self.dream_offsets) or len(set(self.dream_offsets)) != len(self.dream_offsets):
            raise ValueError(f"dream_offsets must be distinct and >= 0, got {self.dream_offsets}")
        for name in ("steps", "batch_size", "episode_batch", "dream_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.term_pos_weight <= 0 or self.reward_weight < 0:
            raise ValueError("lr and term_pos_weight must be > 0, reward_weight >= 0")

    @classmethod
    def preset(cls, name: str, **overrides) -> HeadRefitConfig:
        if name not in HEAD_REFIT_PRESETS:
            raise ValueError(f"unknown head-refit preset {name!r}; choose one of {', '.join(HEAD_REFIT_PRESETS)}")
        return cls(**{**asdict(HEAD_REFIT_PRESETS[name]), **overrides})


HEAD_REFIT_PRESETS = {
    "tiny": HeadRefitConfig(steps=30, batch_size=64, val_fraction=0.3, episode_batch=4, dream_steps=3),
    "default": HeadRefitConfig(),
}


@dataclass
class HeadTrace:
    """The heads' view of L transitions: a real episode's (`teacher_forced_heads`) or a dream's (`dreamt_heads`)."""

    head_inputs: Tensor
    """`(L, D)` float32: what the heads read for each transition (from the frame it led to)."""
    rewards: Tensor
    """`(L,)` the heads' predicted rewards."""
    term_logits: Tensor
    """`(L,)` their termination logits."""


@torch.inference_mode()
def teacher_forced_heads(
    model: WorldModel,
    latents: list[Tensor],
    actions: list[np.ndarray],
    sigma: float,
    seed: int,
    episode_batch: int = 64,
    progress: bool = False,
) -> list[HeadTrace]:
    """Commit every real frame of each episode (`latents[i]` `(L_i + 1, C, h, w)`, `actions[i]` `(L_i,)`) as the
    sampler commits a generated frame, at context noise `sigma`, and return what the heads see and say for each
    transition. Episodes run `episode_batch` at a time, grouped by length; shorter ones are padded with their
    last frame and the padded steps dropped."""
    if len(latents) != len(actions):
        raise ValueError(f"{len(latents)} latent sequences but {len(actions)} action sequences")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    order = np.argsort([len(a) for a in actions], kind="stable")
    traces: list[HeadTrace | None] = [None] * len(latents)
    groups = [order[s : s + episode_batch] for s in range(0, len(order), episode_batch)]
    for group in tqdm(groups, desc="head inputs", unit="batch", disable=not progress):
        steps = max(len(latents[i]) for i in group)
        x = torch.stack([_pad_last(latents[i].to(device).float(), steps) for i in group])
        acts = np.zeros((len(group), steps - 1), np.int64)
        for k, i in enumerate(group):
            acts[k, : len(actions[i])] = actions[i]
        cond = frame_actions(torch.as_tensor(acts, device=device), model.config.start_action)
        sig = torch.full((len(group),), sigma, device=device)
        cache = model.init_cache(len(group), device=device)
        pooled, rewards, logits = [], [], []
        for j in range(steps):
            noise = torch.randn(x[:, j].shape, generator=generator, device=device)
            out = model.step(x[:, j] + sigma * noise, sig, cond[:, j], cache, commit=True, in_place=True)
            cache = out.cache
            if j > 0:  # frame j's outputs are those of transition j - 1
                pooled.append(out.head_input.float().cpu())
                rewards.append(out.reward.float().cpu())
                logits.append(out.term_logit.float().cpu())
        pooled_t, rewards_t, logits_t = torch.stack(pooled, 1), torch.stack(rewards, 1), torch.stack(logits, 1)
        for k, i in enumerate(group):
            n = len(actions[i])
            traces[i] = HeadTrace(pooled_t[k, :n].clone(), rewards_t[k, :n].clone(), logits_t[k, :n].clone())
    return traces  # type: ignore[return-value]


@torch.inference_mode()
def dreamt_heads(
    model: WorldModel,
    latents: list[Tensor],
    actions: list[np.ndarray],
    steps: int,
    context: int,
    sampler: SamplerConfig,
    seed: int,
    episode_batch: int = 64,
    progress: bool = False,
    end_offset: int = 0,
) -> list[HeadTrace | None]:
    """The heads on dreamt frames, where the env runs them: for every episode of at least `steps + context - 1 +
    end_offset` transitions, the `context` real latent frames before its transitions [L - end_offset - steps,
    L - end_offset) are committed and those transitions are dreamt under the real actions (`end_offset` 0: the
    terminal-anchored replays of `oniris-env evaluate`; > 0: earlier stretches, whose transitions never end).
    Returns what the heads see and say for each dreamt transition (`steps` each), None for shorter episodes."""
    if len(latents) != len(actions):
        raise ValueError(f"{len(latents)} latent sequences but {len(actions)} action sequences")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    recorded: list[Tensor] = []

    def recording_step(x, sigma, action, cache, commit=False, in_place=False):
        out = model.step(x, sigma, action, cache, commit=commit, in_place=in_place)
        if commit is not False:
            recorded.append(out.head_input)
        return out

    fit = [i for i, a in enumerate(actions) if len(a) >= steps + context - 1 + end_offset]
    traces: list[HeadTrace | None] = [None] * len(latents)
    groups = [fit[s : s + episode_batch] for s in range(0, len(fit), episode_batch)]
    for group in tqdm(groups, desc="dreamt head inputs", unit="batch", disable=not progress):
        starts = [(i, len(actions[i]) - end_offset - steps) for i in group]  # (episode, frame where its dream starts)
        ctx = torch.stack([latents[i][f - context + 1 : f + 1].to(device).float() for i, f in starts])
        ctx_actions = np.stack([actions[i][f - context + 1 : f] for i, f in starts])
        cond = frame_actions(torch.as_tensor(ctx_actions, device=device), model.config.start_action)
        cache = model.init_cache(len(group), device=device)
        cache, _ = commit_context(model, cache, ctx, cond, generator, sampler.sigma_min, in_place=True)
        pooled, rewards, logits = [], [], []
        for s in range(steps):
            a = torch.as_tensor([actions[i][f + s] for i, f in starts], device=device)
            out = sample_next(model, cache, a, generator, sampler, step_fn=recording_step, in_place=True)
            cache = out.cache
            pooled.append(recorded.pop().float().cpu())
            rewards.append(out.reward.float().cpu())
            logits.append(out.term_logit.float().cpu())
        pooled_t, rewards_t, logits_t = torch.stack(pooled, 1), torch.stack(rewards, 1), torch.stack(logits, 1)
        for k, i in enumerate(group):
            traces[i] = HeadTrace(pooled_t[k].clone(), rewards_t[k].clone(), logits_t[k].clone())
    return traces


def _pad_last(z: Tensor, steps: int) -> Tensor:
    return torch.cat([z, z[-1:].expand(steps - len(z), *z.shape[1:])])


@dataclass
class RealLatentEpisode:
    """One encoded real episode (a latent folder's file, with the manifest's seed and outcome)."""

    seed: int
    outcome: str
    latents: Tensor
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray


def load_latent_episodes(roots: list[Path], limit: int | None = None) -> list[RealLatentEpisode]:
    """Every episode of the latent folders `roots` (written by `oniris-env encode`), in folder and index order;
    `limit` keeps the first episodes of each folder."""
    episodes = []
    for root in roots:
        manifest = require_manifest(root, f"oniris-env encode --data data/real --out {root}")
        for entry in manifest["episodes"][:limit]:
            arrays = load_episode(Path(root) / entry["file"], key="latents")
            episodes.append(
                RealLatentEpisode(
                    seed=int(entry["seed"]),
                    outcome=str(entry.get("outcome", "unknown")),
                    latents=torch.as_tensor(arrays["latents"]),
                    actions=arrays["actions"],
                    rewards=arrays["rewards"],
                    terminated=arrays["terminated"],
                )
            )
    return episodes


def fit_head(
    template: nn.Module,
    inputs: Tensor,
    rewards: Tensor,
    terminated: Tensor,
    bins: Tensor,
    config: HeadRefitConfig,
    progress: bool = False,
) -> nn.Module:
    """A fresh copy of `template` (the world model's `head`: `(N, D)` -> `K + 1` logits, the last one
    termination) trained on `inputs (N, D)` against `rewards (N,)` and `terminated (N,)` bool."""
    if not (len(inputs) == len(rewards) == len(terminated)) or len(inputs) == 0:
        raise ValueError(
            f"need as many (> 0) inputs, rewards and terminations: {len(inputs)}, {len(rewards)}, {len(terminated)}"
        )
    head = copy.deepcopy(template).float()
    with torch.random.fork_rng():  # fresh weights from the config's seed, without moving the caller's stream
        torch.manual_seed(config.seed)
        for module in head.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / config.steps)))
    generator = torch.Generator().manual_seed(config.seed)
    pos_weight = torch.tensor(config.term_pos_weight)
    target_term = terminated.float()
    for _ in tqdm(range(config.steps), desc="head refit", unit="step", disable=not progress):
        idx = torch.randint(len(inputs), (config.batch_size,), generator=generator)
        out = head(inputs[idx]).float()
        r_loss = reward_loss(out[:, :-1], rewards[idx], bins).mean()
        t_loss = F.binary_cross_entropy_with_logits(out[:, -1], target_term[idx], pos_weight=pos_weight)
        loss = config.reward_weight * r_loss + t_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return head.eval()


@torch.no_grad()
def head_predictions(head: nn.Module, inputs: Tensor, bins: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted rewards and termination logits `(N,)` of `head` on `inputs (N, D)`."""
    out = head(inputs).float()
    return reward_value(out[:, :-1], bins), out[:, -1]


def split_episodes(episodes: list[RealLatentEpisode], val_fraction: float) -> tuple[list[int], list[int]]:
    """Indices of the training and held-out episodes (by seed, as the world model's training split)."""
    val = [i for i, e in enumerate(episodes) if is_validation(e.seed, val_fraction)]
    held = set(val)
    return [i for i in range(len(episodes)) if i not in held], val


def save_traces(path: Path, key: dict, traces: list[HeadTrace | None]) -> None:
    """Keep recorded head inputs (the slow part of a refit) with what they were recorded from, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = [i for i, t in enumerate(traces) if t is not None]
    payload = {
        "key": json.dumps(key, sort_keys=True),
        "count": len(traces),
        "index": torch.as_tensor(kept, dtype=torch.long),
        "inputs": [traces[i].head_inputs for i in kept],
        "rewards": [traces[i].rewards for i in kept],
        "logits": [traces[i].term_logits for i in kept],
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_traces(path: Path) -> tuple[dict, list[HeadTrace | None]]:
    """What `save_traces` wrote: the key the head inputs were recorded from, and the traces."""
    saved = torch.load(path, weights_only=True)
    traces: list[HeadTrace | None] = [None] * saved["count"]
    for j, i in enumerate(saved["index"].tolist()):
        traces[i] = HeadTrace(saved["inputs"][j], saved["rewards"][j], saved["logits"][j])
    return json.loads(saved["key"]), traces


def cached_traces(path: Path, key: dict) -> list[HeadTrace | None] | None:
    """The head inputs `save_traces` kept at `path` if they were recorded from `key`, else None."""
    if not path.is_file():
        return None
    saved_key, traces = read_traces(path)
    return traces if json.dumps(saved_key, sort_keys=True) == json.dumps(key, sort_keys=True) else None


def termination_report(
    logits: list[np.ndarray], episodes: list[RealLatentEpisode], tolerance: int, threshold_logit: float
) -> dict:
    """Event precision / recall of the episode ends the logits predict (first logit above `threshold_logit`),
    overall and by the episodes' outcomes, as `oniris-env evaluate` scores them."""
    from training.evaluate.reward_term import termination_by_outcome, termination_events

    pred = [lg > threshold_logit for lg in logits]
    real = [e.terminated for e in episodes]
    return {
        "events": termination_events(pred, real, tolerance),
        "by_outcome": termination_by_outcome(pred, real, [e.outcome for e in episodes], tolerance),
    }


def dream_segment(episode: RealLatentEpisode, steps: int, end_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The real rewards and terminations of the transitions a dream of `dreamt_heads` covers."""
    stop = len(episode.actions) - end_offset
    return episode.rewards[stop - steps : stop], episode.terminated[stop - steps : stop]


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
    from oniris_env.bundle import BUNDLE_FILES, WORLD_MODEL_FILE, load_bundle
    from oniris_env.checksums import sha256
    from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD, threshold_logit
    from oniris_env.world_model import read_metadata, save_world_model

    bundle = load_bundle(weights)
    vae_sha = sha256(bundle.path / "vae.safetensors")
    manifests = [require_manifest(root, "oniris-env encode") for root in latent_roots]
    for root, manifest in zip(latent_roots, manifests, strict=True):
        if manifest.get("vae", {}).get("sha256") != vae_sha:
            raise ValueError(
                f"{root} was encoded with another VAE than {bundle.path}'s; re-encode it with "
                f"oniris-env encode --vae {bundle.path / 'vae.safetensors'}"
            )
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
    latents, actions = [e.latents for e in episodes], [e.actions for e in episodes]

    def recorded(name: str, extra: dict, record) -> list[HeadTrace | None]:
        path, full_key = Path(out) / f"head_inputs_{name}.pt", {**key, **extra}
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
    context = bundle.contexts.frames.shape[1]  # a dream starts from as many real frames as the env's resets
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
    inputs = [real[i].head_inputs for i in train_idx]
    rewards = [torch.as_tensor(episodes[i].rewards) for i in train_idx]
    terminated = [torch.as_tensor(episodes[i].terminated) for i in train_idx]
    real_transitions = sum(len(x) for x in inputs)
    for off, traces in dreams.items():
        for i in train_idx:
            if traces[i] is not None:
                r, t = dream_segment(episodes[i], config.dream_steps, off)
                inputs.append(traces[i].head_inputs)
                rewards.append(torch.as_tensor(r))
                terminated.append(torch.as_tensor(t))
    head = fit_head(
        model.head, torch.cat(inputs), torch.cat(rewards).float(), torch.cat(terminated), model.bins, config, progress
    )

    cut = threshold_logit(DEFAULT_TERMINATION_THRESHOLD)
    val_eps = [episodes[i] for i in val_idx]
    new = [head_predictions(head, real[i].head_inputs, model.bins) for i in val_idx]
    real_r = np.concatenate([e.rewards for e in val_eps])
    held_out = {
        "real frames": {
            "before": termination_report([real[i].term_logits.numpy() for i in val_idx], val_eps, tolerance, cut),
            "after": termination_report([lg.numpy() for _, lg in new], val_eps, tolerance, cut),
        },
        "reward MAE, real frames": {
            "before": float(np.abs(torch.cat([real[i].rewards for i in val_idx]).numpy() - real_r).mean()),
            "after": float(np.abs(torch.cat([r for r, _ in new]).numpy() - real_r).mean()),
        },
    }
    if 0 in dreams:  # the terminal-anchored dreams of the held-out episodes, as `oniris-env evaluate` runs them
        idx = [i for i in val_idx if dreams[0][i] is not None]
        segs = [replace(episodes[i], terminated=dream_segment(episodes[i], config.dream_steps, 0)[1]) for i in idx]
        held_out["terminal-anchored dreams"] = {
            "before": termination_report([dreams[0][i].term_logits.numpy() for i in idx], segs, tolerance, cut),
            "after": termination_report(
                [head_predictions(head, dreams[0][i].head_inputs, model.bins)[1].numpy() for i in idx],
                segs,
                tolerance,
                cut,
            ),
        }
    report = {
        "config": asdict(config),
        "source_weights": str(bundle.path),
        "latents": [str(r) for r in latent_roots],
        "episodes": {"train": len(train_idx), "held_out": len(val_idx)},
        "training_transitions": {
            "real": real_transitions,
            "dreamt": sum(len(x) for x in inputs) - real_transitions,
        },
        "held_out": held_out,
    }
    dest = Path(out) / "bundle"
    dest.mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_FILES:
        if name != WORLD_MODEL_FILE:
            shutil.copy2(bundle.path / name, dest / name)
    refitted = copy.deepcopy(model)
    refitted.head.load_state_dict(head.state_dict())
    extra = read_metadata(bundle.path / WORLD_MODEL_FILE)["extra"]
    extra["head_refit"] = {"episodes": report["episodes"], "latents": report["latents"], "config": report["config"]}
    save_world_model(refitted, dest / WORLD_MODEL_FILE, bundle.spec, extra)
    tmp = Path(out) / (REPORT_FILE + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, Path(out) / REPORT_FILE)
    return dest, report
