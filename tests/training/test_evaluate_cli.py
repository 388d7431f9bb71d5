"""`oniris-env evaluate` end to end on a tiny random bundle: every file written, strict JSON with finite numbers."""

import json
import math

import pytest
from PIL import Image
from typer.testing import CliRunner

from oniris_env.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def random_bundle(tmp_path_factory):
    from oniris_env.bundle import save_random_bundle

    return save_random_bundle(tmp_path_factory.mktemp("bundle") / "weights")


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield value


def _quick(bundle, long_steps: int = 12, open_loop_steps: int = 40) -> list[str]:
    """An evaluate command line on one episode, short dreams, one thread, no progress bars (no --out)."""
    return [
        "evaluate", "--weights", str(bundle), "--episodes", "1", "--long-steps", str(long_steps),
        "--max-open-loop-steps", str(open_loop_steps), "--long-dreams", "2", "--device", "cpu", "--threads", "1",
        "--no-progress",
    ]  # fmt: skip


def test_evaluate_writes_the_report(tmp_path, random_bundle):
    out = tmp_path / "eval"
    result = runner.invoke(app, _quick(random_bundle))
    assert result.exit_code == 2  # --out is required
    result = runner.invoke(app, [*_quick(random_bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "targets met" in result.output
    for name in (
        "report.json",
        "report.md",
        "open_loop_centroid.png",
        "open_loop_psnr.png",
        "controllability.png",
        "long_dream_latents.png",
        "side_by_side.gif",
    ):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    for key in (
        "config",
        "versions",
        "data",
        "vae",
        "open_loop",
        "reward_termination",
        "controllability",
        "long_dreams",
        "cost",
        "weights",
        "targets",
        "wall_clock_s",
    ):
        assert key in report, key
    assert all(math.isfinite(x) for x in _numbers(report))
    assert set(report["open_loop"]["horizons"]) == {"1", "8", "32", "128"}
    assert report["data"]["seeds"][0] != 0 and report["config"]["base_seed"] == 1_000_003
    assert report["long_dreams"]["random"]["steps"] == 12 and report["long_dreams"]["random"]["nonfinite_steps"] == 0
    assert 0 <= report["long_dreams"]["pilot"]["real_found_fraction"] <= 1
    for policy in ("random", "pilot"):  # two dreams per policy, the figure is their mean
        ld = report["long_dreams"][policy]
        assert ld["dreams"] == 2 and len(ld["found_fraction_per_dream"]) == 2
        assert ld["found_fraction"] == pytest.approx(sum(ld["found_fraction_per_dream"]) / 2)
    rt = report["reward_termination"]
    assert set(rt) == {"open_loop", "terminal_anchored", "teacher_forced"}
    assert rt["teacher_forced"]["reward"]["steps"] == report["data"]["lengths"][0]  # every transition, no context
    assert sum(row["ends"] for row in rt["teacher_forced"]["termination_by_outcome"].values()) <= 1
    assert report["cost"]["nfe_per_step"] == 3 and report["cost"]["world_model_parameters"] > 0
    assert len(report["weights"]["files"]["world_model.safetensors"]["sha256"]) == 64
    assert {"name", "value", "target", "pass"} <= set(report["targets"][0])
    markdown = (out / "report.md").read_text()
    assert "## Targets" in markdown and "## Open loop" in markdown and "repeat-last-frame" in markdown
    with Image.open(out / "side_by_side.gif") as gif:
        assert gif.size == (3 * (3 * 96 + 4), 3 * 64) and gif.n_frames > 1


def test_evaluate_help_and_bad_weights(tmp_path):
    result = runner.invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0 and "--episodes" in result.output
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["evaluate", "--weights", str(missing), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert str(missing) in result.output and "oniris-env train" in result.output
    assert not (tmp_path / "o").exists()


def test_evaluate_uses_the_chosen_sampler(tmp_path, random_bundle):
    quick = _quick(random_bundle, long_steps=4, open_loop_steps=8)
    out = tmp_path / "heun2"
    args = [*quick, "--denoise-steps", "2", "--sampler", "heun", "--action-guidance", "1.5", "--rho", "5"]
    args += ["--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["sampler"]["num_steps"] == 2 and report["config"]["sampler"]["method"] == "heun"
    assert report["config"]["sampler"]["action_guidance"] == 1.5 and report["config"]["sampler"]["rho"] == 5
    assert report["cost"]["nfe_per_step"] == 3  # Heun: 2 N - 1 calls
    assert report["cost"]["sampler"] == report["config"]["sampler"]
    assert "(2 heun steps, action guidance 1.5:" in (out / "report.md").read_text()
    for bad, reason in ((["--sigma-min", "0"], "sigma_min"), (["--sampler", "ddim"], "method")):
        result = runner.invoke(app, [*quick, *bad, "--out", str(tmp_path / "bad")])
        assert result.exit_code == 2, result.output
        assert reason in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_evaluate_loads_no_trainer():
    """`oniris-env evaluate` (`training.evaluate.run`) needs no trainer: it used to load both, and the head refit,
    through the packages' `__init__` and an import cycle with `teacher_forced`."""
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, training.evaluate.run; print(' '.join(sorted(sys.modules)))"
    repo = Path(__file__).resolve().parents[2]  # `python -c` imports this tree's packages
    run = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    loaded = run.stdout.split()
    assert "training.evaluate.teacher_forced" in loaded
    trainers = {"training.vae.train", "training.world_model.train", "training.world_model.head_refit"}
    assert trainers.isdisjoint(loaded), trainers & set(loaded)
