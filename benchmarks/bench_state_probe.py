"""A linear state probe on the latents: how much of LunarLander's 8-d state the agents' observation holds, and
how far the dream's states drift from the real ones under the same actions.

1. Records `--episodes` real episodes (the `mix` collection policy, fresh seeds), encodes every frame with the
   shipped VAE and fits a probe from the last `--stack` latents to the true state (`info["state"]`) on the first
   80% of the episodes: `--probe mlp` (default; 2 hidden layers of 256, Adam, standardised targets) or `ridge`.
2. Held-out real frames: the probe's error per state dimension (its floor).
3. Dreams of the held-out episodes: reset on their first 4 real frames, then the episode's own actions for
   `--horizon` steps; the probe reads the dreamt latents, and its estimate is compared with the real state at the
   same step. The excess over the floor is the dream's error in state units (positions, velocities, angle).

    python benchmarks/bench_state_probe.py --episodes 150 --threads 2

Not a test: it measures the shipped models on fresh real episodes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from oniris_env.bundle import load_bundle
from oniris_env.dream_config import DreamConfig
from oniris_env.real_env import episode_seed
from oniris_env.sampler import SamplerConfig
from oniris_env.vector import DreamEpisodes
from training.collect import run_episode

STATE_NAMES = ("x", "y", "vx", "vy", "angle", "v_angle", "left leg", "right leg")
CONTEXT = 4


def stacked(latents: np.ndarray, k: int) -> np.ndarray:
    """`(T, C, h, w)` -> `(T, k * C * h * w)`: at step t the latents t-k+1 .. t (zeros before the first)."""
    flat = latents.reshape(len(latents), -1)
    padded = np.concatenate([np.zeros((k - 1, flat.shape[1]), flat.dtype), flat])
    return np.concatenate([padded[i : i + len(flat)] for i in range(k)], axis=1)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, y_mean = x.mean(0), y.mean(0)
    xc = x - mean
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - y_mean))
    return w, mean, y_mean


def fit_mlp(x: np.ndarray, y: np.ndarray, steps: int, seed: int = 0) -> torch.nn.Module:
    """A 2 x 256 MLP from stacked latents to the state (targets standardised inside), Adam, batch 256."""
    torch.manual_seed(seed)
    y_mean, y_std = y.mean(0), y.std(0) + 1e-6
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor((y - y_mean) / y_std, dtype=torch.float32)
    body = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256), torch.nn.SiLU(), torch.nn.Linear(256, 256), torch.nn.SiLU(),
        torch.nn.Linear(256, y.shape[1]),
    )
    opt = torch.optim.AdamW(body.parameters(), lr=1e-3, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(xt), (256,), generator=gen)
        loss = torch.nn.functional.smooth_l1_loss(body(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    scale, shift = torch.as_tensor(y_std, dtype=torch.float32), torch.as_tensor(y_mean, dtype=torch.float32)

    class Probe(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return body(z) * scale + shift

    return Probe().eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=6_000_000, help="base seed of the recorded episodes")
    parser.add_argument("--stack", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--horizon", type=int, default=25)
    parser.add_argument("--dreams", type=int, default=24, help="held-out episodes dreamt")
    parser.add_argument("--denoise-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probe", choices=("mlp", "ridge"), default="mlp")
    parser.add_argument("--probe-steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vae = load_bundle(None).vae

    start = time.perf_counter()
    episodes = []
    for i in range(args.episodes):
        arrays, _ = run_episode(episode_seed(args.seed, i), "mix")
        latents = vae.encode_frames(arrays["frames"][None])[0].numpy()
        episodes.append((arrays, latents))
    print(f"recorded and encoded {args.episodes} episodes in {time.perf_counter() - start:.0f} s")
    split = int(0.8 * len(episodes))
    train, held = episodes[:split], episodes[split:]
    x = np.concatenate([stacked(lat, args.stack) for _, lat in train])
    y = np.concatenate([a["states"] for a, _ in train])
    if args.probe == "ridge":
        w, x_mean, y_mean = fit_ridge(x.astype(np.float64), y.astype(np.float64), args.alpha)

        def probe(latents: np.ndarray) -> np.ndarray:
            return (stacked(latents, args.stack) - x_mean) @ w + y_mean
    else:
        net = fit_mlp(x, y, args.probe_steps)

        def probe(latents: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return net(torch.as_tensor(stacked(latents, args.stack), dtype=torch.float32)).numpy()

    real_err = np.concatenate([np.abs(probe(lat) - a["states"]) for a, lat in held])
    spread = np.concatenate([a["states"] for a, _ in held]).std(0)

    dreams = DreamEpisodes(1, DreamConfig(None, "latent", "cpu", SamplerConfig(num_steps=args.denoise_steps),
                                      termination_threshold=1 - 1e-9))
    dream_err, floor_err = [], []
    usable = [(a, lat) for a, lat in held if len(a["actions"]) >= CONTEXT - 1 + args.horizon][: args.dreams]
    for n, (arrays, latents) in enumerate(usable):
        dreams.seed(n)
        first = dreams.reset(None, arrays["frames"][None, :CONTEXT], arrays["actions"][None, : CONTEXT - 1])
        dreamt = [first[0]]
        for t in range(CONTEXT - 1, CONTEXT - 1 + args.horizon):
            dreamt.append(dreams.step(arrays["actions"][t : t + 1]).final_obs[0])
        # the probe sees the real latents up to the last context frame, then the dream's
        sequence = np.concatenate([latents[: CONTEXT - 1], np.stack(dreamt)])
        steps = slice(CONTEXT, CONTEXT + args.horizon)
        truth = arrays["states"][steps]
        dream_err.append(np.abs(probe(sequence)[steps] - truth))
        floor_err.append(np.abs(probe(latents[: CONTEXT + args.horizon])[steps] - truth))
    dream_err, floor_err = np.stack(dream_err), np.stack(floor_err)  # (dreams, horizon, 8)

    kind = f"ridge (alpha {args.alpha})" if args.probe == "ridge" else f"MLP 2 x 256 ({args.probe_steps} Adam steps)"
    print(f"\nprobe: {kind} on {args.stack} stacked latents, {len(x)} training frames; "
          f"{len(real_err)} held-out real frames; {len(usable)} dreams of {args.horizon} steps "
          f"({args.denoise_steps} Euler steps)\n")
    ks = [k for k in (1, 5, 10, 25) if k <= args.horizon]
    header = " | ".join(f"dream k={k} | real k={k}" for k in ks)
    print(f"| state | spread (std) | probe MAE, real frames | {header} |")
    print("|---|---|---|" + "---|---|" * len(ks))
    for d, name in enumerate(STATE_NAMES):
        cells = " | ".join(f"{dream_err[:, k - 1, d].mean():.3f} | {floor_err[:, k - 1, d].mean():.3f}" for k in ks)
        print(f"| {name} | {spread[d]:.3f} | {real_err[:, d].mean():.3f} | {cells} |")


if __name__ == "__main__":
    main()
