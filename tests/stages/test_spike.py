"""The spike task: classification metrics against scikit-learn, the stage end to end,
text that predicts spikes found and a placebo not, no look-ahead."""

import numpy as np
import pandas as pd
import pytest
from test_train import HAR, features_of, make_panel, run, write

from wsb_gpu.models.classify import (
    average_precision,
    best_f1_threshold,
    brier,
    log_loss,
    rates,
    roc_auc,
    threshold_counts,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed):
    from sklearn import metrics as skm

    rng = np.random.default_rng(seed)
    n = 500
    y = rng.random(n) < 0.1
    p = np.round(np.clip(0.1 + 0.3 * y + rng.normal(0, 0.2, n), 0.001, 0.999), 2)  # ties on purpose
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    assert average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), rel=1e-12)
    assert brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    t = best_f1_threshold(y, p)
    got = rates(threshold_counts(y, p, t))
    assert got["f1"] == pytest.approx(skm.f1_score(y, p >= t), rel=1e-12)
    assert got["precision"] == pytest.approx(skm.precision_score(y, p >= t), rel=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, p >= t), rel=1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= t), rel=1e-12)
    # The chosen threshold is the best of every candidate (brute force).
    assert got["f1"] >= max(skm.f1_score(y, p >= c) for c in np.unique(p)) - 1e-12
    assert np.isnan(roc_auc(np.zeros(5, bool), np.arange(5.0))) and np.isnan(
        average_precision(np.zeros(3, bool), p[:3])
    )


# The test panel's vol_22 is a 22-day mean of daily volatility (not the root of 22 squared
# returns), so a spike is a day 60 % above the month's level.
K = 1.6


def spike_panel(gamma, seed):
    """The training tests' panel; on post days the hype factor (embedding e000) raises the
    next day's volatility, so with gamma > 0 it predicts spikes."""
    return make_panel(n_stocks=30, gamma=gamma, seed=seed)


def run_spike(tmp, name, feats, **kw):
    args = {"task": "spike", "models": ["har", "ridge", "xgboost"], "spike": {"k": K, "C": 1.0, "n_estimators": 60}}
    args.update(kw)
    out, m, manifest = run(tmp, name, features=write(feats, tmp / f"f_{name}"), **args)
    return out, m


@pytest.fixture(scope="module")
def planted():
    panel = spike_panel(0.6, seed=3)
    feats = features_of(panel)
    # A spike panel: next-day volatility of the sample's rows from returns, as the stage labels it.
    return feats


def test_spike_stage_metrics_equal_the_predictions(tmp_path, planted):
    from sklearn import metrics as skm

    out, m = run_spike(tmp_path, "s", planted)
    p = pd.read_parquet(out / "predictions")
    assert {"permno", "date", "y", "vol_22", "label", "p_har", "p_ridge__text", "p_xgboost__text"} <= set(p.columns)
    np.testing.assert_array_equal(p["label"], p["y"] > K * p["vol_22"])
    p["year"] = pd.to_datetime(p["date"].astype("datetime64[s]")).dt.year.astype(str)
    rows = m.set_index(["model", "feature_set", "test_year"]).sort_index()
    for year, g in [*p.groupby("year"), ("all", p)]:
        for key, idx in (("har", ("har", "har")), ("xgboost__text", ("xgboost", "text"))):
            got = rows.loc[(*idx, year)]
            assert got["auc"] == pytest.approx(skm.roc_auc_score(g["label"], g[f"p_{key}"]), rel=1e-10)
            assert got["ap"] == pytest.approx(skm.average_precision_score(g["label"], g[f"p_{key}"]), rel=1e-10)
            assert got["base_rate"] == pytest.approx(g["label"].mean())
            assert got["n_test"] == len(g)
    assert 0.01 < rows.loc[("har", "har", "all"), "base_rate"] < 0.3


def test_text_beats_har_in_auc_when_planted_and_not_in_the_placebo(tmp_path, planted):
    _, m = run_spike(tmp_path, "p", planted)
    pooled = m[m.test_year == "all"].set_index("model")
    assert pooled.loc["xgboost", "auc"] > pooled.loc["har", "auc"] + 0.01
    assert pooled.loc["ridge", "auc"] > pooled.loc["har", "auc"] + 0.01
    _, m0 = run_spike(tmp_path, "q", features_of(spike_panel(0.0, seed=4)))
    pooled0 = m0[m0.test_year == "all"].set_index("model")
    assert pooled0.loc["ridge", "auc"] < pooled0.loc["har", "auc"] + 0.01


def test_no_look_ahead_in_the_spike_task(tmp_path, planted):
    """Changing the test year's rows changes neither the fits nor the thresholds."""
    out_a, a = run_spike(tmp_path, "a", planted, models=["har", "ridge"])
    changed = planted.copy()
    later = pd.to_datetime(changed["date"]).dt.year >= 2018
    rng = np.random.default_rng(1)
    for c in ["y_1", *HAR, "e000"]:
        changed[c] = np.where(later, changed[c] * rng.uniform(0.5, 2.0, len(changed)), changed[c]).astype(
            changed[c].dtype
        )
    out_b, b = run_spike(tmp_path, "b", changed, models=["har", "ridge"])
    import json

    fa = json.loads((out_a / "metrics.json").read_text())["fits"]
    fb = json.loads((out_b / "metrics.json").read_text())["fits"]
    for key in ("har", "ridge__text"):
        assert fa[key]["2018"]["threshold"] == fb[key]["2018"]["threshold"]
        np.testing.assert_allclose(
            fa[key]["2018"]["coef_standardised"], fb[key]["2018"]["coef_standardised"], rtol=1e-9
        )


def test_models_without_a_spike_form_are_skipped_with_a_note(tmp_path, planted, capsys):
    _, m = run_spike(tmp_path, "n", planted, models=["har", "log_har", "ridge"])
    assert set(m["model"]) == {"har", "ridge"}


def _delong_direct(y, a, b):
    """DeLong's z from the O(m n) placement values, written out."""
    y = y.astype(bool)
    v10, v01, aucs = [], [], []
    for p in (a, b):
        X, Y = p[y], p[~y]
        psi = (X[:, None] > Y[None, :]) + 0.5 * (X[:, None] == Y[None, :])
        v10.append(psi.mean(1))
        v01.append(psi.mean(0))
        aucs.append(psi.mean())
    S = np.cov(np.vstack(v10)) / y.sum() + np.cov(np.vstack(v01)) / (~y).sum()
    return (aucs[0] - aucs[1]) / np.sqrt(S[0, 0] + S[1, 1] - 2 * S[0, 1])


@pytest.mark.parametrize("seed", [0, 1])
def test_delong_matches_the_direct_placement_values(seed):
    from scipy.stats import norm

    from wsb_gpu.models.classify import delong

    rng = np.random.default_rng(seed)
    y = rng.random(400) < 0.15
    a = np.round(rng.random(400) + 0.5 * y, 1)  # ties on purpose
    b = np.round(rng.random(400) + 0.3 * y, 1)
    z, p = delong(y, a, b)
    assert z == pytest.approx(_delong_direct(y, a, b), rel=1e-10)
    assert p == pytest.approx(norm.sf(z), rel=1e-12)
    assert np.isnan(delong(np.zeros(4, bool), a[:4], b[:4])[0])


def test_spike_report(tmp_path, planted):
    from wsb_gpu.stages import run_stage

    out, m = run_spike(tmp_path, "r", planted, models=["har", "ridge"])
    report = tmp_path / "report"
    run_stage("report", report, results=out)
    text = (report / "report.md").read_text()
    assert "volatility spikes" in text and "## Which signal helps?" in text and "DeLong" in text
    assert "Penalised logistic" in text and "Logistic HAR" in text
    assert (report / "fig8_spike_roc_pr.png").stat().st_size > 1000 and "fig8_spike_roc_pr.png" in text


@pytest.mark.gpu
def test_spike_gpu_matches_cpu(tmp_path, planted):
    """cuDF rows, cuML logistic regression and XGBoost on CUDA give the CPU twin's AUCs."""
    from wsb_gpu.backend import resolve_backend

    _, cpu = run_spike(tmp_path, "c", planted)
    _, gpu = run_spike(tmp_path, "g", planted, backend=resolve_backend("gpu"))
    key = ["model", "feature_set", "test_year"]
    a, b = cpu.set_index(key).sort_index(), gpu.set_index(key).sort_index()
    assert (a["n_test"] == b["n_test"]).all() and (a["positives"] == b["positives"]).all()
    logit = a.index.get_level_values("model") != "xgboost"
    np.testing.assert_allclose(b.loc[logit, "auc"], a.loc[logit, "auc"], atol=1e-3)
    np.testing.assert_allclose(b.loc[~logit, "auc"], a.loc[~logit, "auc"], atol=0.02)
