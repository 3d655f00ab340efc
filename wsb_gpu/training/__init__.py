"""Rolling-year training and evaluation, as a library.

A run is prepared once (:func:`~wsb_gpu.training.run.prepare`: the sample, its feature sets,
the per-month statistics and the rolling windows, in a
:class:`~wsb_gpu.training.run.TrainingRun`), then handed to a **task** (:data:`TASKS`),
which asks the run for one window at a time and returns a results object that writes the
result files::

    run = prepare(inputs, out, params=params, backend=backend, all_statistics=task.all_statistics(params))
    results = TASKS[params.task]().run(run)
    results.write(out)

=============  ==========================================================================
module         what it holds
=============  ==========================================================================
``sample``     the run's rows: features or the volatility panel, derived columns
``run``        :class:`TrainingRun`, :func:`prepare`, the windows
``entries``    what is fitted: one entry per (model, feature set)
``build``      a model of a run from its name and the settings
``families``   a window's fitted families, joined to its rows
``predict``    the regression task's prediction pass and per-day loss sums
``evaluate``   metrics per year and pooled, the Diebold–Mariano tests
``regression``  the regression task and its results
``spike``      the spike task and its results
``results``    the results contract and the file writers
=============  ==========================================================================
"""

from __future__ import annotations

from wsb_gpu.training.regression import RegressionResults, RegressionTask
from wsb_gpu.training.results import Results
from wsb_gpu.training.run import TrainingRun, prepare
from wsb_gpu.training.spike import SpikeResults, SpikeTask

TASKS: dict[str, type[RegressionTask] | type[SpikeTask]] = {"regression": RegressionTask, "spike": SpikeTask}
"""The tasks of the train stage, by ``train.task``."""

__all__ = [
    "TASKS",
    "RegressionResults",
    "RegressionTask",
    "Results",
    "SpikeResults",
    "SpikeTask",
    "TrainingRun",
    "prepare",
]
