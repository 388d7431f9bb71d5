"""The `oniris-env` command line (Typer): the root app and its data, dream and inspection commands.

This module holds `collect`, `encode`, `merge`, `play`, `dream`, `info` and `check`, and mounts the rest:
`train ...` (`oniris_env.cli_train`), `agent ...` (`oniris_env.cli_agent`) and `evaluate`
(`oniris_env.cli_evaluate`), with the argument checks they share in `oniris_env.cli_common`. These `cli*` modules
are the only place that wires oniris_env, training and agents. Every heavy import (torch, Box2D, the training
code) happens inside a command body, so `oniris-env --help` stays fast and never imports torch. Bad arguments
exit with code 2 and a one-line reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from oniris_env.cli_agent import agent_app
from oniris_env.cli_common import check_dataset, check_output, fail, refuse_under_torchrun
from oniris_env.cli_evaluate import EPILOG as EVALUATE_EPILOG
from oniris_env.cli_evaluate import evaluate
from oniris_env.cli_train import train_app

app = typer.Typer(
    name="oniris-env",
    help="LunarLander as a learned world: record real episodes, train the VAE and the diffusion world model, "
    "play and evaluate the dream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    """LunarLander as a learned world. Run `oniris-env COMMAND --help` for a command's options and examples."""
    if ctx.invoked_subcommand != "train":  # `train`'s own callback decides for its sub-commands
        refuse_under_torchrun(ctx.invoked_subcommand or "")


@app.command(
    epilog="Examples:\n\n  oniris-env collect --episodes 20 --out data/real\n\n"
    "  oniris-env collect --episodes 400 --out data/real --seed 0 --workers 2\n\n"
    "  oniris-env collect --episodes 300 --out data/real --policy sticky   # appended after the first ones\n\n"
    "  oniris-env collect --total 400 --out data/real --workers 2   # re-run after an interruption: fills up to 400\n\n"
    "  oniris-env collect --episodes 100 --out data/agent --seed 11 --policy agent --agent shipped   # its flights"
)
def collect(
    out: Annotated[Path, typer.Option(help="Dataset folder (created; re-runs append new episodes).")],
    episodes: Annotated[int | None, typer.Option(min=1, help="Number of episodes to add (default 20).")] = None,
    total: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Instead of --episodes: add only what OUT lacks to hold N episodes (a re-run of an interrupted "
            "run finishes the same N; nothing to do once OUT holds N).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Base seed; episode i gets a seed derived from (seed, i).")] = 0,
    policy: Annotated[
        str,
        typer.Option(
            help="mix | random | heuristic | noisy | sticky (random actions held 1-24 steps) | agent (--agent "
            "flies, its actions sampled from its policy)"
        ),
    ] = "mix",
    agent: Annotated[
        str | None, typer.Option(help="With --policy agent: shipped | PATH (a saved agent folder).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    action_repeat: Annotated[int, typer.Option(min=1, help="Physics steps per env step.")] = 2,
    preview: Annotated[bool, typer.Option(help="Write preview.png (frame strips of a few episodes).")] = True,
) -> None:
    """Record real LunarLander episodes (64x96 frames, actions, rewards, states) into a dataset folder."""
    from oniris_env.spec import GameSpec, SpecMismatchError
    from training.collect import collect_episodes, collect_to_total
    from training.policies import POLICY_NAMES

    if episodes is not None and total is not None:
        fail("--episodes and --total exclude each other (--episodes N adds N episodes, --total N fills OUT up to N)")
    if policy == "agent":
        from agents.collect_policy import check_agent
        from training.collect import AGENT_POLICY_PREFIX

        if agent is None:
            fail("--policy agent needs --agent shipped | PATH")
        try:
            check_agent(agent)
        except (FileNotFoundError, ValueError) as e:
            fail(str(e).splitlines()[0])
        policy = AGENT_POLICY_PREFIX + (agent if agent == "shipped" else str(Path(agent).resolve()))
    elif agent is not None:
        fail(f"--agent is read only with --policy agent (got --policy {policy}); add --policy agent")
    elif policy not in POLICY_NAMES:
        fail(f"unknown --policy {policy!r}; choose one of {', '.join(POLICY_NAMES)}, agent")
    check_output(out, folder=True)
    spec = GameSpec(action_repeat=action_repeat)
    try:
        if total is not None:
            added = collect_to_total(out, total, seed, policy, workers, spec)
        else:
            added = collect_episodes(out, episodes or 20, seed, policy, workers, spec)
    except (SpecMismatchError, ValueError) as e:  # another spec or kind of folder, clashing seeds, damaged files
        fail(str(e).splitlines()[0])
    if not added:
        typer.echo(f"{out} already holds --total {total} episodes or more: nothing to collect")
        return
    outcomes: dict[str, int] = {}
    for entry in added:
        outcomes[entry["outcome"]] = outcomes.get(entry["outcome"], 0) + 1
    frames = sum(e["length"] + 1 for e in added)
    returns = [e["return"] for e in added]
    typer.echo(
        f"wrote {len(added)} episodes ({frames} frames) to {out}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        + f"; returns {min(returns):.0f} .. {max(returns):.0f}"
    )
    if preview:
        from training.preview import write_dataset_preview

        typer.echo(f"preview: {write_dataset_preview(out)}")


app.add_typer(train_app, name="train")
app.add_typer(agent_app, name="agent")


@app.command(
    epilog="Examples:\n\n  oniris-env encode --data data/real --out data/latents                  # shipped VAE\n\n"
    "  oniris-env encode --data data/real --out data/latents --vae runs/vae/vae.safetensors"
)
def encode(
    data: Annotated[Path, typer.Option(help="Episode folder written by `oniris-env collect`.")],
    out: Annotated[Path, typer.Option(help="Latent folder (created; re-runs encode only new episodes).")],
    vae: Annotated[Path | None, typer.Option(help="VAE weights (.safetensors); default: the shipped VAE.")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
) -> None:
    """Encode recorded episodes into VAE latents once, for world-model training."""
    check_dataset(data, f"oniris-env collect --episodes 400 --out {data}")
    if vae is not None and not vae.is_file():
        fail(f"no VAE weights at {vae}; train them with: oniris-env train vae --data {data} --out runs/vae")
    from oniris_env.device import resolve_device
    from training.encode import encode_dataset

    try:
        manifest = encode_dataset(data, out, vae, device=resolve_device(device))
    except (ValueError, FileNotFoundError) as e:  # another VAE or spec in OUT, bad device, missing weights
        fail(str(e).splitlines()[0])
    typer.echo(f"{len(manifest['episodes'])} episodes of latents {tuple(manifest['latent_shape'])} in {out}")


@app.command(
    epilog="Example:\n\n  oniris-env merge --data data/latents800 --data data/term_latents --out data/latents4000"
)
def merge(
    data: Annotated[list[Path], typer.Option(help="Episode or latent folders to merge (2 or more, same kind).")],
    out: Annotated[Path, typer.Option(help="New folder: a manifest and one link (or copy) per episode.")],
    copy: Annotated[bool, typer.Option(help="Copy the episode files instead of linking them.")] = False,
) -> None:
    """Merge episode folders (of the same kind, spec and VAE) into one, to train on several collections."""
    for path in data:
        check_dataset(path, f"oniris-env collect --episodes 400 --out {path}", kind=None)
    check_output(out, folder=True)
    from training.merge import merge_datasets

    try:
        manifest = merge_datasets(data, out, copy=copy)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    typer.echo(f"{len(manifest['episodes'])} episodes in {out} (from {len(data)} folders)")


def _make_dream(weights: Path | None, device: str, denoise_steps: int | None, compile: bool = False) -> Any:
    """The dream env, or exit 2 with the reason (missing weights say which path and how to make them)."""
    import gymnasium as gym

    kwargs: dict[str, Any] = {"device": device, "compile": compile}
    if weights is not None:
        kwargs["weights"] = weights
    if denoise_steps is not None:
        from oniris_env.sampler import SamplerConfig

        kwargs["sampler"] = SamplerConfig(num_steps=denoise_steps)
    try:
        return gym.make("OnirisLunarLander-v0", **kwargs)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e).splitlines()[0])
    except gym.error.Error as e:
        fail(f"the dream env is not available: {e}")


def _make_pilot(agent: str, weights: Path | None) -> Any:
    """An `AgentPilot` of the agent `agent` (shipped or a folder), or exit 2 with the reason."""
    from agents.actors import make_actor
    from agents.pilot import AgentPilot
    from oniris_env.bundle import load_bundle

    try:
        return AgentPilot(make_actor(agent), load_bundle(weights).vae)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e).splitlines()[0])


@app.command(
    epilog="Examples:\n\n  oniris-env play                       # fly in the dream\n\n"
    "  oniris-env play --real                # the real game, same pixels and steps\n\n"
    "  oniris-env play --side-by-side        # real | dream with the same keys, live lander gap\n\n"
    "  oniris-env play --record session.mp4 --max-steps 300\n\n"
    "  oniris-env play --agent shipped --side-by-side   # watch the shipped agent fly the real game and the dream\n\n"
    "  SDL_VIDEODRIVER=dummy oniris-env play --real --actions keys.txt --record out.gif   # headless",
)
def play(
    real: Annotated[bool, typer.Option("--real", help="Play the real game through the same pixel wrapper.")] = False,
    side_by_side: Annotated[
        bool, typer.Option("--side-by-side", help="Real game and dream from the same start, same keys.")
    ] = False,
    scale: Annotated[int, typer.Option(min=1, max=16, help="Window pixels per frame pixel.")] = 6,
    fps: Annotated[float, typer.Option(min=1.0, help="Target steps per second.")] = 25.0,
    record: Annotated[Path | None, typer.Option(help="Save the session to FILE.mp4 or FILE.gif.")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after N steps.")] = None,
    actions: Annotated[Path | None, typer.Option(help="Scripted input: a file of actions 0-3 (no keyboard).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed of the first episode.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights directory (default: shipped).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    denoise_steps: Annotated[int | None, typer.Option(min=2, help="Denoising steps per frame.")] = None,
    agent: Annotated[
        str | None, typer.Option(help="Let an agent fly instead of the keyboard: shipped | PATH (agent folder).")
    ] = None,
    compile: Annotated[bool, typer.Option(
        help="torch.compile the dream's step: ~1.4x faster steps (p50 24 -> 17 ms on 2 cores) after a first-steps "
             "stall of ~45 s (~6 s once torch's compile cache holds it).")] = False,
) -> None:
    """Fly the lander with the keyboard: Up/W/Space main engine, Left/A and Right/D side engines (main > left >
    right when several are held), R reset, P pause, Esc/Q quit."""
    from oniris_env.play import Panels, PlayConfig, read_actions_file
    from oniris_env.play import play as run_play
    from oniris_env.video import check_video_path

    if real and side_by_side:
        fail("--real and --side-by-side exclude each other")
    if agent is not None and actions is not None:
        fail("--agent and --actions exclude each other (both choose the actions)")
    try:
        if record is not None:
            check_video_path(record)
            check_output(record)
        scripted = read_actions_file(actions) if actions is not None else None
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    import gymnasium as gym

    import oniris_env  # noqa: F401  (registers the ids)

    divergence, info = None, ""
    if real:
        panels = Panels([gym.make("OnirisLunarLanderReal-v0")], ["real"])
    else:
        dream = _make_dream(weights, device, denoise_steps, compile)
        sampler = dream.unwrapped.simulator.sampler
        info = f"denoise {sampler.num_steps} {sampler.method} steps"
        if side_by_side:
            from training.lander import centroid_error, lander_centroid

            panels = Panels([gym.make("OnirisLunarLanderReal-v0"), dream], ["real", "dream"], linked_start=True)
            divergence = lambda a, b: centroid_error(lander_centroid(a), lander_centroid(b))  # noqa: E731
        else:
            panels = Panels([dream], ["dream"])
    pilot = _make_pilot(agent, weights) if agent is not None else None
    if pilot is not None:
        info = f"agent {agent}  " + info
    config = PlayConfig(scale=scale, fps=fps, max_steps=max_steps, record=record, seed=seed)
    try:
        result = run_play(panels, config, scripted, divergence, info, pilot)
    except FloatingPointError as e:  # damaged or diverged weights
        fail(f"{weights or 'the shipped weights'}: {e}")
    typer.echo(
        f"{result.steps} steps, {result.episodes} finished episodes"
        + (f", returns {', '.join(f'{r:.0f}' for r in result.returns)}" if result.returns else "")
        + (f"; recorded {result.recorded_frames} frames to {record}" if result.recorded_frames else "")
    )


@app.command(
    epilog="Examples:\n\n  oniris-env dream --steps 300 --out dream.gif\n\n"
    "  oniris-env dream --steps 500 --policy file --actions keys.txt --out dream.mp4 --seed 3\n\n"
    "  oniris-env dream --steps 300 --policy agent --out agent.gif      # the shipped agent flies the dream",
)
def dream(
    out: Annotated[Path, typer.Option(help="Video file: .gif or .mp4.")],
    steps: Annotated[int, typer.Option(min=1, help="Env steps to dream.")] = 200,
    policy: Annotated[str, typer.Option(help="random | file (actions from --actions) | agent (--agent)")] = "random",
    actions: Annotated[Path | None, typer.Option(help="With --policy file: actions 0-3, cycled if short.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed of the dream (and of the random policy).")] = 0,
    weights: Annotated[Path | None, typer.Option(help="Weights directory (default: shipped).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    denoise_steps: Annotated[int | None, typer.Option(min=2, help="Denoising steps per frame.")] = None,
    scale: Annotated[int, typer.Option(min=1, max=12, help="Video pixels per frame pixel.")] = 3,
    agent: Annotated[str, typer.Option(help="With --policy agent: shipped | PATH (agent folder).")] = "shipped",
) -> None:
    """Dream headlessly and write a video with the action and the predicted reward burned in."""
    import numpy as np

    from oniris_env.play import read_actions_file
    from oniris_env.rollout_video import rollout_video
    from oniris_env.video import check_video_path

    if actions is not None and policy != "file":
        fail(f"--actions is read only with --policy file (got --policy {policy}); add --policy file")
    try:
        check_video_path(out)
        check_output(out)
        if policy == "file":
            if actions is None:
                fail("--policy file needs --actions FILE")
            script = read_actions_file(actions)
            act = lambda t: script[t % len(script)]  # noqa: E731
        elif policy == "random":
            rng = np.random.default_rng(seed)
            act = lambda t: int(rng.integers(4))  # noqa: E731
        elif policy == "agent":
            act = None
        else:
            fail(f"unknown --policy {policy!r}; choose random, file or agent")
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    import oniris_env  # noqa: F401  (registers the ids)

    env = _make_dream(weights, device, denoise_steps)
    pilot = _make_pilot(agent, weights) if policy == "agent" else None
    try:
        summary = rollout_video(
            env, steps, act, out, fps=env.metadata["render_fps"], seed=seed, scale=scale, pilot=pilot
        )
    except FloatingPointError as e:  # damaged or diverged weights: no black video
        fail(f"{weights or 'the shipped weights'}: {e}")
    typer.echo(f"dreamt {steps} steps ({summary['episodes']} finished episodes) -> {out}")


app.command(epilog=EVALUATE_EPILOG)(evaluate)


@app.command(epilog="Example:\n\n  oniris-env info")
def info() -> None:
    """Versions, device, and the shipped weights (files, sizes, what they were trained with)."""
    import json
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from oniris_env.bundle import BUNDLE_FILES, shipped_weights_dir

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    typer.echo(f"oniris-env {ver('oniris-env')} on Python {platform.python_version()} ({platform.machine()})")
    for name in ("torch", "gymnasium", "stable-baselines3", "pygame-ce", "numpy", "typer"):
        typer.echo(f"  {name:18s} {ver(name)}")
    import torch

    cuda = f"CUDA available ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "no CUDA: CPU"
    typer.echo(f"device: {cuda}, {torch.get_num_threads()} torch threads")
    weights = shipped_weights_dir()
    typer.echo(f"shipped weights: {weights}")
    for name in BUNDLE_FILES:
        path = weights / name
        typer.echo(f"  {name:26s} " + (f"{path.stat().st_size / 1e6:6.1f} MB" if path.is_file() else "missing"))
    card = weights / "card.json"
    if card.is_file():
        for key, value in json.loads(card.read_text()).items():
            typer.echo(f"  {key}: {value}")
    agent = weights / "agent" / "agent.json"
    if agent.is_file():
        meta = json.loads(agent.read_text())
        size = (agent.parent / "agent.safetensors").stat().st_size / 1e6
        config, notes = meta["config"], meta.get("notes", {})
        typer.echo(f"shipped agent: {agent.parent} ({size:.1f} MB), {config['algo']} on {config['obs']} x "
                   f"{config['frame_stack']} frames, {notes.get('dream_steps', '?')} dream steps")
        if "real_evaluation" in notes:
            typer.echo(f"  real evaluation: {notes['real_evaluation']}")


@app.command(epilog="Examples:\n\n  oniris-env check\n\n  oniris-env check --weights runs/bundle")
def check(
    weights: Annotated[Path | None, typer.Option(help="Weights directory (default: shipped).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "cpu",
) -> None:
    """Run Gymnasium's and Stable-Baselines3's env checkers on the dream env and the real pixel env."""
    import warnings

    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    import oniris_env  # noqa: F401  (registers the ids)

    dream_env = _make_dream(weights, device, None).unwrapped
    failures = 0
    for label, env in (
        ("OnirisLunarLander-v0", dream_env),
        ("OnirisLunarLanderReal-v0", gym.make("OnirisLunarLanderReal-v0").unwrapped),
    ):
        for checker_name, checker in (("gymnasium", gym_check), ("stable-baselines3", sb3_check)):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    checker(env)
                note = f" ({len(caught)} warnings: {caught[0].message})" if caught else ""
                typer.echo(f"ok    {label}: {checker_name} checker{note}")
            except Exception as e:  # report every checker, then fail
                failures += 1
                typer.echo(f"FAIL  {label}: {checker_name} checker: {e}")
    if failures:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
