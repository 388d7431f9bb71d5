"""The whole evaluation of a weights bundle: record fresh real episodes, measure, write the report folder."""

from __future__ import annotations

import os
import platform
import time
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from oniris_env.bundle import load_bundle
from oniris_env.vae import GroupCausalVAE
from training.evaluate.config import EvalConfig
from training.evaluate.controllability import controllability
from training.evaluate.cost import cost
from training.evaluate.data import RealEpisode, eval_seeds, record_episodes
from training.evaluate.frames import PairStats
from training.evaluate.long_dream import long_dreams, terrain_change
from training.evaluate.markdown import render_markdown
from training.evaluate.open_loop import open_loop, terminal_replays
from training.evaluate.report import targets, write_json, write_plots, write_video
from training.evaluate.reward_term import reward_termination
from training.evaluate.teacher_forced import teacher_forced
from training.vae.evaluate import reconstruct_episode

#: Real frames encoded for the reference latent statistics (the first frames of the first episodes).
REFERENCE_FRAMES = 512


@torch.inference_mode()
def vae_metrics(vae: GroupCausalVAE, episodes: list[RealEpisode]) -> dict:
    """`PairStats.summary` of every frame against its streamed reconstruction (as `training.vae.evaluate`)."""
    stats = PairStats()
    for e in episodes:
        stats.add(e.frames, reconstruct_episode(vae, e.frames))
    return stats.summary()


@torch.inference_mode()
def real_latent_stats(vae: GroupCausalVAE, episodes: list[RealEpisode]) -> tuple[float, float]:
    """Mean and std of the normalised latents of up to `REFERENCE_FRAMES` real frames."""
    latents, left = [], REFERENCE_FRAMES
    for e in episodes:
        if left <= 0:
            break
        latents.append(vae.encode_frames(e.frames[None, :left]).flatten())
        left -= min(left, len(e.frames))
    z = torch.cat(latents).float()
    return float(z.mean()), float(z.std())


def real_terrain_change(episodes: list[RealEpisode]) -> float:
    """The long dreams' terrain statistic on the real episodes (their lander and flames passing only)."""
    return float(np.mean([terrain_change(f, e.frames[0]) for e in episodes for f in e.frames[1:]]))


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("oniris-env", "torch", "gymnasium", "numpy", "pillow"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def evaluate_bundle(
    weights: str | os.PathLike | None,
    out: str | os.PathLike,
    config: EvalConfig | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Evaluate the bundle in `weights` (None: the shipped one); write report.json, report.md, PNG plots and
    side_by_side.gif into `out`; return the report."""
    started = time.perf_counter()
    config = config or EvalConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(name: str, fn, *args):  # run one part and record its wall-clock
        t0 = time.perf_counter()
        result = fn(*args)
        timings[name] = time.perf_counter() - t0
        return result

    bundle = load_bundle(weights, device=device)
    seeds = eval_seeds(config.base_seed, config.episodes)
    episodes = timed("real_episodes", record_episodes, seeds, bundle.spec, progress)
    seed = config.seed
    ol = timed(
        "open_loop",
        open_loop,
        bundle,
        episodes,
        config.horizons,
        seed,
        config.max_open_loop_steps,
        config.video_episodes,
        config.video_steps,
        progress,
        config.sampler,
    )
    terminal = timed(
        "terminal_replays", terminal_replays, bundle, episodes, config.terminal_steps, seed, progress, config.sampler
    )
    ctrl, example = timed(
        "controllability",
        controllability,
        bundle,
        episodes,
        config.control_steps,
        config.control_offsets,
        seed,
        progress,
        config.sampler,
    )
    forced = timed("teacher_forced", teacher_forced, bundle, episodes, seed, config.sampler)
    reference = real_latent_stats(bundle.vae, episodes)
    report = {
        "config": config.to_dict(),
        "device": device,
        "versions": versions(),
        "data": {
            "episodes": len(episodes),
            "seeds": seeds,
            "policies": [e.policy for e in episodes],
            "lengths": [e.length for e in episodes],
            "outcomes": dict(Counter(e.outcome for e in episodes)),
            "terrain_change_vs_first": real_terrain_change(episodes),
        },
        "vae": timed("vae", vae_metrics, bundle.vae, episodes),
        "open_loop": ol.metrics,
        "open_loop_curve": ol.curve,
        "reward_termination": reward_termination(
            {"open_loop": ol.replays, "terminal_anchored": terminal, "teacher_forced": forced}, config.term_tolerance
        ),
        "controllability": ctrl,
        "long_dreams": timed(
            "long_dreams",
            long_dreams,
            bundle,
            config.long_steps,
            seed,
            reference,
            progress,
            config.sampler,
            config.long_dreams,
        ),
        "cost": timed("cost", cost, bundle, config.cost_steps, seed, config.sampler),
    }
    report["weights"] = {"path": str(bundle.path), "files": report["cost"]["files"]}
    report["targets"] = targets(report)
    report["files"] = write_plots(out, report, ol.curve, example)
    report["files"] += timed("video", write_video, out, ol.video, config.mp4)
    report["timings_s"] = timings
    report["wall_clock_s"] = time.perf_counter() - started
    report["files"] = ["report.json", "report.md", *report["files"]]
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render_markdown(report))
    return report
