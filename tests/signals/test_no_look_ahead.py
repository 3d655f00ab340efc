"""The fitted families see only the training years.

A small panel is written as the datasets the training stage reads (features, links, signals,
embeddings). In the test year 2019 a word, ``zzz``, appears exactly on the stock-days whose
next-day volatility is high: a lexicon fitted on a window that included 2019 would learn it
and forecast 2019 far better. The window's fitted lexicon, TF-IDF and topic model must be
the same whatever 2019 holds, must equal the plain-loop reference fitted on the training
years, and must not know ``zzz``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wsb_gpu.backend import Backend
from wsb_gpu.config import TrainParams, validate_params
from wsb_gpu.signals.base import Labels
from wsb_gpu.signals.fitted import PostSources, fit_families
from wsb_gpu.signals.lexicon import fit_lexicon_reference
from wsb_gpu.stages import run_stage
from wsb_gpu.training.families import fitted_families
from wsb_gpu.training.sample import load_sample

HAR = ["vol_1", "vol_5", "vol_22", "vol_63"]
TRAIN_YEARS = (2016, 2017, 2018)
TEST_YEAR = 2019
WORDS = ["moon", "squeeze", "calls", "dip", "hold", "earnings", "guidance", "dividend", "yield", "value"]


def _write(df: pd.DataFrame, folder, dates=("date",)):
    folder.mkdir(parents=True)
    t = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    for c in dates:
        t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(pa.date32()))
    half = len(df) // 2
    pq.write_table(t.slice(0, half), folder / "part.0.parquet")
    pq.write_table(t.slice(half), folder / "part.1.parquet")


def build(root, *, leak_word: bool, seed: int = 0) -> dict:
    """Write features, links, signals and embeddings; ``leak_word`` changes 2019 only."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2015-01-01", "2019-12-31")
    rows, links, sig, emb = [], [], [], []
    post = 0
    for permno in (10001, 10002, 10003, 10004):
        v = 0.02 * np.exp(np.cumsum(rng.normal(0, 0.05, len(days))) * 0.3)
        y = v * np.exp(rng.normal(0, 0.3, len(days)))
        for t, day in enumerate(days):
            if rng.random() > 0.6:
                continue
            n = int(rng.integers(1, 4))
            high = y[t] > 1.3 * v[t]
            vec_rows = []
            for _ in range(n):
                pid = f"p{post}"
                post += 1
                words = list(rng.choice(WORDS, size=int(rng.integers(2, 6))))
                if leak_word and day.year == TEST_YEAR and high:
                    words.append("zzz")
                c = int(rng.integers(0, 3))
                vec = np.zeros(8, np.float32)
                vec[c] = 3.0
                vec += rng.normal(0, 0.3, 8).astype(np.float32)
                if day.year == TEST_YEAR and leak_word:
                    vec = vec[::-1].copy()  # 2019's embeddings differ too
                vec_rows.append(vec)
                links.append((permno, day.date(), pid, day.date(), 1))
                sig.append((pid, float(rng.uniform(-1, 1)), 0.1, 0.1, 0.8, " ".join(words), len(words)))
                emb.append((pid, *vec.tolist()))
            e = np.mean(vec_rows, axis=0)
            rows.append(
                (
                    permno,
                    day.date(),
                    n,
                    n,
                    *e.tolist(),
                    0.0,
                    0.1,
                    0.1,
                    0.8,
                    0.3,
                    0.2,
                    v[t],
                    v[t],
                    v[t],
                    v[t],
                    y[t],
                    y[t],
                    y[t],
                    y[t],
                )
            )
    fcols = [
        "permno", "date", "n_posts", "n_mentions", *[f"e{i:03d}" for i in range(8)],
        "vader_compound", "vader_pos", "vader_neg", "vader_neu", "vader_pos_share", "vader_neg_share",
        *HAR, "y_1", "y_5", "y_22", "y_63",
    ]  # fmt: skip
    feats = pd.DataFrame(rows, columns=fcols)
    for c in fcols[4:]:
        feats[c] = feats[c].astype("float32" if c[0] in "ev" and not c.startswith("vol") else "float64")
    feats["ret"] = 0.0
    _write(feats, root / "features")
    lk = pd.DataFrame(links, columns=["permno", "date", "id", "post_date", "n_occ"]).astype({"n_occ": "int32"})
    lk["created_utc"] = (pd.to_datetime(lk["post_date"]) - pd.Timestamp(0)) // pd.Timedelta(seconds=1) + 43200
    _write(lk, root / "links", dates=("date", "post_date"))
    s = pd.DataFrame(sig, columns=["id", "vader_compound", "vader_pos", "vader_neg", "vader_neu", "tokens", "n_words"])
    _write(s.astype(dict.fromkeys(s.columns[1:5], "float32")).astype({"n_words": "int32"}), root / "signals", dates=())
    e = pd.DataFrame(emb, columns=["id", *[f"e{i:03d}" for i in range(8)]]).assign(n_tokens=np.int32(5))
    _write(e.astype({f"e{i:03d}": "float32" for i in range(8)}), root / "embeddings", dates=())
    return {"features": feats, "signals": s, "links": pd.DataFrame(links, columns=["permno", "date", "id", "pd", "n"])}


PARAMS = {
    "lexicon": {"min_dates": 5},
    "tfidf": {"terms": 6, "min_df": 2},
    "topics": {"sample": 600, "min_topic_size": 30, "max_topics": 4},
}


def _fit(root) -> SimpleNamespace:
    """The window's fitted states by family name (``.lexicon``, ``.tfidf``, ``.topics``)."""
    params = validate_params(TrainParams, PARAMS, "train")
    backend = Backend("cpu")
    S = load_sample(features=root / "features", volatility=None, sample="posts", target="y_1", backend=backend)
    sources = PostSources(root / "links", root / "signals", root / "embeddings")
    labels = S.ddf[S.ddf["year"].isin(list(TRAIN_YEARS))][["permno", "day", "y_1", *HAR]]
    fitted = fit_families(
        fitted_families(params, ["topics", "lexicon", "tfidf"]), sources.window_posts().years(TRAIN_YEARS),
        Labels(labels, "y_1"), backend=backend,
    )  # fmt: skip
    return SimpleNamespace(**fitted)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    clean, leaky = tmp_path_factory.mktemp("clean"), tmp_path_factory.mktemp("leaky")
    return {"clean": (clean, build(clean, leak_word=False)), "leaky": (leaky, build(leaky, leak_word=True))}


def test_fitted_families_ignore_the_test_year(worlds):
    a, b = _fit(worlds["clean"][0]), _fit(worlds["leaky"][0])
    assert a.lexicon.scores == b.lexicon.scores and a.lexicon.mean_label == b.lexicon.mean_label
    assert "zzz" not in b.lexicon.scores
    assert a.tfidf.terms == b.tfidf.terms and np.array_equal(a.tfidf.idf, b.tfidf.idf)
    np.testing.assert_array_equal(a.topics.centroids, b.topics.centroids)
    assert a.topics.sizes == b.topics.sizes


def test_lexicon_equals_the_plain_loop_on_the_training_years(worlds):
    root, data = worlds["leaky"]
    f = data["features"].assign(year=pd.to_datetime(data["features"]["date"]).dt.year)
    train = f[f["year"].isin(TRAIN_YEARS)]
    label = np.log(train["y_1"] / train["vol_22"])
    day_label = dict(zip(zip(train["permno"], train["date"]), label))
    links = data["links"].merge(data["signals"][["id", "tokens"]], on="id")
    posts = [
        (t, p, d, day_label[(p, d)])
        for t, p, d in zip(links["tokens"], links["permno"], links["date"])
        if (p, d) in day_label
    ]
    ref = fit_lexicon_reference(posts, float(label.mean()), min_dates=5)
    got = _fit(root).lexicon
    assert set(got.scores) == set(ref)
    for w, s in ref.items():
        assert got.scores[w] == pytest.approx(s, abs=1e-9)

    # Cross-fitting: each training year's posts are scored by the lexicon of the other years.
    years = pd.to_datetime(train["date"]).dt.year
    assert sorted(got.held_out) == list(TRAIN_YEARS)
    for year in TRAIN_YEARS:
        other = [x for x in posts if pd.Timestamp(x[2]).year != year]
        ref_y = fit_lexicon_reference(other, float(label[years != year].mean()), min_dates=5)
        assert set(got.held_out[year].scores) == set(ref_y)
        for w, s in ref_y.items():
            assert got.held_out[year].scores[w] == pytest.approx(s, abs=1e-9)

    # What a leak would look like: the same loop over a window that includes 2019 learns zzz,
    # and its 2019 stock-day scores track 2019's labels; the window's lexicon does not.
    test = f[f["year"] == TEST_YEAR]
    test_label = dict(zip(zip(test["permno"], test["date"]), np.log(test["y_1"] / test["vol_22"])))
    leaky_posts = posts + [
        (t, p, d, test_label[(p, d)])
        for t, p, d in zip(links["tokens"], links["permno"], links["date"])
        if (p, d) in test_label
    ]
    leaky = fit_lexicon_reference(leaky_posts, float(label.mean()), min_dates=5)
    assert leaky["zzz"] > 0.2 and "zzz" not in got.scores

    def corr(scores: dict) -> float:
        s = links.assign(score=[np.mean([scores.get(w, 0.0) for w in set(t.split())]) for t in links["tokens"]])
        day = s.groupby(["permno", "date"])["score"].mean()
        keys = [k for k in day.index if k in test_label]
        return float(np.corrcoef([day[k] for k in keys], [test_label[k] for k in keys])[0, 1])

    assert corr(leaky) > corr(got.scores) + 0.3


def test_train_stage_results_of_the_test_year_window_do_not_see_it(worlds, tmp_path):
    """Through the whole stage: the 2019 window's fitted families (signals.json) are the same
    whatever 2019's posts and labels are."""
    out = {}
    for name, (root, _) in worlds.items():
        run_stage(
            "train", tmp_path / name, features=root / "features", links=root / "links", signals=root / "signals",
            embeddings=root / "embeddings", models=["har", "ridge"], train_years=3,
            feature_sets={"lexicon": ["lexicon"], "tfidf": ["tfidf"], "topics": ["topics", "topic_tone"]}, **PARAMS,
        )  # fmt: skip
        info = json.loads((tmp_path / name / "signals.json").read_text())[str(TEST_YEAR)]
        for part in info.values():
            part.pop("seconds", None)
        out[name] = info
    assert out["clean"] == out["leaky"]
    assert set(out["clean"]) == {"lexicon", "tfidf", "topics"}
