"""Shared test settings: headless pygame, no GPU ever needed, and the `one_thread` fixture.

A test module of small models opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`.
"""

import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the test, restored after it: tiny models are overhead-bound, so threads only
    add contention (and a busy shared CPU makes them slower still)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def interrupt_call(monkeypatch):
    """`interrupt_call(module, name, n)`: the `n`-th call of `module.name` raises KeyboardInterrupt (as Ctrl-C
    would); every other call, before and after, runs the real function."""

    def patch(module, name: str, n: int) -> None:
        real, calls = getattr(module, name), [0]

        def interrupted(*args, **kwargs):
            calls[0] += 1
            if calls[0] == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, interrupted)

    return patch


@pytest.fixture(scope="session")
def record_episodes(tmp_path_factory):
    """`record_episodes(name, episodes, seed)`: a new folder of `episodes` real episodes of the random policy
    (`training.collect.collect_episodes`), for a test module's own dataset fixture."""
    from training.collect import collect_episodes

    def record(name: str, episodes: int, seed: int):
        root = tmp_path_factory.mktemp(name)
        collect_episodes(root, episodes, seed=seed, policy="random", progress=False)
        return root

    return record
