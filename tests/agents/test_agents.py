"""Agents: the real-game observation pipeline against one-pass encoding, evaluation against a plain game loop,
dream training (checkpoints, selection accounting, resume, Ctrl-C), saved agents, horizon truncation, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from agents.actors import HeuristicActor, PolicyActor, RandomActor, load_agent, load_run_checkpoint
from agents.config import EVALUATION_SEED, SELECTION_SEED, AgentConfig, agent_preset
from agents.envs import dream_vec_env
from agents.evaluate import evaluate_dream, evaluate_real
from agents.real_vec_env import RealVecEnv
from agents.train import ConfigChangedError, RunCallback, train_agent
from oniris_env.bundle import load_bundle, save_random_bundle
from oniris_env.cli import app
from oniris_env.real_env import OnirisLunarLanderReal, episode_seed

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_bundle(tmp_path_factory.mktemp("agents") / "bundle")


def test_real_latents_stream_equal_one_pass_encoding_of_the_recorded_frames(bundle: Path) -> None:
    """Two games, three episodes: the second game restarts its stream while the first one goes on."""
    vae = load_bundle(bundle).vae
    seeds = [episode_seed(11, i) for i in range(3)]
    venv = RealVecEnv(2, "latent", vae, seeds)
    obs = venv.reset()
    rng = np.random.default_rng(0)
    latents: list[list[np.ndarray]] = [[obs[0]], [obs[1]]]
    actions: list[list[int]] = [[], []]
    episodes: list[tuple[int, list[int], np.ndarray]] = []
    current = [seeds[0], seeds[1]]
    while len(episodes) < 3:
        a = rng.integers(4, size=2)
        obs, _, dones, infos = venv.step(a)
        for i in range(2):
            if venv.idle[i] and not dones[i]:
                continue
            actions[i].append(int(a[i]))
            if dones[i]:
                latents[i].append(infos[i]["terminal_observation"])
                episodes.append((current[i], actions[i], np.stack(latents[i])))
                current[i], actions[i], latents[i] = int(venv.episode_seeds[i]), [], [obs[i]]
            else:
                latents[i].append(obs[i])
    assert sorted(s for s, _, _ in episodes) == sorted(seeds)
    for seed, acts, streamed in episodes:
        game = OnirisLunarLanderReal()
        frames = [game.reset(seed=seed)[0]] + [game.step(a)[0] for a in acts]
        one_pass = vae.encode_frames(np.stack(frames)[None])[0].numpy()  # (T + 1, C, h, w)
        assert streamed.shape == one_pass.shape
        np.testing.assert_allclose(streamed, one_pass, atol=1e-5)


def _plain_heuristic_returns(seeds: list[int]) -> list[float]:
    """Gymnasium's LunarLander-v3 stepped by hand with the same action repeat (2) and the heuristic pilot."""
    from oniris_env.real_env import heuristic_action

    returns = []
    for seed in seeds:
        env = gym.make("LunarLander-v3")
        state, _ = env.reset(seed=seed)
        total, done, physics = 0.0, False, 0
        while not done:
            action = heuristic_action(state)
            for _ in range(2):
                state, r, terminated, truncated, _ = env.step(action)
                total, physics = total + r, physics + 1
                done = terminated or truncated
                if done:
                    break
        returns.append(total)
    return returns


def test_real_evaluation_matches_a_plain_game_loop() -> None:
    result = evaluate_real(HeuristicActor(), 3, seed=123, num_envs=2)
    expected = _plain_heuristic_returns([episode_seed(123, i) for i in range(3)])
    np.testing.assert_allclose(result.returns, expected, rtol=1e-6)
    assert set(result.outcomes) <= {"landed", "crashed", "flew_off", "timeout"}
    summary = result.summary()
    assert summary["episodes"] == 3 and summary["steps"] == sum(result.lengths)
    assert sum(summary["outcomes"].values()) == 3


def test_idle_games_play_no_real_step_beyond_the_seeds() -> None:
    venv = RealVecEnv(4, "state", seeds=[episode_seed(5, i) for i in range(3)])
    venv.reset()
    assert venv.idle.tolist() == [False, False, False, True]
    rng, lengths, finished = np.random.default_rng(0), [0, 0, 0, 0], []
    while len(finished) < 3:
        obs, rewards, dones, infos = venv.step(rng.integers(4, size=4))
        assert not obs[venv.idle].any() and not rewards[3] and not dones[3]
        for i in range(4):
            if not (venv.idle[i] and not dones[i]):
                lengths[i] += 1
            if dones[i]:
                finished.append(lengths[i])
                lengths[i] = 0
    assert venv.idle.all()
    assert venv.steps_played == sum(finished)


def test_evaluation_and_selection_seeds_never_meet_the_training_data() -> None:
    data = {episode_seed(base, i) for base in (0, 7) for i in range(20_000)}
    evaluation = {episode_seed(EVALUATION_SEED, i) for i in range(1000)}
    selection = {episode_seed(SELECTION_SEED, i) for i in range(1000)}
    assert len(evaluation) == len(selection) == 1000
    assert not evaluation & data and not selection & data and not evaluation & selection


def test_horizon_truncation_hands_sb3_the_terminal_observation(bundle: Path) -> None:
    config = replace(agent_preset("tiny"), horizon=3, frame_stack=2)
    venv = dream_vec_env(config, bundle, "cpu", num_envs=2, seed=0, termination_threshold=1 - 1e-9)  # never fires
    obs = venv.reset()
    shape = obs.shape[1:]
    prev = obs
    for t in range(3):
        obs, _, dones, infos = venv.step(np.array([2, 0]))
        if t < 2:
            assert not dones.any()
            prev = obs
    assert dones.all()  # both truncate at H = 3
    half = shape[-1] // 2
    for i in range(2):
        assert infos[i]["TimeLimit.truncated"] is True
        term = infos[i]["terminal_observation"]
        assert term.shape == shape
        np.testing.assert_array_equal(term[..., :half], prev[i][..., half:])  # the stack of the finished episode
        assert not np.array_equal(term, obs[i])
        assert not obs[i][..., :half].any()  # a new episode starts with an empty stack


def test_dream_training_checkpoints_selects_resumes_and_reloads(bundle: Path, tmp_path: Path) -> None:
    config = agent_preset("tiny")
    out = tmp_path / "run"
    summary = train_agent(config, out, bundle, "cpu", progress=False)
    assert summary["steps"] >= config.total_steps
    sel = json.loads((out / "selection.json").read_text())
    assert len(sel["evaluations"]) == 2  # at steps 32 and 64
    assert sel["episodes_used"] == sum(e["episodes"] for e in sel["evaluations"]) == 2
    assert sel["real_steps_used"] == sum(e["real_steps"] for e in sel["evaluations"]) > 0
    best = max(sel["evaluations"], key=lambda e: e["mean_return"])
    assert sel["best"] == best
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all(m["rollout_seconds"] > 0 for m in metrics)

    # the exported agent (safetensors + JSON) acts like the SB3 checkpoint it came from
    saved, checkpoint = load_agent(out / "best"), load_run_checkpoint(out / "best.zip")
    obs = np.random.default_rng(0).normal(size=(16, *saved.policy.observation_space.shape)).astype(np.float32)
    np.testing.assert_array_equal(saved.act(obs), checkpoint.act(obs))
    weights = out / "best" / "agent.safetensors"  # a damaged file is named, not loaded
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="agent.safetensors is damaged"):
        load_agent(out / "best")

    # a longer run resumes from the checkpoint; another config is refused
    longer = replace(config, total_steps=96)
    assert train_agent(longer, out, bundle, "cpu", progress=False)["steps"] >= 96
    assert len(json.loads((out / "selection.json").read_text())["evaluations"]) == 3
    with pytest.raises(ConfigChangedError, match="learning_rate"):
        train_agent(replace(longer, learning_rate=1e-3), out, bundle, "cpu", progress=False)


def test_interrupted_training_saves_and_resumes(bundle: Path, tmp_path: Path, monkeypatch) -> None:
    config = replace(agent_preset("tiny"), eval_every=0, checkpoint_every=10_000)
    out = tmp_path / "run"
    original = RunCallback._on_step

    def interrupt(self) -> bool:
        if self.model.num_timesteps >= 32:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(RunCallback, "_on_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_agent(config, out, bundle, "cpu", progress=False)
    assert (out / "checkpoint.zip").is_file()  # saved although no periodic checkpoint was due
    monkeypatch.setattr(RunCallback, "_on_step", original)
    from stable_baselines3 import PPO

    assert PPO.load(out / "checkpoint.zip").num_timesteps == 32
    assert train_agent(config, out, bundle, "cpu", progress=False)["steps"] == 64


def test_dream_evaluation_and_state_actors(bundle: Path) -> None:
    result = evaluate_dream(RandomActor(0), 4, seed=1, num_envs=2, weights=bundle, device="cpu", denoise_steps=2)
    assert result.episodes == 4 and result.world == "dream"
    with pytest.raises(ValueError, match="true state"):
        evaluate_dream(HeuristicActor(), 2, seed=1, weights=bundle)
    with pytest.raises(ValueError, match="only in the real game"):
        AgentConfig(obs="state", world="dream")


def test_cli_agent_eval_writes_the_promised_json(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "heuristic.json"
    result = CliRunner().invoke(
        app, ["agent", "eval", "--agent", "heuristic", "--env", "real", "--episodes", "2", "--seed", "3",
              "--json", str(out), "--threads", "1"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("mean_return", "std_return", "returns", "outcomes", "episodes", "seed"):
        assert key in data
    assert data["episodes"] == 2 and data["seed"] == 3 and len(data["returns"]) == 2
    bad = CliRunner().invoke(app, ["agent", "eval", "--agent", str(tmp_path / "nothing"), "--episodes", "1"])
    assert bad.exit_code == 2 and "no saved agent" in bad.output


def test_cli_agent_eval_samples_the_shipped_agent_reproducibly(tmp_path: Path) -> None:
    """`--sample` draws each action from the policy, seeded by --seed: the same command gives the same episodes."""
    outs = []
    for name in ("a.json", "b.json"):
        outs.append(tmp_path / name)
        result = CliRunner().invoke(
            app, ["agent", "eval", "--agent", "shipped", "--env", "real", "--episodes", "2", "--seed", "11",
                  "--sample", "--json", str(outs[-1]), "--threads", "1"],
        )
        assert result.exit_code == 0, result.output
    a, b = (json.loads(o.read_text()) for o in outs)
    assert a["returns"] == b["returns"] and a["lengths"] == b["lengths"] and len(a["returns"]) == 2
    bad = CliRunner().invoke(app, ["agent", "eval", "--agent", "random", "--sample", "--episodes", "1"])
    assert bad.exit_code == 2 and "--sample needs a trained agent" in bad.output


def test_policy_actor_reads_its_config() -> None:
    actor = PolicyActor(policy=None, config=AgentConfig(frame_stack=3))
    assert actor.obs == "latent" and actor.frame_stack == 3


def test_saved_agent_round_trips_with_the_file_mode_of_its_neighbours(tmp_path: Path) -> None:
    import os

    from gymnasium import spaces

    from agents.actors import AGENT_CONFIG, AGENT_WEIGHTS, _build_policy, save_agent

    config, space = AgentConfig(), spaces.Box(-np.inf, np.inf, (8,), dtype=np.float32)
    policy = _build_policy(config, space)
    old = os.umask(0o022)
    try:
        out = save_agent(policy, config, space, tmp_path / "agent")
    finally:
        os.umask(old)
    assert {(out / name).stat().st_mode & 0o777 for name in (AGENT_WEIGHTS, AGENT_CONFIG)} == {0o644}  # not 0600
    obs = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_array_equal(load_agent(out).act(obs), PolicyActor(policy, config).act(obs))


def test_pilot_sees_what_the_vec_env_pipeline_sees(bundle: Path) -> None:
    """The pilot (play, videos) and `real_vec_env` + `VecFrameStack` (training, evaluation) give the same
    stacked observations on the same real episode."""
    from agents.envs import real_vec_env
    from agents.pilot import AgentPilot

    vae = load_bundle(bundle).vae
    config = AgentConfig(world="real", frame_stack=3)
    seed = episode_seed(21, 0)
    venv = real_vec_env(config, [seed], num_envs=1, vae=vae)
    pilot = AgentPilot(PolicyActor(None, config), vae)
    game = OnirisLunarLanderReal()
    pilot.reset(game, game.reset(seed=seed)[0])
    np.testing.assert_allclose(pilot.obs, venv.reset()[0], atol=1e-5)
    for action in [2, 2, 1, 0, 3, 2]:
        pilot.observe(game, game.step(action)[0])
        obs = venv.step(np.array([action]))[0]
        np.testing.assert_allclose(pilot.obs, obs[0], atol=1e-5)


def test_cli_agent_train_then_fly_it_in_dream_and_play(bundle: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(app, ["agent", "train", "--preset", "tiny", "--out", str(run), "--weights", str(bundle),
                                  "--device", "cpu", "--no-progress", "--threads", "1"])
    assert trained.exit_code == 0, trained.output
    assert "selection used 2 real episodes" in trained.output
    video = tmp_path / "agent.gif"
    dreamt = runner.invoke(app, ["dream", "--policy", "agent", "--agent", str(run / "best"), "--steps", "4",
                                 "--weights", str(bundle), "--device", "cpu", "--out", str(video)])
    assert dreamt.exit_code == 0, dreamt.output
    assert video.stat().st_size > 0
    played = runner.invoke(app, ["play", "--agent", str(run / "best"), "--side-by-side", "--max-steps", "4",
                                 "--weights", str(bundle), "--device", "cpu", "--fps", "1000"])
    assert played.exit_code == 0, played.output
    assert played.output.startswith("4 steps")
    dreams = runner.invoke(app, ["agent", "eval", "--agent", str(run / "best"), "--env", "dream", "--episodes", "2",
                                 "--weights", str(bundle), "--device", "cpu", "--denoise-steps", "2"])
    assert dreams.exit_code == 0, dreams.output
    assert "dream: 2 episodes" in dreams.output


def test_collect_with_the_shipped_agent_records_its_sampled_flights(tmp_path: Path) -> None:
    """`collect --policy agent`: every recorded action is the agent's sample, recomputed here from the recorded
    frames encoded in one pass (not streamed) with a fresh generator of the episode's seed."""
    from agents.actors import make_actor
    from agents.pilot import FrameStack
    from training.episodes import load_episode, read_manifest

    out = tmp_path / "flights"
    result = CliRunner().invoke(
        app, ["collect", "--episodes", "1", "--out", str(out), "--seed", "5", "--policy", "agent", "--agent",
              "shipped", "--no-preview"],
    )
    assert result.exit_code == 0, result.output
    entry = read_manifest(out)["episodes"][0]
    assert entry["policy"] == "agent(shipped)"
    episode = load_episode(out / entry["file"])
    frames, actions = episode["frames"], episode["actions"]

    actor, vae = make_actor("shipped"), load_bundle(None).vae
    latents = vae.encode_frames(frames[None])[0].numpy()
    stack = FrameStack(actor.frame_stack, latents.shape[1:])
    rng = np.random.default_rng(int(episode["seed"]))
    expected = []
    for t in range(len(actions)):
        obs = stack.reset(latents[0]) if t == 0 else stack.push(latents[t])
        with torch.no_grad():
            probs = actor.policy.get_distribution(torch.as_tensor(obs[None])).distribution.probs[0].double().numpy()
        expected.append(int(rng.choice(4, p=probs / probs.sum())))
    assert actions.tolist() == expected

    runner = CliRunner()
    for args, message in (
        (["--policy", "agent"], "--policy agent needs --agent"),
        (["--agent", "shipped"], "--agent is read only with --policy agent"),
        (["--policy", "agent", "--agent", str(tmp_path / "nothing")], "no saved agent"),
    ):
        bad = runner.invoke(app, ["collect", "--episodes", "1", "--out", str(tmp_path / "bad"), *args])
        assert bad.exit_code == 2 and message in bad.output, bad.output
