"""``wsb-gpu``: a thin command-line shell over the library.

Each command parses its options, builds one frozen :class:`~wsb_gpu.config.Settings`,
calls one library function, and turns a :class:`~wsb_gpu.errors.WsbError` into a one-line
``error: ...`` message with exit status 2. Library modules are imported inside the
commands so that ``wsb-gpu --help`` stays fast and needs no GPU library.

The global options (``--config --backend --cluster --workers --profile``) are accepted
before the command name and after it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from wsb_gpu.errors import WsbError

GLOBAL_KEYS = ("config", "backend", "cluster", "workers", "profile")


def global_options(f: Callable) -> Callable:
    """Add the global options to a command (or the group)."""
    options = [
        click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                     help="YAML settings file (same layout as defaults.yaml; see docs/configuration.md)."),
        click.option("--backend", type=click.Choice(["auto", "cpu", "gpu"]), default=None,
                     help="Compute backend [default: auto = gpu when CUDA and cuDF are usable]."),
        click.option("--cluster", type=click.Choice(["none", "local", "cuda", "slurm"]), default=None,
                     help="Dask cluster kind [default: local]."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Workers (local: processes; slurm: worker jobs)."),
        click.option("--profile", type=click.Path(dir_okay=False), default=None,
                     help="Write a Dask performance report (HTML) of the whole command here."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _global_values(ctx: click.Context, local: dict[str, Any]) -> dict[str, Any]:
    """Global option values: the command's own beat the group's."""
    values = dict((ctx.find_root().obj or {}))
    values.update({k: v for k, v in local.items() if v is not None})
    return values


def build_settings(ctx: click.Context, local: dict[str, Any], **overrides: Any):
    """Settings from the global options and the command's own dotted-key overrides."""
    from wsb_gpu.config import load_settings

    g = _global_values(ctx, {k: local.pop(k, None) for k in GLOBAL_KEYS})
    dotted = {
        "backend": g.get("backend"),
        "cluster.kind": g.get("cluster"),
        "profile": g.get("profile"),
        **overrides,
    }
    if g.get("workers") is not None:
        dotted["cluster.n_workers"] = g["workers"]
        dotted["cluster.slurm.jobs"] = g["workers"]
    return load_settings(g.get("config"), dotted)


def command(name: str, **kwargs: Any) -> Callable:
    """Register a subcommand that takes the global options too."""

    def decorator(f: Callable) -> Callable:
        return main_group.command(name, **kwargs)(global_options(click.pass_context(f)))

    return decorator


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@global_options
@click.version_option(package_name="wsb_gpu")
@click.pass_context
def main_group(ctx: click.Context, **values: Any) -> None:
    """GPU-native pipeline from r/WallStreetBets dumps and CRSP daily files to next-day
    volatility forecasts with FinBERT text signals.

    \b
    Example:
      wsb-gpu demo                      # synthetic data -> report, on this machine
      wsb-gpu --backend gpu --cluster cuda run --config examples/gpu-node.yaml
    """
    ctx.obj = {k: v for k, v in values.items() if v is not None}


# --- commands --------------------------------------------------------------------------


@command("info")
def info(ctx: click.Context, **values: Any) -> None:
    """Print versions, detected GPUs, the backend resolution and the cluster settings.

    \b
    Example:
      wsb-gpu info
      wsb-gpu --backend gpu info
    """
    from wsb_gpu.sysinfo import describe

    settings = build_settings(ctx, values)
    click.echo(describe(settings))


@command("cluster-check")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the computation on the workers.")
def cluster_check(ctx: click.Context, timeout: float, **values: Any) -> None:
    """Start the configured cluster, run a small computation on every worker, and report
    each worker's host, devices and memory.

    \b
    Example:
      wsb-gpu cluster-check --cluster local --workers 2
      wsb-gpu cluster-check --cluster slurm --config run.yaml
    """
    from wsb_gpu.sysinfo import check_cluster

    settings = build_settings(ctx, values)
    click.echo(check_cluster(settings, timeout=timeout))


# --- entry point -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; library errors become ``error: <message>`` and exit status 2."""
    try:
        main_group.main(args=argv, prog_name="wsb-gpu", standalone_mode=False)
    except WsbError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
