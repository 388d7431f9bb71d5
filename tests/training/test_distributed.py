"""Scale-out: 2 CPU ranks under `torchrun` end with identical weights, and checkpoints move between one process
and DDP in both directions. Also the pieces: the one-process context, episode shards, key prefixes, `large`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from oniris_env.vae import VAE_PRESETS, GroupCausalVAE, load_vae
from oniris_env.world_model import WorldModel, WorldModelConfig, frame_actions, load_world_model
from training.dataset import EpisodeWindows
from training.distributed import DistributedContext, param_digest, strip_wrapper_prefixes
from training.world_model import TrainWorldModelConfig, train_world_model
from training.world_model.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180


def _write_latent_dataset(root: Path, episodes: int) -> None:
    """The synthetic latent episodes of test_world_model_train.py (one definition of the tiny dataset)."""
    spec = importlib.util.spec_from_file_location(
        "_wm_train_tests", Path(__file__).with_name("test_world_model_train.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_latent_dataset(root, episodes=episodes)


def torchrun_command(*args: str, ranks: int = 2) -> tuple[list[str], dict[str, str]]:
    """`python -m torch.distributed.run --standalone --nproc_per_node=RANKS -m oniris_env ARGS` (1 thread each),
    and its environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={ranks}",
        "-m",
        "oniris_env",
        *args,
    ]
    return cmd, env


ABORTED = ("terminate called", "SIGABRT", "exitcode  : -6")
"""What a rank that aborts at exit (process-group threads torn down during interpreter shutdown) leaves in the log."""


def torchrun(*args: str, ranks: int = 2, returncode: int = 0) -> subprocess.CompletedProcess:
    """Run `torchrun_command(*args)` to the end; it must exit with `returncode` (torchrun's: 1 when a rank failed)
    and no rank may abort."""
    cmd, env = torchrun_command(*args, ranks=ranks)
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    log = f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert result.returncode == returncode and not any(s in result.stderr for s in ABORTED), log
    return result


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_one_process_context_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = DistributedContext.from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.device, ctx.is_main, ctx.distributed) == (0, 1, "cpu", True, False)
    module = torch.nn.Linear(2, 2)
    assert ctx.wrap(module) is module and ctx.rank_seed(7) == 7 and ctx.all_gather(3) == [3]
    assert ctx.broadcast("x") == "x" and ctx.mean({"a": 1.5}) == {"a": 1.5}
    ctx.barrier()
    ctx.destroy()
    with pytest.raises(ValueError, match="rank"):
        DistributedContext(rank=2, world_size=2)


def test_destroy_never_hides_the_runs_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    """`destroy` runs in the trainers' `finally`: a failure while leaving the group is a warning, not an error."""
    import torch.distributed as dist

    def broken() -> None:
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "destroy_process_group", broken)
    with pytest.warns(UserWarning, match="rank 1: leaving the process group failed: Connection closed by peer"):
        DistributedContext(rank=1, world_size=2, owns_group=True).destroy()
    DistributedContext(rank=1, world_size=2).destroy()  # a group it did not create is left alone


def test_wrapper_prefixes_are_stripped_and_digest_sees_every_bit() -> None:
    w = torch.ones(2)
    assert list(strip_wrapper_prefixes({"module._orig_mod.a.weight": w, "b": w})) == ["a.weight", "b"]
    a = {"w": torch.zeros(3), "step": torch.tensor(1)}
    b = {"w": torch.tensor([0.0, 0.0, 1e-30]), "step": torch.tensor(1)}
    assert param_digest(a) == param_digest({k: v.clone() for k, v in a.items()}) != param_digest(b)


def test_episode_shards_partition_the_split(tmp_path: Path) -> None:
    _write_latent_dataset(tmp_path / "lat", episodes=7)
    full = EpisodeWindows(tmp_path / "lat", 4, split="all", key="latents")
    shards = [EpisodeWindows(tmp_path / "lat", 4, split="all", key="latents", shard=(r, 3)) for r in range(3)]
    assert sorted(sum((s.episodes for s in shards), [])) == sorted(full.episodes)
    assert shards[1].episodes == full.episodes[1::3] and sum(len(s) for s in shards) == len(full)
    with pytest.raises(ValueError, match="shard"):
        EpisodeWindows(tmp_path / "lat", 4, key="latents", shard=(3, 3))


def test_large_presets_build_and_run_one_forward() -> None:
    """Not trained here: the `large` presets build, have the documented size and run one CPU forward."""
    torch.manual_seed(0)
    wm_cfg = WorldModelConfig.large()
    # blocks are identical, so the 12-block count follows from 1- and 2-block models (building 73 M takes ~15 s)
    one, two = (sum(p.numel() for p in WorldModel(WorldModelConfig.large(depth=d)).parameters()) for d in (1, 2))
    assert 60e6 < one + (wm_cfg.depth - 1) * (two - one) < 90e6
    assert TrainWorldModelConfig.preset("large").clip_frames > wm_cfg.window
    model = WorldModel(WorldModelConfig.large(depth=1))
    x, sigma = torch.randn(1, 2, *wm_cfg.latent_shape), torch.ones(1, 2)
    with torch.no_grad():
        out = model(x, sigma * 0.1, x, sigma, frame_actions(torch.zeros(1, 1, dtype=torch.long), wm_cfg.start_action))
    assert out.denoised.shape == x.shape and torch.isfinite(out.denoised).all()
    vae = GroupCausalVAE(VAE_PRESETS["large"])
    assert 5e6 < vae.num_parameters() < 20e6 and vae.config.latent_shape == VAE_PRESETS["default"].latent_shape
    with torch.no_grad():
        mean, _ = vae.encode(torch.zeros(1, 2, 3, 64, 96))
    assert mean.shape == (1, 2, *VAE_PRESETS["large"].latent_shape)


@pytest.mark.slow
def test_world_model_two_cpu_ranks_stay_in_sync_and_checkpoints_interchange(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    _write_latent_dataset(tmp_path / "lat", episodes=8)
    run = tmp_path / "run"
    # one process: 2 steps -> torchrun with 2 ranks resumes that checkpoint up to step 3
    train_world_model(tmp_path / "lat", run, config=TrainWorldModelConfig.tiny(steps=2), progress=False)
    args = ("train", "world-model", "--latents", str(tmp_path / "lat"), "--out", str(run), "--preset", "tiny")
    args += ("--steps", "3", "--device", "cpu", "--no-compile")
    torchrun(*args)
    records = read_metrics(run)
    sync = [r for r in records if r["split"] == "sync"]
    assert len(sync) == 1 and sync[0]["ranks_in_sync"] and sync[0]["world_size"] == 2, sync
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [2, 3] and "world_size" not in train[0]  # one process, then 2 ranks
    assert train[1]["world_size"] == 2 and train[1]["global_batch"] == 2 * TrainWorldModelConfig.tiny().batch_size
    state = load_checkpoint(run)
    assert state.step == 3 and len(state.rank_rngs) == 2
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state.model)
    ema_weights = load_world_model(run / "world_model.safetensors")
    assert param_digest(ema_weights.state_dict()) == param_digest(
        {k: v for k, v in state.ema.items() if k in ema_weights.state_dict()}
    )
    # an error with the process group up (resuming with another config): the ranks exit 2 (torchrun may stop
    # the second one first), none aborts
    failed = torchrun(*args, "--lr", "0.5", returncode=1)
    assert "exitcode  : 2" in failed.stderr and "was trained with another config" in failed.stderr, failed.stderr
    # the DDP checkpoint resumes in one process for one more step
    train_world_model(tmp_path / "lat", run, config=TrainWorldModelConfig.tiny(steps=4), progress=False)
    assert load_checkpoint(run).step == 4


@pytest.mark.slow
def test_sigterm_to_torchrun_saves_on_every_rank(tmp_path: Path) -> None:
    """SIGTERM to torchrun (a scheduler's time limit) reaches both ranks: they stop after the same step and the
    checkpoint holds that step with both ranks' RNG streams, instead of losing everything since the last one."""
    import signal
    import time

    _write_latent_dataset(tmp_path / "lat", episodes=8)
    run = tmp_path / "run"
    args = ["train", "world-model", "--latents", str(tmp_path / "lat"), "--out", str(run), "--preset", "tiny"]
    cmd, env = torchrun_command(*args, "--steps", "100000", "--device", "cpu", "--no-compile")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (run / "metrics.jsonl").is_file() or not any(r["split"] == "train" for r in read_metrics(run)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    state = load_checkpoint(run)
    assert f"stopped by SIGTERM after step {state.step}," in stderr, stderr[-3000:]
    assert len(state.rank_rngs) == 2 and state.step >= 5
    if any(s in stderr for s in ABORTED):  # the ranks should leave the group and exit 143
        # Seen once in a loaded CI run (2026-12-05, issue 23 item 7): a rank aborted in C++ ("terminate called
        # without an active exception") after saving and leaving the group. Since then the ranks wait for each
        # other before leaving (`report_stop`'s barrier): 15 runs without it (8 with both cores loaded) exited
        # cleanly. Kept as a reported xfail rather than a hidden pass, should it come back; the checkpoint
        # assertions above stay strict.
        pytest.xfail(f"rank aborted at exit after SIGTERM (known, issue 23 item 7): {stderr[-1500:]}")


@pytest.mark.slow
def test_vae_two_cpu_ranks_stay_in_sync(tmp_path: Path) -> None:
    from training.collect import collect_episodes

    collect_episodes(tmp_path / "eps", episodes=4, seed=0, policy="random", progress=False)
    run = tmp_path / "vae"
    torchrun(
        "train",
        "vae",
        "--data",
        str(tmp_path / "eps"),
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--steps",
        "3",
        "--device",
        "cpu",
    )
    sync = [r for r in read_metrics(run) if "ranks_in_sync" in r]
    assert len(sync) == 1 and sync[0]["ranks_in_sync"] and sync[0]["world_size"] == 2, sync
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and len(state["rank_torch_rng"]) == 2
    vae = load_vae(run / "vae.safetensors")
    saved = {k: v for k, v in state["model"].items() if not k.startswith("latent_")}
    assert all(torch.equal(vae.state_dict()[k], v.contiguous()) for k, v in saved.items())
    frames = np.zeros((1, 2, 64, 96, 3), dtype=np.uint8)
    assert vae.decode_latents(vae.encode_frames(frames)).shape == frames.shape


def test_cli_refuses_cuda_without_a_gpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from typer.testing import CliRunner

    from oniris_env.cli import app

    _write_latent_dataset(tmp_path / "lat", episodes=2)
    args = ["train", "world-model", "--latents", str(tmp_path / "lat"), "--out", str(tmp_path / "run"), "--device"]
    result = CliRunner().invoke(app, [*args, "cuda"])
    assert result.exit_code == 2 and "CUDA is not available" in result.output, result.output
    assert not (tmp_path / "run").exists()


REFUSED = "cannot run under torchrun (WORLD_SIZE=2): only `train vae` and `train world-model` run as DDP ranks"


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["train", "--preset", "tiny", "--out", "RUN"], "train"),
        (["train", "heads", "--latents", "RUN", "--out", "RUN"], "train heads"),
        (["collect", "--out", "RUN"], "collect"),
        (["agent", "train", "--preset", "tiny", "--out", "RUN"], "agent"),
        (["info"], "info"),
    ],
)
def test_one_process_commands_refuse_world_size_2(tmp_path: Path, args: list[str], command: str) -> None:
    """Cheap (no torchrun): WORLD_SIZE=2 in the environment is what torchrun sets on every rank."""
    from typer.testing import CliRunner

    from oniris_env.cli import app

    run = tmp_path / "run"
    result = CliRunner().invoke(app, [str(run) if a == "RUN" else a for a in args], env={"WORLD_SIZE": "2"})
    assert result.exit_code == 2, result.output
    expected = f"error: `oniris-env {command}` {REFUSED}; run this one as one process, without torchrun: "
    assert result.output == expected + f"oniris-env {command} ...\n"
    assert not run.exists()


def test_ddp_commands_pass_the_torchrun_check(tmp_path: Path) -> None:
    """`train vae` and `train world-model` get past the check (here to their own one-line dataset check)."""
    from typer.testing import CliRunner

    from oniris_env.cli import app

    for args in (["vae", "--data"], ["world-model", "--latents"]):
        result = CliRunner().invoke(
            app, ["train", *args, str(tmp_path / "missing"), "--out", str(tmp_path / "run")], env={"WORLD_SIZE": "2"}
        )
        assert result.exit_code == 2 and "torchrun" not in result.output and "missing" in result.output, result.output


@pytest.mark.slow
def test_torchrun_pipeline_is_refused_on_every_rank_without_gloo_errors(tmp_path: Path) -> None:
    """`torchrun ... train --preset tiny` (the whole pipeline) used to die in gloo connection errors: now every
    rank exits 2 with one line before any work. torchrun itself then exits 1 with its own failure summary."""
    cmd, env = torchrun_command("train", "--preset", "tiny", "--out", str(tmp_path / "run"))
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    output = result.stdout + result.stderr
    ours = [line for line in output.splitlines() if line.startswith("error:")]
    # torchrun stops the other rank as soon as one fails, sometimes before it printed its line
    assert 1 <= len(ours) <= 2 and set(ours) == {
        f"error: `oniris-env train` {REFUSED}; run this one as one process, without torchrun: oniris-env train ..."
    }, output
    assert result.returncode == 1 and "exitcode  : 2" in output, output  # the ranks' code, in torchrun's summary
    assert "gloo" not in output.lower() and "oniris_env/" not in output and "training/" not in output, output
    assert not (tmp_path / "run").exists()
