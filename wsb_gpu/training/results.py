"""What the tasks of the train stage return: a results object that writes itself.

A task's :meth:`run` returns one results object (in the manner of arch's
``MCS.compute()`` then ``.pvalues``): the metric rows, the fits and the tests are attributes,
and :meth:`Results.write` puts ``metrics.csv``, ``metrics.json``, ``coefficients.csv``,
``models.json`` and ``signals.json`` into the results folder (the predictions are written
window by window, as they are made).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

import pandas as pd

if TYPE_CHECKING:
    from wsb_gpu.training.run import TrainingRun

OUTPUTS = ["metrics.csv", "metrics.json", "coefficients.csv", "models.json", "signals.json", "predictions/"]
"""The files a train stage's results folder holds."""


class TrainFields(TypedDict):
    """What the train stage's manifest records about a run (besides the runner's fields)."""

    task: str
    models: list[str]
    feature_sets: list[str]
    fitted_families: list[str]
    test_years: list[int]
    timings_s: dict[str, float]
    outputs: list[str]


def jsonable(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows for JSON: NaN and infinities as None, NumPy scalars as Python ones.

    >>> import numpy as np
    >>> jsonable([{"a": float("nan"), "b": np.int64(2), "c": "x"}])
    [{'a': None, 'b': 2, 'c': 'x'}]
    """

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v.item() if hasattr(v, "item") else v

    return [{k: clean(v) for k, v in r.items()} for r in rows]


def write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    """``data`` as JSON (NaN kept as ``NaN``, as Python's json writes it), ending in a newline."""
    path.write_text(json.dumps(data, indent=indent, allow_nan=True) + "\n")


def write_table(path: Path, rows: Sequence[Mapping[str, Any]], empty: Sequence[str]) -> None:
    """``rows`` as CSV, or a header of ``empty`` columns when there are none."""
    pd.DataFrame(list(rows), columns=list(rows[0]) if rows else list(empty)).to_csv(path, index=False)


class Results(ABC):
    """The results of one task of the train stage (``run``: the training run they come from)."""

    task: ClassVar[str]
    run: TrainingRun
    rows_in: int
    """Rows of the sample the task read."""

    @abstractmethod
    def write(self, out: Path) -> None:
        """Write the result files into ``out``."""

    @property
    @abstractmethod
    def rows_out(self) -> int:
        """Test rows scored."""

    @property
    def models(self) -> list[str]:
        """The models the task fitted."""
        return self.run.models

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per phase of the run, rounded."""
        return self.run.timings.rounded()

    @property
    def fields(self) -> TrainFields:
        """What the stage's manifest records about the run (task, models, sets, years, timings)."""
        run = self.run
        return {
            "task": self.task,
            "models": self.models,
            "feature_sets": [s.name for s in run.sets],
            "fitted_families": list(run.families),
            "test_years": run.test_years,
            "timings_s": self.timings,
            "outputs": OUTPUTS,
        }
