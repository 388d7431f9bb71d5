"""Where a batched dream step spends its time (issue 22): a profile of SB3-adapter steps in latent mode at several
batch sizes, the model's FLOPs against this CPU's matmul peak, and the two costs agents add on top of a step:
decoding every frame (`lost_lander_reward` checks the lander's visibility) and resetting finished dreams.

    python benchmarks/bench_dream_profile.py                        # shipped weights, 1 thread, B = 16 64 256
    python benchmarks/bench_dream_profile.py --batch 64 --steps 4   # one batch size, quicker
    python benchmarks/bench_dream_profile.py --only curve           # steps/s for B = 1 ... 256, pixels / latents

Method. `torch.profiler` records every aten op; the script labels code regions (`record_function`) by wrapping
functions for the duration of the profile only (nothing in the package is changed): the adapter, the episode
bookkeeping, the simulator, the sampler, each model call and, inside it, adaLN, spatial / temporal attention cores,
the conv path, the MLP, cache bookkeeping, and the input / output projections. A region's *exclusive* time is its
wall time minus its labelled sub-regions; its ops' self CPU time is split into op kinds, and what is left
(exclusive wall minus op time) is Python and dispatch overhead. The profiler adds a few us per op, so the
steps/s column comes from separate unprofiled runs (wall and thread CPU time: CPU time is what a loaded machine
cannot steal). Prints Markdown tables. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import numpy as np
import torch
from torch.autograd.profiler import record_function

from oniris_env.bundle import Bundle, load_bundle
from oniris_env.sampler import SamplerConfig
from oniris_env.simulator import DreamSimulator

SECTIONS = ("peak", "profile", "decode", "reset", "agent", "curve")

#: op kind of an aten op (self CPU time), first match wins; anything else is "elementwise / other".
OP_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("linear (addmm / mm)", ("aten::addmm", "aten::mm", "aten::linear")),
    ("batched matmul (bmm)", ("aten::bmm", "aten::baddbmm", "aten::matmul")),
    ("convolution", ("aten::mkldnn_convolution", "aten::convolution", "aten::_convolution", "aten::conv2d",
                     "aten::_slow_conv2d_forward", "aten::thnn_conv2d")),
    ("norm", ("aten::layer_norm", "aten::native_layer_norm", "aten::group_norm", "aten::native_group_norm")),
    ("activation / softmax / exp", ("aten::gelu", "aten::silu", "aten::softmax", "aten::_softmax", "aten::exp",
                                    "aten::amax", "aten::sigmoid")),
    ("copy / conversion / cat / index", ("aten::copy_", "aten::to", "aten::_to_copy", "aten::cat", "aten::stack",
                                         "aten::clone", "aten::contiguous", "aten::index", "aten::index_put_",
                                         "aten::_index_put_impl_", "aten::index_copy", "aten::where",
                                         "aten::repeat_interleave", "aten::scatter", "aten::gather",
                                         "aten::masked_fill", "aten::zeros", "aten::empty", "aten::fill_",
                                         "aten::zero_", "aten::new_zeros", "aten::resize_", "aten::empty_strided")),
    ("view / reshape (metadata)", ("aten::view", "aten::reshape", "aten::permute", "aten::transpose",
                                   "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::slice",
                                   "aten::split", "aten::chunk", "aten::unflatten", "aten::flatten", "aten::expand",
                                   "aten::as_strided", "aten::t", "aten::_unsafe_view", "aten::alias",
                                   "aten::narrow", "aten::detach", "aten::lift_fresh", "aten::unbind")),
)


def op_kind(name: str) -> str:
    for kind, names in OP_KINDS:
        if name in names:
            return kind
    return "elementwise / other"


def cpu_info() -> str:
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return name


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} (1 / 5 min)"


# -- peak and FLOPs ------------------------------------------------------------------------------------------------


def matmul_peak(dtype: torch.dtype, n: int = 1024, repeats: int = 6) -> float:
    """GFLOP/s of an n x n x n matmul in `dtype` on this thread (best of `repeats`, thread CPU time)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        a @ b
        best = min(best, time.thread_time() - start)
    return 2 * n**3 / best / 1e9


def flops_per_call(bundle: Bundle, batch: int) -> float:
    """FLOPs of one `WorldModel.step` call on `batch` dreams with a full window (`FlopCounterMode`: matmuls,
    convolutions; elementwise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    sim = DreamSimulator.from_bundle(bundle, batch, decode=False)
    sim.seed(0)
    sim.reset(None, np.random.default_rng(0))
    model = bundle.world_model
    x = torch.randn(batch, *model.config.latent_shape)
    sigma = torch.ones(batch)
    action = torch.zeros(batch, dtype=torch.int64)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.step(x, sigma, action, sim.cache)
    return float(counter.get_total_flops())


# -- labelled profile ----------------------------------------------------------------------------------------------


def _labelled(fn: Callable, label: str) -> Callable:
    def wrapper(*args, **kwargs):
        with record_function(label):
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def region_labels(world_model: torch.nn.Module) -> Iterator[None]:
    """Label the code regions of a dream step for the profiler (functions are wrapped only inside this block)."""
    import oniris_env.sb3_vec_env as sb3_mod
    import oniris_env.simulator as sim_mod
    import oniris_env.vector as vec_mod
    import oniris_env.world_model.block as block_mod
    import oniris_env.world_model.model as model_mod
    from oniris_env.world_model.cache import WorldModelCache

    targets = [
        (sb3_mod.OnirisSB3VecEnv, "step_wait", "adapter (SB3 VecEnv)"),
        (vec_mod.DreamEpisodes, "step", "episodes (obs, autoreset)"),
        (sim_mod.DreamSimulator, "step", "simulator"),
        (sim_mod, "sample_next", "sampler"),
        (model_mod.WorldModel, "step", "model call (other)"),
        (model_mod.WorldModel, "_embed", "embed (patch_in, cond)"),
        (model_mod.WorldModel, "_denoised", "output (final adaLN, D(x))"),
        (model_mod.WorldModel, "heads", "reward / term heads"),
        (model_mod, "rope_tables_at", "cache bookkeeping"),
        (WorldModelCache, "padding_mask", "cache bookkeeping"),
        (WorldModelCache, "append", "cache bookkeeping"),
        (block_mod.Block, "_modulation", "adaLN modulation"),
        (block_mod.Block, "_spatial", "spatial attn (qkv, out)"),
        (block_mod, "spatial_attention", "spatial attn core"),
        (block_mod, "temporal_step", "temporal attn core"),
        (block_mod.Block, "_conv_current", "conv path"),
        (block_mod.Block, "_conv_past", "conv path"),
        (block_mod.Block, "_conv_finish", "conv path"),
        (block_mod.Block, "step", "block (temporal qkv/out, norms, residuals)"),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in targets]
    for obj, name, label in targets:
        setattr(obj, name, _labelled(getattr(obj, name), label))
    hooks = []
    for block in world_model.blocks:  # the MLP is a module: label it with hooks
        def pre(_module, _args, block=block):
            block._mlp_rf = record_function("mlp")
            block._mlp_rf.__enter__()

        def post(_module, _args, _out, block=block):
            block._mlp_rf.__exit__(None, None, None)

        hooks += [block.mlp.register_forward_pre_hook(pre), block.mlp.register_forward_hook(post)]
    try:
        yield
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
        for h in hooks:
            h.remove()


def make_env(weights: str | None, batch: int, obs_mode: str, sampler: SamplerConfig, **env_kwargs):
    """The SB3 adapter in `obs_mode`, no time limit and no terminations (steps only), seeded and reset."""
    from oniris_env.sb3_vec_env import OnirisSB3VecEnv

    env = OnirisSB3VecEnv(num_envs=batch, max_episode_steps=None, weights=weights, obs_mode=obs_mode, device="cpu",
                          sampler=sampler, termination_threshold=1 - 1e-9, **env_kwargs)
    env.seed(0)
    env.reset()
    return env


def profile_steps(weights: str | None, batch: int, steps: int, sampler: SamplerConfig, **env_kwargs) -> dict:
    """Profile `steps` latent-mode SB3 steps of `batch` dreams; per-step ms by region and by op kind."""
    from torch.profiler import ProfilerActivity, profile

    env = make_env(weights, batch, "latent", sampler, **env_kwargs)
    rng = np.random.default_rng(0)
    for _ in range(2):
        env.step(rng.integers(4, size=batch))
    with region_labels(env.episodes.simulator.world_model), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("env step (caller)"):
                env.step(rng.integers(4, size=batch))
    events = prof.events()
    labels = {e.name for e in events if not e.name.startswith("aten::") and e.name != "[memory]"}
    inclusive: dict[str, float] = defaultdict(float)
    child_labels: dict[str, float] = defaultdict(float)
    ops: dict[tuple[str, str], float] = defaultdict(float)  # (region, kind) -> self us
    total = 0.0
    for e in events:
        if e.name in labels:
            inclusive[e.name] += e.cpu_time_total
            parent = e.cpu_parent
            while parent is not None and parent.name not in labels:
                parent = parent.cpu_parent
            if parent is not None:
                child_labels[parent.name] += e.cpu_time_total
            if e.name == "env step (caller)":
                total += e.cpu_time_total
            continue
        parent = e.cpu_parent
        while parent is not None and parent.name not in labels:
            parent = parent.cpu_parent
        region = parent.name if parent is not None else "outside"
        ops[(region, op_kind(e.name))] += e.self_cpu_time_total
    exclusive = {r: inclusive[r] - child_labels[r] for r in inclusive}
    op_time = defaultdict(float)
    for (region, _), us in ops.items():
        op_time[region] += us
    per = 1e-3 / steps  # us total -> ms per step
    regions = {r: {"ms": exclusive[r] * per, "op_ms": op_time[r] * per} for r in exclusive}
    kinds: dict[str, float] = defaultdict(float)
    for (_, kind), us in ops.items():
        kinds[kind] += us * per
    kinds["Python / dispatch (wall - ops)"] = total * per - sum(kinds.values())
    return {"total_ms": total * per, "regions": regions, "kinds": dict(kinds), "ops": ops, "per": per}


# -- plain timing --------------------------------------------------------------------------------------------------


def time_steps(env, batch: int, steps: int, warmup: int = 2) -> tuple[float, float]:
    """(wall, thread-CPU) env steps per second over `steps` calls of `env.step`."""
    rng = np.random.default_rng(1)
    for _ in range(warmup):
        env.step(rng.integers(4, size=batch))
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        env.step(rng.integers(4, size=batch))
    return batch * steps / (time.perf_counter() - w0), batch * steps / (time.thread_time() - c0)


def decode_cost(bundle: Bundle, batch: int, steps: int, sampler: SamplerConfig, **sim_kwargs) -> dict:
    """ms per step of the simulator with and without decoding, of the decode alone and of `landers_visible`."""
    from training.lander import landers_visible

    out = {}
    for decode in (False, True):
        sim = DreamSimulator.from_bundle(bundle, batch, sampler=sampler, decode=decode,
                                         termination_threshold=1 - 1e-9, **sim_kwargs)
        sim.seed(0)
        rng = np.random.default_rng(0)
        sim.reset(None, rng)
        for _ in range(2):
            sim.step(rng.integers(4, size=batch))
        c0, dec, vis = time.thread_time(), 0.0, 0.0
        for _ in range(steps):
            s = sim.step(rng.integers(4, size=batch))
            if decode:
                t = time.thread_time()
                with torch.inference_mode():
                    sim.vae.decode_latents_step(s.latents[:, None], sim.decode_cache)
                dec += time.thread_time() - t
                t = time.thread_time()
                landers_visible(s.frames)
                vis += time.thread_time() - t
        step = (time.thread_time() - c0 - dec - vis) / steps * 1e3
        out["pixels" if decode else "latent"] = step
        if decode:
            out["decode"], out["visible"] = dec / steps * 1e3, vis / steps * 1e3
    return out


def reset_cost(bundle: Bundle, batch: int, counts: tuple[int, ...], sampler: SamplerConfig, decode: bool,
               repeats: int = 3, warm_resets: int = 6) -> dict[int, dict[str, float]]:
    """Thread-CPU ms of `DreamSimulator.reset` of n of `batch` dreams, split into VAE encode, committing the
    context through the world model, and the rest (splice, decoder warm-up, bookkeeping), after `warm_resets`
    resets of all dreams (steady state of a long run)."""
    import oniris_env.simulator as sim_mod

    sim = DreamSimulator.from_bundle(bundle, batch, sampler=sampler, decode=decode)
    sim.seed(0)
    rng = np.random.default_rng(0)
    for _ in range(warm_resets):  # an agent run draws every bank context many times
        sim.reset(None, rng)
    parts: dict[str, float] = defaultdict(float)

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t = time.thread_time()
            out = fn(*args, **kwargs)
            parts[key] += time.thread_time() - t
            return out
        return wrapper

    orig_encode, orig_commit = sim.vae.encode_frames, sim_mod.commit_context
    sim.vae.encode_frames = timed(orig_encode, "encode")
    sim_mod.commit_context = timed(orig_commit, "commit")
    result = {}
    try:
        for n in counts:
            parts.clear()
            total = 0.0
            for r in range(repeats):
                mask = np.zeros(batch, dtype=bool)
                mask[np.random.default_rng(r).choice(batch, n, replace=False)] = True
                t = time.thread_time()
                sim.reset(mask, rng)
                total += time.thread_time() - t
            ms = {k: v / repeats * 1e3 for k, v in parts.items()}
            ms["total"] = total / repeats * 1e3
            ms["other"] = ms["total"] - ms.get("encode", 0.0) - ms.get("commit", 0.0)
            result[n] = ms
    finally:
        del sim.vae.encode_frames
        sim_mod.commit_context = orig_commit
    return result


def agent_speed(weights: str | None, batch: int, steps: int, sampler: SamplerConfig, horizon: int,
                lost_lander_reward: float | None = -100.0) -> tuple[float, float, float]:
    """(wall, thread-CPU) steps/s and resets per step of an agent's dream: latent observations, the lost-lander
    rule (every frame decoded) and episodes truncated at `horizon` (early agent training: ~30-50 steps)."""
    from oniris_env.dream_config import DreamConfig
    from oniris_env.vector import DreamEpisodes

    episodes = DreamEpisodes(batch, DreamConfig(weights, "latent", "cpu", sampler, max_episode_steps=horizon),
                             lost_lander_reward=lost_lander_reward)
    episodes.seed(0)
    episodes.reset()
    rng = np.random.default_rng(0)
    episodes.elapsed[:] = rng.integers(0, horizon, size=batch)  # staggered ends: ~B / horizon resets per step
    for _ in range(min(horizon, 50)):  # the bank's contexts drawn as in a long run
        episodes.step(rng.integers(4, size=batch))
    done = 0
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        done += int(episodes.step(rng.integers(4, size=batch)).done.sum())
    return batch * steps / (time.perf_counter() - w0), batch * steps / (time.thread_time() - c0), done / steps


# -- report --------------------------------------------------------------------------------------------------------


def print_profile(batches: tuple[int, ...], profiles: dict[int, dict], flops: dict[int, float],
                  plain: dict[int, tuple[float, float]], sampler: SamplerConfig, peak: dict[str, float]) -> None:
    print("### Where a latent-mode step goes (exclusive ms per env step, profiled; % of the profiled step)\n")
    regions = sorted({r for p in profiles.values() for r in p["regions"]},
                     key=lambda r: -max(p["regions"].get(r, {"ms": 0})["ms"] for p in profiles.values()))
    head = " | ".join(f"B={b} ms | B={b} % | B={b} Python %" for b in batches)
    print(f"| region | {head} |\n|---|" + "---|" * (3 * len(batches)))
    for r in regions:
        cells = []
        for b in batches:
            p = profiles[b]
            reg = p["regions"].get(r, {"ms": 0.0, "op_ms": 0.0})
            py = max(reg["ms"] - reg["op_ms"], 0.0)
            cells.append(f"{reg['ms']:.1f} | {100 * reg['ms'] / p['total_ms']:.1f} | {100 * py / p['total_ms']:.1f}")
        print(f"| {r} | {' | '.join(cells)} |")
    totals = " | ".join(f"{profiles[b]['total_ms']:.1f} | 100 | " for b in batches)
    print(f"| **profiled step** | {totals} |\n")

    print("### By op kind (self CPU time; Python = profiled wall minus all op time)\n")
    last = profiles[batches[-1]]["kinds"]
    kinds = sorted({k for p in profiles.values() for k in p["kinds"]}, key=lambda k: -last.get(k, 0))
    print(f"| op kind | {' | '.join(f'B={b} %' for b in batches)} |\n|---|" + "---|" * len(batches))
    for k in kinds:
        shares = " | ".join(f"{100 * profiles[b]['kinds'].get(k, 0) / profiles[b]['total_ms']:.1f}" for b in batches)
        print(f"| {k} | {shares} |")
    print()

    print(f"### Unprofiled speed and achieved GFLOP/s ({sampler.model_calls} model calls per step; "
          f"matmul peak per core: fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s)\n")
    print("| B | wall steps/s | CPU steps/s (per busy core) | model GFLOP per call | GFLOP/s (CPU time) "
          "| % of fp32 peak | % of bf16 peak |")
    print("|---|---|---|---|---|---|---|")
    for b in batches:
        wall, cpu = plain[b]
        gflops = flops[b] * sampler.model_calls * cpu / b / 1e9
        print(f"| {b} | {wall:.0f} | {cpu:.0f} | {flops[b] / 1e9:.2f} | {gflops:.1f} | "
              f"{100 * gflops / peak['fp32']:.0f} | {100 * gflops / peak['bf16']:.0f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="bundle directory (default: the shipped weights)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, action="append", help="batch sizes to profile (default 16 64 256)")
    parser.add_argument("--steps", type=int, default=6, help="profiled / timed env steps per batch size")
    parser.add_argument("--num-steps", type=int, default=2, help="denoising steps (Euler)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="the dream's inference precision")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = tuple(args.batch or (16, 64, 256))
    sections = args.only or [s for s in SECTIONS if s != "curve"]
    sampler = SamplerConfig(num_steps=args.num_steps)
    bundle = load_bundle(args.weights)
    env_kwargs = {"precision": args.precision} if args.precision != "fp32" else {}
    print(f"# bench_dream_profile {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
          f"{args.threads} thread(s), {cpu_info()}, {load_text()}")
    print(f"shipped weights; sampler Euler x {sampler.num_steps}; {args.precision}\n")

    peak = {"fp32": float("nan"), "bf16": float("nan")}
    if "peak" in sections or "profile" in sections:
        peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
        print(f"matmul peak on one thread (1024^3, best of 6, thread CPU time): fp32 {peak['fp32']:.0f}, "
              f"bf16 {peak['bf16']:.1f} GFLOP/s; CPU capability {torch.backends.cpu.get_cpu_capability()} "
              f"({load_text()})\n")
    if "profile" in sections:
        profiles, flops, plain = {}, {}, {}
        for b in batches:
            steps = max(args.steps * 16 // max(b, 16), 2)
            profiles[b] = profile_steps(args.weights, b, steps, sampler, **env_kwargs)
            flops[b] = flops_per_call(bundle, b)
            plain[b] = time_steps(make_env(args.weights, b, "latent", sampler, **env_kwargs), b, steps)
            print(f"(B = {b}: {steps} steps profiled and {steps} timed, {load_text()})", flush=True)
        print()
        print_profile(batches, profiles, flops, plain, sampler, peak)
    if "decode" in sections:
        print(f"### Decoding every frame (lost_lander_reward), thread-CPU ms per step ({load_text()})\n")
        print("| B | latent step | pixel step (incl. its decode) | VAE decode alone | landers_visible "
              "| decode share of a pixel step |")
        print("|---|---|---|---|---|---|")
        for b in batches:
            d = decode_cost(bundle, b, max(args.steps * 16 // max(b, 16), 2), sampler, **env_kwargs)
            share = d["decode"] / (d["pixels"] + d["visible"])
            print(f"| {b} | {d['latent']:.1f} | {d['pixels']:.1f} | {d['decode']:.1f} | {d['visible']:.2f} | "
                  f"{100 * share:.0f}% |", flush=True)
        print()
    if "reset" in sections:
        b = 64 if 64 in batches else batches[0]
        for decode in (False, True):
            r = reset_cost(bundle, b, (1, 4, 16, b), sampler, decode)
            print(f"### Reset of n of B = {b} dreams, decode={decode}, thread-CPU ms ({load_text()})\n")
            print("| n | total | VAE encode | commit context (W calls) | other | per reset dream |")
            print("|---|---|---|---|---|---|")
            for n, ms in r.items():
                print(f"| {n} | {ms['total']:.1f} | {ms.get('encode', 0):.1f} | {ms.get('commit', 0):.1f} | "
                      f"{ms['other']:.1f} | {ms['total'] / n:.1f} |", flush=True)
            print()
    if "agent" in sections:
        print(f"### An agent's dream: latent obs + lost_lander_reward (decodes every frame) + resets ({load_text()})\n")
        print("| B | horizon | resets per step | wall steps/s | CPU steps/s |\n|---|---|---|---|---|")
        for b in batches:
            for horizon in (40, 500):
                wall, cpu, resets = agent_speed(args.weights, b, max(args.steps * 32 // max(b, 16), 4), sampler,
                                                horizon)
                print(f"| {b} | {horizon} | {resets:.2f} | {wall:.0f} | {cpu:.0f} |", flush=True)
        print()
    if "curve" in sections:
        print(f"### Throughput curve, SB3 adapter, no resets ({load_text()})\n")
        print("| B | latent wall | latent CPU | pixels wall | pixels CPU |\n|---|---|---|---|---|")
        for b in (1, 4, 16, 64, 256):
            steps = max(args.steps * 16 // max(b, 16), 2)
            lat = time_steps(make_env(args.weights, b, "latent", sampler, **env_kwargs), b, steps)
            pix = time_steps(make_env(args.weights, b, "pixels", sampler, **env_kwargs), b, steps)
            print(f"| {b} | {lat[0]:.0f} | {lat[1]:.0f} | {pix[0]:.0f} | {pix[1]:.0f} |", flush=True)
        print()


if __name__ == "__main__":
    main()
