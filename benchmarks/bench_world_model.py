"""Benchmark the world model on this CPU (not a test): DART training throughput vs clip length, a
last-frame-only baseline, fp32 vs bf16, achieved GFLOP/s, and cached inference steps/s.

    python benchmarks/bench_world_model.py --preset default --threads 2
    python benchmarks/bench_world_model.py --override width=256 --override heads=4   # try another size

The CPU may be shared: run it at least twice and report the range. Every rate is given twice: per second of
wall time, and per second of this process's CPU time (`time.process_time`). With `--threads 1` the CPU-time rate
is what one dedicated core delivers, whatever else runs on the machine (descheduled time is not counted).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from oniris_env.world_model import WorldModel, WorldModelConfig, frame_actions


class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def bf16_matmul_peak(size: int = 1024, iters: int = 10) -> tuple[float, float]:
    """GFLOP/s (wall, CPU time) of a square bf16 matmul: this CPU's practical linear-layer peak."""
    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    a @ b
    with Clock() as c:
        for _ in range(iters):
            a @ b
    gflop = 2 * size**3 * iters / 1e9
    return gflop / c.wall, gflop / c.cpu


def train_step_fn(model: WorldModel, batch: int, frames: int, bf16: bool, supervise_last_only: bool = False):
    """One Adam step on a random DART clip; returns (fn, supervised frames per call)."""
    cfg = model.config
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, frames, *cfg.latent_shape, generator=g)
    sigma = torch.rand(batch, frames, generator=g) + 0.1
    actions = frame_actions(torch.randint(0, cfg.num_actions, (batch, frames - 1), generator=g), cfg.start_action)

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = model(x, 0.1 * sigma, x + sigma[..., None, None, None], sigma, actions)
        err = (out.denoised.float() - x).pow(2)
        loss = (err[:, -1:] if supervise_last_only else err).mean() + out.term_logits.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, batch * (1 if supervise_last_only else frames)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds per call after one warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        with Clock() as c:
            fn()
        walls.append(c.wall)
        cpus.append(c.cpu)
    return sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]


def flops_of(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def inference_steps_per_s(model: WorldModel, batch: int, nfe: int, steps: int) -> tuple[float, float]:
    """Dream steps/s (total over the batch; wall, CPU time): nfe cached calls per frame, the last one
    committing, with a full window in the cache."""
    cfg = model.config
    cache = model.init_cache(batch)
    x = torch.randn(batch, *cfg.latent_shape)
    sigma = torch.ones(batch)
    action = torch.zeros(batch, dtype=torch.long)
    with torch.inference_mode():
        for _ in range(cfg.window + 1):
            cache = model.step(x, sigma, action, cache, commit=True).cache
        with Clock() as c:
            for _ in range(steps):
                for j in range(nfe):
                    out = model.step(x, sigma, action, cache, commit=j == nfe - 1)
                cache = out.cache
        return batch * steps / c.wall, batch * steps / c.cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--override", action="append", default=[], help="config field=value (repeatable)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=8, help="training clips per step")
    parser.add_argument("--frames", default="8,16,32", help="training clip lengths N")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nfe", type=int, default=3)
    parser.add_argument("--skip-fp32", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: ast.literal_eval(v) for k, v in (o.split("=", 1) for o in args.override)}
    cfg = WorldModelConfig.preset(args.preset, **overrides)
    torch.manual_seed(0)
    model = WorldModel(cfg)
    params = sum(p.numel() for p in model.parameters())
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "preset": args.preset,
        "overrides": overrides, "params_M": round(params / 1e6, 2), "tokens_per_frame": cfg.tokens_per_frame,
        "window": cfg.window, "train": [],
    }
    peak_wall, peak_cpu = bf16_matmul_peak()
    report["bf16_matmul_peak_gflops"] = {"wall": round(peak_wall, 1), "cpu": round(peak_cpu, 1)}
    print(json.dumps({k: v for k, v in report.items() if k != "train"}), flush=True)
    frames_list = [int(f) for f in args.frames.split(",")]
    for n in frames_list:
        for bf16 in (True, False) if not args.skip_fp32 else (True,):
            for last_only in (False, True):
                if last_only and not bf16:
                    continue
                # the baseline supervises the last frame of a clip of n context frames: it processes n + 1
                # frames, which a DART clip of ceil((n + 1) / 2) frames also does (same tokens, same layers)
                clip = math.ceil((n + 1) / 2) if last_only else n
                fn, supervised = train_step_fn(model, args.batch, clip, bf16, last_only)
                wall, cpu = timed(fn, args.repeats)
                gflop = flops_of(fn) / 1e9
                row = {
                    "N": n, "mode": "last-frame baseline" if last_only else "DART", "bf16": bf16,
                    "frames_per_s": round(supervised / wall, 1), "frames_per_cpu_s": round(supervised / cpu, 1),
                    "gflop_per_step": round(gflop, 1), "gflops_wall": round(gflop / wall, 1),
                    "gflops_cpu": round(gflop / cpu, 1),
                }
                report["train"].append(row)
                print(json.dumps(row), flush=True)
    for key in ("frames_per_s", "frames_per_cpu_s"):
        dart = {r["N"]: r[key] for r in report["train"] if r["mode"] == "DART" and r["bf16"]}
        if len(dart) > 1:
            lo, hi = min(dart), max(dart)
            report[f"dart_cost_ratio_N{hi}_vs_N{lo}_{key}"] = round(dart[lo] / dart[hi], 2)
    print(json.dumps({k: v for k, v in report.items() if k.startswith("dart_cost")}), flush=True)
    model.eval()
    for batch in (1, 16):
        wall, cpu = inference_steps_per_s(model, batch, args.nfe, steps=30 if batch == 1 else 10)
        rates = {"wall": round(wall, 1), "cpu": round(cpu, 1)}
        report[f"dream_steps_per_s_B{batch}"] = rates
        print(json.dumps({f"dream steps/s B={batch}, {args.nfe} NFE, W={cfg.window}": rates}), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
