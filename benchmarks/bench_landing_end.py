"""How long before a landing's last step the lander last moved visibly: can frames tell when a landing ends?

LunarLander ends a landing when Box2D puts the resting lander to sleep, not when it touches down. For every
landed episode of a collection folder this reads the true state (`states`, the 8-d LunarLander observation) and
counts the env steps between the last step at which the lander moved faster than a given speed in *pixels per
env step of the recorded frames* and the episode's end. If that gap is longer than the world model's window of
frames, the frames it sees at the end look the same as those a few steps earlier, and the step at which a
landing ends can only be guessed.

    python benchmarks/bench_landing_end.py --data data/real

Speed conversion: LunarLander's state velocity is vel * (VIEWPORT_W / SCALE / 2) / FPS = vel * 0.2 (vel in world
units / s); one world unit is SCALE = 30 px of the 600 px-wide render, i.e. frame_width / 20 px of a recorded
frame; one env step lasts action_repeat / FPS s. Prints a Markdown table. Not a test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from training.episodes import load_episode, manifest_spec, read_manifest

FPS = 50
STATE_VELOCITY_SCALE = 0.2  # (VIEWPORT_W / SCALE / 2) / FPS in gymnasium's lunar_lander.py
WORLD_WIDTH_UNITS = 20.0  # VIEWPORT_W / SCALE


def px_per_step(state_speed: np.ndarray, frame_width: int, action_repeat: int) -> np.ndarray:
    """State-space speed -> pixels of a `frame_width`-wide frame per env step of `action_repeat` physics steps."""
    return state_speed / STATE_VELOCITY_SCALE * (frame_width / WORLD_WIDTH_UNITS) * (action_repeat / FPS)


def steps_after_last(series: np.ndarray, threshold: float) -> int:
    """Entries after the last one above `threshold` (len - 1, as if the first were, when none is)."""
    above = np.flatnonzero(series > threshold)
    return len(series) - 1 - (above[-1] if len(above) else 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder written by `oniris-env collect`")
    p.add_argument("--speeds", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5], help="px per env step")
    p.add_argument("--levels", type=int, nargs="+", default=[0, 1, 4, 16], help="pixel change thresholds, 0..255")
    p.add_argument("--windows", type=int, nargs="+", default=[12, 16], help="attention windows W to report")
    args = p.parse_args()
    manifest = read_manifest(args.data)
    spec = manifest_spec(manifest)
    speeds, changes = [], []
    for entry in manifest["episodes"]:
        if entry.get("outcome") == "landed":
            episode = load_episode(args.data / entry["file"])
            states, frames = episode["states"], episode["frames"].astype(np.int16)
            speeds.append(px_per_step(np.hypot(states[:, 2], states[:, 3]), spec.frame_width, spec.action_repeat))
            changes.append(np.abs(frames[1:] - frames[:-1]).max(axis=(1, 2, 3)))  # (T,): into frame t + 1
    print(
        f"{len(speeds)} landed episodes of {args.data} (frames {spec.frame_height} x {spec.frame_width}, action "
        f"repeat {spec.action_repeat})\n"
    )
    print("| lander last faster than (px / env step) | steps from then to the end: median | p10 | p90 |")
    print("|---|---|---|---|")
    for v in args.speeds:
        gaps = np.array([steps_after_last(s, v) for s in speeds])
        p10, p50, p90 = np.percentile(gaps, [10, 50, 90])
        print(f"| {v:g} | {p50:g} | {p10:g} | {p90:g} |")
    seen = " | ".join(f"seen with W = {w}" for w in args.windows)
    print(f"\n| last frame change > (levels) | steps from it to the end: median | p10 | p90 | {seen} |")
    print("|---|---|---|---|" + "---|" * len(args.windows))
    for level in args.levels:
        gaps = np.array([steps_after_last(c, level) for c in changes])
        p10, p50, p90 = np.percentile(gaps, [10, 50, 90])
        shares = " | ".join(f"{np.mean(gaps <= w - 1):.2f}" for w in args.windows)
        print(f"| {level} | {p50:g} | {p10:g} | {p90:g} | {shares} |")


if __name__ == "__main__":
    main()
