import subprocess
import sys

import pytest
from typer.testing import CliRunner

from oniris_env.cli import app
from training.episodes import read_manifest

runner = CliRunner()


def test_collect_writes_a_dataset_and_a_preview(tmp_path):
    result = runner.invoke(app, ["collect", "--episodes", "2", "--out", str(tmp_path), "--policy", "random"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 episodes" in result.output
    assert len(read_manifest(tmp_path)["episodes"]) == 2
    assert (tmp_path / "preview.png").stat().st_size > 1000


def test_collect_total_fills_the_folder_up_to_n_and_excludes_episodes(tmp_path):
    args = ["collect", "--out", str(tmp_path), "--policy", "random", "--no-preview"]
    assert runner.invoke(app, [*args, "--episodes", "1"]).exit_code == 0  # an interrupted run of 2
    result = runner.invoke(app, [*args, "--total", "2"])
    assert result.exit_code == 0 and "wrote 1 episodes" in result.output, result.output
    again = runner.invoke(app, [*args, "--total", "2"])
    assert again.exit_code == 0 and "nothing to collect" in again.output
    assert len(read_manifest(tmp_path)["episodes"]) == 2
    both = runner.invoke(app, [*args, "--episodes", "1", "--total", "3"])
    assert both.exit_code == 2 and "--episodes and --total exclude each other" in both.output


def test_collect_refuses_another_spec_with_exit_code_2(tmp_path):
    assert runner.invoke(app, ["collect", "--episodes", "1", "--out", str(tmp_path), "--policy", "random",
                               "--no-preview"]).exit_code == 0
    result = runner.invoke(app, ["collect", "--episodes", "1", "--out", str(tmp_path), "--action-repeat", "3"])
    assert result.exit_code == 2
    assert "another game spec" in result.output


@pytest.mark.parametrize("args", [["collect", "--out", "x", "--policy", "nope"], ["collect", "--episodes", "0",
                                                                                   "--out", "x"], ["bogus"]])
def test_bad_arguments_exit_with_code_2(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2


@pytest.mark.parametrize("command", [["collect", "--out"], ["play", "--real", "--record"], ["dream", "--out"],
                                     ["evaluate", "--out"], ["train", "--out"]])
def test_a_negative_seed_is_refused_naming_the_option(command, tmp_path):
    out = tmp_path / ("x.gif" if command[0] in ("play", "dream") else "x")
    result = runner.invoke(app, [*command, str(out), "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.output and "Traceback" not in result.output
    assert not out.exists()


COMMANDS = [[], ["collect"], ["train"], ["train", "vae"], ["train", "world-model"], ["encode"], ["play"], ["dream"],
            ["info"], ["check"], ["merge"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_help_does_not_import_torch():
    code = "import sys; from oniris_env.cli import app; sys.argv = ['oniris-env', '--help']\n" \
           "try:\n    app()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", "import sys, oniris_env; assert 'torch' not in sys.modules"], check=True)


def test_python_dash_m_is_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "oniris_env", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "collect" in result.stdout


def test_train_vae_finetune_needs_init_from(tmp_path):
    result = runner.invoke(app, ["train", "vae", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                                 "--preset", "finetune"])
    assert result.exit_code == 2 and "--init-from" in result.output
    result = runner.invoke(app, ["train", "vae", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "oniris-env collect" in result.output


def _latent_folder(root):
    from oniris_env.spec import GameSpec
    from training.episodes import new_manifest, write_manifest

    root.mkdir()
    write_manifest(root, new_manifest(GameSpec(), kind="latents", latent_shape=[12, 8, 8]))
    return root


def test_collect_refuses_a_latent_folder_and_leaves_it_alone(tmp_path):
    latents = _latent_folder(tmp_path / "latents")
    before = (latents / "manifest.json").read_text()
    result = runner.invoke(app, ["collect", "--episodes", "1", "--out", str(latents), "--no-preview"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "latent folder" in result.output and len(result.output.strip().splitlines()) == 1
    assert (latents / "manifest.json").read_text() == before and not list(latents.glob("ep_*"))


def test_trainers_refuse_a_folder_of_the_wrong_kind_in_one_line(tmp_path):
    latents = _latent_folder(tmp_path / "latents")
    frames = tmp_path / "frames"
    assert runner.invoke(app, ["collect", "--episodes", "1", "--out", str(frames), "--no-preview"]).exit_code == 0
    for args, wanted in (
        (["train", "vae", "--data", str(latents), "--preset", "tiny"], "episode folder"),
        (["train", "world-model", "--latents", str(frames), "--preset", "tiny"], "latent folder"),
        (["encode", "--data", str(latents)], "episode folder"),
    ):
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
        assert result.exit_code == 2, (args, result.output)
        assert wanted in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_library_collect_refuses_a_latent_folder(tmp_path):
    from training.collect import collect_episodes

    with pytest.raises(ValueError, match="latent folder"):
        collect_episodes(_latent_folder(tmp_path / "latents"), 1, progress=False)
