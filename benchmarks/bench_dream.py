"""Dream speed: steps/s at B = 1 and B = 16 (pixels and latents), step latency at step 50 vs step 2000, RSS over a
long rollout, the KV/conv cache against recomputing the window every step, and `torch.compile` of the cached step.

Speed does not depend on training, so any bundle works, e.g. one built from the default presets with random init:

    python benchmarks/bench_dream.py --make-random /tmp/bundle_default            # build it once (default presets)
    python benchmarks/bench_dream.py --weights /tmp/bundle_default --threads 2     # all measurements
    python benchmarks/bench_dream.py --weights /tmp/bundle_default --only compile  # one section

Prints Markdown tables (paste into docs/RESULTS.md). Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from datetime import UTC, datetime

import numpy as np
import torch

from oniris_env.bundle import load_bundle, save_random_bundle
from oniris_env.dream_config import DreamConfig
from oniris_env.sampler import SamplerConfig, rebuild_cache, sample_next
from oniris_env.simulator import DreamSimulator
from oniris_env.vector import DreamEpisodes

SECTIONS = ("throughput", "steps", "latency", "cache", "compile", "play")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def throughput(weights: str, batch: int, obs_mode: str, steps: int, sampler: SamplerConfig) -> float:
    """Env steps per second through the adapters (B = 1: the gymnasium env's path, B > 1: the vector env's)."""
    episodes = DreamEpisodes(batch, DreamConfig(weights, obs_mode, "cpu", sampler, termination_threshold=1 - 1e-9))
    episodes.seed(0)
    episodes.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):
        episodes.step(rng.integers(4, size=batch))
    start = time.perf_counter()
    for _ in range(steps):
        episodes.step(rng.integers(4, size=batch))
    return steps * batch / (time.perf_counter() - start)


def play_latency(weights: str, steps: int, compile: bool, seed: int = 0) -> dict:
    """Interactive play's path: `gym.make("OnirisLunarLander-v0")` with pixels, B = 1, keys held for 1-12 steps as
    a player holds them, reset on every episode end as `oniris-env play` does. Per-step wall latency of `step`
    (and of the resets, counted with the step that needed them) after a warm-up of 2 windows of steps."""
    import gymnasium as gym

    import oniris_env  # noqa: F401  (registers the id)

    env = gym.make("OnirisLunarLander-v0", weights=weights, device="cpu", compile=compile, max_episode_steps=None)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    env.reset(seed=seed)
    window = env.unwrapped.simulator.window
    action, hold, times, reset_steps = 0, 0, [], []
    for t in range(2 * window + 2 + steps):
        if hold == 0:
            action, hold = int(rng.integers(4)), int(rng.integers(1, 13))
        hold -= 1
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        if done:
            env.reset()
        if t == 2 * window + 1:
            warmup = time.perf_counter() - t0
        elif t > 2 * window + 1:
            times.append(time.perf_counter() - start)
            reset_steps.append(done)
    ms, was_reset = np.array(times) * 1e3, np.array(reset_steps)
    return {"warmup_s": warmup, "resets": int(was_reset.sum()), "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max()),
            "p99_no_reset": float(np.percentile(ms[~was_reset], 99)),
            "reset_ms": float(ms[was_reset].mean()) if was_reset.any() else float("nan"),
            "steps_per_s": len(ms) / ms.sum() * 1e3}


def latency_rollout(weights: str, steps: int, probes: tuple[int, ...], half_width: int = 25) -> dict:
    """One B = 1 pixel rollout of `steps` steps: per-step latency around each probe step, RSS along the way."""
    sim = DreamSimulator.from_bundle(load_bundle(weights), 1)
    sim.seed(0)
    sim.reset(None, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    times, rss = np.zeros(steps), []
    for t in range(steps):
        start = time.perf_counter()
        sim.step(rng.integers(4, size=1))
        times[t] = time.perf_counter() - start
        if t % max(steps // 20, 1) == 0 or t == steps - 1:
            rss.append((t + 1, rss_mb()))
    lat = {}
    for p in probes:
        window = times[max(p - half_width, 0) : p + half_width] * 1e3
        lat[p] = (float(np.percentile(window, 50)), float(np.percentile(window, 95)))
    return {"latency_ms": lat, "rss": rss, "mean_ms": float(times.mean() * 1e3)}


def paired_latency(weights: str, young: int, old: int, steps: int = 100) -> dict[int, tuple[float, float]]:
    """p50/p95 ms per step of two B = 1 pixel dreams, one around step `young` and one around step `old`, timed in
    alternation (young, old, young, ...) so that a shared machine's load falls on both alike."""
    bundle = load_bundle(weights)
    sims, rng = {}, np.random.default_rng(0)
    for start in (young, old):
        sim = DreamSimulator.from_bundle(bundle, 1)
        sim.seed(start)
        sim.reset(None, np.random.default_rng(start))
        for _ in range(max(start - steps // 2, 0)):  # untimed: bring the dream to its probe
            sim.step(rng.integers(4, size=1))
        sims[start] = sim
    times: dict[int, list[float]] = {young: [], old: []}
    for _ in range(steps):
        for start, sim in sims.items():
            t0 = time.perf_counter()
            sim.step(rng.integers(4, size=1))
            times[start].append((time.perf_counter() - t0) * 1e3)
    return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 95))) for k, v in times.items()}


@torch.inference_mode()
def cache_speedup(weights: str, batch: int, steps: int, sampler: SamplerConfig) -> tuple[float, float]:
    """ms per frame: cached sampler vs rebuilding the cache from the last W committed frames at every step."""
    model = load_bundle(weights).world_model
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    cache = model.init_cache(batch)
    history, actions = [], []
    for _ in range(cfg.window):  # fill the window
        a = torch.randint(0, cfg.num_actions, (batch,), generator=gen)
        out = sample_next(model, cache, a, gen, sampler)
        cache = out.cache
        history.append(out.committed)
        actions.append(a)
    a = torch.zeros(batch, dtype=torch.int64)
    start = time.perf_counter()
    for _ in range(steps):
        out = sample_next(model, cache, a, gen, sampler)
        cache = out.cache
    cached = (time.perf_counter() - start) / steps
    past, past_actions = torch.stack(history[-cfg.window :], 1), torch.stack(actions[-cfg.window :], 1)
    start = time.perf_counter()
    for _ in range(steps):
        fresh = rebuild_cache(model, past, past_actions, sampler.sigma_min)
        sample_next(model, fresh, a, gen, sampler)
    recompute = (time.perf_counter() - start) / steps
    return cached * 1e3, recompute * 1e3


@torch.inference_mode()
def compiled_speedup(weights: str, batch: int, steps: int, sampler: SamplerConfig) -> dict:
    """`torch.compile` of `WorldModel.step` (the ring cache has constant shapes): warm-up time (compilation
    of every variant: commit or not, padded or not) and ms per frame after it, eager vs compiled, latent mode."""
    bundle = load_bundle(weights)
    result = {}
    for name, step_fn in (("eager", None), ("compiled", torch.compile(bundle.world_model.step, dynamic=False))):
        start = time.perf_counter()
        sim = DreamSimulator.from_bundle(bundle, batch, sampler=sampler, decode=False, step_fn=step_fn)
        sim.seed(0)
        rng = np.random.default_rng(0)
        sim.reset(None, rng)
        for _ in range(2 * bundle.world_model.config.window + 2):  # every shape / mask variant has been seen
            sim.step(rng.integers(4, size=batch))
        warmup = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(steps):
            sim.step(rng.integers(4, size=batch))
        result[name] = {"warmup_s": warmup, "ms_per_step": (time.perf_counter() - start) / steps * 1e3}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="bundle directory")
    parser.add_argument("--make-random", metavar="DIR", help="write a random-init default-preset bundle to DIR")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--num-steps", type=int, default=3, help="denoising steps")
    parser.add_argument("--method", default="euler", choices=("euler", "heun"))
    parser.add_argument("--steps", type=int, default=60, help="timed env steps per throughput measurement")
    parser.add_argument("--long-steps", type=int, default=5000, help="length of the latency / RSS rollout")
    parser.add_argument("--play-steps", type=int, default=2000, help="timed steps of the play section")
    parser.add_argument("--compile-batches", type=int, nargs="+", default=[1, 16, 64],
                        help="batch sizes of the compile section")
    args = parser.parse_args()
    if args.make_random:
        print(f"wrote {save_random_bundle(args.make_random, 'default', 'default')}")
        if not args.weights:
            return
    if not args.weights:
        parser.error("--weights DIR is required (or --make-random DIR to build a bundle first)")
    torch.set_num_threads(args.threads)
    sampler = SamplerConfig(num_steps=args.num_steps, method=args.method)
    sections = args.only or [s for s in SECTIONS if s != "steps"]
    model = load_bundle(args.weights).world_model
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"# bench_dream {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}")
    print(f"world model {params:.1f} M params, window {model.config.window}, {model.config.tokens_per_frame} "
          f"tokens/frame; sampler {sampler.method} x {sampler.num_steps} ({sampler.model_calls} NFE)\n")

    if "throughput" in sections:
        print("| B | obs_mode | env steps/s |\n|---|---|---|")
        for batch in (1, 16):
            for mode in ("pixels", "latent"):
                steps = args.steps if batch == 1 else max(args.steps // 4, 5)
                print(f"| {batch} | {mode} | {throughput(args.weights, batch, mode, steps, sampler):.1f} |", flush=True)
        print()
    if "steps" in sections:
        print("| sampler | NFE | B=1 latent steps/s | B=16 latent steps/s |\n|---|---|---|---|")
        for method, n in (("euler", 2), ("euler", 3), ("euler", 4), ("heun", 2)):
            cfg = SamplerConfig(num_steps=n, method=method)
            b1 = throughput(args.weights, 1, "latent", args.steps, cfg)
            b16 = throughput(args.weights, 16, "latent", max(args.steps // 4, 5), cfg)
            print(f"| {method} x {n} | {cfg.model_calls} | {b1:.1f} | {b16:.1f} |", flush=True)
        print()
    if "cache" in sections:
        print("| B | cached ms/frame | recompute-window ms/frame | speed-up |\n|---|---|---|---|")
        for batch in (1, 16):
            cached, recompute = cache_speedup(args.weights, batch, 10, sampler)
            print(f"| {batch} | {cached:.1f} | {recompute:.1f} | {recompute / cached:.1f}x |", flush=True)
        print()
    if "compile" in sections:
        print("| B | eager ms/step | compiled ms/step | speed-up | eager warm-up s | compiled warm-up s |")
        print("|---|---|---|---|---|---|")
        for batch in args.compile_batches:
            r = compiled_speedup(args.weights, batch, args.steps if batch == 1 else args.steps // 4, sampler)
            e, c = r["eager"], r["compiled"]
            print(f"| {batch} | {e['ms_per_step']:.1f} | {c['ms_per_step']:.1f} | "
                  f"{e['ms_per_step'] / c['ms_per_step']:.2f}x | {e['warmup_s']:.1f} | {c['warmup_s']:.1f} |",
                  flush=True)
        print()
    if "play" in sections:
        print(f"Interactive play path (gym env, pixels, B = 1, {args.play_steps} timed steps, keys held 1-12 steps):\n")
        print("| step | warm-up s | p50 ms | p95 ms | p99 ms | max ms | p99 without resets | step + reset ms | "
              "steps/s | resets |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for compile in (False, True):
            r = play_latency(args.weights, args.play_steps, compile)
            print(f"| {'compiled' if compile else 'eager'} | {r['warmup_s']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | "
                  f"{r['p99']:.1f} | {r['max']:.1f} | {r['p99_no_reset']:.1f} | {r['reset_ms']:.1f} | "
                  f"{r['steps_per_s']:.1f} | {r['resets']} |", flush=True)
        print()
    if "latency" in sections:
        probes = tuple(sorted({p for p in (50, 2000, args.long_steps - 500) if 0 < p < args.long_steps}))
        r = latency_rollout(args.weights, args.long_steps, probes)
        print(f"B = 1 pixel rollout of {args.long_steps} steps, mean {r['mean_ms']:.1f} ms/step\n")
        print("| around step | p50 ms | p95 ms |\n|---|---|---|")
        for p, (p50, p95) in r["latency_ms"].items():
            print(f"| {p} | {p50:.1f} | {p95:.1f} |")
        if len(probes) >= 2:
            print(f"\np50 ratio step {probes[-1]} / step {probes[0]}: "
                  f"{r['latency_ms'][probes[-1]][0] / r['latency_ms'][probes[0]][0]:.2f}")
        if len(probes) >= 2:
            paired = paired_latency(args.weights, probes[0], probes[-1])
            print("\nPaired (two dreams stepped in alternation, 100 timed steps each around its probe):\n")
            print("| around step | p50 ms | p95 ms |\n|---|---|---|")
            for p, (p50, p95) in paired.items():
                print(f"| {p} | {p50:.1f} | {p95:.1f} |")
            print(f"\npaired p50 ratio step {probes[-1]} / step {probes[0]}: "
                  f"{paired[probes[-1]][0] / paired[probes[0]][0]:.2f}")
        print("\n| after step | RSS MB |\n|---|---|")
        for t, mb in r["rss"]:
            print(f"| {t} | {mb:.0f} |")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\npeak RSS of the whole benchmark process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
