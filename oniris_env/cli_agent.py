"""`oniris-env agent ...`: train agents in the dream (or baselines in the real game) and judge them.

Every heavy import (torch, SB3, the agents package) happens inside a command body.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from oniris_env.cli_common import fail

agent_app = typer.Typer(
    help="Stable-Baselines3 agents: learn in the dream, judged in the real game.", no_args_is_help=True
)


@agent_app.command(
    "train",
    epilog="Examples:\n\n  oniris-env agent train --out runs/agent                 # PPO in the dream, 1 M steps\n\n"
    "  oniris-env agent train --out runs/agent-h50 --horizon 50 --steps 500000\n\n"
    "  oniris-env agent train --preset real-state --out runs/ppo-state   # model-free reference (true state)\n\n"
    "  oniris-env agent train --preset real-latent --out runs/ppo-latent # model-free, equal real data\n\n"
    "  oniris-env agent train --preset tiny --out /tmp/agent             # seconds (tests)\n\n"
    "The same command resumes an interrupted run (Ctrl-C and SIGTERM save a checkpoint).",
)
def train_command(
    out: Annotated[Path, typer.Option(help="Run folder (checkpoints, best agent, selection.json, metrics).")],
    preset: Annotated[str, typer.Option(help="tiny | dream | real-latent | real-state")] = "dream",
    algo: Annotated[str | None, typer.Option(help="ppo | dqn (default: the preset's)")] = None,
    obs: Annotated[str | None, typer.Option(help="latent | state (state: real game only)")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Environment steps to train for.")] = None,
    envs: Annotated[int | None, typer.Option(min=1, help="Environments stepped together.")] = None,
    horizon: Annotated[
        int | None, typer.Option(min=1, help="Truncate dream episodes after H steps (value bootstrapped).")
    ] = None,
    denoise_steps: Annotated[int | None, typer.Option(min=2, help="Euler steps of the dream's sampler.")] = None,
    eval_every: Annotated[
        int | None, typer.Option(min=0, help="Real-game selection every N steps (0: never).")
    ] = None,
    eval_episodes: Annotated[int | None, typer.Option(min=1, help="Real episodes per selection.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed of the agent and of its environments.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Dream weights bundle (default: shipped).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda (the dream's device)")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    compile: Annotated[bool, typer.Option(
        help="torch.compile the dream's cached step: the same dreams, faster once compiled (minutes; torch's "
             "compile cache serves later runs).")] = False,
) -> None:
    """Train an SB3 agent in the batched dream (or in the real game for the model-free baselines)."""
    import torch

    from agents.config import agent_preset
    from agents.train import ConfigChangedError, train_agent

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        config = agent_preset(
            preset, algo=algo, obs=obs, total_steps=steps, num_envs=envs, horizon=horizon,
            denoise_steps=denoise_steps, eval_every=eval_every, eval_episodes=eval_episodes, seed=seed,
        )
    except ValueError as e:
        fail(str(e))
    try:
        summary = train_agent(config, out, weights, device, progress, compile)
    except (ConfigChangedError, FileNotFoundError) as e:
        fail(str(e).splitlines()[0])
    except KeyboardInterrupt:
        typer.echo(f"interrupted: checkpoint saved in {out}; the same command resumes", err=True)
        raise typer.Exit(130) from None
    sel = summary["selection"]
    best = sel.get("best")
    typer.echo(
        f"trained {summary['steps']} steps in {summary['seconds']:.0f} s ({summary['steps_per_second']} steps/s); "
        f"selection used {sel['episodes_used']} real episodes ({sel['real_steps_used']} real steps)"
        + (f"; best at step {best['steps']}: {best['mean_return']:.1f} on the selection episodes" if best else "")
    )
    typer.echo(f"agent: {out / ('best' if best else 'final')}")


@agent_app.command(
    "eval",
    epilog="Examples:\n\n  oniris-env agent eval --agent shipped --env real --episodes 100\n\n"
    "  oniris-env agent eval --agent heuristic --env real --json heuristic.json\n\n"
    "  oniris-env agent eval --agent runs/agent/best --env dream --episodes 32\n\n"
    "  oniris-env agent eval --agent shipped --env real --episodes 1 --video flight.gif",
)
def eval_command(
    agent: Annotated[str, typer.Option(help="shipped | random | heuristic | PATH (agent folder or run .zip)")],
    env: Annotated[str, typer.Option(help="real | dream")] = "real",
    episodes: Annotated[int, typer.Option(min=1, help="Episodes to play.")] = 100,
    seed: Annotated[int | None, typer.Option(min=0, help="Base seed of the episodes (default: the evaluation seeds, "
                                                         "never used in training or selection).")] = None,
    envs: Annotated[int, typer.Option(min=1, help="Games played in parallel.")] = 8,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results to this JSON file.")] = None,
    video: Annotated[Path | None, typer.Option(help="Also record the first episode to FILE.gif / .mp4.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Dream weights bundle (default: shipped).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda (the dream's device)")] = "auto",
    denoise_steps: Annotated[int, typer.Option(min=2, help="Euler steps of the dream's sampler.")] = 3,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads.")] = None,
    sample: Annotated[bool, typer.Option(
        help="Sample each action from the agent's policy (seeded by --seed) instead of taking the most likely one.")
    ] = False,
    end_lost: Annotated[bool, typer.Option(
        help="--env dream: a dream whose lander leaves the view ends with -100 (as agents are trained); "
             "--no-end-lost lets it go on with the reward head's guesses.")] = True,
) -> None:
    """Play N episodes with an agent or a baseline; mean and std of the return, % >= 200, outcomes."""
    from dataclasses import replace

    import torch

    from agents.actors import PolicyActor, make_actor
    from agents.config import EVALUATION_SEED, LOST_LANDER_REWARD
    from agents.evaluate import evaluate_dream, evaluate_real, format_summary

    if env not in ("real", "dream"):
        fail(f"unknown --env {env!r}; choose real or dream")
    if threads is not None:
        torch.set_num_threads(threads)
    if video is not None:
        from oniris_env.video import check_video_path

        try:
            check_video_path(video)
        except ValueError as e:
            fail(str(e))
    seed = EVALUATION_SEED if seed is None else seed
    try:
        actor = make_actor(agent, seed)
        if sample:
            if not isinstance(actor, PolicyActor):
                fail(f"--sample needs a trained agent, not {agent!r}")
            torch.manual_seed(seed)  # SB3 samples with torch's global generator
            actor = replace(actor, deterministic=False)
        if env == "real":
            result = evaluate_real(actor, episodes, seed, envs, weights, progress=True)
        else:
            result = evaluate_dream(
                actor, episodes, seed, envs, weights, device, denoise_steps, progress=True,
                lost_lander_reward=LOST_LANDER_REWARD if end_lost else None,
            )
    except (FileNotFoundError, ValueError) as e:
        fail(str(e).splitlines()[0])
    summary = result.summary()
    typer.echo(f"{agent}: " + format_summary(summary))
    if json_out is not None:
        data = {"agent": agent, **result.to_json()}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2) + "\n")
        typer.echo(f"results: {json_out}")
    if video is not None:
        from agents.video import record_episode

        frames = record_episode(make_actor(agent, seed), env, seed, video, weights, device, denoise_steps)
        typer.echo(f"video: {video} ({frames} frames)")
