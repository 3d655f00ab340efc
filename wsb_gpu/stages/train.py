"""Stage ``train``: rolling-year training and evaluation, HAR against every model on every
feature set (or, with ``train.task: spike``, spike classifiers against the logistic HAR).

For every test year ``Y`` each model is fitted on the rows dated in ``Y - train_years …
Y - 1`` and evaluated on year ``Y`` (:class:`~wsb_gpu.models.splits.RollingYearSplit`). All
models of a run use the same rows: the sample is built once and every model is scored on
it. Ridge, the elastic net and XGBoost are fitted once per **feature set**
(``train.feature_sets``, :mod:`wsb_gpu.signals.families`), so the run answers which signal
helps, not only whether the text as a whole does.

The work is done by :mod:`wsb_gpu.training`: :func:`~wsb_gpu.training.run.prepare` builds
the run (sample, feature sets, per-month statistics, windows), the task of ``train.task``
fits and evaluates it window by window, and its results object writes ``metrics.csv``,
``metrics.json``, ``coefficients.csv``, ``models.json`` and ``signals.json`` beside the
``predictions/`` it wrote. See docs/models.md and docs/signals.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wsb_gpu.backend import Backend
from wsb_gpu.config import TrainParams
from wsb_gpu.manifest import Manifest
from wsb_gpu.stages.base import StageResult
from wsb_gpu.training import TASKS, prepare
from wsb_gpu.training.results import TrainFields
from wsb_gpu.training.run import TrainInputs

if TYPE_CHECKING:
    from distributed import Client


class TrainManifest(Manifest, TrainFields):
    """The manifest of a results folder."""


__all__ = ["TrainFields", "TrainInputs", "TrainManifest", "run"]


def run(
    inputs: TrainInputs,
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: TrainParams,
    progress: bool = False,
) -> StageResult:
    """Fit and evaluate the task's models in every rolling window.

    Parameters
    ----------
    inputs
        ``features`` (text models) and/or ``volatility`` (HAR on the whole panel when given
        alone; the stock-days without posts for ``sample="all"``); ``links``, ``signals``
        and ``embeddings`` for the fitted families (default: the datasets the features
        stage read).
    out
        The results folder.
    backend
        CPU or GPU; decides the frames, the estimators and the XGBoost device.
    params
        ``task``, ``models`` (HAR is always included: it is the benchmark), ``feature_sets``,
        ``target``, ``train_years``, ``sample`` and the model and family sections.
    """
    task = TASKS[params.task]()
    training = prepare(
        inputs,
        out,
        params=params,
        backend=backend,
        client=client,
        progress=progress,
        all_statistics=task.all_statistics(params),
    )
    results = task.run(training)
    results.write(out)
    return StageResult(rows_in=results.rows_in, rows_out=results.rows_out, fields=results.fields)
