"""The training stage's spike task (``train.task: spike``): classify next-day volatility spikes.

The label of a stock-day is ``target > k * vol_22`` (:mod:`wsb_gpu.models.classify`). The
windows, the sample, the feature sets and the fitted families are the regression task's
(:func:`wsb_gpu.stages.train.prepare`, :func:`~wsb_gpu.stages.train.window_frame`): the
logistic HAR benchmark once per window, the penalised logistic model and XGBoost on every
feature set. Each window's rows are collected once; a classifier is fitted on the training
years (XGBoost: on all but the last, which stops it early and sets its threshold) and
scores the test year.

Outputs in ``out``: ``metrics.csv`` (per entry × test year, then pooled: AUC, average
precision, Brier, log loss, accuracy, precision, recall, F1, the threshold), ``metrics.json``
(the same with the label rule, the spike rates and each fit's details) and
``predictions/test_year=Y/`` (``permno, date, y, vol_22, label, p_<entry>``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wsb_gpu.backend import Backend, array_namespace, matrix, to_numpy, to_pandas
from wsb_gpu.config import TrainParams
from wsb_gpu.errors import WsbError
from wsb_gpu.models.classify import (
    SPIKE_MODELS,
    average_precision,
    best_f1_threshold,
    brier,
    delong,
    log_loss,
    make_classifier,
    rates,
    roc_auc,
    spike_rate_note,
    threshold_counts,
)
from wsb_gpu.progress import log
from wsb_gpu.signals.fitted import window_info
from wsb_gpu.stages.base import StageResult
from wsb_gpu.stages.train import Entry, _jsonable, entries_of, prepare, window_frame

if TYPE_CHECKING:
    from distributed import Client

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


def spike_entries(models: Sequence[str], sets: Sequence[Any]) -> tuple[list[Entry], list[str]]:
    """The entries of the spike task and the asked models that have no spike form."""
    kept = [m for m in models if m in SPIKE_MODELS]
    dropped = [m for m in models if m not in SPIKE_MODELS]
    return entries_of(kept, sets), dropped


def _classification_row(
    y: np.ndarray, p: np.ndarray, threshold: float, counts: Mapping[str, int], p_har: np.ndarray | None
) -> dict[str, Any]:
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


def run_spike(
    inputs: Mapping[str, Path | None],
    out: Path,
    *,
    backend: Backend,
    client: Client | None = None,
    params: TrainParams,
    progress: bool = False,
) -> StageResult:
    """Fit and evaluate the spike classifiers in every rolling window (see the module docstring)."""
    R = prepare(inputs, params=params, backend=backend, progress=progress, stat_all=False)
    S, k = R.sample, float(params.spike.k)
    if "vol_22" not in S.har_columns:
        raise WsbError("the spike task needs vol_22 among the HAR terms; check the volatility dataset")
    entries, dropped = spike_entries(R.models, R.sets)
    for m in dropped:
        log(f"train: '{m}' has no spike form and is skipped (the spike task fits {', '.join(SPIKE_MODELS)})")
    rule = spike_rate_note(k).replace("y_1", S.target, 1)
    log(f"train: spike task, label {rule}")
    rows: list[dict[str, Any]] = []
    pooled: dict[str, dict[str, list]] = {e.key: {"y": [], "p": [], "counts": []} for e in entries}
    details: dict[str, dict[str, Any]] = {e.key: {} for e in entries}
    rates_by_year: dict[str, dict[str, float]] = {}
    coefs: list[dict[str, Any]] = []
    fitted: dict[int, Any] = {}
    timings = R.timings
    for test_year, train_years in R.windows:
        t = time.perf_counter()
        wf = window_frame(
            test_year,
            train_years,
            S,
            R.stats,
            R.stat_cols,
            params=params,
            out=out,
            backend=backend,
            fams=R.fams,
            sources=R.sources,
            posts=R.posts,
            progress=progress,
            timings=timings,
        )
        data = wf.frame if wf.frame is not None else S.ddf
        cols = wf.columns
        part = data[data["year"].isin([*train_years, test_year])][["permno", "date", "year", *cols, S.target]].compute()
        X = matrix(part, cols)
        xp = array_namespace(X)
        y_true = matrix(part, [S.target])[:, 0]
        label = xp.astype(y_true > k * X[:, cols.index("vol_22")], xp.float32)
        year = to_numpy(matrix(part, ["year"])[:, 0]).astype(np.int64)
        fit_years, valid_years = (train_years[:-1], train_years[-1:]) if len(train_years) > 1 else (train_years, ())
        masks = {
            "train": np.isin(year, train_years),
            "fit": np.isin(year, fit_years),
            "valid": np.isin(year, valid_years),
            "test": year == test_year,
        }
        ix = {name: xp.asarray(np.flatnonzero(m)) for name, m in masks.items()}
        lab = to_numpy(label) > 0.5
        rates_by_year[str(test_year)] = {
            "train": float(lab[masks["train"]].mean()),
            "test": float(lab[masks["test"]].mean()) if masks["test"].any() else float("nan"),
        }
        timings["spike_rows"] = timings.get("spike_rows", 0.0) + time.perf_counter() - t
        y_test = lab[masks["test"]]
        pred_cols: dict[str, np.ndarray] = {}
        for e in entries:
            t = time.perf_counter()
            har = list(S.har_columns)
            ecols = har if e.feature_set is None else har + [c for c in e.feature_set.columns if c not in har]
            Xe = xp.take(X, xp.asarray([cols.index(c) for c in ecols]), axis=1)
            clf = make_classifier(e.model, params, backend)
            if e.model == "xgboost" and masks["valid"].any():
                Xf, Xv = xp.astype(Xe[ix["fit"]], xp.float32), xp.astype(Xe[ix["valid"]], xp.float32)
                clf.fit(Xf, label[ix["fit"]], Xv, label[ix["valid"]])
                threshold = best_f1_threshold(lab[masks["valid"]], clf.predict_proba(Xv))
                n_train = int(masks["fit"].sum())
            else:
                Xt = Xe[ix["train"]]
                if e.model == "xgboost":
                    Xt = xp.astype(Xt, xp.float32)
                clf.fit(Xt, label[ix["train"]])
                threshold = best_f1_threshold(lab[masks["train"]], clf.predict_proba(Xt))
                n_train = int(masks["train"].sum())
            Xtest = Xe[ix["test"]]
            p = clf.predict_proba(xp.astype(Xtest, xp.float32) if e.model == "xgboost" else Xtest)
            counts = threshold_counts(y_test, p, threshold)
            rows.append(
                {
                    "key": e.key,
                    "model": e.model,
                    "feature_set": e.set_name,
                    "test_year": str(test_year),
                    "n_train": n_train,
                    **_classification_row(
                        y_test, p, threshold, counts, pred_cols.get("p_har") if e.key != "har" else None
                    ),
                }
            )
            acc = pooled[e.key]
            acc["y"].append(y_test)
            acc["p"].append(p)
            acc["counts"].append(counts)
            info = clf.info()
            details[e.key][str(test_year)] = {"threshold": threshold, **info}
            if info.get("coef_standardised") is not None:
                har_coef = dict(zip(har, info["coef_standardised"][: len(har)]))
                coefs.append({"model": e.model, "feature_set": e.set_name, "test_year": test_year, **har_coef})
            pred_cols[f"p_{e.key}"] = p
            timings[f"fit_{e.model}"] = timings.get(f"fit_{e.model}", 0.0) + time.perf_counter() - t
        test_part = to_pandas(part.iloc[np.flatnonzero(masks["test"])])
        pred = pd.DataFrame(
            {
                "permno": test_part["permno"].to_numpy(),
                "date": test_part["date"].to_numpy(),
                "y": to_numpy(y_true[ix["test"]]),
                "vol_22": to_numpy(X[ix["test"], cols.index("vol_22")]),
                "label": y_test,
                **pred_cols,
            }
        )
        folder = out / "predictions" / f"test_year={test_year}"
        folder.mkdir(parents=True, exist_ok=True)
        pred.to_parquet(folder / "part.0.parquet", index=False)
        if wf.fitted is not None:
            fitted[test_year] = wf.fitted
        wf.close()
    for e in entries:
        acc = pooled[e.key]
        if not acc["y"]:
            continue
        y, p = np.concatenate(acc["y"]), np.concatenate(acc["p"])
        p_har = np.concatenate(pooled["har"]["p"]) if e.key != "har" else None
        counts = {c: sum(d[c] for d in acc["counts"]) for c in ("tp", "fp", "fn", "tn")}
        train_rows = sum(r["n_train"] for r in rows if r["key"] == e.key)
        rows.append(
            {
                "key": e.key,
                "model": e.model,
                "feature_set": e.set_name,
                "test_year": "all",
                "n_train": train_rows,
                **_classification_row(y, p, float("nan"), counts, p_har),
            }
        )
    table = pd.DataFrame(rows)
    table[SPIKE_METRICS].to_csv(out / "metrics.csv", index=False)
    report = {
        "task": "spike",
        "target": S.target,
        "label": rule,
        "k": k,
        "sample": S.sample,
        "train_years": int(params.train_years),
        "models": [m for m in R.models if m in SPIKE_MODELS],
        "skipped_models": dropped,
        "feature_sets": {s.name: {"families": list(s.families), "columns": len(s.columns)} for s in R.sets},
        "skipped_feature_sets": R.skipped,
        "entries": [{"key": e.key, "model": e.model, "feature_set": e.set_name} for e in entries],
        "spike_rate": rates_by_year,
        "threshold": "maximises F1 on the training window (XGBoost: on its held-out last training year)",
        "auc_test": "DeLong (1988) against the logistic HAR on the same test rows; auc_pvalue one-sided "
        "(H1: larger AUC than HAR); rows treated as independent",
        "metrics": _jsonable([{k: v for k, v in r.items() if k != "key"} for r in rows]),
        "fits": details,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    # The logistic models' HAR-term coefficients (standardised), the fits, the families learned.
    pd.DataFrame(coefs, columns=list(coefs[0]) if coefs else ["model", "feature_set", "test_year"]).to_csv(
        out / "coefficients.csv", index=False
    )
    (out / "models.json").write_text(json.dumps(details, allow_nan=True) + "\n")
    (out / "signals.json").write_text(json.dumps(window_info(fitted), indent=1) + "\n")
    return StageResult(
        rows_in=sum(int(m.n) for m in R.stats.values()),
        rows_out=int(sum(r["n_test"] for r in rows if r["test_year"] != "all" and r["key"] == "har")),
        fields={
            "task": "spike",
            "models": report["models"],
            "feature_sets": [s.name for s in R.sets],
            "fitted_families": list(R.fams),
            "test_years": [int(w[0]) for w in R.windows],
            "timings_s": report["timings_s"],
            "outputs": [
                "metrics.csv",
                "metrics.json",
                "coefficients.csv",
                "models.json",
                "signals.json",
                "predictions/",
            ],
        },
    )
