"""`oniris-env train loop --preset tiny`: one iteration end to end on a random bundle and a tiny agent, then a
re-run that skips every stage; the row accounting (real steps) is checked against the files it counts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.config import AGENT_PRESETS
from agents.train import train_agent
from oniris_env.bundle import load_bundle, save_random_bundle
from oniris_env.cli import app
from training.episodes import read_manifest
from training.pipeline import _world_model_step

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
runner = CliRunner()


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("loop")
    bundle = save_random_bundle(root / "bundle")
    train_agent(AGENT_PRESETS["tiny"], root / "agent0", weights=bundle, progress=False)
    args = ["train", "loop", "--preset", "tiny", "--iterations", "1", "--out", str(root / "run"), "--weights",
            str(bundle), "--agent", str(root / "agent0" / "final"), "--workers", "1", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root, bundle, result.output


def test_one_iteration_builds_every_stage(loop_run: tuple[Path, Path, str]) -> None:
    root, bundle, output = loop_run
    run = root / "run"
    for stage in ("base collect", "base encode", "iter0 evaluate", "iter1 collect", "iter1 encode",
                  "iter1 world_model", "iter1 bundle", "iter1 agent", "iter1 evaluate"):
        assert f"{stage}: run" in output, (stage, output)
    flights = read_manifest(run / "iter1" / "data")["episodes"]
    assert len(flights) == 2 and all(e["policy"].startswith("agent(") for e in flights)
    merged = read_manifest(run / "iter1" / "latents_all")["episodes"]
    assert len(merged) == 2 + 2  # base + flights
    assert _world_model_step(run / "iter1" / "wm" / "world_model.safetensors") == 2
    # the new agent started from the previous one, and the new bundle dreams with the continued world model
    saved = json.loads((run / "iter1" / "agent" / "config.json").read_text())
    assert saved["init_from"] == str((root / "agent0" / "final").resolve())
    new = load_bundle(run / "iter1" / "bundle")
    assert len(new.contexts) >= 1 and new.spec == load_bundle(bundle).spec
    rows = json.loads((run / "rows.json").read_text())
    assert [r["iteration"] for r in rows] == [0, 1]
    base_steps = sum(e["length"] for e in read_manifest(run / "base" / "data")["episodes"])
    selection = json.loads((run / "iter1" / "agent" / "selection.json").read_text())["real_steps_used"]
    assert selection > 0
    assert rows[0]["real_steps_used"] == base_steps
    assert rows[1]["real_steps_used"] == base_steps + sum(e["length"] for e in flights) + selection
    assert rows[1]["real"]["episodes"] == 2 and "model" in rows[1] and rows[1]["model"]["targets"] > 0
    assert (run / "loop.md").read_text().count("\n| ") == 2  # two rows under the header
    assert (run / "return_vs_real_steps.png").stat().st_size > 1000


def test_a_second_run_skips_every_stage(loop_run: tuple[Path, Path, str]) -> None:
    root, bundle, _ = loop_run
    args = ["train", "loop", "--preset", "tiny", "--iterations", "1", "--out", str(root / "run"), "--weights",
            str(bundle), "--agent", str(root / "agent0" / "final"), "--workers", "1", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stage_lines = [line for line in result.output.splitlines() if re.match(r"(base|iter\d+) \w+:", line)]
    assert stage_lines and all("skip" in line or "merge" in line for line in stage_lines), "\n".join(stage_lines)
    # another start is refused in one line
    other = runner.invoke(app, args[:-6] + ["--agent", str(root / "agent0" / "final"), "--workers", "1",
                                            "--threads", "1", "--episodes", "3"])
    assert other.exit_code == 2 and "another config" in other.output
