"""Whole commands as users run them: wsb_gpu's CLI beside DuckDB, polars, sentence-transformers
and ONNX Runtime programs on the same inputs and cores, process start to exit.

Every measurement is one fresh process (``subprocess``), timed from its start to its exit,
with the peak resident memory of its whole process tree (workers included; sampled every
20 ms with psutil), medians of ``--repeats`` runs, one run at a time. Outputs go to a new
folder per run (removed between runs, outside the timing); inputs are written once and
cached under ``benchmarks/data``.

Tasks and their rows (``wsb_gpu`` = ``wsb-gpu <command>`` with its defaults;
``wsb_gpu/cluster-none`` = the same with ``--backend cpu --cluster none``):

* ``ingest+mentions``: the dumps of ``wsb-gpu synth --seed 5 --tickers 200 --posts-per-day
  200`` (580,014 records, 374 MB of JSON; ``--dump-posts-per-day 200,2740`` adds 7.9M
  records, 5.1 GB of JSON, run ``--large-repeats`` times, and draws
  ``benchmarks/commands_scaling.png``); ours is ``wsb-gpu ingest`` then ``wsb-gpu
  mentions`` (two processes, summed per run), the peers one program each
  (:func:`benchmarks.ingest.polars_ingest_mentions`, :func:`~benchmarks.ingest.duckdb_ingest_mentions`).
* ``volatility``: CRSP-style CSVs (``PERMNO, date, RET``, letter codes) of 5M and 25.7M rows;
  ``wsb-gpu volatility`` vs :func:`benchmarks.volatility.polars_file` / ``duckdb_file``.
* ``embed``: 2,000 WSB-length posts (a posts and a mentions dataset) on the packaged
  all-MiniLM-L6-v2 with mean pooling and 64 tokens; ``wsb-gpu embed --model minilm
  --pooling mean`` vs sentence-transformers ``encode`` and ONNX Runtime (the model exported
  once beforehand, as a user does; the export is not timed), each writing the vectors to Parquet.

    python -m benchmarks.commands                        # every task, 3 runs each, appends to RESULTS.md
    python -m benchmarks.commands --only embed --repeats 1 --no-md

A peer program runs as ``python -m benchmarks.commands peer <name> ARGS`` (what is timed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from benchmarks import common
from wsb_gpu.sysinfo import usable_cores

ROOT = Path(__file__).resolve().parent.parent
DATA = common.DATA_DIR
TASKS = ("ingest+mentions", "volatility", "embed")
VOLATILITY_SIZES = (5_000_000, 25_700_000)
EMBED_POSTS = 2_000
EMBED_MAX_LENGTH = 64
SYNTH = ("--seed", "5", "--tickers", "200")
DUMP_POSTS_PER_DAY = (200,)
"""Sizes of the ingest+mentions dumps: 200 posts a day over 2012-2019 = 580,014 records
(374 MB of JSON); ``--dump-posts-per-day 200,2740`` adds 7.9M records (5.1 GB of JSON)."""


# --- running one command ---------------------------------------------------------------------


def measure(argvs: list[list[str]], *, cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run ``argvs`` one after the other; (wall seconds of all, peak RSS bytes of any one tree).

    A failing command raises ``RuntimeError`` with the last line it printed.
    """
    import psutil

    if env is None:  # the peers' programs are modules of this checkout, run from elsewhere
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    total, peak = 0.0, 0
    for argv in argvs:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        high = [0]
        done = threading.Event()

        def sample(pid: int = proc.pid, high: list[int] = high, done: threading.Event = done) -> None:
            try:
                root = psutil.Process(pid)
            except psutil.NoSuchProcess:
                return
            while not done.is_set():
                rss = 0
                try:
                    for p in [root, *root.children(recursive=True)]:
                        with contextlib.suppress(psutil.NoSuchProcess):
                            rss += p.memory_info().rss
                except psutil.NoSuchProcess:
                    return
                high[0] = max(high[0], rss)
                done.wait(0.02)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        out, _ = proc.communicate()
        total += time.perf_counter() - t0
        done.set()
        watcher.join()
        peak = max(peak, high[0])
        if proc.returncode != 0:
            lines = out.decode(errors="replace").strip().splitlines() or ["(no output)"]
            raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}: {lines[-1]}")
    return total, peak


def timed_rows(
    stage: str, size: int, unit: str, runs: dict[str, Any], repeats: int, cwd: Path, note: str = ""
) -> list[dict[str, Any]]:
    """``runs``: impl -> callable(out folder) -> list of argvs. One row per impl."""
    rows = []
    for impl, make in runs.items():
        times, peaks = [], []
        try:
            for _ in range(repeats):
                work = Path(tempfile.mkdtemp(prefix="wsb-bench-cmd-", dir=cwd))
                try:
                    t, rss = measure(make(work), cwd=cwd)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                times.append(t)
                peaks.append(rss)
        except Exception as e:  # recorded in the table, not hidden
            rows.append(common.error_row(stage, impl, "cpu", size, f"{type(e).__name__}: {e}"))
            print(f"  {stage} {impl}: FAILED {e}", flush=True)
            continue
        gb = statistics.median(peaks) / 1e9
        row = common.make_row(
            stage,
            impl,
            "cpu",
            size,
            times,
            unit=unit,
            workers=usable_cores(),
            note=f"whole command, peak {gb:.2f} GB{'; ' + note if note else ''}",
        )
        row["scope"] = "stage"
        row["peak_gb"] = round(gb, 3)
        rows.append(row)
        print(f"  {stage} {size:,} {impl}: median {row['median_s']:.2f} s, peak {gb:.2f} GB", flush=True)
    return rows


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "wsb_gpu.cli", *args]


def peer(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.commands", "peer", *args]


NONE = ("--backend", "cpu", "--cluster", "none")


# --- inputs ----------------------------------------------------------------------------------


def dump_inputs(posts_per_day: int = 200) -> dict[str, Path]:
    """The synthetic dumps and name history (``wsb-gpu synth``, two processes, written once)."""
    folder = DATA / ("commands-dumps" if posts_per_day == 200 else f"commands-dumps-ppd{posts_per_day}")
    paths = {
        "submissions": folder / "wallstreetbets_submissions.zst",
        "comments": folder / "wallstreetbets_comments.zst",
        "tickers": folder / "stocknames.csv",
    }
    if not all(p.exists() for p in paths.values()):
        subprocess.run(
            cli("synth", "--out", str(folder), *SYNTH, "--posts-per-day", str(posts_per_day), "--processes", "2"),
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
    return paths


def embed_inputs(n: int = EMBED_POSTS) -> dict[str, Path]:
    """A posts and a mentions dataset of ``n`` WSB-length synthetic posts (written once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.embed import synthetic_texts
    from wsb_gpu.sources.pushshift import posts_schema

    folder = DATA / f"commands-embed-{n}"
    paths = {"posts": folder / "posts", "mentions": folder / "mentions"}
    if all((p / "part.0.parquet").exists() for p in paths.values()):
        return paths
    texts = synthetic_texts(n, seed=1)
    ids = [f"p{i}" for i in range(n)]
    created = pa.array([1_600_000_000 + 60 * i for i in range(n)], pa.int64())
    date = pa.array([(1_600_000_000 + 60 * i) // 86400 for i in range(n)], pa.int32()).cast(pa.date32())
    kind = pa.array(["comment"] * n)
    posts = pa.table(
        [pa.array(ids), kind, created, date, pa.array(["u"] * n), pa.array(texts), pa.array(["bench"] * n)],
        schema=posts_schema(),
    )
    mentions = pa.table(
        {
            "id": pa.array(ids),
            "kind": kind,
            "created_utc": created,
            "date": date,
            "ticker": pa.array(["GME"] * n),
            "permno": pa.array([1] * n, pa.int64()),
            "n_occ": pa.array([1] * n, pa.int32()),
        }
    )
    for name, table in (("posts", posts), ("mentions", mentions)):
        paths[name].mkdir(parents=True, exist_ok=True)
        pq.write_table(table, paths[name] / "part.0.parquet")
    return paths


def onnx_model(model_dir: str, folder: Path | None = None) -> Path:
    """The model exported to ONNX (fp32, dynamic batch and length) once, with its tokenizer."""
    folder = folder or DATA / "commands-onnx-minilm"
    if (folder / "model.onnx").exists():
        return folder
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            return self.m(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    enc = AutoTokenizer.from_pretrained(model_dir)(["a b c", "d"], return_tensors="pt", padding=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    tmp = folder / "model.onnx.tmp"
    torch.onnx.export(
        Hidden(model).eval(),
        tuple(enc[k] for k in names),
        str(tmp),
        input_names=names,
        output_names=["last_hidden_state"],
        dynamic_axes={k: {0: "batch", 1: "tokens"} for k in [*names, "last_hidden_state"]},
        opset_version=17,
        dynamo=False,
    )
    shutil.copy(Path(model_dir) / "tokenizer.json", folder / "tokenizer.json")
    tmp.replace(folder / "model.onnx")
    return folder


# --- the peers' programs (what `peer <name>` runs) --------------------------------------------


def _write_vectors(ids: list[str], vectors: Any, out: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1))
    col = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": pa.array(ids), "embedding": col}), out / "part.0.parquet")


def _mentioned_posts(posts: Path, mentions: Path) -> tuple[list[str], list[str]]:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    ids = ds.dataset(str(mentions), format="parquet").to_table(columns=["id"]).column("id").unique()
    t = ds.dataset(str(posts), format="parquet").to_table(columns=["id", "text"])
    t = t.filter(pc.is_in(t.column("id"), value_set=ids))
    return t.column("id").to_pylist(), t.column("text").to_pylist()


def st_embed(posts: Path, mentions: Path, model: str, out: Path, dtype: str = "auto") -> None:
    """sentence-transformers: ``SentenceTransformer(model).encode(texts)`` (its own length
    sorting and batches of 32), 64 tokens, in bf16 where the CPU has bf16 instructions (as ours)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from wsb_gpu.encoder import cpu_has_native_bf16

    if dtype == "auto":
        dtype = "bf16" if cpu_has_native_bf16() else "fp32"
    ids, texts = _mentioned_posts(posts, mentions)
    m = SentenceTransformer(
        model, device="cpu", model_kwargs={"dtype": torch.bfloat16 if dtype == "bf16" else torch.float32}
    )
    m.max_seq_length = EMBED_MAX_LENGTH
    vectors = m.encode(texts, batch_size=32, convert_to_numpy=False, convert_to_tensor=True)
    _write_vectors(ids, vectors.float().numpy(), out)


def onnx_embed(posts: Path, mentions: Path, onnx_dir: Path, out: Path, batch: int = 64) -> None:
    """ONNX Runtime: the exported model with the fast tokenizer, texts sorted by length,
    batches of 64 padded to their longest, mean pooling over the attention mask in NumPy."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    ids, texts = _mentioned_posts(posts, mentions)
    tok = Tokenizer.from_file(str(onnx_dir / "tokenizer.json"))
    tok.no_padding()  # the packaged tokenizer.json pads every text to 128 tokens
    tok.enable_truncation(EMBED_MAX_LENGTH)
    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cores()
    sess = ort.InferenceSession(str(onnx_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    enc = tok.encode_batch(texts)
    order = np.argsort([len(e.ids) for e in enc], kind="stable")
    parts = {}
    for i in range(0, len(order), batch):
        rows = order[i : i + batch]
        width = max(len(enc[r].ids) for r in rows)
        feed = {
            k: np.zeros((len(rows), width), dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")
        }
        for j, r in enumerate(rows):
            e = enc[r]
            feed["input_ids"][j, : len(e.ids)] = e.ids
            feed["attention_mask"][j, : len(e.ids)] = 1
            feed["token_type_ids"][j, : len(e.ids)] = e.type_ids
        hidden = sess.run(None, feed)[0]
        mask = feed["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1.0)
        for j, r in enumerate(rows):
            parts[int(r)] = pooled[j]
    vectors = np.stack([parts[i] for i in range(len(texts))])
    _write_vectors(ids, vectors, out)


def peer_main(argv: list[str]) -> int:
    """``peer <name> ...``: one peer program, as timed."""
    from benchmarks import ingest, volatility
    from wsb_gpu.stages.mentions import load_stoplist

    name, rest = argv[0], argv[1:]
    p = argparse.ArgumentParser(prog=f"benchmarks.commands peer {name}")
    if name in ("ingest-polars", "ingest-duckdb"):
        for a in ("--submissions", "--comments", "--tickers", "--out"):
            p.add_argument(a, type=Path, required=True)
        a = p.parse_args(rest)
        fn = ingest.polars_ingest_mentions if name == "ingest-polars" else ingest.duckdb_ingest_mentions
        n_posts, n_mentions = fn(a.submissions, a.comments, a.tickers, load_stoplist(), a.out)
        print(f"{name}: {n_posts:,} posts, {n_mentions:,} mention rows")
    elif name in ("volatility-polars", "volatility-duckdb"):
        p.add_argument("--src", type=Path, required=True)
        p.add_argument("--dst", type=Path, required=True)
        a = p.parse_args(rest)
        (volatility.polars_file if name == "volatility-polars" else volatility.duckdb_file)(a.src, a.dst)
    elif name in ("embed-st", "embed-onnx"):
        for a in ("--posts", "--mentions", "--model", "--out"):
            p.add_argument(a, type=Path, required=True)
        a = p.parse_args(rest)
        if name == "embed-st":
            st_embed(a.posts, a.mentions, str(a.model), a.out)
        else:
            onnx_embed(a.posts, a.mentions, a.model, a.out)
    else:
        raise SystemExit(f"unknown peer {name!r}")
    return 0


# --- the tasks -------------------------------------------------------------------------------


def task_ingest(repeats: int, cwd: Path, posts_per_day: int = 200, compare: bool = True) -> list[dict[str, Any]]:
    """The ingest+mentions rows on one dump size; ``compare``: first run ours and each peer
    once, untimed, and count the row-set differences (noted in the peers' rows)."""
    from benchmarks.ingest import compare_mentions

    d = dump_inputs(posts_per_day)
    dumps = ("--submissions", str(d["submissions"]), "--comments", str(d["comments"]))

    def ours(*extra: str) -> Any:
        return lambda w: [
            cli(*extra, "ingest", *dumps, "--out", str(w / "posts")),
            cli(*extra, "mentions", "--posts", str(w / "posts"), "--tickers", str(d["tickers"]), "--out", str(w / "m")),
        ]

    def peer_run(name: str) -> Any:
        return lambda w: [peer(name, *dumps, "--tickers", str(d["tickers"]), "--out", str(w))]

    import pyarrow.dataset as ds

    diffs: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(dir=cwd) as tmp:  # the row sets, once, outside the timing
        w = Path(tmp)
        measure(ours()(w), cwd=cwd)
        records = ds.dataset(str(w / "posts"), format="parquet").count_rows()
        for name in ("polars", "duckdb") if compare else ():
            measure(peer_run(f"ingest-{name}")(w / name), cwd=cwd)
            diffs[name] = compare_mentions(w / "m", w / name / "mentions")
            diffs[name]["posts"] = ds.dataset(str(w / name / "posts"), format="parquet").count_rows()
    rows = timed_rows(
        "ingest+mentions",
        records,
        "records/s",
        {
            "wsb_gpu": ours(),
            "wsb_gpu/cluster-none": ours(*NONE),
            "polars": peer_run("ingest-polars"),
            "duckdb": peer_run("ingest-duckdb"),
        },
        repeats,
        cwd,
    )
    for r in rows:
        if r["impl"] in diffs:
            x = diffs[r["impl"]]
            r["note"] += (
                f"; {x['posts']:,} posts ({records - x['posts']:,} fewer than ours), {x['peer']:,} mention rows "
                f"({x['only_ours']:,} only ours, {x['only_peer']:,} only the peer's)"
            )
    return rows


def task_volatility(repeats: int, cwd: Path, sizes: tuple[int, ...] = VOLATILITY_SIZES) -> list[dict[str, Any]]:
    from benchmarks.volatility import stage_inputs

    rows = []
    for size in sizes:
        csv = str(stage_inputs(size)["csv"])
        runs = {
            "wsb_gpu": lambda w, csv=csv: [cli("volatility", "--crsp", csv, "--out", str(w / "vol"))],
            "wsb_gpu/cluster-none": lambda w, csv=csv: [
                cli(*NONE, "volatility", "--crsp", csv, "--out", str(w / "vol"))
            ],
            "polars": lambda w, csv=csv: [peer("volatility-polars", "--src", csv, "--dst", str(w / "v.parquet"))],
            "duckdb": lambda w, csv=csv: [peer("volatility-duckdb", "--src", csv, "--dst", str(w / "v.parquet"))],
        }
        rows += timed_rows("volatility", size, "rows/s", runs, repeats, cwd)
    return rows


def task_embed(repeats: int, cwd: Path) -> list[dict[str, Any]]:
    from wsb_gpu.encoder import resolve_model_source

    d = embed_inputs()
    model = resolve_model_source("minilm")
    onnx_dir = onnx_model(model)
    inputs = ("--posts", str(d["posts"]), "--mentions", str(d["mentions"]))
    ours_args = ("--model", "minilm", "--pooling", "mean", "--max-length", str(EMBED_MAX_LENGTH))
    runs = {
        "wsb_gpu": lambda w: [cli("embed", *inputs, *ours_args, "--out", str(w / "e"))],
        "wsb_gpu/cluster-none": lambda w: [cli(*NONE, "embed", *inputs, *ours_args, "--out", str(w / "e"))],
        "sentence-transformers": lambda w: [peer("embed-st", *inputs, "--model", model, "--out", str(w / "e"))],
        "onnxruntime": lambda w: [peer("embed-onnx", *inputs, "--model", str(onnx_dir), "--out", str(w / "e"))],
    }
    return timed_rows(
        "embed",
        EMBED_POSTS,
        "posts/s",
        runs,
        repeats,
        cwd,
        note=f"all-MiniLM-L6-v2, mean pooling, {EMBED_MAX_LENGTH} tokens",
    )


def best_peer_table(rows: list[dict[str, Any]]) -> str:
    """Per task and size: ours (defaults and --cluster none) against the fastest peer."""
    good = [r for r in rows if common.ok(r)]
    lines = [
        "| task | size | wsb_gpu (defaults) s | wsb_gpu `--cluster none` s | best peer | peer s | defaults vs best peer |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for stage, size in sorted({(r["stage"], r["size"]) for r in good}, key=lambda k: (TASKS.index(k[0]), k[1])):
        same = [r for r in good if (r["stage"], r["size"]) == (stage, size)]
        ours = {r["impl"]: r for r in same if common.is_ours(r["impl"])}
        peers = [r for r in same if not common.is_ours(r["impl"])]
        if "wsb_gpu" not in ours or not peers:
            continue
        best = min(peers, key=lambda r: r["median_s"])
        d = ours["wsb_gpu"]["median_s"]
        n = ours.get("wsb_gpu/cluster-none", {}).get("median_s")
        ratio = best["median_s"] / d
        verdict = f"**{ratio:.2f}× (faster)**" if ratio >= 1 else f"{ratio:.2f}× ({1 / ratio:.2f}× slower)"
        lines.append(
            f"| {stage} | {size:,} | {d:.2f} | {'' if n is None else f'{n:.2f}'} | {best['impl']} | "
            f"{best['median_s']:.2f} | {verdict} |"
        )
    return "\n".join(lines)


def scaling_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Whole-command seconds and peak memory of ingest+mentions against records (log-log),
    per implementation; None when fewer than two sizes were measured."""
    good = [r for r in rows if common.ok(r) and r["stage"] == "ingest+mentions"]
    if len({r["size"] for r in good}) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for impl in dict.fromkeys(r["impl"] for r in good):
        mine = sorted((r for r in good if r["impl"] == impl), key=lambda r: r["size"])
        sizes = [r["size"] for r in mine]
        a.plot(sizes, [r["median_s"] for r in mine], marker="o", label=impl)
        b.plot(sizes, [r["peak_gb"] for r in mine], marker="o", label=impl)
    a.set(xscale="log", yscale="log", xlabel="records", ylabel="seconds (whole command)", title="ingest+mentions")
    b.set(xscale="log", xlabel="records", ylabel="peak GB (process tree)", title="peak memory")
    for axis in (a.xaxis, a.yaxis, b.xaxis):
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    a.yaxis.set_major_locator(matplotlib.ticker.FixedLocator([1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500]))
    a.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["peer"]:
        return peer_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(TASKS), help=f"comma-separated tasks [default: {','.join(TASKS)}]")
    ap.add_argument("--repeats", type=int, default=3, help="runs per command [default: 3]")
    ap.add_argument("--volatility-sizes", default=",".join(map(str, VOLATILITY_SIZES)), help="CSV rows")
    ap.add_argument(
        "--dump-posts-per-day",
        default=",".join(map(str, DUMP_POSTS_PER_DAY)),
        help="ingest+mentions dump sizes [default: 200 = 580k records; 2740 = 7.9M, 5.1 GB of JSON]",
    )
    ap.add_argument("--large-repeats", type=int, default=1, help="runs per command on dumps above 200 posts a day")
    ap.add_argument("--no-md", action="store_true", help="do not append a section to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    tasks = [t.strip() for t in args.only.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        ap.error(f"unknown task(s) {', '.join(bad)}; choose from {', '.join(TASKS)}")
    info = common.machine_info()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wsb-bench-commands-") as tmp:
        cwd = Path(tmp)
        env_note = os.environ.get("WSB_GPU_CONFIG")
        if env_note:
            print(f"note: WSB_GPU_CONFIG={env_note} applies to the wsb-gpu commands")
        for task in tasks:
            print(f"{task}:", flush=True)
            if task == "ingest+mentions":
                for ppd in (int(x) for x in args.dump_posts_per_day.split(",")):
                    small = ppd <= 200
                    rows += task_ingest(args.repeats if small else args.large_repeats, cwd, ppd, compare=small)
            elif task == "volatility":
                sizes = tuple(int(float(x)) for x in args.volatility_sizes.split(","))
                rows += task_volatility(args.repeats, cwd, sizes)
            else:
                rows += task_embed(args.repeats, cwd)
    table = best_peer_table(rows)
    plot = scaling_plot(rows, ROOT / "benchmarks" / "commands_scaling.png")
    if plot:
        table += f"\n\n![Whole commands against record count]({plot.name})"
    print("\n" + common.results_table(rows) + "\n\n" + table)
    common.write_csv(
        rows, common.csv_path("cpu", folder=common.RESULTS_DIR).with_name(f"{dt.date.today()}-commands.csv")
    )
    if not args.no_md:
        cmd = "python -m benchmarks.commands " + shlex.join(argv)
        title = f"{dt.date.today().isoformat()} · {info['host']} · whole commands · {info['usable_cores']} cores · {info['cpu_model']}"
        extra = "### Whole commands: defaults against the fastest peer\n\n" + table
        md = common.append_section(
            ROOT / "benchmarks" / "RESULTS.md",
            title=title,
            info=info,
            command=cmd.strip(),
            rows=rows,
            ratios=[],
            extra=extra,
        )
        print(f"appended a section to {md}")
    return 0 if any(common.ok(r) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
