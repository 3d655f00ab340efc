"""The seed's engine as a peer: its PySpark steps, in local mode, on the same data and cores.

What runs is what the seed describes (``../shared/seeds/000_…``), each step with the
Spark call the seed names:

* **ingest** — ``spark.read.text`` on the ``.zst`` dump (the JVM Zstandard codec: the
  seed's fast path) and, when that codec cannot read the file, the seed's automatic
  fallback ``binaryFiles`` → Python ``zstandard`` → RDD → DataFrame; then a five-field
  ``from_json`` schema, ``body → text`` / ``title + selftext → text`` and ``unionByName``;
  written as Parquet (the seed's ``stage01_union_parquet``). The real dumps have a 2 GiB
  zstd window, which the JVM codec refuses ("Frame requires too much memory for
  decoding"), so on dumps in the real format Spark takes the Python fallback, as the
  seed's did whenever its codec jar did not load. Variant ``pyspark-ndjson`` gives Spark
  the already-decompressed NDJSON (decompression not timed): its best case.
* **mentions** — ``regexp_extract_all`` → ``explode`` → broadcast join with the ticker
  table → lifespan filter (``date`` within ``[NAMEDT, NAMEENDT]``) → one row per (post,
  ticker, permno) with ``n_occ``; written as Parquet. The token rule is ours (``$`` +
  1–5 capitals, or 2–5 bare capitals not in the stoplist, ASCII word edges via Java
  lookarounds) so that both sides do the same work.
* **volatility** — ``spark.read.csv`` → first parseable of RET/RETX/DLRET →
  ``repartition("PERMNO")`` → ``Window.partitionBy("PERMNO").orderBy("date")
  .rowsBetween(-(w-1), 0)`` for √Σr² (NaN unless the window holds ``w`` returns) →
  ``lead(vol_w, 1)`` targets → Parquet.
* **train** — the ridge grid: ``VectorAssembler`` (4 HAR terms + 768 embedding columns)
  → ``cache()`` → per test year a 4-year window → ``CrossValidator`` (3 folds, 5 λ,
  ``parallelism`` = cores) over ``LinearRegression(elasticNetParam=0, solver="normal")``
  → best model scored on the test year (MSE, R²).

Left out on purpose, because at benchmark scale they only add small files or disk
writes that our side does not do: ``partitionBy("ticker")``/``partitionBy("PERMNO")`` on
write, ``repartition(200)`` and ``persist(DISK_ONLY)``. They would make Spark slower.

Spark needs Java (17 here) and ``pyspark`` (the ``bench`` extra). Without them every
function here reports *why* and :func:`bench` returns rows that say so.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import error_row, java_status, make_row, time_call
from wsb_gpu.sysinfo import usable_cores

SPARK_INSTALL = "pip install 'wsb_gpu[bench]'"
IMPL = "pyspark"

# A symbol token as our mentions stage defines it, written with the Java lookarounds that
# Spark's regex engine has: "$" + 1-5 capitals or 2-5 bare capitals, ASCII word edges.
TOKEN_PATTERN = r"(?<![A-Za-z0-9_$])(\$?[A-Z]{1,5})(?![A-Za-z0-9_])"
FALLBACK_STOPLIST = (
    "ALL",
    "IT",
    "CEO",
    "DD",
    "YOLO",
    "FOR",
    "USA",
    "ATH",
    "IPO",
    "EPS",
    "ARE",
    "ON",
    "AT",
    "BE",
    "GO",
    "SO",
    "OR",
    "ANY",
    "NOW",
    "BIG",
    "NEW",
    "ONE",
    "CAN",
    "OUT",
)


def default_stoplist() -> tuple[str, ...]:
    """The stoplist our mentions stage uses by default (so both sides do the same work)."""
    try:
        from wsb_gpu.stages.mentions import load_stoplist

        return tuple(sorted(load_stoplist()))
    except Exception:  # the stage is not there yet
        return FALLBACK_STOPLIST


def spark_status() -> tuple[bool, str]:
    """Whether PySpark can run here, and why not (no import of pyspark itself).

    >>> ok, why = spark_status()
    >>> isinstance(ok, bool) and isinstance(why, str)
    True
    """
    if importlib.util.find_spec("pyspark") is None:
        return False, f"pyspark is not installed (install it with {SPARK_INSTALL})"
    return java_status()


def start_spark(cores: int | None = None, memory: str = "4g", local_dir: str | None = None):
    """A local-mode SparkSession on ``cores`` cores (default: the cores this process may use).

    Local mode runs the executors inside the driver JVM, so ``memory`` is all Spark gets.
    ANSI mode is off so that CRSP letter codes cast to null, as in the seed's Spark 3.
    """
    from pyspark.sql import SparkSession

    cores = cores or usable_cores()
    # The Python workers (for the zstandard fallback) must run this interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("wsb_gpu-seed-peer")
        .config("spark.driver.memory", memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(4 * cores))
        .config("spark.default.parallelism", str(cores))
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.compression.codec", "snappy")
    )
    if local_dir:
        builder = builder.config("spark.local.dir", local_dir)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# --- ingest + mentions -----------------------------------------------------------------------


def _python_zstd_lines(spark: Any, path: str):
    """The seed's fallback: ``binaryFiles`` → ``zstandard`` (2 GiB window) → lines → DataFrame."""
    from pyspark.sql import types as T

    def decode(item: tuple[str, bytes]):
        import io

        import zstandard

        _, blob = item
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(io.BytesIO(blob))
        for raw in io.TextIOWrapper(reader, encoding="utf-8", errors="replace", newline="\n"):
            line = raw.rstrip("\r\n")
            if line.strip():
                yield (line,)

    rdd = spark.sparkContext.binaryFiles(path).flatMap(decode)
    return spark.createDataFrame(rdd, T.StructType([T.StructField("value", T.StringType())]))


_CODEC_PATH: dict[str, str] = {}


def read_dump(spark: Any, path: str, codec: str = "auto") -> tuple[Any, str]:
    """The dump's lines as a one-column DataFrame, and the path taken (``jvm`` or ``python``).

    ``codec="auto"`` tries the JVM Zstandard codec on a small action first and falls back
    to Python ``zstandard`` when it fails, as the seed's code did. The outcome is
    remembered per file, so the probe is paid by the warm-up run, not by the timed ones
    (generous to Spark).
    """
    if codec == "auto":
        codec = _CODEC_PATH.get(path, "auto")
    if codec in ("auto", "jvm"):
        try:
            lines = spark.read.text(path)
            if codec == "auto":
                # The codec fails on the first block it decodes; keep its expected stack
                # trace out of the log.
                spark.sparkContext.setLogLevel("OFF")
                try:
                    lines.limit(1).collect()
                finally:
                    spark.sparkContext.setLogLevel("ERROR")
                _CODEC_PATH[path] = "jvm"
            return lines, "jvm"
        except Exception:
            if codec == "jvm":
                raise
            _CODEC_PATH[path] = "python"
    return _python_zstd_lines(spark, path), "python"


def _schemas():
    from pyspark.sql import types as T

    s = T.StringType()
    sub = T.StructType([T.StructField(n, s) for n in ("id", "created_utc", "author", "title", "selftext")])
    com = T.StructType([T.StructField(n, s) for n in ("id", "created_utc", "author", "body")])
    return sub, com


def spark_ingest(
    spark: Any, submissions: str, comments: str, out: str, *, codec: str = "auto", ndjson: dict[str, str] | None = None
) -> dict[str, Any]:
    """Both dumps → the posts table as Parquet at ``out``; returns rows and the codec path."""
    from pyspark.sql import functions as F

    sub_schema, com_schema = _schemas()
    if ndjson:
        sub_lines, how = spark.read.text(ndjson["submissions"]), "ndjson"
        com_lines = spark.read.text(ndjson["comments"])
    else:
        sub_lines, how = read_dump(spark, submissions, codec)
        com_lines, _ = read_dump(spark, comments, "jvm" if how == "jvm" else "python")

    def parse(lines: Any, schema: Any) -> Any:
        return lines.select(F.from_json("value", schema).alias("j")).select("j.*")

    created = F.col("created_utc").cast("double").cast("long")
    sub = parse(sub_lines, sub_schema).select(
        "id",
        F.lit("submission").alias("kind"),
        created.alias("created_utc"),
        "author",
        F.concat_ws("\n", F.coalesce("title", F.lit("")), F.coalesce("selftext", F.lit(""))).alias("text"),
        F.lit(Path(submissions).name).alias("source"),
    )
    com = parse(com_lines, com_schema).select(
        "id",
        F.lit("comment").alias("kind"),
        created.alias("created_utc"),
        "author",
        F.coalesce("body", F.lit("")).alias("text"),
        F.lit(Path(comments).name).alias("source"),
    )
    posts = (
        sub.unionByName(com)
        .where(F.col("id").isNotNull() & F.col("created_utc").isNotNull())
        .withColumn("date", F.to_date(F.from_unixtime("created_utc")))
    )
    posts.write.mode("overwrite").parquet(out)
    return {"path": how}


def spark_mentions(spark: Any, posts: str, stocknames: str, out: str, stoplist: Sequence[str] | None = None) -> int:
    """Posts Parquet → mentions Parquet: extract, explode, broadcast join, lifespan filter."""
    from pyspark.sql import functions as F

    stoplist = default_stoplist() if stoplist is None else stoplist
    names = spark.read.csv(stocknames, header=True)
    cols = {c.lower(): c for c in names.columns}
    names = names.select(
        F.col(cols["ticker"]).alias("ticker"),
        F.col(cols["permno"]).cast("long").alias("permno"),
        F.to_date(F.col(cols["namedt"]).cast("string"), "yyyy-MM-dd").alias("namedt"),
        F.to_date(F.col(cols["nameendt"]).cast("string"), "yyyy-MM-dd").alias("nameendt"),
    )
    tokens = spark.read.parquet(posts).select(
        "id",
        "kind",
        "created_utc",
        "date",
        F.explode(F.regexp_extract_all("text", F.lit(TOKEN_PATTERN), 1)).alias("tok"),
    )
    dollar = F.col("tok").startswith("$")
    sym = F.regexp_replace("tok", r"^\$", "")
    tokens = (
        tokens.withColumn("dollar", dollar)
        .withColumn("sym", sym)
        .where(F.col("dollar") | ((F.length("sym") >= 2) & ~F.col("sym").isin(list(stoplist))))
    )
    cond = (tokens.sym == names.ticker) & (tokens.date >= names.namedt) & (tokens.date <= names.nameendt)
    mentions = (
        tokens.join(F.broadcast(names), cond)
        .groupBy("id", "kind", "created_utc", "date", "ticker", "permno")
        .agg(F.count(F.lit(1)).cast("int").alias("n_occ"))
    )
    mentions.write.mode("overwrite").parquet(out)
    return out


# --- volatility -------------------------------------------------------------------------------


def spark_volatility(spark: Any, crsp: str, out: str, windows: Sequence[int] = (1, 5, 22, 63)) -> None:
    """CRSP daily (CSV, or Parquet) → RV panel with ``Window.partitionBy("PERMNO").orderBy("date").rowsBetween``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    raw = spark.read.parquet(crsp) if str(crsp).endswith(".parquet") else spark.read.csv(crsp, header=True)
    cols = {c.lower(): c for c in raw.columns}

    def num(name: str) -> Any:
        c = cols.get(name)
        if c is None:
            return F.lit(None).cast("double")
        v = F.col(c).cast("double")
        return F.when(~F.isnan(v) & (F.abs(v) < float("inf")), v)

    df = raw.select(
        F.col(cols["permno"]).cast("long").alias("permno"),
        F.to_date(F.col(cols["date"])).alias("date"),
        F.coalesce(num("ret"), num("retx"), num("dlret")).alias("ret"),
    ).repartition("permno")
    w = Window.partitionBy("permno").orderBy("date")
    r2 = F.col("ret") * F.col("ret")
    for k in windows:
        span = w.rowsBetween(-(k - 1), 0)
        df = df.withColumn(f"vol_{k}", F.when(F.count("ret").over(span) == k, F.sqrt(F.sum(r2).over(span))))
    for k in windows:
        df = df.withColumn(f"y_{k}", F.lead(f"vol_{k}", 1).over(w))
    df.write.mode("overwrite").parquet(out)


# --- ridge CV ---------------------------------------------------------------------------------


def spark_ridge_cv(
    spark: Any,
    features: str,
    *,
    target: str = "y_1",
    train_years: int = 4,
    lambdas: Sequence[float] = (0.01, 0.1, 10.0, 1000.0, 10000.0),
    folds: int = 3,
    parallelism: int | None = None,
) -> list[dict[str, Any]]:
    """The seed's rolling ridge grid with MLlib ``CrossValidator``; per-year MSE and R²."""
    import numpy as np
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from pyspark.sql import functions as F

    df = spark.read.parquet(features)
    feats = [c for c in df.columns if c.startswith("vol_")] + sorted(
        c for c in df.columns if c[:1] == "e" and c[1:].isdigit()
    )
    data = (
        VectorAssembler(inputCols=feats, outputCol="features")
        .transform(df.withColumn("year", F.year("date")))
        .select("year", "features", F.col(target).alias("label"))
        .where(F.col("label").isNotNull())
        .cache()
    )
    years = sorted(r["year"] for r in data.select("year").distinct().collect())
    lr = LinearRegression(elasticNetParam=0.0, solver="normal", standardization=True)
    grid = ParamGridBuilder().addGrid(lr.regParam, list(lambdas)).build()
    mse_eval = RegressionEvaluator(metricName="mse")
    out = []
    for y in years[train_years:]:
        train = data.where((F.col("year") >= y - train_years) & (F.col("year") < y))
        test = data.where(F.col("year") == y)
        cv = CrossValidator(
            estimator=lr,
            estimatorParamMaps=grid,
            evaluator=mse_eval,
            numFolds=folds,
            parallelism=parallelism or usable_cores(),
            seed=0,
        )
        model = cv.fit(train)
        pred = model.transform(test)
        mse = mse_eval.evaluate(pred)
        r2 = RegressionEvaluator(metricName="r2").evaluate(pred)
        out.append(
            {
                "test_year": y,
                "mse": mse,
                "r2": r2,
                "lambda": float(np.asarray(lambdas)[int(np.argmin(model.avgMetrics))]),
            }
        )
    data.unpersist()
    return out


# --- the peer's benchmark ---------------------------------------------------------------------


class SparkPeer:
    """One SparkSession for all of a harness run's Spark measurements (started lazily)."""

    def __init__(self, cores: int | None = None, memory: str = "4g") -> None:
        self.cores = cores or usable_cores()
        self.memory = memory
        self.spark = None
        self.startup_s = None
        self._tmp = Path(tempfile.mkdtemp(prefix="wsb-spark-"))

    def session(self) -> Any:
        if self.spark is None:
            t0 = time.perf_counter()
            self.spark = start_spark(self.cores, self.memory, local_dir=str(self._tmp / "local"))
            self.startup_s = time.perf_counter() - t0
        return self.spark

    def close(self) -> None:
        if self.spark is not None:
            self.spark.stop()
            self.spark = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> SparkPeer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _note(self, extra: str = "") -> str:
        base = f"local[{self.cores}], driver {self.memory}"
        return f"{base}; {extra}" if extra else base

    # Each measurement writes into a fresh folder so that "overwrite" never has to delete a
    # previous run's files inside the timed region (our stages write into fresh folders too).
    def _out(self, name: str) -> str:
        p = self._tmp / f"{name}-{time.perf_counter_ns()}"
        return str(p)

    def ingest_mentions(
        self,
        inputs: dict[str, Any],
        size: int,
        *,
        repeats: int = 3,
        warmup: int = 1,
        backend: str = "cpu",
        ndjson_variant: bool = False,
        stoplist: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows ``ingest`` and ``mentions`` for impl ``pyspark`` (and ``pyspark-ndjson``)."""
        spark = self.session()
        sub, com, names = str(inputs["submissions"]), str(inputs["comments"]), str(inputs["stocknames"])
        rows = []
        variants: list[tuple[str, dict[str, str] | None]] = [(IMPL, None)]
        if ndjson_variant:
            variants.append((IMPL + "-ndjson", _decompress_once(inputs, self._tmp)))
        for impl, ndjson in variants:
            info: dict[str, Any] = {}
            posts_dirs: list[str] = []

            def run_ingest(ndjson: Any = ndjson, info: dict = info, posts_dirs: list = posts_dirs) -> None:
                out = self._out("posts")
                info.update(spark_ingest(spark, sub, com, out, ndjson=ndjson))
                posts_dirs.append(out)

            t_ing = time_call(run_ingest, repeats=repeats, warmup=warmup)
            posts = posts_dirs[-1]
            men_dirs: list[str] = []

            def run_mentions(posts: str = posts, men_dirs: list = men_dirs) -> None:
                men_dirs.append(spark_mentions(spark, posts, names, self._out("mentions"), stoplist))

            t_men = time_call(run_mentions, repeats=repeats, warmup=warmup)
            # Row counts (not timed) show that Spark did the same work as ours.
            n_posts = spark.read.parquet(posts).count()
            n_men = spark.read.parquet(men_dirs[-1]).count()
            how = {
                "jvm": "JVM zstd codec",
                "python": "zstd fallback: binaryFiles + Python zstandard",
                "ndjson": "spark.read.text on decompressed NDJSON, decompression not timed",
            }[info["path"]]
            rows.append(make_row("ingest", impl, backend, size, t_ing, note=self._note(f"{how}; {n_posts:,} rows out")))
            rows.append(make_row("mentions", impl, backend, size, t_men, note=self._note(f"{n_men:,} rows out")))
            for d in posts_dirs + men_dirs:
                shutil.rmtree(d, ignore_errors=True)
        return rows

    def volatility(
        self, crsp: str | Path, size: int, *, repeats: int = 3, warmup: int = 1, backend: str = "cpu"
    ) -> list[dict[str, Any]]:
        spark = self.session()
        outs: list[str] = []

        def clean() -> None:  # untimed: the previous run's output would fill the disk
            while outs:
                shutil.rmtree(outs.pop(), ignore_errors=True)

        def run() -> None:
            outs.append(self._out("vol"))
            spark_volatility(spark, str(crsp), outs[-1])

        times = time_call(run, repeats=repeats, warmup=warmup, setup=clean)
        clean()
        return [
            make_row(
                "volatility", IMPL, backend, size, times, unit="stock-days/s", note=self._note("Window.rowsBetween")
            )
        ]

    def train(
        self, features: str | Path, size: int, *, repeats: int = 1, warmup: int = 0, backend: str = "cpu"
    ) -> list[dict[str, Any]]:
        spark = self.session()
        result: list[Any] = []
        times = time_call(
            lambda: result.append(spark_ridge_cv(spark, str(features), parallelism=self.cores)),
            repeats=repeats,
            warmup=warmup,
        )
        n_years = len(result[-1]) if result else 0
        return [
            make_row(
                "train",
                IMPL,
                backend,
                size,
                times,
                unit="stock-days/s",
                note=self._note(f"MLlib CrossValidator, {n_years} windows x 3 folds x 5 lambdas, 772 features"),
            )
        ]


def _decompress_once(inputs: dict[str, Any], tmp: Path) -> dict[str, str]:
    """Decompressed copies of both dumps for the ``pyspark-ndjson`` variant (not timed)."""
    import zstandard

    out = {}
    for key in ("submissions", "comments"):
        dst = tmp / (Path(inputs[key]).stem + ".ndjson")
        if not dst.exists():
            with open(inputs[key], "rb") as src, dst.open("wb") as f:
                zstandard.ZstdDecompressor(max_window_size=2**31).copy_stream(src, f)
        out[key] = str(dst)
    return out


def write_features(frame: Any, path: str | Path) -> Path:
    """Write a features frame (pandas) as Parquet for the Spark ridge peer (not timed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path / "part.0.parquet", index=False)
    return path


def unavailable_rows(stages: Sequence[str], size: int, backend: str, why: str) -> list[dict[str, Any]]:
    """Rows that say the Spark peer was skipped, and why."""
    return [error_row(s, IMPL, backend, size, f"skipped: {why}") for s in stages]
