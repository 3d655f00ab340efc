"""``wsb-gpu``: a thin command-line shell over the library.

Each command parses its options, builds one frozen :class:`~wsb_gpu.config.Settings`,
calls one library function, and turns a :class:`~wsb_gpu.errors.WsbError` into a one-line
``error: ...`` message with exit status 2 (one line per problem when several are found).

The stage commands (``ingest``, ``mentions`` … ``report``) are generated from the stage
table (:mod:`wsb_gpu.stages`): their options come from each stage's declared inputs and the
fields of its settings section, their help from its declaration. Adding a stage or a
setting is one edit there.

The global options (``--config --backend --cluster --workers --profile``) are accepted
before the command name and after it.
"""

from __future__ import annotations

import inspect
import signal
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from dask.utils import format_bytes
from pydantic.fields import FieldInfo
from rich.console import Console

from wsb_gpu.config import BackendName, ClusterKind, Settings, choices, load_settings
from wsb_gpu.errors import WsbError, os_error_line
from wsb_gpu.interrupt import Interrupted, reap_children
from wsb_gpu.interrupt import install as install_interrupts
from wsb_gpu.stages import STAGES, Input, Stage

if TYPE_CHECKING:
    pass

GLOBAL_KEYS = ("config", "backend", "cluster", "workers", "profile")


def _global_params() -> list[click.Option]:
    return [
        click.Option(
            ["--config", "config"],
            type=click.Path(dir_okay=False),
            default=None,
            help="YAML settings file (same layout as defaults.yaml; see docs/configuration.md).",
        ),
        click.Option(
            ["--backend"],
            type=click.Choice(choices(BackendName)),
            default=None,
            help="Compute backend [default: auto = gpu when CUDA and cuDF are usable].",
        ),
        click.Option(
            ["--cluster"],
            type=click.Choice(choices(ClusterKind)),
            default=None,
            help="Dask cluster kind [default: local].",
        ),
        click.Option(
            ["--workers"],
            type=click.IntRange(min=1),
            default=None,
            help="Workers (local: processes; slurm: worker jobs).",
        ),
        click.Option(
            ["--profile"],
            type=click.Path(dir_okay=False),
            default=None,
            help="Write a Dask performance report (HTML) of the whole command here.",
        ),
    ]


def global_options(f: Callable) -> Callable:
    """Add the global options to a command (or the group)."""
    f.__click_params__ = [*getattr(f, "__click_params__", []), *reversed(_global_params())]  # type: ignore[attr-defined]
    return f


def _global_values(ctx: click.Context, local: dict[str, Any]) -> dict[str, Any]:
    """Global option values: the command's own beat the group's."""
    values = dict(ctx.find_root().obj or {})
    values.update({k: v for k, v in local.items() if v is not None})
    return values


def build_settings(ctx: click.Context, local: dict[str, Any], **overrides: Any) -> Settings:
    """Settings from the global options and the command's own dotted-key overrides."""
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
    from wsb_gpu.diagnose import describe

    settings = build_settings(ctx, values)
    click.echo(describe(settings))


@command("cluster-check")
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for the computation on the workers.",
)
def cluster_check(ctx: click.Context, timeout: float, **values: Any) -> None:
    """Start the configured cluster, run a small computation on every worker, and report
    each worker's host, devices and memory.

    \b
    Example:
      wsb-gpu cluster-check --cluster local --workers 2
      wsb-gpu cluster-check --cluster slurm --config run.yaml
    """
    from wsb_gpu.diagnose import check_cluster

    settings = build_settings(ctx, values)
    click.echo(check_cluster(settings, timeout=timeout))


STAGE_CHOICE = click.Choice([s.name for s in STAGES])
RAW_INPUTS: dict[str, Input] = {i.name: i for s in STAGES for i in s.inputs if i.kind == "file"}
"""The raw input files of the stages (``settings.inputs``), each an option of ``run``."""


def raw_input_options(f: Callable) -> Callable:
    """``--submissions --comments --tickers --crsp``: one option per raw input of the stage table."""
    for spec in reversed(list(RAW_INPUTS.values())):
        f = click.option(
            f"--{spec.name}",
            spec.name,
            type=click.Path(exists=True, dir_okay=spec.dir_ok),
            default=None,
            help=f"{spec.help.split(' [default')[0].rstrip('.')} (overrides inputs.{spec.name}).",
        )(f)
    return f


@command("run")
@click.option(
    "--lake",
    type=click.Path(file_okay=False),
    default=None,
    help="Run directory for every dataset, run.json and the report [default: setting `lake`].",
)
@raw_input_options
@click.option("--force", is_flag=True, help="Rerun every stage, even those whose manifest matches.")
@click.option(
    "--from", "from_stage", type=STAGE_CHOICE, default=None, help="Rerun this stage and every stage downstream of it."
)
@click.option(
    "--until",
    "until_stage",
    type=STAGE_CHOICE,
    default=None,
    help="Stop after this stage (runs only the stages it needs).",
)
@click.option("--no-progress", is_flag=True, help="No progress bars (the summary table is still printed).")
def run(
    ctx: click.Context,
    lake: str | None,
    force: bool,
    from_stage: str | None,
    until_stage: str | None,
    no_progress: bool,
    **values: Any,
) -> None:
    """Run the whole pipeline (ingest → mentions → embed, signals, volatility → links → features
    → train → report) in one Dask client; stages whose outputs are up to date are skipped.

    \b
    Example:
      wsb-gpu run --config examples/laptop-cpu.yaml
      wsb-gpu run --config run.yaml --from train          # refit the models, keep the rest
      wsb-gpu --cluster cuda --backend gpu run --config examples/gpu-node.yaml --profile run.html
    """
    from wsb_gpu.pipeline import run_pipeline

    raw = {f"inputs.{name}": values.pop(name) for name in RAW_INPUTS}
    settings = build_settings(ctx, values, lake=lake, **raw)
    result = run_pipeline(
        settings, force=force, from_stage=from_stage, until_stage=until_stage, progress=not no_progress
    )
    if result.report is not None:
        click.echo(f"report: {result.report}")
    click.echo(f"run directory: {result.lake} (provenance in {result.lake / 'run.json'})")


@command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Run directory [default: ./demo-run, or ./demo-run-placebo with --placebo].",
)
@click.option("--placebo", is_flag=True, help="Generate the data with no effect: text must not help.")
@click.option("--tickers", type=click.IntRange(min=10), default=None, help="Synthetic stocks [default: 50].")
@click.option(
    "--posts-per-day",
    type=click.IntRange(min=1),
    default=None,
    help="Synthetic posts per day [default: the demo size, see docs/quickstart.md].",
)
@click.option("--start", default=None, help="First date of the synthetic data [default: 2012-01-01].")
@click.option("--end", default=None, help="Last date of the synthetic data [default: 2019-12-31].")
@click.option("--seed", type=int, default=None, help="Generator seed [default: 7].")
@click.option(
    "--model",
    default=None,
    help="Text model [default: the packaged all-MiniLM-L6-v2; FinBERT cannot be downloaded here].",
)
@click.option("--force", is_flag=True, help="Rerun every stage.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def demo(
    ctx: click.Context,
    out: str | None,
    placebo: bool,
    tickers: int | None,
    posts_per_day: int | None,
    start: str | None,
    end: str | None,
    seed: int | None,
    model: str | None,
    force: bool,
    no_progress: bool,
    **values: Any,
) -> None:
    """Generate synthetic WSB + CRSP data with a planted text → volatility effect, run the
    whole pipeline on a LocalCluster with the CPU backend, and print the report's path
    and the metrics table.

    \b
    Example:
      wsb-gpu demo                       # -> ./demo-run/report/report.md
      wsb-gpu demo --placebo             # no effect: ridge must not beat HAR
    """

    from wsb_gpu.demo import DEMO_SIZE, FINBERT_NOTE, metrics_table, run_demo

    g = _global_values(ctx, {k: values.pop(k, None) for k in GLOBAL_KEYS})
    overrides = {"backend": g.get("backend"), "cluster.kind": g.get("cluster"), "profile": g.get("profile")}
    if g.get("config"):
        raise WsbError(
            "wsb-gpu demo writes its own run.yaml and takes no --config; "
            "use `wsb-gpu run --config FILE` for your own configuration"
        )
    size = {
        k: v
        for k, v in {
            "tickers": tickers,
            "posts_per_day": posts_per_day,
            "start": start,
            "end": end,
            "seed": seed,
        }.items()
        if v is not None
    }
    result = run_demo(
        out or ("demo-run-placebo" if placebo else "demo-run"),
        placebo=placebo,
        model=model,
        workers=g.get("workers"),
        overrides=overrides,
        force=force,
        progress=not no_progress,
        **{**DEMO_SIZE, **size},
    )
    console = Console()
    if result.metrics is not None:
        console.print(metrics_table(result.metrics))
    click.echo(f"note: {FINBERT_NOTE}")
    click.echo(f"report: {result.report}")


# --- the stage commands, generated from the stage table --------------------------------------


def _field_option(name: str, field: FieldInfo, default: Any) -> click.Option:
    """A command-line option for one parameter field of a stage's section.

    The option's type follows the field's (a ``Literal`` becomes a choice, a bounded
    integer an ``IntRange``, a bool a ``--x/--no-x`` pair); its help is the field's
    description plus the packaged default. ``None`` means "not given": the settings keep
    their value from the config file or the defaults.
    """
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    flag = str(extra.get("cli") or "--" + name.replace("_", "-"))
    help_text = (field.description or "").rstrip(".") + "."
    if default not in (None, {}, []) and "[default" not in help_text:
        shown = ",".join(default) if isinstance(default, list) else default
        help_text += f" [default: {shown}]"
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kwargs: dict[str, Any] = {"default": None, "help": help_text}
    if annotation is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", name], **kwargs)
    if typing.get_origin(annotation) is typing.Literal:
        kwargs["type"] = click.Choice(list(typing.get_args(annotation)))
    elif typing.get_origin(annotation) is dict:
        kwargs.update(multiple=True, metavar="ROLE=NAME[,...]", default=())
    elif args == [int]:
        low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
        kwargs["type"] = click.IntRange(min=low) if low is not None else int
    elif args == [float]:
        kwargs["type"] = float
    if extra.get("path") == "file":
        kwargs["type"] = click.Path(exists=True, dir_okay=False)
    return click.Option([flag, name], **kwargs)


def _param_fields(stage: Stage) -> list[tuple[str, str, FieldInfo, Any]]:
    """``(option name, dotted setting, field, packaged default)`` of the stage's options:
    its section's own fields, and the fields of sub-sections that name an option (``cli``)."""
    from wsb_gpu.config import DEFAULTS, Section

    section = stage.section
    if section is None:
        return []
    defaults = DEFAULTS["wsb_gpu"][section]
    out = []
    for name, field in stage.params.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, Section):
            for inner, f in sub.model_fields.items():
                extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
                if extra.get("cli"):
                    out.append((f"{name}_{inner}", f"{section}.{name}.{inner}", f, defaults[name][inner]))
            continue
        out.append((name, f"{section}.{name}", field, defaults.get(name)))
    return out


def _input_option(spec: Input) -> click.Option:
    flag = "--" + spec.name.replace("_", "-")
    if spec.kind == "file":
        return click.Option([flag, spec.name], type=click.Path(dir_okay=spec.dir_ok), default=None, help=spec.help)
    producer = spec.contract.producer if spec.contract else None
    help_text = spec.help or f"The {spec.name} dataset folder (from `wsb-gpu {producer}`)."
    required = spec.required and spec.kind != "lake"
    return click.Option(
        [flag, spec.name], type=click.Path(file_okay=False), required=required, default=None, help=help_text
    )


def _parse_pairs(items: tuple[str, ...], option: str) -> dict[str, str] | None:
    """``("ret=my_ret,date=caldt", "permno=id")`` -> ``{"ret": "my_ret", ...}``.

    >>> _parse_pairs(("ret=RET_ADJ,date=caldt",), "--columns")
    {'ret': 'RET_ADJ', 'date': 'caldt'}
    """
    mapping: dict[str, str] = {}
    for item in items:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            role, sep, name = pair.partition("=")
            if not sep or not role.strip() or not name.strip():
                msg = f"{option} expects role=column pairs (e.g. {option} ret=RET_ADJ), got {pair!r}"
                raise WsbError(msg)
            mapping[role.strip().lower()] = name.strip()
    return mapping or None


def stage_command(stage: Stage) -> click.Command:
    """The ``wsb-gpu <stage>`` command: options from the stage's inputs and parameters."""
    fields = _param_fields(stage)

    @click.pass_context
    def callback(ctx: click.Context, **values: Any) -> None:
        from wsb_gpu.backend import resolve_backend
        from wsb_gpu.cluster import in_process, session
        from wsb_gpu.progress import log
        from wsb_gpu.stages import preflight, run_stage
        from wsb_gpu.stages.base import interrupted_message

        given = {i.name: values.pop(i.name) for i in stage.inputs}
        out, progress = values.pop("out"), values.pop("progress")
        overrides = {}
        for option, dotted, field, _ in fields:
            value = values.pop(option)
            if typing.get_origin(field.annotation) is dict:
                value = _parse_pairs(value, "--" + option.replace("_", "-"))
            overrides[dotted] = value
        overrides.update({f"inputs.{i.name}": given[i.name] for i in stage.inputs if i.kind == "file"})
        settings = build_settings(ctx, values, **overrides)
        inputs = {i.name: settings.inputs.get(i.name) if i.kind == "file" else given[i.name] for i in stage.inputs}
        if out is None:
            out = stage.default_out(inputs)
        # Bad inputs or a bad --out fail here, before a cluster starts.
        preflight(stage, out, inputs, settings.params(stage.section or stage.name))
        backend = resolve_backend(settings.backend)
        small = None if stage.holds_gil else in_process(settings, inputs)
        if small is not None:
            settings = settings.replace(**{"cluster.kind": "none"})
        if progress:
            where = (
                f"; {small / 2**20:,.0f} MiB of input: in this process (--cluster local starts workers)"
                if small is not None
                else ""
            )
            log(f"[{stage.name}] → {out} ({backend.name}{where})")
        try:
            with session(settings) as client:
                manifest = run_stage(
                    stage,
                    out,
                    inputs=inputs,
                    params=settings.params(stage.section or stage.name),
                    backend=backend,
                    client=client,
                    progress=progress,
                )
        except Interrupted as e:
            raise Interrupted(e.signum, interrupted_message(stage, Path(out))) from None
        click.echo(f"{stage.summary(manifest)} -> {out}")

    params: list[click.Parameter] = [_input_option(i) for i in stage.inputs]
    params.append(
        click.Option(
            ["--out", "out"],
            type=click.Path(),
            required=stage.default_out is None,
            default=None,
            help=f"Output folder for the {stage.output} dataset"
            + (" [default: beside the first input]." if stage.default_out else "."),
        )
    )
    params += [_field_option(option, field, default) for option, _, field, default in fields]
    params.append(
        click.Option(
            ["--progress/--no-progress", "progress"],
            default=True,
            show_default=True,
            help="Show progress (live bars on a terminal, start/end lines in a log).",
        )
    )
    params += _global_params()
    return click.Command(stage.name, callback=callback, params=params, help=inspect.cleandoc(stage.doc))


@command("synth")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write the dumps, CRSP files and truth.json into.",
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed [default: 0].")
@click.option("--tickers", type=click.IntRange(min=10), default=None, help="Number of PERMNOs (>= 10) [default: 50].")
@click.option("--start", default=None, help="First calendar date, YYYY-MM-DD [default: 2012-01-01].")
@click.option("--end", default=None, help="Last calendar date, YYYY-MM-DD [default: 2019-12-31].")
@click.option(
    "--posts-per-day",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Mean records (submissions + comments) per calendar day [default: 200].",
)
@click.option(
    "--effect",
    type=float,
    default=None,
    help="Planted effect b (log-vol of day t+1 += b * hype of day t); 0 = placebo [default: 0.5].",
)
@click.option(
    "--effect-attention",
    type=float,
    default=None,
    help="Effect of a state that moves only how many posts there are [default: 0].",
)
@click.option(
    "--effect-tone",
    type=float,
    default=None,
    help="Effect of a state that moves only the share of hype vs calm phrases [default: 0].",
)
@click.option(
    "--effect-topic",
    type=float,
    default=None,
    help="Effect of a state that moves only the share of earnings talk, whatever its tone [default: 0].",
)
@click.option(
    "--effect-after-close",
    type=float,
    default=None,
    help="Posts between the close of t and the open of t+1 grow with |ret(t+1)| and carry its sign "
    "(after-hours news); volatility never depends on them [default: 0].",
)
@click.option(
    "--malformed",
    type=click.FloatRange(min=0, max=0.5),
    default=None,
    help="Rate of broken lines (blank, truncated JSON, invalid UTF-8) [default: 0].",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes [default: all cores for large runs].",
)
def synth(
    ctx: click.Context,
    out: str,
    seed,
    tickers,
    start,
    end,
    posts_per_day,
    effect,
    effect_attention,
    effect_tone,
    effect_topic,
    effect_after_close,
    malformed,
    processes,
    **values: Any,
) -> None:
    """Write synthetic WSB dumps + CRSP files with a planted text -> volatility effect.

    Writes wallstreetbets_submissions.zst, wallstreetbets_comments.zst (Pushshift-style,
    2 GiB zstd window), stocknames.csv, crsp_daily.csv, truth.json and latent.parquet.
    The same seed writes the same uncompressed bytes; see docs/synthetic-data.md.

    \b
    Example:
      wsb-gpu synth --out data --tickers 50 --posts-per-day 200
      wsb-gpu synth --out placebo --effect 0 --start 2016-01-01 --end 2019-12-31
      wsb-gpu synth --out topic-only --effect 0 --effect-topic 0.5
      wsb-gpu synth --out after-close --effect 0 --effect-after-close 1
    """
    from wsb_gpu.synth import generate

    overrides = {
        "synth.seed": seed,
        "synth.tickers": tickers,
        "synth.start": start,
        "synth.end": end,
        "synth.posts_per_day": posts_per_day,
        "synth.effect": effect,
        "synth.effect_attention": effect_attention,
        "synth.effect_tone": effect_tone,
        "synth.effect_topic": effect_topic,
        "synth.effect_after_close": effect_after_close,
        "synth.malformed": malformed,
        "synth.processes": processes,
    }
    settings = build_settings(ctx, values, **overrides)
    s = generate(out, **settings.stage("synth"))
    click.echo(format_synth_summary(s))


def format_synth_summary(s: dict) -> str:
    """The few lines `wsb-gpu synth` prints."""
    planted = ", ".join(f"{k} {v:g}" for k, v in s.get("effects", {}).items() if v)
    lines = [
        f"wrote {s['out']} (seed {s['seed']}, {s['tickers']} tickers, effect {s['effect']:g}"
        + (f"; {planted}" if planted else "")
        + ")"
    ]
    for key, f in s["files"].items():
        extra = ""
        if key in s["records"]:
            m = s["malformed"][key]
            extra = (
                f"  {s['records'][key]:,} records; malformed: {m['blank']} blank, "
                f"{m['truncated']} truncated, {m['bad_utf8']} bad UTF-8"
            )
        elif key == "crsp":
            extra = f"  {s['crsp_rows']:,} rows"
        elif key == "stocknames":
            extra = f"  {s['stocknames_rows']:,} rows"
        lines.append(f"  {f['path']}  {format_bytes(f['bytes'])}{extra}")
    if "time_of_day" in s:
        tod = s["time_of_day"]
        lines.append(
            f"  time of day: {tod['session_share']:.1%} in sessions, {tod['after_close_share']:.1%} between "
            f"a close and the next open ({tod['after_close_same_utc_day_share']:.1%} before midnight UTC)"
        )
    lines.append(
        f"{sum(s['records'].values()):,} records ({s['uncompressed_bytes'] / 1e6:,.0f} MB of JSON) "
        f"in {s['dump_seconds']:.1f} s = {s['records_per_s']:,.0f} records/s "
        f"({s['uncompressed_mb_per_s']:.1f} MB/s) with {s['processes']} process(es); "
        f"total {s['seconds']:.1f} s"
    )
    return "\n".join(lines)


for _stage in STAGES:
    main_group.add_command(stage_command(_stage))


# --- entry point -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; library errors become ``error: <message>`` and exit status 2."""
    try:
        main_group.main(args=argv, prog_name="wsb-gpu", standalone_mode=False)
    except WsbError as e:
        for line in str(e).splitlines() or ["failed"]:
            click.echo(f"error: {line}", err=True)
        return 2
    except Interrupted as e:
        reap_children()
        click.echo(
            e.message or f"interrupted ({signal.Signals(e.signum).name}); rerun the same command to resume", err=True
        )
        return e.exit_code
    except OSError as e:
        click.echo(f"error: {os_error_line(e)}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as e:
        # One line, like every other error: what was wrong and where the help is.
        where = e.ctx.command_path if e.ctx is not None else "wsb-gpu"
        message = " ".join(e.format_message().split()).rstrip(".")
        click.echo(f"error: {message}; see '{where} --help'", err=True)
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


def entry() -> None:
    # SIGINT (Ctrl-C) and SIGTERM (scancel, a Slurm time limit, a CI timeout) stop the
    # command within seconds, closing the cluster and cancelling Slurm worker jobs.
    install_interrupts()
    sys.exit(main())


if __name__ == "__main__":
    entry()
