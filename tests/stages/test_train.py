"""Rolling-year training: exact HAR, engines agree, no look-ahead, planted effect found."""

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wsb_gpu.backend import Backend
from wsb_gpu.errors import WsbError
from wsb_gpu.stages import run_stage

HAR = ["vol_1", "vol_5", "vol_22", "vol_63"]
RIDGE = {"engine": "stats", "n_lambdas": 5, "lambda_min": 0.01, "lambda_max": 1e4, "cv_folds": 3}
XGB = {
    "n_estimators": 15,
    "max_depth": 3,
    "learning_rate": 0.3,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "min_child_weight": 1.0,
    "early_stopping_rounds": 5,
    "seed": 0,
}


def make_panel(n_stocks=20, first_year=2014, last_year=2019, dim=5, gamma=0.15, seed=0, post_prob=0.5):
    """A small stock-day panel: log-volatility AR(1); on post days a hype factor, carried
    by embedding dim e000, raises the next day's volatility by ``gamma`` (0 = placebo).

    Returns all stock-days (``n_posts`` = 0 on days without posts)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(f"{first_year}-01-01", f"{last_year}-12-31")
    T = len(dates)
    frames = []
    for s in range(n_stocks):
        hype = rng.normal(size=T)
        posts = rng.random(T) < post_prob
        shock = 0.3 * rng.normal(size=T)
        h = np.zeros(T)
        for t in range(1, T):
            h[t] = 0.9 * h[t - 1] + (gamma * hype[t - 1] if posts[t - 1] else 0.0) + shock[t]
        v = 0.02 * np.exp(h)
        f = pd.DataFrame({"permno": np.int64(10000 + s), "date": dates.date})
        f["ret"] = rng.normal(size=T) * v
        f["vol_1"] = v
        for w in (5, 22, 63):
            f[f"vol_{w}"] = pd.Series(v).rolling(w).mean().to_numpy()
        for w in (1, 5, 22, 63):
            f[f"y_{w}"] = f[f"vol_{w}"].shift(-1)
        f["n_posts"] = np.where(posts, rng.integers(1, 5, T), 0)
        f["n_mentions"] = f["n_posts"] + np.where(posts, rng.integers(0, 3, T), 0)
        E = rng.normal(size=(T, dim))
        E[:, 0] = hype + 0.3 * rng.normal(size=T)
        for j in range(dim):
            f[f"e{j:03d}"] = np.where(posts, E[:, j], np.nan).astype("float32")
        P = rng.dirichlet([1, 1, 1], size=T)
        for j, name in enumerate(["p_negative", "p_neutral", "p_positive"]):
            f[name] = np.where(posts, P[:, j], np.nan).astype("float32")
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def write(df, folder, nfiles=3):
    folder.mkdir(parents=True)
    t = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    t = t.set_column(t.schema.get_field_index("date"), "date", t.column("date").cast(pa.date32()))
    step = -(-len(df) // nfiles)
    for i in range(nfiles):
        pq.write_table(t.slice(i * step, step), folder / f"part.{i}.parquet")
    return folder


def features_of(panel):
    return panel[panel.n_posts > 0].reset_index(drop=True)


def volatility_of(panel):
    return panel[["permno", "date", "ret", *HAR, "y_1", "y_5", "y_22", "y_63"]]


def run(tmp, name, backend=None, **kw):
    args = {
        "models": ["har", "ridge"],
        "target": "y_1",
        "train_years": 3,
        "sample": "posts",
        "ridge": RIDGE,
        "xgboost": XGB,
        # One feature set, every text column: each model but HAR is fitted once (key `<model>__text`).
        "feature_sets": {"text": ["attention", "embedding", "finbert_sentiment"]},
        "backend": backend or Backend("cpu"),
    }
    args.update(kw)
    out = tmp / name
    manifest = run_stage("train", out, **args)
    metrics = pd.read_csv(out / "metrics.csv", dtype={"test_year": str})
    assert set(metrics.loc[metrics.model == "har", "feature_set"]) == {"har"}
    return out, metrics, manifest


RT = "ridge__text"  # the ridge forecast of the tests' one feature set


def fits(out):
    return json.loads((out / "models.json").read_text())


@pytest.fixture(scope="module")
def panel():
    return make_panel()


@pytest.fixture
def feats_dir(tmp_path, panel):
    return write(features_of(panel), tmp_path / "features")


def _har_reference(rows, train_years):
    """HAR per test year with NumPy lstsq on the same rows (independent of the package)."""
    rows = rows.dropna(subset=["y_1", *HAR])
    year = pd.to_datetime(rows["date"]).dt.year.to_numpy()
    out = {}
    for y in range(year.min() + train_years, year.max() + 1):
        tr = (year >= y - train_years) & (year < y)
        te = year == y
        A = np.column_stack([np.ones(tr.sum()), rows.loc[tr, HAR].to_numpy()])
        b, *_ = np.linalg.lstsq(A, rows.loc[tr, "y_1"].to_numpy(), rcond=None)
        yt = rows.loc[te, "y_1"].to_numpy()
        e = yt - np.column_stack([np.ones(te.sum()), rows.loc[te, HAR].to_numpy()]) @ b
        out[str(y)] = (np.mean(e * e), 1 - (e @ e) / np.sum((yt - yt.mean()) ** 2), b)
    return out


@pytest.mark.parametrize("engine", ["stats", "estimator"])
def test_har_matches_numpy_lstsq(tmp_path, panel, feats_dir, engine):
    out, metrics, _ = run(tmp_path, "r", features=feats_dir, models=["har"], ridge={**RIDGE, "engine": engine})
    ref = _har_reference(features_of(panel), 3)
    har = metrics[metrics.model == "har"].set_index("test_year")
    assert sorted(ref) == sorted(har.index.drop("all"))
    for y, (mse, r2, b) in ref.items():
        assert abs(har.loc[y, "mse"] - mse) <= 1e-9 * mse
        assert abs(har.loc[y, "r2"] - r2) <= 1e-9
        f = fits(out)["har"][y]
        np.testing.assert_allclose([f["intercept"], *f["coef"]], b, rtol=1e-7)


def test_har_on_the_volatility_panel(tmp_path, panel):
    vdir = write(volatility_of(panel), tmp_path / "vol")
    _, metrics, manifest = run(tmp_path, "r", volatility=vdir, models=["har"])
    ref = _har_reference(volatility_of(panel), 3)
    har = metrics[metrics.model == "har"].set_index("test_year")
    for y, (mse, r2, _) in ref.items():
        assert abs(har.loc[y, "mse"] - mse) <= 1e-9 * mse and abs(har.loc[y, "r2"] - r2) <= 1e-9
    assert manifest["rows_in"] == volatility_of(panel).dropna(subset=["y_1", *HAR]).shape[0]


def test_every_model_asked_is_fitted_on_the_volatility_panel(tmp_path, panel):
    """Without --features every model asked for runs on the HAR set (never a silent drop):
    ridge with unpenalised HAR terms is HAR, XGBoost and log-HAR read the HAR terms."""
    vdir = write(volatility_of(panel), tmp_path / "vol")
    out, metrics, _ = run(tmp_path, "r", volatility=vdir, models=["har", "log_har", "ridge", "xgboost"])
    pooled = metrics[metrics.test_year == "all"]
    assert sorted(zip(pooled.model, pooled.feature_set)) == [
        ("har", "har"),
        ("log_har", "har"),
        ("ridge", "har"),
        ("xgboost", "har"),
    ]
    p = pd.read_parquet(out / "predictions")
    np.testing.assert_allclose(p["yhat_ridge__har"], p["yhat_har"], rtol=1e-9)
    spike_out = tmp_path / "spike"
    run_stage(
        "train",
        spike_out,
        volatility=vdir,
        models=["har", "xgboost"],
        task="spike",
        target="y_1",
        train_years=3,
        sample="posts",
        xgboost=XGB,
        backend=Backend("cpu"),
    )
    spikes = pd.read_csv(spike_out / "metrics.csv", dtype={"test_year": str})
    assert set(spikes.model) == {"har", "xgboost"}


def test_engines_agree_and_stats_metrics_equal_residuals(tmp_path, feats_dir):
    a, ma, _ = run(tmp_path, "stats", features=feats_dir)
    b, mb, _ = run(tmp_path, "est", features=feats_dir, ridge={**RIDGE, "engine": "estimator"})
    for col in ["n_train", "n_test", "lambda"]:
        pd.testing.assert_series_equal(ma[col], mb[col])
    for col in ["mse", "r2", "r2_oos", "dm_stat"]:
        np.testing.assert_allclose(ma[col], mb[col], rtol=1e-10)
    fa, fb = fits(a), fits(b)
    for model in ("har", RT):
        for y in fa[model]:
            np.testing.assert_allclose(fa[model][y]["coef"], fb[model][y]["coef"], rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(fa[model][y]["scale"], fb[model][y]["scale"], rtol=1e-12)
    # The stats engine's exact test metrics equal those recomputed from the saved predictions.
    p = pd.read_parquet(a / "predictions")
    p["year"] = pd.to_datetime(p["date"].astype("datetime64[s]")).dt.year.astype(str)
    for y, g in p.groupby("year"):
        e = g["y"] - g[f"yhat_{RT}"]
        row = ma[(ma.model == "ridge") & (ma.test_year == y)].iloc[0]
        assert abs(row["mse"] - np.mean(e * e)) <= 1e-10 * row["mse"]
        assert abs(row["r2"] - (1 - (e @ e) / np.sum((g.y - g.y.mean()) ** 2))) <= 1e-10


def _dm_by_hand(d: np.ndarray) -> float:
    """One-sided DM statistic with a Bartlett (Newey-West 1994) variance, written out."""
    T = len(d)
    L = int(np.floor(4 * (T / 100) ** (2 / 9)))
    x = d - d.mean()
    v = x @ x / T + 2 * sum((1 - k / (L + 1)) * (x[k:] @ x[:-k]) / T for k in range(1, L + 1))
    return d.mean() / np.sqrt(v / T)


def test_with_vs_without_the_text_compares_each_model_with_its_har_set(tmp_path, feats_dir):
    """dm_base_*: each (model, set) against the same model on the HAR terms alone (its `har`
    set), from the daily mean loss differential of the saved predictions."""
    out, m, _ = run(tmp_path, "base", features=feats_dir, feature_sets={"har": [], "text": ["embedding"]})
    p = pd.read_parquet(out / "predictions")
    p["year"] = pd.to_datetime(p["date"].astype("datetime64[s]")).dt.year.astype(str)
    rows = m.set_index(["model", "feature_set", "test_year"]).sort_index()
    assert rows.loc[("har", "har"), "dm_base_pvalue"].isna().all()
    assert rows.loc[("ridge", "har"), "dm_base_pvalue"].isna().all()  # the base itself
    # The HAR terms are unpenalised (train.ridge.penalize_har: false): ridge on them alone is
    # HAR, and a DM test of the two would test round-off.
    np.testing.assert_allclose(p["yhat_ridge__har"], p["yhat_har"], rtol=1e-9)
    assert rows.loc[("ridge", "har"), "dm_pvalue"].isna().all()
    loss = lambda g, key: ((g["y"] - g[f"yhat_{key}"]) ** 2).groupby(g["date"]).mean()  # noqa: E731
    for year, g in [*p.groupby("year"), ("all", p)]:
        d = (loss(g, "ridge__text") - loss(g, "ridge__har")).sort_index().to_numpy()
        got = rows.loc[("ridge", "text", year)]
        assert got["dm_base_stat"] == pytest.approx(_dm_by_hand(d), rel=1e-9)
        assert got["dm_base_pvalue"] == pytest.approx(0.5 * math.erfc(-_dm_by_hand(d) / math.sqrt(2)), rel=1e-9)


def _train_means(feats, train_years=3):
    """Per test year, the mean target of the training rows (target and HAR terms present)."""
    rows = feats.dropna(subset=["y_1", *HAR])
    year = pd.to_datetime(rows["date"]).dt.year.to_numpy()
    return {str(y): rows.loc[(year >= y - train_years) & (year < y), "y_1"].mean() for y in sorted(set(year))[3:]}


def test_volatility_losses_and_qlike_dm_from_the_predictions(tmp_path, panel):
    """RMSE, MAE, MAPE, QLIKE (Patton 2011, floored forecasts) and the DM test on QLIKE,
    recomputed from the saved predictions with plain NumPy/pandas; some targets are zero
    (MAPE skips them, QLIKE is defined) and the floor (a share of each training window's
    mean target) is high enough to bind."""
    share = 0.45
    feats = features_of(panel)
    feats.loc[feats.index[::50], "y_1"] = 0.0
    out, m, _ = run(tmp_path, "loss", features=write(feats, tmp_path / "f0"), forecast_floor=share)
    floors = {y: share * v for y, v in _train_means(feats).items()}
    assert json.loads((out / "metrics.json").read_text())["losses"]["floor"] == pytest.approx(floors, rel=1e-12)
    p = pd.read_parquet(out / "predictions")
    p["year"] = pd.to_datetime(p["date"].astype("datetime64[s]")).dt.year.astype(str)
    p["floor"] = p["year"].map(floors)
    assert (p["y"] == 0).sum() > 10 and (p["yhat_har"] < p["floor"]).sum() > 10
    rows = m.set_index(["model", "feature_set", "test_year"]).sort_index()

    def qlike(g, key):
        h = np.maximum(g[f"yhat_{key}"].to_numpy(), g["floor"].to_numpy()) ** 2
        return np.log(h) + g["y"].to_numpy() ** 2 / h

    for year, g in [*p.groupby("year"), ("all", p)]:
        y = g["y"].to_numpy()
        for key, idx in (("har", ("har", "har")), (RT, ("ridge", "text"))):
            e, got = y - g[f"yhat_{key}"].to_numpy(), rows.loc[(*idx, year)]
            assert got["rmse"] == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-9)
            assert got["mae"] == pytest.approx(np.mean(np.abs(e)), rel=1e-9)
            assert got["mape"] == pytest.approx(np.mean(np.abs(e[y > 0]) / y[y > 0]), rel=1e-9)
            assert got["qlike"] == pytest.approx(np.mean(qlike(g, key)), rel=1e-9)
        daily = {k: pd.Series(qlike(g, k)).groupby(g["date"].to_numpy()).mean() for k in ("har", RT)}
        d = (daily[RT] - daily["har"]).sort_index().to_numpy()
        assert rows.loc[("ridge", "text", year), "dm_qlike_stat"] == pytest.approx(_dm_by_hand(d), rel=1e-9)
        assert rows.loc[("ridge", "text", year), "dm_qlike_pvalue"] == pytest.approx(
            0.5 * math.erfc(-_dm_by_hand(d) / math.sqrt(2)), rel=1e-9
        )
    assert rows.loc[("har", "har"), "dm_qlike_pvalue"].isna().all()


def test_log_har_matches_a_numpy_reference(tmp_path, panel):
    """log-HAR: lstsq of log y on the logs of the HAR terms over the training years, the
    forecast exp(fit + s²/2) with s² the residual variance; positive, one entry."""
    feats = features_of(panel)
    feats.loc[feats.index[::40], "vol_1"] = 0.0  # days without a price change enter as the floor
    out, m, _ = run(tmp_path, "lh", features=write(feats, tmp_path / "flh"), models=["har", "log_har"])
    assert set(m["model"]) == {"har", "log_har"} and set(m.loc[m.model == "log_har", "feature_set"]) == {"har"}
    p = pd.read_parquet(out / "predictions")
    rows = feats.dropna(subset=["y_1", *HAR])
    year = pd.to_datetime(rows["date"]).dt.year.to_numpy()
    means = _train_means(feats)
    for y in sorted(set(year))[3:]:
        tr, te = (year >= y - 3) & (year < y), year == y
        floor = 0.1 * means[str(y)]  # the default train.forecast_floor x the training mean
        A = np.column_stack([np.ones(tr.sum()), np.log(np.maximum(rows.loc[tr, HAR].to_numpy(), floor))])
        ly = np.log(np.maximum(rows.loc[tr, "y_1"].to_numpy(), floor))
        b, *_ = np.linalg.lstsq(A, ly, rcond=None)
        s2 = np.sum((ly - A @ b) ** 2) / (tr.sum() - 5)
        At = np.column_stack([np.ones(te.sum()), np.log(np.maximum(rows.loc[te, HAR].to_numpy(), floor))])
        ref = pd.Series(
            np.exp(At @ b + s2 / 2), index=pd.MultiIndex.from_arrays([rows.loc[te, "permno"], rows.loc[te, "date"]])
        )
        got = p.assign(date=pd.to_datetime(p["date"]).dt.date).set_index(["permno", "date"])["yhat_log_har"]
        np.testing.assert_allclose(got.loc[ref.index].to_numpy(), ref.to_numpy(), rtol=1e-9)
    assert (p["yhat_log_har"] > 0).all()


def test_no_look_ahead_and_row_order_free(tmp_path, panel):
    base = features_of(panel)
    a, ma, _ = run(tmp_path, "a", features=write(base, tmp_path / "f_a"))
    test_year = 2018
    changed = base.copy()
    later = pd.to_datetime(changed["date"]).dt.year >= test_year
    rng = np.random.default_rng(7)
    for c in ["y_1", *HAR, "e000", "e001", "p_positive", "n_posts"]:
        mult = np.where(later, rng.uniform(0.5, 2.0, len(changed)), 1.0)
        changed[c] = (changed[c] * mult).astype(changed[c].dtype)
    b, mb, _ = run(tmp_path, "b", features=write(changed.sample(frac=1, random_state=3), tmp_path / "f_b", nfiles=4))
    fa, fb = fits(a), fits(b)
    for model in ("har", RT):
        for key in ("coef", "mean", "scale"):
            np.testing.assert_allclose(fa[model][str(test_year)][key], fb[model][str(test_year)][key], rtol=1e-10)
        assert fa[model][str(test_year)]["lambda"] == fb[model][str(test_year)]["lambda"]
    # Shuffled rows, different files, same data: identical results.
    c, mc, _ = run(tmp_path, "c", features=write(base.sample(frac=1, random_state=5), tmp_path / "f_c", nfiles=5))
    np.testing.assert_allclose(
        ma[["mse", "r2", "r2_oos", "dm_stat"]].to_numpy(float),
        mc[["mse", "r2", "r2_oos", "dm_stat"]].to_numpy(float),
        rtol=1e-10,
    )
    assert ma["lambda"].equals(mc["lambda"])


def test_planted_effect_is_found_and_placebo_is_not(tmp_path, panel):
    """Planted: ridge beats HAR on squared error and XGBoost on QLIKE (the planted effect is
    multiplicative: ridge's linear forecasts run too low on calm days, which QLIKE punishes;
    docs/models.md). Placebo: neither does, on either loss."""
    models = ["har", "ridge", "xgboost"]
    _, planted, _ = run(tmp_path, "p", features=write(features_of(panel), tmp_path / "fp"), models=models)
    pooled = planted[planted.test_year == "all"].set_index("model")
    assert pooled.loc["ridge", "r2"] > pooled.loc["har", "r2"]
    assert pooled.loc["ridge", "dm_stat"] < 0 and pooled.loc["ridge", "dm_pvalue"] < 0.05
    assert pooled.loc["xgboost", "qlike"] < pooled.loc["har", "qlike"]
    assert pooled.loc["xgboost", "dm_qlike_pvalue"] < 0.05

    placebo_panel = make_panel(gamma=0.0, seed=1)
    _, placebo, _ = run(tmp_path, "q", features=write(features_of(placebo_panel), tmp_path / "fq"), models=models)
    pooled = placebo[placebo.test_year == "all"].set_index("model")
    for model in ("ridge", "xgboost"):
        assert pooled.loc[model, "dm_pvalue"] > 0.05 and pooled.loc[model, "dm_qlike_pvalue"] > 0.05
    assert abs(pooled.loc["ridge", "r2"] - pooled.loc["har", "r2"]) < 0.01


def test_xgboost_and_sample_all(tmp_path, panel):
    fdir = write(features_of(panel), tmp_path / "f")
    vdir = write(volatility_of(panel), tmp_path / "v")
    out, metrics, manifest = run(
        tmp_path, "x", features=fdir, volatility=vdir, sample="all", models=["har", "ridge", "xgboost"]
    )
    n_all = volatility_of(panel).dropna(subset=["y_1", *HAR])
    n_all = n_all[pd.to_datetime(n_all["date"]).dt.year >= 2017]
    assert manifest["rows_out"] == len(n_all)
    assert set(metrics.model) == {"har", "ridge", "xgboost"}
    assert metrics.groupby("test_year")["n_test"].nunique().eq(1).all()  # every model on the same rows
    p = pd.read_parquet(out / "predictions")
    # predictions/test_year=YYYY/…: pandas reads the hive key back as a column.
    assert list(p.columns) == ["permno", "date", "y", "yhat_har", f"yhat_{RT}", "yhat_xgboost__text", "test_year"]
    assert p[["yhat_har", f"yhat_{RT}", "yhat_xgboost__text"]].notna().all().all()
    assert sorted(p["test_year"].astype(str).unique()) == ["2017", "2018", "2019"]
    report = json.loads((out / "metrics.json").read_text())
    assert "has_posts" in report["features"]
    assert all(1 <= v["n_rounds"] <= XGB["n_estimators"] for v in report["xgboost"]["xgboost__text"].values())
    coefs = pd.read_csv(out / "coefficients.csv")
    assert list(coefs.columns) == ["model", "feature_set", "test_year", "lambda", "intercept", *HAR]


def test_clear_errors(tmp_path, feats_dir):
    with pytest.raises(WsbError, match="too few"):
        run(tmp_path, "e1", features=feats_dir, train_years=6)
    with pytest.raises(WsbError, match="unknown model"):
        run(tmp_path, "e2", features=feats_dir, models=["har", "lasso"])
    with pytest.raises(WsbError, match="--features"):
        run(tmp_path, "e3")


@pytest.mark.gpu
def test_gpu_matches_cpu(tmp_path, feats_dir, backend):
    cpu_out, cpu, _ = run(tmp_path, "cpu", features=feats_dir, models=["har", "ridge", "xgboost"])
    for engine in ("stats", "estimator"):
        _, gpu, _ = run(
            tmp_path,
            f"gpu_{engine}",
            features=feats_dir,
            backend=backend,
            models=["har", "ridge", "xgboost"],
            ridge={**RIDGE, "engine": engine},
        )
        lin = gpu.model != "xgboost"
        np.testing.assert_allclose(gpu.loc[lin, "mse"], cpu.loc[lin, "mse"], rtol=1e-6)
        assert gpu.loc[lin, "lambda"].equals(cpu.loc[lin, "lambda"])
        assert (gpu.loc[~lin, "r2"] > 0).all()


@pytest.mark.gpu
def test_gpu_new_models_match_cpu(tmp_path, feats_dir, backend):
    """log-HAR, the elastic net (moments on CuPy, cuML for the estimator engine) and the
    LSTM (PyTorch on CUDA) on the GPU backend against the CPU twin."""
    models = ["har", "log_har", "enet", "lstm"]
    seq = {"epochs": 3, "patience": 2}
    _, cpu, _ = run(tmp_path, "cpu", features=feats_dir, models=models, sequence=seq)
    _, gpu, _ = run(tmp_path, "gpu", features=feats_dir, backend=backend, models=models, sequence=seq)
    exact = cpu.model.isin(["har", "log_har", "enet"])
    np.testing.assert_allclose(gpu.loc[exact, "mse"], cpu.loc[exact, "mse"], rtol=1e-6)
    assert gpu.loc[exact, "lambda"].equals(cpu.loc[exact, "lambda"])
    np.testing.assert_allclose(gpu.loc[~exact, "mse"], cpu.loc[~exact, "mse"], rtol=0.1)


def test_daily_sums_of_many_forecasts_do_not_fragment():
    """With a hundred loss columns (26 forecasts x 4 losses, as in the demo) the per-date
    kernel builds one block: pandas' "highly fragmented" warning came from here."""
    import warnings

    from wsb_gpu.training.predict import daily_partition

    rng = np.random.default_rng(0)
    keys = [f"m{i}" for i in range(30)]
    frame = pd.DataFrame({"date": np.repeat(np.arange(5), 4), "y": rng.random(20)})
    frame = pd.concat([frame, pd.DataFrame({f"yhat_{k}": rng.random(20) for k in keys})], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        out = daily_partition(frame, keys=keys, floor=0.01)
    assert len(out) == 5 and out["n"].tolist() == [4] * 5
    np.testing.assert_allclose(out["sse_m0"], ((frame["y"] - frame["yhat_m0"]) ** 2).groupby(frame["date"]).sum())


def test_multi_day_target_windows_end_before_their_targets_reach_the_test_year(tmp_path, panel, feats_dir):
    """With y_22 a training row's target spans 22 sessions, so the window leaves out its last
    two months (every month has at least 19 sessions): HAR equals lstsq on the rows up to
    then, and both ridge engines (moments with purged CV folds, rows with purged splits)
    choose the same λ and coefficients."""
    runs = {}
    for engine in ("stats", "estimator"):
        runs[engine] = run(tmp_path, engine, features=feats_dir, target="y_22", ridge={**RIDGE, "engine": engine})
    rows = features_of(panel).dropna(subset=["y_22", *HAR])
    d = pd.to_datetime(rows["date"])
    year, period = d.dt.year.to_numpy(), d.dt.year.to_numpy() * 12 + d.dt.month.to_numpy() - 1
    har = fits(runs["stats"][0])["har"]
    assert har
    for y, f in har.items():
        last = (int(y) - 1) * 12 + 11
        tr = (year >= int(y) - 3) & (period <= last - 2)
        assert not np.any(tr & (period > last - 2))
        A = np.column_stack([np.ones(tr.sum()), rows.loc[tr, HAR].to_numpy()])
        b, *_ = np.linalg.lstsq(A, rows.loc[tr, "y_22"].to_numpy(), rcond=None)
        np.testing.assert_allclose([f["intercept"], *f["coef"]], b, rtol=1e-7)
    rows_json = json.loads((runs["stats"][0] / "metrics.json").read_text())["metrics"]
    lags = [r["dm_lag"] for r in rows_json if r.get("dm_lag") is not None]
    assert lags and min(lags) >= 21  # the errors of 22-day targets overlap for 21 days
    fa, fb = fits(runs["stats"][0]), fits(runs["estimator"][0])
    for y in fa[RT]:
        assert fa[RT][y]["lambda"] == fb[RT][y]["lambda"]
        np.testing.assert_allclose(fa[RT][y]["coef"], fb[RT][y]["coef"], rtol=1e-6, atol=1e-10)
