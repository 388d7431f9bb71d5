"""The start-context bank: episode starts in dataset order, without the starts whose lander has left the screen."""

import numpy as np
import pytest

from training.bank import build_start_contexts
from training.episodes import load_episode, read_manifest, save_episode
from training.lander import lander_centroid


@pytest.fixture(scope="module")
def dataset(record_episodes):
    return record_episodes("bank", 3, seed=5)  # tests/conftest.py


def test_starts_without_a_visible_lander_are_skipped(dataset):
    contexts, _ = build_start_contexts(dataset, length=4)
    entries = read_manifest(dataset)["episodes"]
    assert len(contexts) == len(entries)
    first = load_episode(dataset / entries[0]["file"])
    np.testing.assert_array_equal(contexts.frames[0], first["frames"][:4])
    assert all(lander_centroid(f) is not None for c in contexts.frames for f in c)
    # the lander of episode 0 leaves the screen (its 3rd frame is blanked): that start is dropped, unless asked
    first["frames"][2] = 0
    save_episode(dataset / entries[0]["file"], first)
    kept, _ = build_start_contexts(dataset, length=4)
    assert len(kept) == len(entries) - 1
    np.testing.assert_array_equal(kept.frames[0], load_episode(dataset / entries[1]["file"])["frames"][:4])
    every, _ = build_start_contexts(dataset, length=4, require_lander=False)
    assert len(every) == len(entries) and not every.frames[0, 2].any()
