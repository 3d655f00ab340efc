"""Benchmark of the per-post text scorers: VADER + words, the lexicon, TF-IDF and the topics.

Each is timed as the pipeline runs it (Dask, on a LocalCluster of one single-threaded worker
process per usable core, from Parquet) beside what a researcher would write instead, in one
process, on the same ``size`` synthetic WSB-like posts (the embed benchmark's texts: log-normal
word counts, median 12 words), spread over 100 stocks and the trading days of 2015-2018
(training years 2015-2017, test year 2018, as one rolling window):

* ``signals`` -- ``wsb_gpu``: the whole ``signals`` stage (posts + mentions Parquet -> VADER
  scores and words -> Parquet); ``pandas-apply``: ``SentimentIntensityAnalyzer.polarity_scores``
  and the same word regex over a pandas column (the usual notebook way; one process).
* ``lexicon`` -- ``wsb_gpu``: :func:`~wsb_gpu.signals.fitted.fit_families` (the lexicon on the
  training years) and :func:`~wsb_gpu.signals.fitted.family_columns_frame` (every post of the
  window scored, stock-day means; the training years cross-fitted); ``python-loop``: the seed's
  dictionary by a plain loop (:func:`~wsb_gpu.signals.lexicon.fit_lexicon_reference`), once for
  the window and once per held-out training year, each post scored by a loop, stock-day means
  by a pandas groupby. Same scores (the note gives the largest difference).
* ``tfidf`` -- ``wsb_gpu``: the same two calls for the TF-IDF family; ``scikit-learn``:
  ``TfidfVectorizer(max_features=50, min_df=2)`` fitted on the training posts, transform of
  every post, stock-day means by a groupby of the sparse rows. Same columns.
* ``topics`` -- ``wsb_gpu``: the topic model fitted on a sample of the training posts
  (UMAP + HDBSCAN + c-TF-IDF, ``train.topics.sample``) and every post assigned to the
  nearest topic centroid (``assign: centroid``, the default); ``umap-hdbscan-transform``:
  the same fit, then BERTopic's assignment (``UMAP.transform`` + HDBSCAN
  ``approximate_predict``, ``assign: transform``). The embeddings are 384-d with planted
  clusters (what MiniLM gives), so both find the topics; the note gives how many.

Throughput is posts per second (all posts of the window, training and test). On ``--backend
gpu`` the topics run on cuML; VADER and the word families are CPU work on both backends.

Run: ``python -m benchmarks.signals --size 100000 --repeats 2``.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA_DIR, error_row, make_row, print_rows, stage_parser, time_call
from wsb_gpu.sysinfo import usable_cores

STAGE = "signals"
TRAIN_YEARS = (2015, 2016, 2017)
TEST_YEAR = 2018
STOCKS = 100
DIM, CLUSTERS = 384, 8


def make_inputs(size: int, folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write (once, cached) the posts, mentions, links and embeddings datasets of ``size``
    posts and the features rows (labels) of their stock-days."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.embed import synthetic_texts

    paths = {k: folder / k for k in ("posts", "mentions", "links", "embeddings", "features")}
    if (folder / "_done").exists():
        return paths
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(f"{TRAIN_YEARS[0]}-01-01", f"{TEST_YEAR}-12-31").values.astype("datetime64[D]")
    ids = np.array([f"p{i:08d}" for i in range(size)])
    permno = (10000 + rng.integers(0, STOCKS, size)).astype("int64")
    date = np.sort(rng.choice(days, size))
    texts = synthetic_texts(size, seed=seed)
    utc = (date.astype("datetime64[s]").astype("int64") + rng.integers(0, 86400, size)).astype("int64")

    def write(name: str, table: pa.Table, parts: int = 8) -> None:
        paths[name].mkdir(parents=True)
        step = -(-table.num_rows // parts)
        for i in range(parts):
            pq.write_table(table.slice(i * step, step), paths[name] / f"part.{i}.parquet")

    d32 = pa.array(date, pa.date32())
    write(
        "posts",
        pa.table(
            {
                "id": ids,
                "kind": np.full(size, "comment"),
                "created_utc": utc,
                "date": d32,
                "author": np.full(size, "user"),
                "text": texts,
                "source": np.full(size, "bench"),
            }
        ),
    )
    write(
        "mentions",
        pa.table(
            {
                "id": ids,
                "kind": np.full(size, "comment"),
                "created_utc": utc,
                "date": d32,
                "ticker": np.array([f"T{p}" for p in permno]),
                "permno": permno,
                "n_occ": np.ones(size, np.int32),
            }
        ),
    )
    write(
        "links",
        pa.table(
            {
                "permno": permno,
                "date": d32,
                "id": ids,
                "created_utc": utc,
                "post_date": d32,
                "n_occ": np.ones(size, np.int32),
            }
        ),
    )
    centres = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    E = centres[rng.integers(0, CLUSTERS, size)] + rng.normal(0, 0.35, (size, DIM)).astype(np.float32)
    write(
        "embeddings",
        pa.table({"id": ids, **{f"e{j:03d}": E[:, j] for j in range(DIM)}, "n_tokens": np.full(size, 12, np.int32)}),
    )
    keys = pd.DataFrame({"permno": permno, "date": date}).drop_duplicates().reset_index(drop=True)
    n = len(keys)
    v = 0.02 * np.exp(rng.normal(0, 0.4, n))
    feats = {
        "permno": keys["permno"].to_numpy(),
        "date": pa.array(keys["date"].to_numpy().astype("datetime64[D]"), pa.date32()),
        "n_posts": np.ones(n, np.int64),
        "n_mentions": np.ones(n, np.int64),
        "ret": np.zeros(n),
        **{f"vol_{w}": v * np.exp(rng.normal(0, 0.1, n)) for w in (1, 5, 22, 63)},
        **{f"y_{w}": v * np.exp(rng.normal(0, 0.3, n)) for w in (1, 5, 22, 63)},
    }
    write("features", pa.table(feats), parts=4)
    (folder / "_done").write_text("")
    return paths


def _peer_words(text: str) -> str:
    from wsb_gpu.signals.words import words

    return " ".join(words(text))


def bench(backend: str, size: int, repeats: int = 2, warmup: int = 1, topic_sample: int = 10_000) -> list[dict]:
    """Rows for the four scorers, ours and a peer each (see the module docstring)."""
    import numpy as np
    import pandas as pd
    from distributed import Client, LocalCluster

    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.config import TrainParams, validate_params
    from wsb_gpu.signals import fitted as signals_fitted
    from wsb_gpu.signals.base import Labels
    from wsb_gpu.signals.fitted import PostSources
    from wsb_gpu.stages import run_stage
    from wsb_gpu.training.families import fitted_families
    from wsb_gpu.training.sample import load_sample

    try:
        be = resolve_backend(backend)
    except Exception as e:  # --backend gpu without a GPU
        return [error_row(s, "wsb_gpu", backend, size, str(e)) for s in ("signals", "lexicon", "tfidf", "topics")]
    paths = make_inputs(size, DATA_DIR / f"signals_{size}")
    work = Path(tempfile.mkdtemp(prefix="wsb-bench-signals-"))
    cores = usable_cores()
    rows: list[dict] = []
    cluster = LocalCluster(
        n_workers=cores, threads_per_worker=1, dashboard_address=None, processes=True, silence_logs=logging.ERROR
    )
    client = Client(cluster)
    try:
        # --- signals: VADER + words ---------------------------------------------------------
        def run_signals() -> None:
            shutil.rmtree(work / "signals", ignore_errors=True)
            run_stage(
                "signals", work / "signals", posts=paths["posts"], mentions=paths["mentions"], backend=be, client=client
            )

        times = time_call(run_signals, repeats=repeats, warmup=warmup)
        rows.append(
            make_row("signals", "wsb_gpu", backend, size, times, unit="posts/s", workers=cores,
                     note=f"whole stage: Parquet in -> VADER + words -> Parquet out, {cores} worker processes")
        )  # fmt: skip
        texts = pd.read_parquet(paths["posts"], columns=["text"])["text"]
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        from wsb_gpu.text import clean_text

        analyzer = SentimentIntensityAnalyzer()

        def peer_signals() -> None:
            clean = texts.map(clean_text)
            scores = pd.DataFrame(clean.map(analyzer.polarity_scores).tolist())
            scores["tokens"] = texts.map(_peer_words)

        times = time_call(peer_signals, repeats=repeats, warmup=0)
        rows.append(make_row("signals", "pandas-apply", backend, size, times, unit="posts/s", workers=1,
                             note="Series.map(polarity_scores) + word regex, one process, from memory"))  # fmt: skip

        # --- the fitted families, one window --------------------------------------------------
        params = validate_params(
            TrainParams,
            {"lexicon": {"min_dates": 10}, "tfidf": {"terms": 50, "min_df": 2}, "topics": {"sample": topic_sample}},
            "train",
        )
        sample = load_sample(features=paths["features"], volatility=None, sample="posts", target="y_1", backend=be)
        sources = PostSources(paths["links"], work / "signals", paths["embeddings"])
        har = ["vol_1", "vol_5", "vol_22", "vol_63"]
        labels = sample.ddf[sample.ddf["year"].isin(list(TRAIN_YEARS))][["permno", "day", "y_1", *har]]
        years = [*TRAIN_YEARS, TEST_YEAR]
        got: dict[str, Any] = {}

        def ours(family: str) -> None:
            posts = sources.window_posts(sources.posts())
            fitted = signals_fitted.fit_families(
                fitted_families(params, [family]), posts.years(TRAIN_YEARS), Labels(labels, "y_1", None), backend=be
            )
            frame = signals_fitted.family_columns_frame(fitted, posts.years(years))
            got[family] = (fitted, frame.compute())

        # Host copies for the peers (read once, outside their timing: they start from memory).
        sig = pd.read_parquet(work / "signals", columns=["id", "tokens"])
        links = pd.read_parquet(paths["links"], columns=["permno", "date", "id"])
        posts_h = links.merge(sig, on="id")
        posts_h["year"] = pd.to_datetime(posts_h["date"]).dt.year
        feats = pd.read_parquet(paths["features"], columns=["permno", "date", "y_1", "vol_22"])
        feats["year"] = pd.to_datetime(feats["date"]).dt.year
        train_f = feats[feats["year"].isin(TRAIN_YEARS)]
        label = np.log(train_f["y_1"] / train_f["vol_22"])
        day_label = dict(zip(zip(train_f["permno"], train_f["date"]), label))

        for family in ("lexicon", "tfidf"):
            try:
                times = time_call(lambda f=family: ours(f), repeats=repeats, warmup=warmup)
                info = got[family][0].info()[family]
                note = f"fit on {len(TRAIN_YEARS)} training years + every post scored, stock-day means; " + (
                    f"{info['words']:,} words kept" if family == "lexicon" else f"{len(info['terms'])} terms"
                )
                rows.append(make_row(family, "wsb_gpu", backend, size, times, unit="posts/s", workers=cores, note=note))
            except Exception as e:
                traceback.print_exc()
                rows.append(error_row(family, "wsb_gpu", backend, size, f"{type(e).__name__}: {e}"))

        from wsb_gpu.signals.lexicon import fit_lexicon_reference
        from wsb_gpu.signals.words import content_words

        def peer_lexicon() -> None:
            # The same work as ours: the window's lexicon for the test year and, cross-fitted,
            # the lexicon of the other training years for each training year's posts.
            train = posts_h[posts_h["year"].isin(TRAIN_YEARS)]
            items = [
                (t, p, d, day_label[(p, d)], y)
                for t, p, d, y in zip(train["tokens"], train["permno"], train["date"], train["year"])
                if (p, d) in day_label
            ]
            label_year = train_f["year"].to_numpy()
            lexicons = {TEST_YEAR: fit_lexicon_reference([i[:4] for i in items], float(label.mean()), min_dates=10)}
            for year in TRAIN_YEARS:
                rest = [i[:4] for i in items if i[4] != year]
                lexicons[year] = fit_lexicon_reference(rest, float(label[label_year != year].mean()), min_dates=10)
            scores = [
                np.mean([lexicons[y].get(w, 0.0) for w in set(content_words(t))] or [0.0])
                for t, y in zip(posts_h["tokens"], posts_h["year"])
            ]
            got["peer_lexicon"] = posts_h.assign(lexicon=scores).groupby(["permno", "date"])["lexicon"].mean()

        times = time_call(peer_lexicon, repeats=repeats, warmup=0)
        diff = _max_diff(got, "lexicon", "peer_lexicon", ["lexicon"])
        rows.append(make_row("lexicon", "python-loop", backend, size, times, unit="posts/s", workers=1,
                             note=f"dict of (stock, date) sets per word, cross-fitted, one process, from memory; max |diff| {diff}"))  # fmt: skip

        from sklearn.feature_extraction.text import TfidfVectorizer

        from wsb_gpu.signals.words import STOP_WORDS

        def peer_tfidf() -> None:
            train = posts_h[posts_h["year"].isin(TRAIN_YEARS)].drop_duplicates("id")
            vec = TfidfVectorizer(max_features=50, min_df=2, token_pattern=r"\S+", stop_words=sorted(STOP_WORDS.get()),
                                  lowercase=False)  # fmt: skip
            vec.fit(train["tokens"].fillna(""))
            X = vec.transform(posts_h["tokens"].fillna(""))
            frame = pd.DataFrame.sparse.from_spmatrix(X).sparse.to_dense()
            frame[["permno", "date"]] = posts_h[["permno", "date"]].to_numpy()
            got["peer_tfidf"] = frame.groupby(["permno", "date"]).mean()

        times = time_call(peer_tfidf, repeats=repeats, warmup=0)
        rows.append(make_row("tfidf", "scikit-learn", backend, size, times, unit="posts/s", workers=1,
                             note="TfidfVectorizer(max_features=50, min_df=2) fit + transform, groupby mean, from memory"))  # fmt: skip

        # --- topics ---------------------------------------------------------------------------
        for impl, mode in (("wsb_gpu", "centroid"), ("umap-hdbscan-transform", "transform")):
            try:
                params = validate_params(
                    TrainParams, {"topics": {"sample": topic_sample, "assign": mode, "min_topic_size": 50}}, "train"
                )
                times = time_call(lambda: ours("topics"), repeats=repeats, warmup=warmup if impl == "wsb_gpu" else 0)
                info = got["topics"][0].info()["topics"]
                rows.append(
                    make_row("topics", impl, backend, size, times, unit="posts/s", workers=cores,
                             note=f"fit on {info['n_sample']:,} sampled training posts ({info['clusters_found']} "
                             f"clusters, {CLUSTERS} planted) + every post assigned ({mode})")
                )  # fmt: skip
            except Exception as e:
                traceback.print_exc()
                rows.append(error_row("topics", impl, backend, size, f"{type(e).__name__}: {e}"))
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _max_diff(got: dict, ours: str, peer: str, columns: list[str]) -> str:
    """Largest absolute difference between our stock-day columns and the peer's."""
    import numpy as np
    import pandas as pd

    if ours not in got or peer not in got:
        return "n/a"
    frame = got[ours][1]
    frame = frame.assign(date=pd.to_datetime(frame["day"], unit="D").dt.date).set_index(["permno", "date"])[columns]
    ref = got[peer].to_frame() if isinstance(got[peer], pd.Series) else got[peer]
    ref.index = ref.index.set_levels([ref.index.levels[0], pd.to_datetime(ref.index.levels[1]).date])
    joined = frame.join(ref, how="inner", rsuffix="_peer")
    return f"{np.nanmax(np.abs(joined[columns[0]] - joined[columns[0] + '_peer'])):.1e} over {len(joined):,} stock-days"


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, size=100_000, size_help="posts", repeats=2)
    parser.add_argument("--topic-sample", type=int, default=10_000, help="posts the topic model is fitted on")
    args = parser.parse_args(argv)
    rows = bench(args.backend, args.size, args.repeats, topic_sample=args.topic_sample)
    return 0 if print_rows(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
