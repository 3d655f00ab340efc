"""The spike task (``train.task: spike``): classify next-day volatility spikes.

The label of a stock-day is ``target > k * vol_22`` (:mod:`wsb_gpu.models.classify`). The
windows, the sample, the feature sets and the fitted families are the regression task's
(:class:`~wsb_gpu.training.run.TrainingRun`): the logistic HAR benchmark once per window,
the penalised logistic model and XGBoost on every feature set, each a
:class:`~wsb_gpu.models.classify.SpikeClassifier` fitted on the window
(``fit(window)`` / ``predict_proba``). Each classifier scores the test year's rows.

Outputs in ``out``: ``metrics.csv`` (per entry × test year, then pooled: AUC, average
precision, Brier, log loss, accuracy, precision, recall, F1, the threshold),
``metrics.json`` (the same with the label rule, the spike rates and each fit's details) and
``predictions/test_year=Y/`` (``permno, date, y, vol_22, label, p_<entry>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wsb_gpu.backend import matrix, to_numpy, to_pandas
from wsb_gpu.errors import WsbError
from wsb_gpu.models.classify import (
    SPIKE_MODELS,
    average_precision,
    brier,
    delong,
    log_loss,
    rates,
    roc_auc,
    spike_rate_note,
    threshold_counts,
)
from wsb_gpu.progress import log
from wsb_gpu.signals.fitted import window_info
from wsb_gpu.training.entries import Entry, entries_of
from wsb_gpu.training.results import Results, jsonable, write_json, write_table

if TYPE_CHECKING:
    from wsb_gpu.config import TrainParams
    from wsb_gpu.models.base import Window
    from wsb_gpu.models.classify import SpikeClassifier
    from wsb_gpu.training.run import TrainingRun

SPIKE_METRICS = [
    "model",
    "feature_set",
    "test_year",
    "n_train",
    "n_test",
    "positives",
    "base_rate",
    "auc",
    "ap",
    "brier",
    "log_loss",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "threshold",
    "auc_z",
    "auc_pvalue",
]
COUNTS = ("tp", "fp", "fn", "tn")


def spike_entries(models: Sequence[str], sets: Sequence[Any]) -> tuple[list[Entry], list[str]]:
    """The entries of the spike task and the asked models that have no spike form."""
    kept = [m for m in models if m in SPIKE_MODELS]
    dropped = [m for m in models if m not in SPIKE_MODELS]
    return entries_of(kept, sets, task="spike"), dropped


def classification_row(
    y: np.ndarray, p: np.ndarray, threshold: float, counts: Mapping[str, int], p_har: np.ndarray | None
) -> dict[str, Any]:
    """The metrics of probabilities ``p`` for labels ``y`` (DeLong against ``p_har``)."""
    z, pv = delong(y, p, p_har) if p_har is not None else (float("nan"), float("nan"))
    return {
        "n_test": int(y.size),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if y.size else float("nan"),
        "auc": roc_auc(y, p),
        "ap": average_precision(y, p),
        "brier": brier(y, p) if y.size else float("nan"),
        "log_loss": log_loss(y, p) if y.size else float("nan"),
        **rates(dict(counts)),
        "threshold": threshold,
        "auc_z": z,
        "auc_pvalue": pv,
    }


class SpikeTask:
    """Classify spikes (see the module docstring)."""

    name = "spike"

    @staticmethod
    def all_statistics(params: TrainParams) -> bool:
        """The classifiers fit on rows: pass 1 needs the HAR block only."""
        return False

    def run(self, run: TrainingRun) -> SpikeResults:
        S = run.sample
        if "vol_22" not in S.har_columns:
            raise WsbError("the spike task needs vol_22 among the HAR terms; check the volatility dataset")
        entries, dropped = spike_entries(run.models, run.sets)
        for m in dropped:
            log(f"train: '{m}' has no spike form and is skipped (the spike task fits {', '.join(SPIKE_MODELS)})")
        results = SpikeResults(run, entries, dropped)
        log(f"train: spike task, label {results.rule}")
        for test_year in run.test_years:
            with run.window(test_year, statistics=False) as window:
                self.fit_window(run, window, entries, results)
        return results

    def fit_window(self, run: TrainingRun, window: Window, entries: Sequence[Entry], results: SpikeResults) -> None:
        """Fit every classifier on the window, score its test year, write its predictions."""
        year, k = window.test_year, float(run.params.spike.k)
        with run.timed("spike_rows"):
            test = collect_test_rows(window)
            X = matrix(test, window.feature_columns)
            y = to_numpy(matrix(test, [run.sample.target])[:, 0])
            vol_22 = to_numpy(X[:, window.feature_columns.index("vol_22")])
            label = y > k * vol_22
            results.rates[str(year)] = {"train": self.train_rate(window, k), "test": _mean(label)}
        probs: dict[str, np.ndarray] = {}
        for e in entries:
            with run.timed(f"fit_{e.model}"):
                clf: SpikeClassifier = e.make(run.params).fit(window)  # a spike entry makes a SpikeClassifier
                cols = [window.feature_columns.index(c) for c in clf.columns_]
                p = clf.predict_proba(X[:, cols])
            results.add(e, year, clf, label, p, probs.get("har"))
            probs[e.key] = p
        test = to_pandas(test)
        pred = pd.DataFrame(
            {
                "permno": test["permno"].to_numpy(),
                "date": test["date"].to_numpy(),
                "y": y,
                "vol_22": vol_22,
                "label": label,
                **{f"p_{key}": p for key, p in probs.items()},
            }
        )
        folder = run.out / "predictions" / f"test_year={year}"
        folder.mkdir(parents=True, exist_ok=True)
        pred.to_parquet(folder / "part.0.parquet", index=False)

    @staticmethod
    def train_rate(window: Window, k: float) -> float:
        """The spike rate of the window's training rows."""
        X, y, _ = window.rows(list(window.sample.har_columns))
        har = list(window.sample.har_columns)
        return _mean(to_numpy(y) > k * to_numpy(X[:, har.index("vol_22")]))


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else float("nan")


def collect_test_rows(window: Window) -> Any:
    """The test year's rows (``permno, date``, every feature column and the target), in
    ``(permno, day)`` order."""
    data, cols, target = window.data, window.feature_columns, window.sample.target
    part = data[data["year"] == window.test_year][["permno", "date", "day", *cols, target]].compute()
    return part.sort_values(["permno", "day"]).reset_index(drop=True)


class SpikeResults(Results):
    """The spike task's metrics and fits (:meth:`write` puts them in files)."""

    task = "spike"

    def __init__(self, run: TrainingRun, entries: list[Entry], dropped: list[str]) -> None:
        self.run, self.entries, self.dropped = run, entries, dropped
        self.k = float(run.params.spike.k)
        self.rule = spike_rate_note(self.k).replace("y_1", run.sample.target, 1)
        self.rows: list[dict[str, Any]] = []
        self.coefs: list[dict[str, Any]] = []
        self.details: dict[str, dict[str, Any]] = {e.key: {} for e in entries}
        self.rates: dict[str, dict[str, float]] = {}
        self._pooled: dict[str, dict[str, list]] = {e.key: {"y": [], "p": [], "counts": []} for e in entries}
        self.rows_in = run.rows_in

    def add(
        self, e: Entry, year: int, clf: SpikeClassifier, label: np.ndarray, p: np.ndarray, p_har: np.ndarray | None
    ) -> None:
        """Record one classifier's test year (DeLong against the logistic HAR's ``p_har``)."""
        counts = threshold_counts(label, p, clf.threshold_)
        row = classification_row(label, p, clf.threshold_, counts, p_har if e.key != "har" else None)
        self.rows.append(
            {
                "key": e.key,
                "model": e.model,
                "feature_set": e.set_name,
                "test_year": str(year),
                "n_train": clf.n_train_,
                **row,
            }
        )
        pooled = self._pooled[e.key]
        pooled["y"].append(label)
        pooled["p"].append(p)
        pooled["counts"].append(counts)
        info = clf.info()
        self.details[e.key][str(year)] = info
        if info.get("coef_standardised") is not None:
            har = list(self.run.sample.har_columns)
            coef = dict(zip(har, info["coef_standardised"][: len(har)]))
            self.coefs.append({"model": e.model, "feature_set": e.set_name, "test_year": year, **coef})

    def pooled_rows(self) -> list[dict[str, Any]]:
        """One row per entry over every test year."""
        out = []
        for e in self.entries:
            acc = self._pooled[e.key]
            if not acc["y"]:
                continue
            y, p = np.concatenate(acc["y"]), np.concatenate(acc["p"])
            p_har = np.concatenate(self._pooled["har"]["p"]) if e.key != "har" else None
            counts = {c: sum(d[c] for d in acc["counts"]) for c in COUNTS}
            n_train = sum(r["n_train"] for r in self.rows if r["key"] == e.key)
            row = classification_row(y, p, float("nan"), counts, p_har)
            out.append(
                {
                    "key": e.key,
                    "model": e.model,
                    "feature_set": e.set_name,
                    "test_year": "all",
                    "n_train": n_train,
                    **row,
                }
            )
        return out

    @property
    def all_rows(self) -> list[dict[str, Any]]:
        return self.rows + self.pooled_rows()

    @property
    def rows_out(self) -> int:
        return int(sum(r["n_test"] for r in self.rows if r["key"] == "har"))

    @property
    def models(self) -> list[str]:
        return [m for m in self.run.models if m in SPIKE_MODELS]

    def description(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``metrics.json``: the label rule, the spike rates, every metric row and each fit."""
        run, params = self.run, self.run.params
        return {
            "task": "spike",
            "target": run.sample.target,
            "label": self.rule,
            "k": self.k,
            "sample": run.sample.sample,
            "train_years": int(params.train_years),
            "models": self.models,
            "skipped_models": self.dropped,
            "feature_sets": {s.name: {"families": list(s.families), "columns": len(s.columns)} for s in run.sets},
            "skipped_feature_sets": run.skipped,
            "entries": [{"key": e.key, "model": e.model, "feature_set": e.set_name} for e in self.entries],
            "spike_rate": self.rates,
            "threshold": "maximises F1 on the training window (XGBoost: on its held-out last training year)",
            "auc_test": "DeLong (1988) against the logistic HAR on the same test rows; auc_pvalue one-sided "
            "(H1: larger AUC than HAR); rows treated as independent",
            "metrics": jsonable([{k: v for k, v in r.items() if k != "key"} for r in rows]),
            "fits": self.details,
            "timings_s": self.timings,
        }

    def write(self, out: Path) -> None:
        rows = self.all_rows
        pd.DataFrame(rows)[SPIKE_METRICS].to_csv(out / "metrics.csv", index=False)
        write_json(out / "metrics.json", self.description(rows))
        # The logistic models' HAR-term coefficients (standardised), the fits, the families learned.
        write_table(out / "coefficients.csv", self.coefs, ["model", "feature_set", "test_year"])
        write_json(out / "models.json", self.details, indent=None)
        write_json(out / "signals.json", window_info(self.run.fitted), indent=1)
