"""Record real LunarLander episodes behind pixels: `oniris-env collect`.

Episode `i` of a folder is determined by `(seed, i)` alone (its own seed is derived from both), so
`--seed S --episodes 40` writes the same 40 episodes as two runs of `--episodes 20` into one folder, and a
re-run appends new episodes instead of rewriting old ones. `collect_to_total` (`--total N`, and the pipeline)
collects only what a folder lacks to hold N episodes, so re-running an interrupted run finishes the same N.
Workers write their episode files atomically; the main process extends the manifest in index order, so an
interrupted run loses at most the episodes in flight, and files that were finished but not yet listed are checked
and adopted on the next run. Workers watch the main process and exit within a second of its death (SIGTERM,
SIGKILL, the OOM killer): no orphan goes on recording queued episodes or holding the caller's pipes open.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from oniris_env.real_env import episode_seed
from oniris_env.spec import DEFAULT_SPEC, GameSpec
from training.episodes import (
    EpisodeFileError,
    check_kind,
    episode_filename,
    load_episode,
    manifest_spec,
    new_manifest,
    read_manifest,
    save_episode,
    write_manifest,
)
from training.policies import POLICY_NAMES, choose_policy, make_policy

#: `policy` of `collect_episodes` for a trained agent: this prefix, then `shipped` or the agent's folder
#: (`agents.collect_policy`; imported only then).
AGENT_POLICY_PREFIX = "agent:"


def run_episode(
    seed: int, policy: str = "mix", spec: GameSpec = DEFAULT_SPEC, weights: str | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """Play one whole episode (terminal transition included); return its arrays and its manifest entry.

    `weights`: the bundle whose VAE an agent policy reads the frames through (None: the shipped one)."""
    from oniris_env.real_env import OnirisLunarLanderReal

    rng = np.random.default_rng(seed)
    if policy.startswith(AGENT_POLICY_PREFIX):  # a trained agent: reads the frames, samples its actions
        from agents.collect_policy import AgentPolicy

        agent = policy[len(AGENT_POLICY_PREFIX) :]
        act, label = AgentPolicy(agent, rng, weights), f"agent({agent})"
    else:
        choice = choose_policy(policy, rng)
        act_on_state = make_policy(choice, rng, spec.num_actions)
        act, label = (lambda state, frame: act_on_state(state)), choice.label()
    env = OnirisLunarLanderReal(action_repeat=spec.action_repeat)
    obs, info = env.reset(seed=seed)
    frames, states = [obs], [info["state"]]
    actions, rewards, terminated, truncated = [], [], [], []
    done = False
    while not done:
        action = act(info["state"], obs)
        obs, reward, term, trunc, info = env.step(action)
        frames.append(obs)
        states.append(info["state"])
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        done = term or trunc
    env.close()
    arrays = {
        "frames": np.stack(frames),
        "actions": np.asarray(actions, dtype=np.int64),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminated": np.asarray(terminated, dtype=bool),
        "truncated": np.asarray(truncated, dtype=bool),
        "states": np.stack(states).astype(np.float32),
        "seed": np.asarray(seed, dtype=np.int64),
        "policy": np.asarray(label),
        "outcome": np.asarray(info["outcome"]),
    }
    return arrays, _entry(arrays)


def _entry(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The manifest fields an episode file determines."""
    return {
        "seed": int(arrays["seed"]),
        "policy": str(arrays["policy"]),
        "length": len(arrays["actions"]),
        "return": float(arrays["rewards"].sum(dtype=np.float64)),
        "outcome": str(arrays["outcome"]),
    }


def _record(out_dir: str, index: int, seed: int, policy: str, spec_dict: dict, weights: str | None = None) -> dict:
    """Worker body: play episode `index` and write its file atomically."""
    arrays, meta = run_episode(seed, policy, GameSpec.from_dict(spec_dict), weights)
    name = episode_filename(index)
    save_episode(Path(out_dir) / name, arrays)
    return {"file": name, "index": index, **meta}


def _init_worker(parent: int) -> None:
    """Worker initializer: one torch thread per worker (N workers share the cores; an agent policy runs the VAE
    every step: 2 workers x 2 OpenMP threads on 2 cores ran at 8 frames/s, 2 x 1 thread at 237), and exit with the
    parent (`_exit_with_parent`)."""
    os.environ["OMP_NUM_THREADS"] = "1"  # read when torch is first imported, in this worker
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _exit_with_parent(parent)


def _exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """A daemon thread ends this process as soon as process `parent` is gone (the worker is then re-parented, so
    `os.getppid()` changes). Portable, unlike Linux's PR_SET_PDEATHSIG."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)  # at once: no clean-up that could wait on the dead parent

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _adopt(path: Path, index: int, seed: int) -> dict | None:
    """Manifest entry for a finished-but-unlisted file of an interrupted run, or None if there is none."""
    if not path.exists():
        return None
    arrays = load_episode(path)
    if int(arrays["seed"]) != seed:
        raise EpisodeFileError(
            f"{path}: exists with seed {int(arrays['seed'])} but episode {index} should have seed {seed}; "
            "refusing to overwrite it (move it away or collect into another folder)"
        )
    return {"file": path.name, "index": index, **_entry(arrays)}


def collect_episodes(
    out_dir: Path | str,
    episodes: int,
    seed: int = 0,
    policy: str = "mix",
    workers: int = 1,
    spec: GameSpec = DEFAULT_SPEC,
    progress: bool = True,
    weights: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Append `episodes` new episodes to `out_dir` and return their manifest entries (`weights`: the bundle whose
    VAE an agent policy reads through; None: the shipped one).

    Raises `SpecMismatchError` when the folder holds episodes recorded with another spec, `EpisodeFileError` (a
    ValueError) when it is not an episode folder (e.g. latents).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if policy not in POLICY_NAMES and not policy.startswith(AGENT_POLICY_PREFIX):
        raise ValueError(f"unknown policy {policy!r}; choose one of {POLICY_NAMES} or {AGENT_POLICY_PREFIX}PATH")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    if manifest is None:
        manifest = new_manifest(spec)
    else:
        check_kind(manifest, "frames", out)
        spec.check_matches(manifest_spec(manifest), f"dataset {out}")
    start = len(manifest["episodes"])
    used = {e["seed"] for e in manifest["episodes"]}
    plan = [(start + i, episode_seed(seed, start + i)) for i in range(episodes)]
    if clash := [s for _, s in plan if s in used]:
        raise ValueError(f"seeds {clash[:3]} are already in {out}; choose another --seed")

    vae_weights = None if weights is None else str(weights)
    done: dict[int, dict] = {}
    todo = []
    for index, ep_seed in plan:
        adopted = _adopt(out / episode_filename(index), index, ep_seed)
        if adopted is not None:
            done[index] = adopted
        else:
            todo.append((index, ep_seed))

    added: list[dict] = []
    bar = tqdm(total=episodes, initial=len(done), desc="collect", unit="ep", disable=not progress)
    frames, started = 0, time.perf_counter()

    def commit() -> None:  # extend the manifest with the finished prefix, in index order
        nonlocal frames
        while (nxt := start + len(added)) in done:
            entry = done.pop(nxt)
            manifest["episodes"].append(entry)
            added.append(entry)
            frames += entry["length"] + 1
        write_manifest(out, manifest)
        bar.set_postfix(frames_per_s=f"{frames / max(time.perf_counter() - started, 1e-9):.0f}")

    commit()
    try:
        if workers == 1:
            for index, ep_seed in todo:
                done[index] = _record(str(out), index, ep_seed, policy, spec.to_dict(), vae_weights)
                bar.update()
                commit()
        else:
            with ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),)
            ) as pool:
                pending: set[Future] = {
                    pool.submit(_record, str(out), index, ep_seed, policy, spec.to_dict(), vae_weights)
                    for index, ep_seed in todo
                }
                try:
                    while pending:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in finished:
                            entry = future.result()
                            done[entry["index"]] = entry
                            bar.update()
                        commit()
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
    finally:
        bar.close()
    return added


def collect_to_total(
    out_dir: Path | str,
    total: int,
    seed: int = 0,
    policy: str = "mix",
    workers: int = 1,
    spec: GameSpec = DEFAULT_SPEC,
    progress: bool = True,
    weights: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Append episodes until `out_dir` holds `total` of them; return the new entries ([] when it already holds
    `total` or more). Episode i is determined by (seed, i), so finishing a partial folder gives the same episodes
    as one run of `total`. Raises as `collect_episodes`."""
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    manifest = read_manifest(out_dir)
    have = len(manifest["episodes"]) if manifest is not None else 0
    if have >= total:
        return []
    return collect_episodes(out_dir, total - have, seed, policy, workers, spec, progress, weights)
