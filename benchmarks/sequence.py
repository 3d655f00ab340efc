"""Benchmark of the LSTM's training per rolling window, against the plain PyTorch way.

One window of a synthetic panel at the demo's size: ``size`` training stock-days (default
40,000: 40 stocks x 250 trading days x 4 training years) plus a test year, with 4 HAR terms,
64 embedding dimensions (projected on 8 principal components) and 4 other text columns:
16 input columns after the projection, sequences of L = 22 rows, the default
``train.sequence`` settings (LSTM(50), batch 256, Adam, up to 30 epochs, patience 3).

Rows (see benchmarks/common.py):

* ``wsb_gpu/lstm``: :meth:`wsb_gpu.models.sequence.LSTMModel.fit` on a fresh
  :class:`~wsb_gpu.models.base.Window` of the panel (a Dask frame): the rows collected and
  sorted, the projection fitted, the network trained with early stopping on the last
  training year (sequences gathered per batch from the ``n x f`` rows), the test year
  forecast.
* ``torch-materialised``: the same network, optimiser, batches and stopping rule in the
  loop one would write by hand: every sequence of the window built first by a Python loop
  over the stocks (an ``n x L x f`` array), then a ``DataLoader(TensorDataset, shuffle=True)``.
  It starts from the same prepared inputs, so its time leaves out the collection and the
  projection that ours includes. ``torch-materialised`` runs on torch's default threads
  (one per core, as ours: one per usable core), ``torch-materialised/1t`` on one thread.

Both report the fit's seconds per window (median of ``--repeats``) and epochs per second
(the throughput column); the two may stop after different numbers of epochs, so epochs/s
is the like-for-like figure.

Run: ``python -m benchmarks.sequence --backend cpu``.
"""

from __future__ import annotations

import statistics
import sys
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import error_row, make_row, print_rows, stage_parser, time_call
from wsb_gpu.sysinfo import usable_cores

STAGE = "sequence"
YEARS = (2014, 2015, 2016, 2017)
TEST_YEAR = 2018
DAYS_PER_YEAR = 250
HAR = ["vol_1", "vol_5", "vol_22", "vol_63"]
DIM = 64
EMBEDDING = [f"e{j:03d}" for j in range(DIM)]
OTHER = ["p_positive", "p_negative", "log_posts", "log_mentions"]


def make_panel(size: int, seed: int = 0) -> Any:
    """A pandas panel of ``size`` training stock-days plus a test year: per stock a
    persistent log-volatility, its HAR averages, embeddings with a low-rank structure and
    a target (next day's ``vol_1``)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_stocks = max(1, size // (len(YEARS) * DAYS_PER_YEAR))
    n = (len(YEARS) + 1) * DAYS_PER_YEAR
    frames = []
    mix = rng.normal(size=(6, DIM))
    for s in range(n_stocks):
        h = np.zeros(n + 63)
        for t in range(1, n + 63):
            h[t] = 0.97 * h[t - 1] + 0.2 * rng.normal()
        v = pd.Series(0.02 * np.exp(h) * np.abs(rng.normal(size=n + 63)))
        f = pd.DataFrame({w: v.rolling(int(w[4:])).mean().to_numpy()[63:] for w in HAR})
        f["y_1"] = v.shift(-1).to_numpy()[63:]
        f["y_1"] = f["y_1"].fillna(f["vol_1"])
        f["permno"] = 10_000 + s
        f["day"] = 16_000 + np.arange(n)
        f["year"] = YEARS[0] + np.arange(n) // DAYS_PER_YEAR
        f["period"] = f["year"] * 12 + (np.arange(n) % DAYS_PER_YEAR) * 12 // DAYS_PER_YEAR
        E = (rng.normal(size=(n, 6)) @ mix + 0.3 * rng.normal(size=(n, DIM))).astype("float32")
        f = pd.concat([f, pd.DataFrame(E, columns=EMBEDDING)], axis=1)
        for c in OTHER:
            f[c] = rng.normal(size=n).astype("float32")
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def make_window(panel: Any, backend: Any) -> Any:
    """A fresh window (nothing collected yet) over the panel as a Dask frame."""
    import dask.dataframe as dd

    from wsb_gpu.models.base import Sample, Window

    cols = [*HAR, *EMBEDDING, *OTHER]
    S = Sample(dd.from_pandas(panel, npartitions=4), "y_1", list(HAR), cols, "features", "posts")
    return Window(TEST_YEAR, YEARS, S, {}, {}, list(HAR), "estimator", backend)


def materialised_fit(inputs: Any, params: Any, device: str, threads: int | None = None) -> dict[str, Any]:
    """The peer: every sequence built first, then a DataLoader loop with the same network,
    optimiser, batch size, shuffling seed and early stopping (on ``threads`` torch threads,
    default torch's own choice)."""
    import numpy as np
    import torch

    L, Z = int(params.length), inputs.Z
    f = Z.shape[1]
    permno = inputs.keys["permno"].to_numpy()
    windows = np.zeros((len(Z), L, f + 1), dtype=np.float32)
    # One stock at a time, one row at a time: its last L rows, zero-padded, plus the mask.
    for stock in np.unique(permno):
        rows = np.flatnonzero(permno == stock)
        for k, r in enumerate(rows):
            past = rows[max(0, k - L + 1) : k + 1]
            windows[r, L - len(past) :, :f] = Z[past]
            windows[r, L - len(past) :, f] = 1.0
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _materialised_loop(windows, inputs, params, device)
    finally:
        torch.set_num_threads(before)


def _materialised_loop(windows: Any, inputs: Any, params: Any, device: str) -> dict[str, Any]:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from wsb_gpu.models.sequence import _networks

    L, f = windows.shape[1], windows.shape[2] - 1
    X = torch.from_numpy(windows)
    y = torch.from_numpy(inputs.y)
    fit = TensorDataset(X[inputs.fit_rows], y[inputs.fit_rows])
    Xv = X[inputs.valid_rows].to(device)
    yv = inputs.y_raw[inputs.valid_rows]
    with torch.random.fork_rng(devices=[] if device == "cpu" else None):
        torch.manual_seed(int(params.seed))
        net = _networks()["lstm"](f + 1, L, params).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=float(params.learning_rate))
        loader = DataLoader(
            fit,
            batch_size=int(params.batch_size),
            shuffle=True,
            generator=torch.Generator().manual_seed(int(params.seed)),
        )
        best, waited, ran = np.inf, 0, 0
        for epoch in range(1, int(params.epochs) + 1):
            ran = epoch
            net.train()
            for xb, yb in loader:
                loss = torch.mean((net(xb.to(device)) - yb.to(device)) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                yhat = torch.cat([net(Xv[s : s + 8192]) for s in range(0, len(Xv), 8192)]).cpu().numpy()
            mse = float(np.mean((yhat * inputs.y_sd + inputs.y_mean - yv) ** 2))
            if mse < best:
                best, waited = mse, 0
                state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                waited += 1
                if waited >= int(params.patience):
                    break
        net.load_state_dict(state)
    return {"epochs": ran, "valid_mse": best}


def _warm_torch() -> None:
    """Import torch and its optimiser once, untimed (the first Adam imports torch._dynamo,
    ~2 s, once per process: not a cost of a window)."""
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def bench(backend: str, size: int, repeats: int = 1) -> list[dict]:
    """Time one window's LSTM fit, ours and the materialising peer."""
    from wsb_gpu.backend import resolve_backend
    from wsb_gpu.config import load_settings
    from wsb_gpu.models.sequence import prepare_inputs
    from wsb_gpu.signals.families import FeatureSet
    from wsb_gpu.training.build import make_model

    try:
        be = resolve_backend(backend)
    except Exception as e:  # e.g. --backend gpu without a GPU
        return [error_row(STAGE, impl, backend, size, str(e)) for impl in ("wsb_gpu/lstm", "torch-materialised")]
    params = load_settings(overrides={"backend": backend, "cluster.kind": "none"}).params("train")
    _warm_torch()
    seq = params.sequence
    panel = make_panel(size)
    fs = FeatureSet("text", ("embedding", "finbert_sentiment", "attention"), (*EMBEDDING, *OTHER))
    n_train = int(panel["year"].isin(YEARS).sum())
    rows: list[dict] = []
    shape = f"L={seq.length}, LSTM({seq.hidden}), batch {seq.batch_size}, patience {seq.patience}"
    try:
        fitted: dict[str, Any] = {}

        def ours() -> None:
            fitted["model"] = make_model("lstm", params, fs).fit(make_window(panel, be))

        times = time_call(ours, repeats=repeats, warmup=0)
        info = fitted["model"].info()
        rows.append(
            make_row(
                STAGE,
                "wsb_gpu/lstm",
                backend,
                n_train,
                times,
                unit="epochs/s",
                items=info["epochs"],
                workers=usable_cores(),
                note=f"{statistics.median(times):.1f} s/window ({info['train_s']:.1f} s training + forecasting), "
                f"{info['epochs']} epochs (best {info['best_epoch']}), {info['n_inputs']} inputs, {shape}, "
                f"n_fit {info['n_fit']}",
            )
        )
    except Exception as e:
        traceback.print_exc()
        rows.append(error_row(STAGE, "wsb_gpu/lstm", backend, size, f"{type(e).__name__}: {e}"))
    try:
        inputs = prepare_inputs(make_window(panel, be), [*HAR, *EMBEDDING, *OTHER], seq)
    except Exception as e:
        traceback.print_exc()
        return [*rows, error_row(STAGE, "torch-materialised", backend, size, f"{type(e).__name__}: {e}")]
    for impl, threads in (("torch-materialised", None), ("torch-materialised/1t", 1)):
        try:
            out: dict[str, Any] = {}

            def peer(threads: int | None = threads, out: dict = out) -> None:
                out.update(materialised_fit(inputs, seq, be.torch_device, threads))

            times = time_call(peer, repeats=repeats, warmup=0)
            how = "torch's default threads" if threads is None else f"{threads} torch thread"
            rows.append(
                make_row(
                    STAGE,
                    impl,
                    backend,
                    n_train,
                    times,
                    unit="epochs/s",
                    items=out["epochs"],
                    workers=usable_cores(),
                    note=f"{statistics.median(times):.1f} s/window, {out['epochs']} epochs, all windows built first, "
                    f"DataLoader, {how}; from the prepared inputs, {shape}",
                )
            )
        except Exception as e:
            traceback.print_exc()
            rows.append(error_row(STAGE, impl, backend, size, f"{type(e).__name__}: {e}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, size=40_000, size_help="training stock-days of the window", repeats=1)
    args = parser.parse_args(argv)
    rows = bench(args.backend, args.size, args.repeats)
    return 0 if print_rows(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
