import numpy as np
import pytest

from training.dataset import EpisodeWindows, is_validation
from training.episodes import load_episode, read_manifest


@pytest.fixture(scope="module")
def dataset(record_episodes):
    return record_episodes("windows", 4, seed=3)  # tests/conftest.py


def test_windows_are_aligned_slices_and_may_end_on_the_terminal_step(dataset):
    ds = EpisodeWindows(dataset, window=8, split="all")
    entries = read_manifest(dataset)["episodes"]
    assert len(ds) == sum(e["length"] + 1 - 8 + 1 for e in entries)
    ep = load_episode(dataset / entries[0]["file"])
    first, last = ds[0], ds[entries[0]["length"] + 1 - 8]
    np.testing.assert_array_equal(first["frames"], ep["frames"][:8])
    np.testing.assert_array_equal(first["actions"], ep["actions"][:7])
    np.testing.assert_array_equal(last["frames"], ep["frames"][-8:])
    np.testing.assert_array_equal(last["rewards"], ep["rewards"][-7:])
    assert last["terminated"][-1] or last["truncated"][-1]
    assert first["frames"].shape == (8, 64, 96, 3) and first["actions"].shape == (7,)


def test_split_is_by_episode_deterministic_and_disjoint(dataset):
    train = EpisodeWindows(dataset, 4, split="train", val_fraction=0.5)
    val = EpisodeWindows(dataset, 4, split="val", val_fraction=0.5)
    assert set(train.episodes).isdisjoint(val.episodes)
    assert sorted(train.episodes + val.episodes) == [0, 1, 2, 3]
    seeds = [e["seed"] for e in read_manifest(dataset)["episodes"]]
    assert val.episodes == [i for i, s in enumerate(seeds) if is_validation(s, 0.5)]
    assert EpisodeWindows(dataset, 4, split="val", val_fraction=0.5).episodes == val.episodes


def test_sample_batch_and_errors(dataset, tmp_path):
    ds = EpisodeWindows(dataset, 5, split="all")
    batch = ds.sample_batch(np.random.default_rng(0), 6)
    assert batch["frames"].shape == (6, 5, 64, 96, 3) and batch["terminated"].shape == (6, 4)
    with pytest.raises(ValueError, match="no window of 10000"):
        EpisodeWindows(dataset, 10_000, split="all").sample_batch(np.random.default_rng(0), 1)
    with pytest.raises(FileNotFoundError, match="oniris-env collect"):
        EpisodeWindows(tmp_path / "nothing", 4)
    with pytest.raises(ValueError, match="split"):
        EpisodeWindows(dataset, 4, split="test")


def test_edge_fractions_draw_episode_starts_and_ends(dataset):
    ds = EpisodeWindows(dataset, 5, split="all")
    entries = read_manifest(dataset)["episodes"]
    first_frames = {load_episode(dataset / e["file"])["frames"][0].tobytes() for e in entries}
    # fractions 0 leave uniform sampling untouched, draw for draw
    a = ds.sample_batch(np.random.default_rng(1), 8)
    b = ds.sample_batch(np.random.default_rng(1), 8, start_fraction=0.0, end_fraction=0.0)
    np.testing.assert_array_equal(a["frames"], b["frames"])
    ends = ds.sample_batch(np.random.default_rng(2), 32, end_fraction=1.0)
    assert (ends["terminated"][:, -1] | ends["truncated"][:, -1]).all()
    starts = ds.sample_batch(np.random.default_rng(3), 32, start_fraction=1.0)
    assert all(clip[0].tobytes() in first_frames for clip in starts["frames"])
    mixed = ds.sample_batch(np.random.default_rng(4), 2000, start_fraction=0.25, end_fraction=0.25)
    ended = (mixed["terminated"][:, -1] | mixed["truncated"][:, -1]).mean()
    uniform_ended = len(entries) / len(ds)  # one last window per episode
    assert 0.25 <= ended <= 0.25 + uniform_ended + 0.05
    with pytest.raises(ValueError, match="sum <= 1"):
        ds.sample_batch(np.random.default_rng(0), 1, start_fraction=0.6, end_fraction=0.6)
