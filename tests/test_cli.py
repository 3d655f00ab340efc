"""The ``wsb-gpu`` shell: help with examples everywhere, one-line errors, ``info``."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from wsb_gpu.cli import main, main_group


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_group_help_has_an_example(capsys):
    rc, out, _ = _run(capsys, ["--help"])
    assert rc == 0
    assert "Example:" in out
    for name in main_group.commands:
        assert name in out


# Iterating over the registered commands covers the commands later issues add.
@pytest.mark.parametrize("name", sorted(main_group.commands))
def test_every_command_has_help_with_an_example(capsys, name):
    cmd = main_group.commands[name]
    assert cmd.help and cmd.help.strip(), f"{name} has no help text"
    rc, out, err = _run(capsys, [name, "--help"])
    assert rc == 0, err
    assert "Example:" in out, f"'wsb-gpu {name} --help' shows no Example: block"
    example = out.split("Example:", 1)[1]
    assert f"wsb-gpu {name}" in example or "wsb-gpu " in example
    # the global options are accepted after the command name too
    for option in ("--config", "--backend", "--cluster", "--workers", "--profile"):
        assert option in out, f"{name} lacks the global option {option}"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--backend", "tpu", "info"], "'--backend'"),
        (["info", "--bogus"], "--bogus"),
        (["no-such-command"], "no-such-command"),
        (["--workers", "0", "info"], "--workers"),
    ],
)
def test_bad_options_give_one_line_errors(capsys, argv, needle):
    rc, out, err = _run(capsys, argv)
    assert rc != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "--help" in lines[0]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("backend: [cpu\n", "not valid YAML"),
        ("cluster:\n  kidn: local\n", "did you mean 'cluster.kind'"),
        ("backend: tpu\n", "choose one of"),
    ],
)
def test_bad_config_file_gives_one_line_error(capsys, tmp_path: Path, content, needle):
    path = tmp_path / "run.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    rc, out, err = _run(capsys, ["--config", str(path), "info"])
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and needle in lines[0]


def test_info_reports_versions_backend_and_cluster(capsys):
    rc, out, err = _run(capsys, ["--backend", "cpu", "info", "--cluster", "none"])
    assert rc == 0, err
    for section in ("Versions", "GPUs", "Backend", "Cluster"):
        assert section in out
    assert "--backend cpu -> cpu" in out
    assert "kind         none" in out
    import dask

    assert f"dask          {dask.__version__}" in out


def test_info_for_slurm_shows_the_job_script(capsys):
    rc, out, err = _run(capsys, ["info", "--cluster", "slurm", "--backend", "cpu"])
    assert rc == 0, err
    assert "#SBATCH" in out and "distributed.cli.dask_worker" in out


def test_command_options_beat_group_options(capsys):
    rc, out, err = _run(capsys, ["--backend", "gpu", "info", "--backend", "cpu", "--cluster", "none"])
    assert rc == 0, err
    assert "--backend cpu -> cpu" in out


def test_cluster_check_without_cluster(capsys):
    rc, out, err = _run(capsys, ["cluster-check", "--cluster", "none"])
    assert rc == 0, err
    assert "499999500000" in out and "yes" in out


def test_commands_are_click_commands():
    assert isinstance(main_group, click.Group)
    assert {"info", "cluster-check"} <= set(main_group.commands)
