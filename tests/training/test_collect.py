import itertools
import json

import numpy as np
import pytest

from oniris_env.spec import GameSpec, SpecMismatchError
from training.collect import collect_episodes, collect_to_total, run_episode
from training.dataset import EpisodeWindows, is_validation
from training.episodes import EpisodeFileError, load_episode, read_manifest
from training.policies import MAX_NOISE_HOLD, MAX_STICKY_HOLD, choose_policy, make_policy


@pytest.fixture(scope="module")
def dataset(record_episodes):
    return record_episodes("real", 3, seed=11)  # tests/conftest.py


def test_episode_files_round_trip_and_keep_the_terminal_transition(dataset):
    manifest = read_manifest(dataset)
    assert manifest["format_version"] == 1 and manifest["spec"] == GameSpec().to_dict()
    assert [e["index"] for e in manifest["episodes"]] == [0, 1, 2]
    for entry in manifest["episodes"]:
        assert set(entry) == {"file", "index", "seed", "policy", "length", "return", "outcome"}
        ep = load_episode(dataset / entry["file"])
        T = entry["length"]
        assert ep["frames"].shape == (T + 1, 64, 96, 3) and ep["frames"].dtype == np.uint8
        assert ep["states"].shape == (T + 1, 8)
        assert ep["actions"].shape == ep["rewards"].shape == ep["terminated"].shape == (T,)
        assert ep["terminated"][-1] or ep["truncated"][-1]  # the end is kept
        assert not (ep["terminated"][:-1] | ep["truncated"][:-1]).any()
        assert ep["rewards"].sum() == pytest.approx(entry["return"], rel=1e-5)
        assert entry["outcome"] in {"landed", "crashed", "flew_off", "timeout"}
        # replaying the stored seed reproduces the file exactly
        arrays, meta = run_episode(entry["seed"], "random")
        for k in ("frames", "actions", "rewards", "states", "terminated"):
            np.testing.assert_array_equal(arrays[k], ep[k])


def test_same_seed_reproduces_and_reruns_append(dataset, tmp_path):
    first = collect_episodes(tmp_path, 2, seed=11, policy="random", progress=False)
    before = (tmp_path / "ep_000000.npz").read_bytes()
    more = collect_episodes(tmp_path, 1, seed=11, policy="random", progress=False)
    assert [e["index"] for e in more] == [2]
    assert (tmp_path / "ep_000000.npz").read_bytes() == before  # never overwritten
    reference = read_manifest(dataset)["episodes"]
    assert [e["seed"] for e in first + more] == [e["seed"] for e in reference]
    assert len({e["seed"] for e in read_manifest(tmp_path)["episodes"]}) == 3


def test_workers_give_the_same_episodes(dataset, tmp_path):
    collect_episodes(tmp_path, 3, seed=11, policy="random", workers=2, progress=False)
    for name in ("ep_000000.npz", "ep_000002.npz"):
        a, b = load_episode(dataset / name), load_episode(tmp_path / name)
        np.testing.assert_array_equal(a["frames"], b["frames"])


def test_interrupted_run_adopts_finished_files(dataset, tmp_path):
    collect_episodes(tmp_path, 1, seed=11, policy="random", progress=False)
    manifest = read_manifest(tmp_path)
    (tmp_path / "ep_000001.npz").write_bytes((dataset / "ep_000001.npz").read_bytes())  # finished, not listed
    added = collect_episodes(tmp_path, 2, seed=11, policy="random", progress=False)
    assert [e["index"] for e in added] == [1, 2]
    assert read_manifest(tmp_path)["episodes"][:1] == manifest["episodes"]


def test_collect_to_total_finishes_an_interrupted_run_with_the_same_episodes(dataset, tmp_path):
    collect_episodes(tmp_path, 1, seed=11, policy="random", progress=False)  # interrupted after one episode
    added = collect_to_total(tmp_path, 3, seed=11, policy="random", progress=False)
    assert [e["index"] for e in added] == [1, 2]
    assert read_manifest(tmp_path)["episodes"] == read_manifest(dataset)["episodes"]
    assert collect_to_total(tmp_path, 3, seed=11, policy="random", progress=False) == []  # complete: nothing
    assert collect_to_total(tmp_path, 2, seed=11, policy="random", progress=False) == []  # more than enough
    with pytest.raises(ValueError, match="total must be >= 1"):
        collect_to_total(tmp_path, 0)


def test_spec_mismatch_is_refused_naming_both_specs(dataset):
    with pytest.raises(SpecMismatchError, match=r"action_repeat: expected 3, found 2"):
        collect_episodes(dataset, 1, seed=5, spec=GameSpec(action_repeat=3), progress=False)


def test_corrupt_file_raises_with_its_name_or_is_skipped(dataset, tmp_path):
    for name in ("manifest.json", "ep_000000.npz", "ep_000001.npz", "ep_000002.npz"):
        (tmp_path / name).write_bytes((dataset / name).read_bytes())
    bad = tmp_path / "ep_000001.npz"
    bad.write_bytes(bad.read_bytes()[: 2000])  # truncated
    with pytest.raises(EpisodeFileError, match="ep_000001.npz"):
        EpisodeWindows(tmp_path, 4, split="all")
    with pytest.warns(UserWarning, match="ep_000001.npz"):
        ds = EpisodeWindows(tmp_path, 4, split="all", skip_bad=True)
    assert ds.episodes == [0, 2] and len(ds.skipped) == 1
    with pytest.raises(EpisodeFileError, match="not found"):
        load_episode(tmp_path / "ep_000009.npz")


def test_manifest_is_plain_json(dataset):
    data = json.loads((dataset / "manifest.json").read_text())
    assert data["spec"]["action_repeat"] == 2 and data["kind"] == "frames"


def test_sticky_policy_holds_random_actions_for_up_to_max_hold_steps():
    def actions(seed: int) -> list[int]:
        act = make_policy(choose_policy("sticky", np.random.default_rng(seed)), np.random.default_rng(seed))
        return [act(np.zeros(8, np.float32)) for _ in range(2000)]

    got = actions(3)
    assert got == actions(3) and got != actions(4)  # reproducible from the generator
    assert set(got) == {0, 1, 2, 3}
    runs = [len(list(g)) for _, g in itertools.groupby(got)]
    # consecutive holds of the same action merge into one run, so a run may exceed one hold; most do not
    assert max(runs) > MAX_NOISE_HOLD  # longer than anything in the mix
    assert 0.5 * (MAX_STICKY_HOLD + 1) / 2 < len(got) / len(runs) < 2 * (MAX_STICKY_HOLD + 1) / 2


def test_validation_episodes_are_the_held_out_split_in_manifest_order(dataset, tmp_path):
    from training.evaluate.data import validation_episodes

    entries = read_manifest(dataset)["episodes"]
    fraction = 0.5
    want = [e for e in entries if is_validation(e["seed"], fraction)]
    got = validation_episodes(dataset, fraction)
    assert [g.seed for g in got] == [e["seed"] for e in want]
    assert [g.seed for g in validation_episodes(dataset, 1.0, limit=2)] == [e["seed"] for e in entries[:2]]
    first = validation_episodes(dataset, 1.0, limit=1)[0]
    arrays = load_episode(dataset / entries[0]["file"])
    assert np.array_equal(first.frames, arrays["frames"]) and np.array_equal(first.actions, arrays["actions"])
    assert first.length == len(arrays["actions"]) and first.outcome == entries[0]["outcome"]
    with pytest.raises(FileNotFoundError, match="oniris-env collect"):
        validation_episodes(tmp_path / "nothing")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_workers_exit_when_the_collecting_process_dies(tmp_path, sig):
    """Killing `collect --workers 2` (kill, timeout, the OOM killer) must not leave workers writing episodes and
    holding the caller's pipes open: the pipes reach end-of-file soon after."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    path = os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    out = tmp_path / "real"
    cmd = [sys.executable, "-m", "oniris_env", "collect", "--episodes", "200", "--workers", "2", "--out", str(out)]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=pipe, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("ep_*.npz")):  # the workers are recording
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.2)
        proc.send_signal(getattr(signal, sig))
        proc.communicate(timeout=15)  # end-of-file once every process holding the pipe (workers, helper) has exited
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # on failure, whatever the run left behind (its own process group)
        proc.wait()
