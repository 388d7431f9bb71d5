"""What a latent agent does on real observations and on dreamt ones from the same start: its greedy actions and
action probabilities step by step, in the real game and in a dream reset on the real game's first 4 frames (the
dream then follows the agent's own actions on the dreamt frames).

    python benchmarks/bench_agent_actions.py runs/agent-dream2/checkpoint.zip
    python benchmarks/bench_agent_actions.py shipped --seed 5000000

Not a test: it looks at one trained agent (a run's .zip, a saved agent folder, or `shipped`).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from agents.actors import make_actor
from agents.pilot import FrameStack
from agents.real_vec_env import LatentEncoder
from oniris_env.bundle import load_bundle
from oniris_env.dream_config import DreamConfig
from oniris_env.real_env import OnirisLunarLanderReal
from oniris_env.sampler import SamplerConfig
from oniris_env.vector import DreamEpisodes

CONTEXT = 4
ACTIONS = "NLMR"  # noop, left engine, main engine, right engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agent")
    parser.add_argument("--seed", type=int, default=4_000_001, help="real episode seed")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--denoise-steps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    actor = make_actor(args.agent)

    def probs(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return actor.policy.get_distribution(torch.as_tensor(obs[None])).distribution.probs[0].numpy()

    def show(world: str, rows: list[np.ndarray]) -> None:
        print(f"{world:5s} greedy actions: " + "".join(ACTIONS[int(p.argmax())] for p in rows))
        print(f"{world:5s} P(main) by step: " + " ".join(f"{p[2]:.2f}" for p in rows[:12]))

    env = OnirisLunarLanderReal()
    frame, _ = env.reset(seed=args.seed)
    encoder = LatentEncoder(load_bundle(None).vae)
    latent = encoder.start(np.ones(1, dtype=bool), frame[None])[0]
    stack = FrameStack(actor.frame_stack, latent.shape)
    obs = stack.reset(latent)
    frames, actions, real_probs = [frame], [], []
    for _ in range(args.steps):
        p = probs(obs)
        real_probs.append(p)
        actions.append(int(p.argmax()))
        frame, _, terminated, truncated, _ = env.step(actions[-1])
        frames.append(frame)
        if terminated or truncated:
            break
        obs = stack.push(encoder.encode(frame[None])[0])
    show("real", real_probs)

    dreams = DreamEpisodes(1, DreamConfig(None, "latent", "cpu", SamplerConfig(num_steps=args.denoise_steps),
                                      termination_threshold=1 - 1e-9))
    dreams.seed(0)
    first = dreams.reset(None, np.stack(frames[:CONTEXT])[None], np.array([actions[: CONTEXT - 1]]))
    stack = FrameStack(actor.frame_stack, latent.shape)
    obs = stack.reset(first[0])
    dream_probs = []
    for _ in range(CONTEXT - 1, args.steps):
        p = probs(obs)
        dream_probs.append(p)
        obs = stack.push(dreams.step(np.array([int(p.argmax())])).final_obs[0])
    print(f"(the dream starts at real step {CONTEXT - 1})")
    show("dream", dream_probs)


if __name__ == "__main__":
    main()
