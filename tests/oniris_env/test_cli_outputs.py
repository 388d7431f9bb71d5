"""Output paths and damaged run folders: exit code 2 and one line naming the path, never a traceback, and before
any work is done."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from oniris_env.cli import app

runner = CliRunner()


def one_line_exit_2(args: list[str], wanted: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert wanted in result.output, result.output


@pytest.fixture()
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def test_output_paths_under_a_file_or_of_the_wrong_type_are_refused_first(tmp_path, a_file):
    missing = str(tmp_path / "no-weights")  # checked after the output: the output error must come first
    one_line_exit_2(["dream", "--out", str(a_file / "d.gif"), "--weights", missing], "a_file")
    (tmp_path / "dir.gif").mkdir()
    one_line_exit_2(["dream", "--out", str(tmp_path / "dir.gif"), "--weights", missing], "directory")
    one_line_exit_2(["play", "--record", str(a_file / "p.gif"), "--weights", missing, "--max-steps", "1"], "a_file")
    one_line_exit_2(["collect", "--episodes", "1", "--out", str(a_file)], "a_file")
    one_line_exit_2(["collect", "--episodes", "1", "--out", str(a_file / "sub")], "a_file")
    one_line_exit_2(["evaluate", "--out", str(a_file), "--weights", missing], "a_file")


def test_merge_into_a_file_is_refused(tmp_path, a_file):
    for name in ("a", "b"):
        assert (
            runner.invoke(
                app, ["collect", "--episodes", "1", "--out", str(tmp_path / name), "--no-preview", "--policy", "random"]
            ).exit_code
            == 0
        )
    sources = ["--data", str(tmp_path / "a"), "--data", str(tmp_path / "b")]
    one_line_exit_2(["merge", *sources, "--out", str(a_file)], "a_file")
    one_line_exit_2(["merge", *sources, "--out", str(a_file / "m")], "a_file")


def test_mp4_without_the_video_extra_is_refused_before_dreaming(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if `pip install oniris-env[video]` was not run
    args = ["dream", "--out", str(tmp_path / "d.mp4"), "--weights", str(tmp_path / "none")]
    one_line_exit_2(args, "oniris-env[video]")


def test_trainer_run_folders_that_cannot_resume_are_one_line(tmp_path):
    from oniris_env.spec import GameSpec
    from training.episodes import new_manifest, write_manifest

    data = tmp_path / "real"
    assert (
        runner.invoke(
            app, ["collect", "--episodes", "2", "--out", str(data), "--no-preview", "--policy", "random"]
        ).exit_code
        == 0
    )
    vae = ["train", "vae", "--data", str(data), "--out", str(tmp_path / "vae"), "--device", "cpu"]
    assert runner.invoke(app, [*vae, "--preset", "tiny", "--steps", "1"]).exit_code == 0
    one_line_exit_2([*vae, "--preset", "default"], "--no-resume")  # another config: the advice is a flag
    checkpoint = tmp_path / "vae" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated
    one_line_exit_2([*vae, "--preset", "tiny", "--steps", "2"], "checkpoint.pt")

    latents = tmp_path / "latents"
    latents.mkdir()
    write_manifest(latents, new_manifest(GameSpec(), kind="latents", latent_shape=[4, 4, 6]))
    (tmp_path / "wm").mkdir()
    (tmp_path / "wm" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    one_line_exit_2(
        [
            "train",
            "world-model",
            "--latents",
            str(latents),
            "--out",
            str(tmp_path / "wm"),
            "--preset",
            "tiny",
            "--device",
            "cpu",
        ],
        "checkpoint.pt",
    )
