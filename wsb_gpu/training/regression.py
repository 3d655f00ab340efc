"""The regression task: every model on every feature set, forecasting the target.

For every window the task fits each entry (a model on a feature set;
:func:`~wsb_gpu.training.entries.entries_of`) on the training years, predicts the test
year in one pass over its rows (:mod:`wsb_gpu.training.predict`) and keeps the per-day loss
sums; the evaluation (:mod:`wsb_gpu.training.evaluate`) turns them into metrics per year
and pooled, the Diebold–Mariano tests against HAR and the Model Confidence Set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from wsb_gpu.models.metrics import model_confidence_set
from wsb_gpu.models.ridge import lambda_grid
from wsb_gpu.progress import compute, log
from wsb_gpu.signals.fitted import window_info
from wsb_gpu.training.build import model_class
from wsb_gpu.training.entries import Entry, entries_of
from wsb_gpu.training.evaluate import DM_LAG_RULE, DM_PVALUE, MCS_LEVELS, METRIC_COLUMNS, evaluate, fits_json
from wsb_gpu.training.predict import combine_daily, daily_meta, daily_partition, pred_meta, predict_partition
from wsb_gpu.training.results import Results, jsonable, write_json, write_table

if TYPE_CHECKING:
    from wsb_gpu.config import TrainParams
    from wsb_gpu.models.base import Model, Window
    from wsb_gpu.training.run import TrainingRun


@dataclass
class WindowRun:
    """One window's fits and its test year's daily loss sums."""

    window: Window
    fits: dict[str, Model]
    daily: pd.DataFrame


class RegressionTask:
    """Forecast the target (see the module docstring)."""

    name = "regression"

    @staticmethod
    def all_statistics(params: TrainParams) -> bool:
        """Whether pass 1 computes the moments of every column: the ``stats`` engine fits
        HAR, ridge and the elastic net of every window, fold and set from them."""
        return params.ridge.engine == "stats"

    def run(self, run: TrainingRun) -> RegressionResults:
        """Fit and evaluate every entry in every window of ``run``."""
        params = run.params
        entries = entries_of(run.models, run.sets, params.sequence.feature_set)
        by_key = [m for m in run.models if model_class(m).predicts_by_key and model_class(m).uses_feature_sets]
        if by_key and run.sets and params.sequence.feature_set not in {s.name for s in run.sets}:
            log(
                f"train: train.sequence.feature_set '{params.sequence.feature_set}' is not among the run's feature "
                f"sets; {', '.join(by_key)} read the set '{run.sets[0].name}'"
            )
        windows = [self.fit_window(run, entries, year) for year in run.test_years]
        rows, coefs, losses = evaluate(windows, entries, run.sample)
        with run.timed("mcs"):
            mcs = model_confidence_set(
                losses, reps=params.mcs.reps, block_size=params.mcs.block_size, seed=params.mcs.seed
            )
        return RegressionResults(run, entries, windows, rows, coefs, mcs, int(len(losses.dropna())))

    def fit_window(self, run: TrainingRun, entries: Sequence[Entry], test_year: int) -> WindowRun:
        """Fit every entry in the window of ``test_year`` and predict its test year."""
        with run.window(test_year) as window:
            fits: dict[str, Model] = {}
            for e in entries:
                with run.timed(f"fit_{e.model}"):
                    fits[e.key] = e.make(run.params).fit(window)
            with run.timed("predict"):
                daily = predict_window(run, window, fits)
        return WindowRun(window, fits, daily)


def predict_window(run: TrainingRun, window: Window, fits: Mapping[str, Model]) -> pd.DataFrame:
    """Predict the window's test year with every fit: write ``predictions/test_year=Y/`` and
    return the per-day loss sums (:func:`~wsb_gpu.training.predict.combine_daily`)."""
    year, cols, data = window.test_year, window.feature_columns, window.data
    keys = list(fits)
    columns = {k: [cols.index(c) for c in m.columns_] for k, m in fits.items()}
    test = data[data["year"] == year]
    preds = test.map_partitions(
        predict_partition,
        feature_cols=cols,
        target=run.sample.target,
        fits=dict(fits),
        columns=columns,
        meta=pred_meta(data._meta, keys),
    )
    write = run.backend.to_parquet(preds, run.out / "predictions" / f"test_year={year}")
    daily = preds.map_partitions(daily_partition, keys=keys, floor=window.floor, meta=daily_meta(data._meta, keys))
    _, daily_raw = compute(write, daily, label=f"train {year}: predictions", show=run.progress)
    return combine_daily(daily_raw, keys)


class RegressionResults(Results):
    """The regression task's metrics, fits and tests (:meth:`write` puts them in files)."""

    task = "regression"

    def __init__(
        self,
        run: TrainingRun,
        entries: list[Entry],
        windows: list[WindowRun],
        rows: list[dict[str, Any]],
        coefs: list[dict[str, Any]],
        mcs: Mapping[str, float],
        mcs_days: int,
    ) -> None:
        self.run, self.entries, self.windows = run, entries, windows
        self.coefs, self.mcs_pvalues, self.mcs_days = coefs, dict(mcs), mcs_days
        self.rows = [self._with_mcs(r) for r in rows]
        self.rows_in = run.rows_in

    def _with_mcs(self, row: dict[str, Any]) -> dict[str, Any]:
        """A pooled row with its MCS p-value and whether it is in the 90 % and 75 % sets."""
        if row["test_year"] != "all":
            return row
        p = self.mcs_pvalues.get(row["key"], float("nan"))
        row["mcs_pvalue"] = p
        for level in MCS_LEVELS:
            row[f"in_mcs_{round(level * 100):d}"] = bool(p >= level) if math.isfinite(p) else None
        return row

    @property
    def metrics(self) -> pd.DataFrame:
        """``metrics.csv``: one row per entry and test year, then the pooled rows."""
        table = pd.DataFrame(self.rows)
        mcs = [c for c in ("mcs_pvalue", "in_mcs_10", "in_mcs_25") if c in table]
        return table[[*METRIC_COLUMNS, *mcs]]

    @property
    def rows_out(self) -> int:
        return int(sum(w.daily["n"].sum() for w in self.windows))

    def fit_info(self, keep: Any) -> dict[str, dict[str, Any]]:
        """What each entry's fits chose per test year, for the entries ``keep(entry)`` picks."""
        return {
            e.key: {str(w.window.test_year): w.fits[e.key].info() for w in self.windows}
            for e in self.entries
            if keep(e)
        }

    def description(self) -> dict[str, Any]:
        """``metrics.json``: the run's settings, the tests' definitions and every metric row."""
        run, params, S = self.run, self.run.params, self.run.sample
        r = params.ridge
        return {
            "target": S.target,
            "sample": S.sample,
            "source": S.source,
            "engine": r.engine,
            "train_years": int(params.train_years),
            "models": run.models,
            "feature_sets": {s.name: {"families": list(s.families), "columns": len(s.columns)} for s in run.sets},
            "skipped_feature_sets": run.skipped,
            "entries": [{"key": e.key, "model": e.model, "feature_set": e.set_name} for e in self.entries],
            "lambdas": lambda_grid(r.n_lambdas, r.lambda_min, r.lambda_max).tolist(),
            "cv_folds": int(r.cv_folds),
            "features": S.feature_columns,
            "dm": {
                "benchmark": "har",
                "loss": "squared error (dm_*) and QLIKE (dm_qlike_*), averaged across stocks per trading day",
                "lag_rule": DM_LAG_RULE,
                "pvalue": DM_PVALUE,
            },
            "losses": {
                "qlike": "mean of log(h) + y^2 / h, h = max(yhat, floor)^2, floor = forecast_floor x the "
                "training window's mean target (Patton 2011)",
                "mape": "mean |y - yhat| / y over the test rows with y > 0",
                "forecast_floor": float(params.forecast_floor),
                "floor": {str(w.window.test_year): w.window.floor for w in self.windows},
            },
            "mcs": {
                "method": "Hansen, Lunde and Nason (2011), range statistic, stationary bootstrap (arch.bootstrap.MCS)",
                "loss": "daily mean squared error of each (model, feature set) over every test day",
                "reps": int(params.mcs.reps),
                "block_size": params.mcs.block_size,
                "levels": {f"{round(v * 100):d}": f"in the MCS when mcs_pvalue >= {v}" for v in MCS_LEVELS},
                "pvalues": {k: (None if not math.isfinite(v) else v) for k, v in self.mcs_pvalues.items()},
                "days": self.mcs_days,
            },
            "metrics": jsonable([{k: v for k, v in r.items() if k != "key"} for r in self.rows]),
            "cv": self.fit_info(lambda e: e.model == "ridge"),
            "xgboost": self.fit_info(lambda e: e.model == "xgboost"),
            # What the other models' fits chose: elastic net (a, λ), log-HAR, the sequence models.
            "fits": self.fit_info(lambda e: e.model not in ("har", "ridge", "xgboost")),
            "timings_s": self.timings,
        }

    def write(self, out: Path) -> None:
        self.metrics.to_csv(out / "metrics.csv", index=False)
        write_table(out / "coefficients.csv", self.coefs, ["model", "feature_set", "test_year"])
        write_json(out / "metrics.json", self.description())
        write_json(out / "models.json", fits_json(self.windows, self.entries), indent=None)
        write_json(out / "signals.json", window_info(self.run.fitted), indent=1)
