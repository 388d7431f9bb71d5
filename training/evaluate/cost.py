"""Cost of a dream: steps per second (batch 1 with pixels, batch 16 latents only), NFE per step, model sizes."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from oniris_env.bundle import BUNDLE_FILES, Bundle
from oniris_env.checksums import sha256
from oniris_env.sampler import DEFAULT_SAMPLER, SamplerConfig
from oniris_env.simulator import DreamSimulator

#: (batch, decode frames) of the speed measurements.
SPEED_SETTINGS = ((1, True), (16, False))
WARMUP_STEPS = 3


def dream_steps_per_s(
    bundle: Bundle, batch: int, decode: bool, steps: int, seed: int = 0, sampler: SamplerConfig = DEFAULT_SAMPLER
) -> float:
    """Env steps per second summed over the batch (B * steps / seconds), after `WARMUP_STEPS` untimed steps."""
    sim = DreamSimulator.from_bundle(bundle, batch, decode=decode, sampler=sampler)
    sim.seed(seed)
    rng = np.random.default_rng(seed)
    sim.reset(None, rng)
    for _ in range(WARMUP_STEPS):
        sim.step(rng.integers(bundle.spec.num_actions, size=batch))
    start = time.perf_counter()
    for _ in range(steps):
        sim.step(rng.integers(bundle.spec.num_actions, size=batch))
    return batch * steps / (time.perf_counter() - start)


def bundle_files(path: Path) -> dict[str, dict]:
    """Size (bytes) and sha256 of every bundle file."""
    return {name: {"bytes": (path / name).stat().st_size, "sha256": sha256(path / name)} for name in BUNDLE_FILES}


def cost(bundle: Bundle, steps: int, seed: int = 0, sampler: SamplerConfig = DEFAULT_SAMPLER) -> dict:
    """Speeds, NFE (`SamplerConfig.model_calls` of `sampler`) and parameter counts."""
    speeds = {
        f"B{batch}_{'pixels' if decode else 'latent'}": dream_steps_per_s(bundle, batch, decode, steps, seed, sampler)
        for batch, decode in SPEED_SETTINGS
    }
    files = bundle_files(bundle.path)
    return {
        "steps_per_s": speeds,
        "timed_steps": steps,
        "sampler": asdict(sampler),
        "nfe_per_step": sampler.model_calls,
        "vae_parameters": sum(p.numel() for p in bundle.vae.parameters()),
        "world_model_parameters": sum(p.numel() for p in bundle.world_model.parameters()),
        "files": files,
        "bundle_bytes": sum(f["bytes"] for f in files.values()),
    }
