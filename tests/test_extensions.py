"""Executable walkthroughs: extensions added through the public registries, the way a user
would add them, and run through the pipeline's own runner on small data.

docs/architecture.md's "How to add …" sections list exactly the edits these tests make.
Each test registers its extension with ``monkeypatch``, so nothing is left behind.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from wsb_gpu.backend import array_namespace, to_numpy
from wsb_gpu.models.base import Model

STAGE_TESTS = Path(__file__).resolve().parent / "stages"


def _train_helpers():
    """The train tests' synthetic panel and runner (tests/stages/test_train.py)."""
    if str(STAGE_TESTS) not in sys.path:
        sys.path.insert(0, str(STAGE_TESTS))
    return importlib.import_module("test_train")


# --- a model ------------------------------------------------------------------------------


class TrainingMean(Model):
    """A toy model: every test row's forecast is the mean target of the window's training rows.

    What the contract asks (wsb_gpu/models/base.py): a ``name``; ``fit(window)`` that learns
    from the window's training years and returns ``self`` (learned state ends in ``_``);
    ``predict_array(X)`` for a matrix of the model's columns. It takes no settings (a model
    that does declares ``sections`` / ``settings`` and takes them as keyword-only ``__init__``
    parameters), and one forecast per window serves every feature set.
    """

    name = "training_mean"
    uses_feature_sets = False

    def columns(self, window):
        return list(window.sample.har_columns)

    def fit(self, window):
        self._start(window)
        _, y, _ = window.rows(self.columns_)
        self.mean_ = float(to_numpy(y).mean())
        return self

    def predict_array(self, X):
        xp = array_namespace(X)
        return xp.full(int(X.shape[0]), self.mean_, dtype=xp.float64)


def test_add_a_model_through_the_registry(tmp_path, monkeypatch):
    from wsb_gpu import models

    # The one edit outside the model's own module: its entry in the registry.
    monkeypatch.setitem(models.MODELS, "training_mean", f"{__name__}:TrainingMean")

    tt = _train_helpers()
    panel = tt.features_of(tt.make_panel())
    out, metrics, _ = tt.run(
        tmp_path, "toy", features=tt.write(panel, tmp_path / "features"), models=["har", "training_mean"]
    )

    got = metrics[metrics.model == "training_mean"].set_index("test_year")
    assert set(got["feature_set"]) == {"har"} and list(got.index) == ["2017", "2018", "2019", "all"]
    # The reference, in NumPy alone: the rows with a target and the HAR terms, windows of 3 years.
    rows = panel.dropna(subset=["y_1", *tt.HAR])
    year = pd.to_datetime(rows["date"]).dt.year.to_numpy()
    y = rows["y_1"].to_numpy()
    errors, n_train = [], 0
    for test_year in (2017, 2018, 2019):
        train, test = (year >= test_year - 3) & (year < test_year), year == test_year
        e = y[test] - y[train].mean()
        yt = y[test]
        row = got.loc[str(test_year)]
        assert row["n_train"] == train.sum() and row["n_test"] == test.sum()
        np.testing.assert_allclose(row["mse"], np.mean(e**2), rtol=1e-9)
        np.testing.assert_allclose(row["mae"], np.mean(np.abs(e)), rtol=1e-9)
        np.testing.assert_allclose(row["r2"], 1 - (e @ e) / np.sum((yt - yt.mean()) ** 2), rtol=1e-9)
        # R² out of sample is measured against the training mean: this model scores 0.
        assert abs(row["r2_oos"]) < 1e-9
        errors.append(e)
        n_train += int(train.sum())
    every = np.concatenate(errors)
    assert got.loc["all", "n_train"] == n_train and got.loc["all", "n_test"] == every.size
    np.testing.assert_allclose(got.loc["all", "rmse"], np.sqrt(np.mean(every**2)), rtol=1e-9)
    # Its forecasts are in the predictions beside HAR's.
    pred = pd.read_parquet(out / "predictions")
    assert pred["yhat_training_mean"].notna().all()


# --- a toy feature family, plain and fitted, through the family registry -----------------------
# docs/architecture.md ("How to add a feature family") lists the edits these two tests make.

FAMILY_HAR = ["vol_1", "vol_5", "vol_22", "vol_63"]
FAMILY_RIDGE = {"engine": "stats", "n_lambdas": 5, "lambda_min": 0.01, "lambda_max": 1e4, "cv_folds": 3}


def _family_world(root):
    """Small per-post datasets for the features and train stages: 3 stocks, 2016-2019, posts on
    about half the days (links, signals, embeddings) and every stock-day's volatility. Posts get
    longer every year, so a family fitted on post lengths would show it if it saw a test year."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(df, folder, dates=()):
        folder.mkdir(parents=True)
        t = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
        for c in dates:
            t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(pa.date32()))
        half = len(df) // 2
        pq.write_table(t.slice(0, half), folder / "part.0.parquet")
        pq.write_table(t.slice(half), folder / "part.1.parquet")

    rng = np.random.default_rng(7)
    days = pd.bdate_range("2016-01-01", "2019-12-31")
    vols, links, sig, emb = [], [], [], []
    for permno in (101, 102, 103):
        v = 0.02 * np.exp(np.cumsum(rng.normal(0, 0.05, len(days))) * 0.3)
        f = pd.DataFrame({"permno": np.int64(permno), "date": days.date, "ret": rng.normal(size=len(days)) * v})
        f["vol_1"] = v
        for w in (5, 22, 63):
            f[f"vol_{w}"] = pd.Series(v).rolling(w).mean().to_numpy()
        for w in (1, 5, 22, 63):
            f[f"y_{w}"] = f[f"vol_{w}"].shift(-1)
        vols.append(f)
        for day in days[rng.random(len(days)) < 0.5]:
            for _ in range(int(rng.integers(1, 4))):
                pid = f"p{len(sig)}"
                n = int(rng.integers(1, 8)) + 3 * (day.year - 2016)
                links.append((permno, day.date(), pid, day.date(), 1))
                sig.append((pid, *rng.uniform(-1, 1, 4).astype(np.float32), " ".join(["moon"] * n), n))
                emb.append((pid, *rng.normal(size=4).astype(np.float32), 5))
    write(pd.concat(vols), root / "volatility", dates=("date",))
    links = pd.DataFrame(links, columns=["permno", "date", "id", "post_date", "n_occ"]).astype({"n_occ": "int32"})
    links["created_utc"] = pd.to_datetime(links["post_date"]).astype("datetime64[s]").astype("int64") + 12 * 3600
    write(links, root / "links", dates=("date", "post_date"))
    signals = pd.DataFrame(
        sig, columns=["id", "vader_compound", "vader_pos", "vader_neg", "vader_neu", "tokens", "n_words"]
    )
    write(signals.astype({"n_words": "int32"}), root / "signals")
    embeddings = pd.DataFrame(emb, columns=["id", "e000", "e001", "e002", "e003", "n_tokens"])
    write(embeddings.astype({"n_tokens": "int32"}), root / "embeddings")
    return links.merge(signals, on="id")


def _family_train(root, out, feature_sets):
    from wsb_gpu.stages import run_stage

    run_stage(
        "train", out, features=root / "features", links=root / "links", signals=root / "signals",
        embeddings=root / "embeddings", models=["har", "ridge"], train_years=2, feature_sets=feature_sets,
        ridge=FAMILY_RIDGE,
    )  # fmt: skip


def _family_design_mean(out, key, column, test_year):
    """The training rows' mean of ``column`` in the design matrix of entry ``key``."""
    import json

    fit = json.loads((out / "models.json").read_text())[key][str(test_year)]
    assert fit["columns"] == [*FAMILY_HAR, column]
    return fit["mean"][-1]


def _family_training_rows(features, test_year):
    """The training rows of the window of ``test_year`` (train_years=2), as the sample has them."""
    import pandas as pd

    rows = features.dropna(subset=["y_1", *FAMILY_HAR])
    return rows[pd.to_datetime(rows["date"]).dt.year.isin([test_year - 2, test_year - 1])]


def test_toy_plain_family_through_the_registry(tmp_path, monkeypatch):
    """A plain family: the mean number of words of the stock-day's posts (``n_words``, a column
    the signals dataset already has) is averaged by the features stage and fitted by ridge."""
    import numpy as np
    import pandas as pd
    import pytest

    from wsb_gpu.backend import Backend
    from wsb_gpu.signals.base import PlainFamily
    from wsb_gpu.signals.families import FAMILIES
    from wsb_gpu.stages import run_stage

    posts = _family_world(tmp_path)
    # The edit: one entry in the registry (here for this test only).
    words = PlainFamily("words", "mean number of words of the stock-day's posts", pattern="n_words", source="signals")
    monkeypatch.setitem(FAMILIES, "words", words)

    run_stage(
        "features", tmp_path / "features", links=tmp_path / "links", embeddings=tmp_path / "embeddings",
        signals=tmp_path / "signals", volatility=tmp_path / "volatility", backend=Backend("cpu"),
    )  # fmt: skip
    got = pd.read_parquet(tmp_path / "features").sort_values(["permno", "date"]).reset_index(drop=True)
    want = posts.groupby(["permno", "date"])["n_words"].mean().reset_index().sort_values(["permno", "date"])
    assert got[["permno", "date"]].values.tolist() == want[["permno", "date"]].values.tolist()
    assert got["n_words"].dtype == np.float32
    np.testing.assert_allclose(got["n_words"].to_numpy(np.float64), want["n_words"].to_numpy(), rtol=1e-6)

    _family_train(tmp_path, tmp_path / "train", {"har": [], "words": ["words"]})
    metrics = pd.read_csv(tmp_path / "train" / "metrics.csv")
    assert ("ridge", "words") in set(zip(metrics["model"], metrics["feature_set"]))
    for year in (2018, 2019):
        mean = _family_design_mean(tmp_path / "train", "ridge__words", "n_words", year)
        rows = _family_training_rows(got, year)
        assert mean == pytest.approx(rows["n_words"].astype(np.float64).mean(), rel=1e-9)


def test_toy_fitted_family_through_the_registry(tmp_path, monkeypatch):
    """A fitted family: a post's length (words) z-scored by the mean and standard deviation of
    the training window's post lengths, averaged per stock-day. Its state in each window is the
    training years' mean and deviation, and its column reaches the design matrix."""
    import json
    from dataclasses import dataclass

    import numpy as np
    import pandas as pd
    import pytest

    from wsb_gpu.backend import Backend
    from wsb_gpu.signals.base import FittedFamily
    from wsb_gpu.signals.families import FAMILIES
    from wsb_gpu.stages import run_stage

    def lengths(tokens):
        return tokens.fillna("").str.split().str.len().astype("float64")

    @dataclass(frozen=True)
    class PostLength(FittedFamily):
        def columns(self, available=()):
            return ["length_z"]

        def fit(self, posts, labels, backend, *, progress=False):
            n = posts.frame["tokens"].map_partitions(lengths, meta=("tokens", "float64"))
            mean, std = (float(v) for v in n.compute().agg(["mean", "std"]))  # pandas std: ddof=1
            return {"mean": mean, "std": std}

        def score(self, state, posts):
            return {"length_z": (lengths(posts["tokens"]).to_numpy() - state["mean"]) / state["std"]}

        def info(self, state):
            return dict(state)

    posts = _family_world(tmp_path)
    run_stage(
        "features", tmp_path / "features", links=tmp_path / "links", embeddings=tmp_path / "embeddings",
        signals=tmp_path / "signals", volatility=tmp_path / "volatility", backend=Backend("cpu"),
    )  # fmt: skip
    # The edit: one entry in the registry (here for this test only).
    monkeypatch.setitem(FAMILIES, "length", PostLength("length", "post length, z-scored in the training window"))
    _family_train(tmp_path, tmp_path / "train", {"har": [], "length": ["length"]})

    learned = json.loads((tmp_path / "train" / "signals.json").read_text())
    features = pd.read_parquet(tmp_path / "features")
    posts = posts.assign(year=pd.to_datetime(posts["date"]).dt.year, n=posts["n_words"].astype(np.float64))
    for year in (2018, 2019):
        train = posts[posts["year"].isin([year - 2, year - 1])]
        state = learned[str(year)]["length"]
        assert state["mean"] == pytest.approx(train["n"].mean(), rel=1e-12)
        assert state["std"] == pytest.approx(train["n"].std(), rel=1e-12)
        seen = posts[posts["year"].isin([year - 2, year - 1, year])]
        assert state["mean"] != pytest.approx(seen["n"].mean(), rel=1e-3)  # what a leak would learn
        # The design matrix: the stock-day mean of the z-scores, on the training rows.
        z = posts.assign(z=(posts["n"] - state["mean"]) / state["std"]).groupby(["permno", "date"])["z"].mean()
        rows = _family_training_rows(features, year).merge(z.reset_index(), on=["permno", "date"], how="left")
        mean = _family_design_mean(tmp_path / "train", "ridge__length", "length_z", year)
        assert mean == pytest.approx(rows["z"].fillna(0.0).mean(), rel=1e-9)


# --- a toy stage: post lengths ------------------------------------------------------------------


class LengthsInputs(TypedDict):
    """The toy stage's inputs: the posts dataset."""

    posts: Path


def toy_lengths_run(inputs, out, *, backend, client=None, params, progress=False):
    """The toy stage's entry point (edit 1 of docs/architecture.md's "How to add a stage"):
    the number of characters of every post, one partition function over the posts."""
    from wsb_gpu.stages.base import StageResult

    posts = backend.read_parquet(inputs["posts"])[["id", "text"]]
    lengths = posts.map_partitions(
        lambda f: f[["id"]].assign(n_chars=f["text"].str.len().astype("int64")),
        meta={"id": posts["id"].dtype, "n_chars": "int64"},
    )
    backend.to_parquet(lengths, out).compute()
    return StageResult(rows_in=int(posts.shape[0].compute()), fields={})


def _add_toy_stage(monkeypatch):
    """Edits 2 and 3 of the walkthrough, made the way the source edits make them: the output's
    contract in ``datasets.DATASETS`` and the entry in the stage table (``stages.STAGES``;
    the tables derived from it follow)."""
    import wsb_gpu.pipeline as pipeline
    import wsb_gpu.stages as stages
    from wsb_gpu.config import EmptyParams
    from wsb_gpu.datasets import DATASETS, Dataset
    from wsb_gpu.stages.base import Input, Stage

    contract = Dataset("post_lengths", producer="lengths", columns={"id": "string", "n_chars": "int64"})
    monkeypatch.setitem(DATASETS, "post_lengths", contract)
    toy = Stage(
        name="lengths",
        inputs=(Input("posts"),),
        output="post_lengths",
        params=EmptyParams,
        entry=f"{__name__}:toy_lengths_run",
        doc="""Count the characters of every post.

        \b
        Example:
          wsb-gpu lengths --posts run/posts --out run/post_lengths
        """,
        summary=lambda m: f"lengths: {m['rows_in']:,} posts measured ({m['seconds']:.1f} s)",
    )
    table = (*stages.STAGES, toy)
    for module in (stages, pipeline):
        monkeypatch.setattr(module, "STAGES", table)
        monkeypatch.setattr(module, "STAGE_NAMES", tuple(s.name for s in table))
        monkeypatch.setattr(module, "BY_NAME", {s.name: s for s in table})
    monkeypatch.setattr(stages, "PRODUCER", {s.output: s.name for s in table})
    return toy


def test_add_a_stage_through_the_table(tmp_path, monkeypatch):
    """A toy stage added as docs/architecture.md says runs through ``run_stage`` (contract
    checked, manifest and rerun key written) and takes its place in ``wsb-gpu run``'s plan
    after the stage that writes its input."""
    from wsb_gpu.backend import Backend
    from wsb_gpu.manifest import read_manifest
    from wsb_gpu.pipeline import descendants, plan
    from wsb_gpu.stages import run_stage

    _add_toy_stage(monkeypatch)
    posts = tmp_path / "posts"
    posts.mkdir()
    texts = ["to the moon", "GME 🚀🚀", "", "buy high sell low"]
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "kind": "submission",
            "created_utc": np.array([1_546_300_800 + 3600 * i for i in range(4)], dtype="int64"),
            "date": pd.to_datetime(["2019-01-01"] * 4).date,
            "author": "x",
            "text": texts,
            "source": "submissions",
        }
    )
    frame.to_parquet(posts / "part.0.parquet", index=False)
    out = tmp_path / "post_lengths"
    manifest = run_stage("lengths", out, posts=posts, backend=Backend("cpu"))
    got = pd.read_parquet(out).sort_values("id")
    assert got["n_chars"].tolist() == [len(t) for t in texts]  # Python's own count of characters
    assert manifest["rows_in"] == 4 and read_manifest(out)["key"] == manifest["key"]
    selected, _ = plan(until_stage="lengths")
    assert selected == ["ingest", "lengths"]
    assert "lengths" in descendants("ingest")
