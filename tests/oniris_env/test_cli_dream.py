"""The CLI commands that need a dream: play in the dream / side by side, dream, check, info."""

import pytest
from PIL import Image
from typer.testing import CliRunner

from oniris_env.cli import app


@pytest.fixture(scope="module")
def random_bundle(tmp_path_factory):
    from oniris_env.bundle import save_random_bundle

    return save_random_bundle(tmp_path_factory.mktemp("bundle") / "weights")


def test_cli_play_dream_side_by_side_headless(tmp_path, random_bundle):
    keys = tmp_path / "keys.txt"
    keys.write_text("2 2 0 1")
    out = tmp_path / "sbs.gif"
    result = CliRunner().invoke(app, ["play", "--side-by-side", "--weights", str(random_bundle), "--device", "cpu",
                                      "--actions", str(keys), "--record", str(out), "--fps", "1000", "--seed", "1",
                                      "--denoise-steps", "2"])
    assert result.exit_code == 0, result.output
    assert "4 steps" in result.output
    with Image.open(out) as gif:
        assert gif.n_frames == 4
        assert gif.size[0] > 2 * 96 * 3  # two panels


def test_cli_play_dream_without_weights_says_what_to_run(tmp_path):
    result = CliRunner().invoke(app, ["play", "--weights", str(tmp_path / "missing"), "--max-steps", "1"])
    assert result.exit_code == 2
    assert "missing" in result.output


def test_cli_dream_writes_an_annotated_video(tmp_path, random_bundle):
    out = tmp_path / "dream.gif"
    result = CliRunner().invoke(app, ["dream", "--steps", "5", "--out", str(out), "--weights", str(random_bundle),
                                      "--device", "cpu", "--denoise-steps", "2"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as gif:
        assert gif.n_frames >= 6  # start frame + one per step (+ a reset frame if an episode ended)
        assert gif.size == (96 * 3, 64 * 3 + 24)
    assert CliRunner().invoke(app, ["dream", "--out", str(tmp_path / "x.gif"), "--policy", "file"]).exit_code == 2
    assert CliRunner().invoke(app, ["dream", "--out", str(tmp_path / "x.avi")]).exit_code == 2


def test_cli_dream_refuses_an_actions_file_without_policy_file(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("2 2 0 1")
    result = CliRunner().invoke(app, ["dream", "--out", str(tmp_path / "x.gif"), "--actions", str(keys)])
    assert result.exit_code == 2 and "add --policy file" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.gif").exists()


def test_cli_dream_on_diverged_weights_exits_2_instead_of_a_black_video(tmp_path, random_bundle):
    import shutil

    import torch

    from oniris_env.bundle import WORLD_MODEL_FILE
    from oniris_env.spec import DEFAULT_SPEC
    from oniris_env.world_model import load_world_model, save_world_model

    bundle = shutil.copytree(random_bundle, tmp_path / "nan")
    model = load_world_model(bundle / WORLD_MODEL_FILE)
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() > 1).fill_(float("nan"))
    save_world_model(model, bundle / WORLD_MODEL_FILE, DEFAULT_SPEC)
    out = tmp_path / "dream.gif"
    args = ["dream", "--steps", "3", "--denoise-steps", "2", "--device", "cpu", "--out", str(out), "--weights"]
    result = CliRunner().invoke(app, [*args, str(bundle)])
    assert result.exit_code == 2, result.output
    assert "non-finite" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_cli_check_runs_both_checkers_on_a_bundle(random_bundle):
    result = CliRunner().invoke(app, ["check", "--weights", str(random_bundle)])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == 4


def test_cli_info_lists_versions_and_weights():
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "vae.safetensors" in result.output
    assert "model card: docs/MODEL_CARD.md" in result.output  # the shipped card.json is shown


def test_shipped_weights_pass_both_checkers():
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == 4
