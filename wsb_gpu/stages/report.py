"""Stage ``report``: the results (and the lake they belong to) -> ``report.md`` + figures.

The report reads the train stage's results and, when it is given the run directory, the
volatility and mentions datasets and ``run.json`` for the figures and the provenance
(:mod:`wsb_gpu.report.load`), draws the figures (:mod:`wsb_gpu.report.figures`) and
writes the Markdown (:mod:`wsb_gpu.report.markdown`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from wsb_gpu.backend import Backend
from wsb_gpu.config import EmptyParams
from wsb_gpu.manifest import Manifest
from wsb_gpu.report import figures as fig
from wsb_gpu.report import load, spike
from wsb_gpu.report.markdown import render_markdown
from wsb_gpu.stages.base import StageResult

if TYPE_CHECKING:
    from distributed import Client


class ReportInputs(TypedDict):
    """The inputs of report: the train stage's results and, optionally, the run directory."""

    results: Path
    lake: Path | None


class ReportFields(TypedDict):
    """The manifest fields of report (besides :class:`~wsb_gpu.manifest.Manifest`'s)."""

    lake: str | None
    figures: list[str]


class ReportManifest(Manifest, ReportFields):
    """The manifest of the report folder."""


def run(
    inputs: ReportInputs,
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: EmptyParams,
    progress: bool = False,
) -> StageResult:
    """Write ``report.md`` and its figures into ``out``.

    Parameters
    ----------
    inputs
        ``results``: the train stage's output (``metrics.csv``, ``metrics.json``,
        ``predictions/``); ``lake``: the run directory, for the volatility figures (daily
        mean, scatter matrix, rolling β), the mentions figure and ``run.json`` (default: the
        parent of ``results`` when it looks like a run directory; a folder that does not
        exist is allowed and gives no such figures).
    """
    results = inputs["results"]
    lake = load.find_lake(results, inputs["lake"])
    run_record = load.read_run(lake)
    vol_dir = lake / "volatility" if lake is not None else None
    men_dir = lake / "mentions" if lake is not None else None
    figures = volatility_figures(vol_dir, out)
    if spike.is_spike(results):
        return _spike_report(results, out, figures, run_record, lake)
    metrics = load.read_metrics(results)
    shown = load.headline(metrics)
    figures["signals"] = fig.plot_signals(load.signal_table(metrics), out / fig.FIGURES["signals"])
    figures["r2"] = fig.plot_r2(metrics[metrics["model"].isin(shown)], out / fig.FIGURES["r2"])
    figures["predicted"] = fig.plot_predicted(load.read_predictions(results, shown), out / fig.FIGURES["predicted"])
    ridge = next((k for k in shown if k.split("__")[0] == "ridge"), "ridge")
    lambdas, coefs = load.read_ridge_details(results, metrics, model=ridge)
    _, har_coefs = load.read_ridge_details(results, metrics, model="har")
    figures["ridge"] = fig.plot_ridge(
        lambdas, coefs, out / fig.FIGURES["ridge"], har_coefs, load.lambda_grid_of(results)
    )
    figures["mentions"] = fig.plot_mentions(
        load.mentions_per_day(men_dir) if load.has_parquet(men_dir) else None, out / fig.FIGURES["mentions"]
    )
    text = render_markdown(metrics, figures, run_record, results, coefs, load.read_signals(results))
    (out / "report.md").write_text(text, encoding="utf-8")
    made = sorted(p.name for p in figures.values() if p is not None)
    return StageResult(
        rows_in=len(metrics), rows_out=len(made), fields=ReportFields(lake=str(lake) if lake else None, figures=made)
    )


def volatility_figures(vol_dir: Path | None, out: Path) -> dict[str, Path | None]:
    """The figures of the volatility panel: daily means, the scatter / KDE matrix, rolling β."""
    vol = vol_dir if load.has_parquet(vol_dir) else None
    return {
        "volatility": fig.plot_volatility(
            load.daily_mean_volatility(vol) if vol is not None else None, out / fig.FIGURES["volatility"]
        ),
        "scatter_matrix": fig.plot_scatter_matrix(
            load.volatility_sample(vol) if vol is not None else None, out / fig.FIGURES["scatter_matrix"]
        ),
        "rolling_beta": fig.plot_rolling_beta(
            load.rolling_beta(vol) if vol is not None else None, out / fig.FIGURES["rolling_beta"]
        ),
    }


def _spike_report(
    results: Path, out: Path, figures: dict[str, Path | None], run_record: Any, lake: Path | None
) -> StageResult:
    """The spike task's report (:mod:`wsb_gpu.report.spike`)."""
    table, info = spike.read_spike_metrics(results)
    keys = list(dict.fromkeys(table["key"]))
    pred = spike.read_spike_predictions(results, keys)
    figures["roc_pr"] = fig.plot_roc_pr(pred, keys, out / fig.FIGURES["roc_pr"])
    text = spike.render_spike_markdown(table, info, figures, run_record, results)
    (out / "report.md").write_text(text, encoding="utf-8")
    made = sorted(p.name for p in figures.values() if p is not None)
    return StageResult(
        rows_in=len(table), rows_out=len(made), fields=ReportFields(lake=str(lake) if lake else None, figures=made)
    )
