"""Teacher-forced heads: the batched, cached pass against the whole-model DART forward on each episode alone."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from oniris_env.bundle import load_bundle, save_random_bundle
from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD, threshold_logit
from oniris_env.world_model import frame_actions
from training.evaluate.data import record_episodes
from training.evaluate.long_dream import real_found_fraction
from training.evaluate.open_loop import terminal_replays
from training.evaluate.teacher_forced import head_outputs, teacher_forced


@pytest.fixture(scope="module")
def bundle_and_episodes(tmp_path_factory):
    bundle = load_bundle(save_random_bundle(tmp_path_factory.mktemp("bundle") / "weights"))
    # real episodes cut to 30, 22 and 14 transitions (the last keeps its terminal step): padding is exercised
    full = record_episodes([11, 12, 13], progress=False)
    episodes = [_cut(full[0], 30), _cut(full[1], 22), _cut(full[2], 14, from_end=True)]
    assert episodes[2].terminated[-1]
    return bundle, episodes


def _cut(e, n, from_end=False):
    s = slice(e.length - n, e.length) if from_end else slice(0, n)
    f = slice(e.length - n, e.length + 1) if from_end else slice(0, n + 1)
    return replace(e, frames=e.frames[f], actions=e.actions[s], rewards=e.rewards[s], terminated=e.terminated[s])


@torch.no_grad()
def test_head_outputs_match_the_dart_forward_of_each_episode(bundle_and_episodes):
    bundle, episodes = bundle_and_episodes
    wm = bundle.world_model
    sigma = 1e-6  # the context noise is then too small to matter, so both paths see the same frames
    rewards, logits = head_outputs(bundle, episodes, seed=0, sigma=sigma)
    for e, r, lg in zip(episodes, rewards, logits, strict=True):
        z = bundle.vae.encode_frames(e.frames[None])  # (1, L + 1, C, h, w)
        n = z.shape[1]
        cond = frame_actions(torch.as_tensor(e.actions[None]), wm.config.start_action)
        out = wm(z, torch.full((1, n), sigma), z, torch.ones(1, n), cond, backend="oracle")
        assert r.shape == lg.shape == (e.length,)
        torch.testing.assert_close(torch.as_tensor(lg), out.term_logits[0, 1:].float(), atol=1e-4, rtol=1e-4)
        ref_r = (torch.softmax(out.reward_logits[0, 1:].float(), -1) * wm.bins).sum(-1)
        torch.testing.assert_close(
            torch.as_tensor(r), torch.sign(ref_r) * torch.expm1(ref_r.abs()), atol=1e-4, rtol=1e-4
        )


def test_teacher_forced_replays_align_with_the_episodes(bundle_and_episodes):
    bundle, episodes = bundle_and_episodes
    rep = teacher_forced(bundle, episodes, seed=0)
    assert rep.outcomes == [e.outcome for e in episodes]
    for e, p, t, rr, rt in zip(
        episodes, rep.pred_rewards, rep.pred_terminated, rep.real_rewards, rep.real_terminated, strict=True
    ):
        assert p.shape == t.shape == (e.length,) and t.dtype == bool
        assert np.array_equal(rr, e.rewards) and np.array_equal(rt, e.terminated)


def test_real_found_fraction_of_the_long_dream_policies():
    frac, resets = real_found_fraction("random", 150, seed=0)
    assert 0.5 < frac <= 1.0 and resets >= 1  # random play crashes within ~100 steps; the lander is mostly seen
    with pytest.raises(ValueError, match="policy"):
        real_found_fraction("human", 10, seed=0)


def test_replays_keep_the_logits_behind_their_terminations(bundle_and_episodes):
    """Teacher-forced and terminal-anchored replays keep the termination logits, and thresholding them at the
    dream's threshold gives the recorded terminations (so other thresholds can be judged without dreaming again)."""
    bundle, episodes = bundle_and_episodes
    cut = threshold_logit(DEFAULT_TERMINATION_THRESHOLD)
    for rep in (teacher_forced(bundle, episodes, seed=0), terminal_replays(bundle, episodes, steps=6, seed=0)):
        assert len(rep.pred_term_logits) == len(rep.pred_terminated) == len(rep.real_terminated) > 0
        for lg, t in zip(rep.pred_term_logits, rep.pred_terminated, strict=True):
            assert lg.shape == t.shape and lg.dtype == np.float32
            assert np.array_equal(t, lg > cut)
