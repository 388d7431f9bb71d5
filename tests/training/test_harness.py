"""The trainers' shared harness: random streams continue exactly (in every world size the restore allows), and the
metrics log keeps only the steps a checkpoint holds."""

import json

import numpy as np
import torch

from training.distributed import DistributedContext
from training.harness import MetricsLog, RandomStreams, StreamState


def draws(streams: RandomStreams) -> tuple[float, float]:
    noise = torch.randn(1, generator=streams.noise) if streams.noise is not None else torch.randn(1)
    return float(streams.data.random()), float(noise)


def test_a_saved_state_continues_both_streams_exactly():
    for noise in (torch.Generator().manual_seed(1), None):  # the world model's generator, the VAE's global one
        torch.manual_seed(1)
        streams = RandomStreams(np.random.default_rng(1), noise)
        draws(streams)
        saved = streams.state()
        expected = [draws(streams) for _ in range(3)]
        streams.set_state(saved)
        assert [draws(streams) for _ in range(3)] == expected


def test_restore_picks_each_ranks_own_streams_or_fresh_ones():
    states = [
        StreamState(np.random.default_rng(r).bit_generator.state, torch.Generator().manual_seed(r).get_state())
        for r in range(3)
    ]

    def restored(rank: int, world_size: int, ranks: list[StreamState] | None) -> float:
        streams = RandomStreams(np.random.default_rng(99), torch.Generator())
        ctx = DistributedContext(rank=rank, world_size=world_size)
        streams.restore(ctx, seed=ctx.rank_seed(0), step=5, main=states[0], ranks=ranks)
        return draws(streams)[0]

    def first_draw(state: StreamState) -> float:
        streams = RandomStreams(np.random.default_rng(0), torch.Generator())
        streams.set_state(state)
        return draws(streams)[0]

    assert restored(2, 3, states) == first_draw(states[2])  # the same world size: every rank its own streams
    assert restored(0, 1, None) == restored(0, 2, states[:1]) == first_draw(states[0])  # rank 0 continues rank 0's
    fresh = restored(1, 2, states)  # 2 ranks saved by 3: fresh, per rank and step
    assert fresh == float(np.random.default_rng([DistributedContext(1, 0, 2).rank_seed(0), 5]).random())


def test_metrics_log_keeps_the_steps_a_checkpoint_holds(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, DistributedContext())
    for step in (2, 4, 6):
        log.append({"step": step, "loss": 1.0 / step})
    assert [r["step"] for r in log.start(resumed_step=4)] == [2, 4]
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4]
    MetricsLog(path, DistributedContext(rank=1, world_size=2)).append({"step": 6})  # only rank 0 writes
    assert len(path.read_text().splitlines()) == 2
    assert log.start(resumed_step=None) == [] and not path.exists()  # a fresh run starts a new log
