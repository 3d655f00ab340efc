"""The per-post scorers against independent computations: VADER called directly, a lexicon
built by a plain loop, scikit-learn's TF-IDF, c-TF-IDF by hand, topics on clustered points."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wsb_gpu.backend import Backend
from wsb_gpu.signals import vader
from wsb_gpu.signals.lexicon import Lexicon, fit_lexicon_reference, lexicon_from_counts, word_day_rows
from wsb_gpu.signals.tfidf import Tfidf, term_counts, tfidf_from_counts
from wsb_gpu.signals.topics import OTHER, c_tf_idf, fit_topics
from wsb_gpu.signals.words import content_words, tokens, words
from wsb_gpu.stages import run_stage
from wsb_gpu.text import clean_text

TEXTS = [
    "GME to the moon 🚀 I LOVE this stock!!!",
    "terrible earnings, the guidance was bad and I lost everything",
    "holding $TSLA for the long term, nothing happening",
    "not good, not good at all",
    "**YOLO** on [AMC](https://x.com/AMC) &amp; calls :)",
    "",
]


def test_vader_equals_the_package_on_cleaned_text():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    reference = SentimentIntensityAnalyzer()  # a second, independent instance
    got = vader.scores([clean_text(t) for t in TEXTS])
    for row, text in zip(got, TEXTS):
        cleaned = clean_text(text)
        if not cleaned:
            assert row.tolist() == [0.0, 0.0, 0.0, 0.0]
            continue
        p = reference.polarity_scores(cleaned)
        np.testing.assert_allclose(row, [p["compound"], p["pos"], p["neg"], p["neu"]], atol=1e-6)
    # VADER's own documented values: "good" alone, and its negation.
    assert vader.scores(["good"])[0].tolist() == pytest.approx([0.4404, 1.0, 0.0, 0.0], abs=1e-6)
    assert vader.scores(["not good"])[0, 0] < 0


def test_words_are_lower_case_letter_runs_without_urls_or_markdown():
    assert words("**YOLO** on [AMC](https://x.com/AMC) &amp; calls 420.69 a I'm") == [
        "yolo",
        "on",
        "amc",
        "calls",
    ]
    assert tokens("$GME $gme GME") == "gme gme gme"
    assert content_words("the squeeze is on") == ["squeeze"]


def test_signals_stage_scores_each_mentioned_post_once(tmp_path):
    """One row per mentioned post; its words are its words less the symbols it mentions."""
    posts = pd.DataFrame({"id": [f"p{i}" for i in range(6)], "text": TEXTS})
    # p0 mentions two stocks (GME, and TSLA which it does not name: nothing to drop); p1 a
    # ticker its text does not contain; p4 AMC twice (two PERMNOs of one symbol).
    mentions = pd.DataFrame({"id": ["p0", "p0", "p1", "p4", "p4"], "ticker": ["GME", "TSLA", "DD", "AMC", "AMC"]})
    (tmp_path / "posts").mkdir()
    (tmp_path / "mentions").mkdir()
    pq.write_table(pa.Table.from_pandas(posts, preserve_index=False), tmp_path / "posts" / "part.0.parquet")
    mtab = pa.table(
        {
            "id": mentions["id"],
            "kind": ["comment"] * 5,
            "created_utc": pa.array([0] * 5, pa.int64()),
            "date": pa.array([dt.date(2020, 1, 2)] * 5, pa.date32()),
            "ticker": mentions["ticker"],
            "permno": pa.array([1, 2, 1, 1, 1], pa.int64()),
            "n_occ": pa.array([1] * 5, pa.int32()),
        }
    )
    pq.write_table(mtab, tmp_path / "mentions" / "part.0.parquet")
    ptab = pa.table(
        {
            "id": posts["id"],
            "kind": ["comment"] * 6,
            "created_utc": pa.array([0] * 6, pa.int64()),
            "date": pa.array([dt.date(2020, 1, 2)] * 6, pa.date32()),
            "author": ["a"] * 6,
            "text": posts["text"],
            "source": ["c.zst"] * 6,
        }
    )
    pq.write_table(ptab, tmp_path / "posts" / "part.0.parquet")
    manifest = run_stage("signals", tmp_path / "signals", posts=tmp_path / "posts", mentions=tmp_path / "mentions")
    got = pd.read_parquet(tmp_path / "signals").sort_values("id").reset_index(drop=True)
    assert got["id"].tolist() == ["p0", "p1", "p4"] and manifest["rows_out"] == 3
    own = mentions.groupby("id")["ticker"].agg(lambda t: {x.lower() for x in t}).to_dict()
    for _, r in got.iterrows():
        text = TEXTS[int(r["id"][1:])]
        np.testing.assert_allclose(
            r[list(vader.COLUMNS)].to_numpy(float), vader.scores([clean_text(text)])[0], atol=1e-6
        )
        expected = [w for w in tokens(text).split() if w not in own[r["id"]]]
        assert r["tokens"] == " ".join(expected) and r["n_words"] == len(expected)
    assert got.set_index("id").loc["p0", "tokens"] == "to the moon love this stock"
    assert got.set_index("id").loc["p4", "tokens"] == "yolo on calls"


# --- lexicon ------------------------------------------------------------------------------


def _tiny_panel(seed=0, n=400):
    """Posts with words on stock-days with labels: 'moon' on high-label days, 'calm' low."""
    rng = np.random.default_rng(seed)
    vocab = ["moon", "calm", "dip", "earnings", "gme", "the"]
    rows = []
    for _ in range(n):
        permno = int(rng.integers(1, 4))
        day = int(rng.integers(0, 40))
        label = float(rng.normal())
        k = int(rng.integers(1, 5))
        ws = list(rng.choice(vocab, size=k))
        if label > 0.5:
            ws.append("moon")
        if label < -0.5:
            ws.append("calm")
        rows.append((" ".join(ws), permno, day, label))
    # The label belongs to the stock-day: make it one value per (permno, day).
    first = {}
    return [(t, p, d, first.setdefault((p, d), lab)) for t, p, d, lab in rows]


def test_lexicon_kernel_and_sums_equal_the_plain_loop():
    posts = _tiny_panel()
    frame = pd.DataFrame(posts, columns=["tokens", "permno", "day", "label"])
    rows = word_day_rows(frame).drop_duplicates(["word", "permno", "day"])
    per_day = rows.groupby(["word", "day"])["label"].agg(["sum", "count"]).reset_index()
    counts = per_day.groupby("word").agg(label_sum=("sum", "sum"), n=("count", "sum"), n_dates=("day", "count"))
    mean_label = 0.1
    lex = lexicon_from_counts(counts.reset_index(), mean_label, min_dates=5)
    ref = fit_lexicon_reference(posts, mean_label, min_dates=5)
    assert set(lex.scores) == set(ref) and "the" not in lex.scores  # a stop word never scores
    for w, s in ref.items():
        assert lex.scores[w] == pytest.approx(s, abs=1e-12)
    assert lex.scores["moon"] > 0.1 > -0.1 > lex.scores["calm"]
    # A document: the mean over its distinct content words, unknown ones counting 0.
    want = (lex.scores["moon"] + lex.scores["dip"] + 0.0) / 3
    assert lex.score("the moon moon dip zzz") == pytest.approx(want)
    assert Lexicon({}, {}, 0.0, 1).score("") == 0.0


# --- TF-IDF ----------------------------------------------------------------------------------


def test_tfidf_equals_scikit_learn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(30)]
    probs = np.linspace(1, 0.05, len(vocab))
    probs /= probs.sum()
    docs = [" ".join(rng.choice(vocab, size=int(rng.integers(1, 12)), p=probs)) for _ in range(300)]
    counts = term_counts(pd.DataFrame({"tokens": docs}))
    ours = tfidf_from_counts(counts, n_docs=len(docs), terms=8, min_df=2)
    sk = TfidfVectorizer(analyzer=content_words, max_features=8, min_df=2).fit(docs)
    assert set(ours.terms) == set(sk.get_feature_names_out())
    order = [list(sk.get_feature_names_out()).index(t) for t in ours.terms]
    np.testing.assert_allclose(ours.idf, sk.idf_[order], rtol=1e-12)
    new_docs = docs[:50] + ["w0 w0 w1", "nothing known here"]
    np.testing.assert_allclose(ours.transform(new_docs), sk.transform(new_docs).toarray()[:, order], atol=1e-12)


def test_tfidf_pads_to_k_terms():
    t = tfidf_from_counts(pd.DataFrame({"word": ["moon"], "df": [3], "tf": [4]}), n_docs=5, terms=3, min_df=2)
    assert t.terms == ("moon", "", "") and t.transform(["moon dip"]).tolist() == [[1.0, 0.0, 0.0]]
    assert isinstance(t, Tfidf)


# --- topics ----------------------------------------------------------------------------------


def test_c_tf_idf_equals_the_formula_by_hand():
    docs = ["earnings guidance eps", "earnings revenue", "moon rocket moon", "moon squeeze", "dip", "dip hold dip"]
    labels = [0, 0, 1, 1, OTHER, OTHER]
    got = c_tf_idf(docs, labels, top=3)
    classes = {
        0: Counter(["earnings", "guidance", "eps", "earnings", "revenue"]),
        1: Counter(["moon", "rocket", "moon", "moon", "squeeze"]),
    }
    classes[OTHER] = Counter(["dip", "dip", "hold", "dip"])
    n = len(classes)
    for c, words_c in classes.items():
        total = sum(words_c.values())
        score = {w: k / total * math.log(n / (1 + sum(w in o for o in classes.values()))) for w, k in words_c.items()}
        best = sorted(score, key=lambda w: (-score[w], -words_c[w], w))[:3]
        assert [w for w, _ in got[c]] == best
        assert [s for _, s in got[c]] == pytest.approx([round(score[w], 6) for w in best])


@pytest.mark.parametrize("assign", ["centroid", "transform"])
def test_topics_recover_planted_clusters_and_assign_new_posts(assign):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 24)) * 4.0
    X = np.concatenate([c + rng.normal(size=(150, 24)) for c in centers]).astype(np.float32)
    truth = np.repeat([0, 1, 2], 150)
    toks = [["earnings guidance", "moon rocket", "dividend yield"][t] for t in truth]
    model = fit_topics(
        X,
        toks,
        max_topics=5,
        min_topic_size=20,
        n_neighbors=15,
        n_components=3,
        assign=assign,
        seed=0,
        backend=Backend("cpu"),
    )
    assert model.n_clusters == 3 and len(model.centroids) == 3
    labels = model.assign(X)
    # Each planted cluster maps to one topic, almost all of its points included.
    for t in range(3):
        found = Counter(labels[truth == t].tolist()).most_common(1)[0]
        assert found[0] != OTHER and found[1] >= 128  # the outlier cut drops about 5 %
    assert len({Counter(labels[truth == t].tolist()).most_common(1)[0][0] for t in range(3)}) == 3
    # New posts near a centre get that centre's topic; the words name it.
    new = (centers[1] + 0.5 * rng.normal(size=(20, 24))).astype(np.float32)
    topic_of_1 = Counter(labels[truth == 1].tolist()).most_common(1)[0][0]
    assert (model.assign(new) == topic_of_1).mean() >= 0.9
    assert model.words[topic_of_1][0][0] in ("moon", "rocket")


def test_topics_need_enough_posts():
    from wsb_gpu.errors import WsbError

    with pytest.raises(WsbError, match="min_topic_size"):
        fit_topics(
            np.zeros((10, 4), np.float32),
            [""] * 10,
            max_topics=3,
            min_topic_size=50,
            n_neighbors=5,
            n_components=2,
            assign="centroid",
            seed=0,
            backend=Backend("cpu"),
        )


# --- the Model Confidence Set ------------------------------------------------------------------


def test_mcs_keeps_the_equal_and_drops_the_dominated():
    from wsb_gpu.models.metrics import model_confidence_set

    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 1.0, 600)
    losses = pd.DataFrame(
        {
            "best": base,
            "same": base + rng.normal(0, 0.01, 600),  # indistinguishable from the best
            "worse": base * 1.3 + 0.2,  # always worse
        }
    )
    p = model_confidence_set(losses, reps=500, seed=0)
    assert p["worse"] < 0.05 and p["best"] >= 0.25 and p["same"] >= 0.10
    assert math.isnan(model_confidence_set(losses[["best"]], reps=200)["best"])  # one forecast: no set
