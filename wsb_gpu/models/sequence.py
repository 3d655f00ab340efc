"""Sequence models: an LSTM, a CNN and a CNN-LSTM on each stock's last ``length`` rows.

The input of stock-day *t* is the stock's last ``L = train.sequence.length`` rows of the
sample up to and including *t* (fewer at the start of its history: the missing steps are
zeros, and a mask channel tells them from real rows). Each row holds the HAR terms and the
columns of the feature set ``train.sequence.feature_set``, its embedding columns
(``e000 …``) replaced by their projection on ``pca_components`` principal components fitted
on the window's training years (0 drops the embedding). The target is the window's target.

The window's rows are sorted by ``(permno, day)`` once (:meth:`Window.history`); row *i*'s
sequence is rows ``i-L+1 … i``, masked below ``start[i]``, the first row of its stock
(:func:`sequence_index`, :func:`gather`). Sequences are gathered per batch from the
``n × f`` matrix by this index arithmetic, never materialised as ``n × L × f``; a sequence
never crosses a stock boundary and never holds a row after *t*.

Training, as XGBoost's: the network is fitted on years ``Y-k … Y-2`` and early-stopped on
year ``Y-1`` (validation MSE after every epoch, ``patience`` epochs without improvement,
the best epoch's weights restored); the test year ``Y`` takes no part in fitting or
stopping. Inputs and target are standardised with the fitting years' means and standard
deviations. Adam on the MSE, mini-batches shuffled by a seeded generator: two fits with the
same ``seed`` on the CPU give identical forecasts.

The architectures are seed 001's (Keras), with the sizes of ``train.sequence``:

* ``lstm``: LSTM(hidden) → Linear(1) on the last step;
* ``cnn``: Conv1d(filters, kernel) + ReLU → MaxPool1d(2) → flatten → Linear(dense) + ReLU
  → Linear(1);
* ``cnn_lstm``: Conv1d(filters, kernel) + ReLU → LSTM(hidden) → Linear(1).

The seed's Keras LSTMs use a ReLU cell activation; PyTorch's ``nn.LSTM`` has the standard
tanh activation, which is kept here (a ReLU LSTM cell is unbounded and trains less stably).

Every test-year forecast is computed at the end of :meth:`SequenceModel.fit`, where the
stocks' histories are at hand; the prediction pass then looks each row up by
``(permno, day)`` (:meth:`SequenceModel.predict_frame`). torch is imported only when a
model is fitted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from wsb_gpu.backend import to_numpy
from wsb_gpu.errors import WsbError, missing_package
from wsb_gpu.models.base import Model, Window

if TYPE_CHECKING:
    import pandas as pd

    from wsb_gpu.backend import Array, Frame
    from wsb_gpu.signals.families import FeatureSet

TORCH_INSTALL = "pip install torch (CPU) or the CUDA build from https://pytorch.org"
_EMBEDDING = re.compile(r"e\d+")
_DAY_OFFSET = 1 << 31  # day numbers (days since 1970) shifted to be non-negative
_RANK_SCALE = 1 << 32  # key = stock rank * 2^32 + shifted day
_PREDICT_BATCH = 8192  # rows per forward pass when forecasting (no gradients kept)
# The sequences of every row are built once when they take at most this much memory (then a
# batch is one gather of whole sequences, as a DataLoader over prebuilt windows would be);
# above it each batch builds its own by index arithmetic, so a panel of millions of
# stock-days never holds its n x L x f copy. Measured (benchmarks/sequence.py, 40k rows):
# per-batch building cost ~25 % of the epoch time.
_PREBUILD_BYTES = 512 * 2**20


class SequenceSettings(Protocol):
    """The ``train.sequence`` values the sequence functions read: a :class:`SequenceModel`
    (its hyperparameters), or anything else with these attributes."""

    length: int
    pca_components: int
    hidden: int
    filters: int
    kernel: int
    dense: int
    epochs: int
    patience: int
    batch_size: int
    learning_rate: float
    seed: int


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise missing_package("torch", TORCH_INSTALL, "the sequence models") from e
    return torch


# --- the window builder -----------------------------------------------------------------


def sequence_index(permno: np.ndarray) -> np.ndarray:
    """``start[i]``: the first row of row ``i``'s stock, for rows sorted by stock.

    >>> sequence_index(np.array([7, 7, 7, 3, 9, 9])).tolist()
    [0, 0, 0, 3, 4, 4]
    """
    permno = np.asarray(permno)
    new = np.ones(permno.shape[0], dtype=bool)
    new[1:] = permno[1:] != permno[:-1]
    first = np.flatnonzero(new)
    return first[np.cumsum(new) - 1].astype(np.int64)


def _namespace(a: Any) -> Any:
    """torch for a torch tensor, else NumPy."""
    return _torch() if type(a).__module__.split(".")[0] == "torch" else np


def gather(X: Any, start: Any, rows: Any, length: int) -> tuple[Any, Any]:
    """The sequences of ``rows``: each row's last ``length`` rows of its stock, in time order.

    Works on NumPy arrays and on torch tensors (on any device) alike.

    Parameters
    ----------
    X
        ``(n, f)`` rows sorted by ``(permno, day)``.
    start
        ``(n,)`` first row of each row's stock (:func:`sequence_index`).
    rows
        ``(B,)`` int64 rows whose sequences are wanted.
    length
        Steps per sequence.

    Returns
    -------
    seq : (B, length, f)
        Row ``r``'s sequence is ``X[r-length+1 … r]``, the steps before its stock's first row
        set to zero.
    mask : (B, length) bool
        True for the steps that are rows of the stock.

    Examples
    --------
    >>> X = np.arange(5.0)[:, None]                  # two stocks: rows 0-2 and 3-4
    >>> seq, mask = gather(X, sequence_index(np.array([1, 1, 1, 2, 2])), np.array([1, 3]), 3)
    >>> seq[..., 0].tolist(), mask.tolist()
    ([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]], [[False, True, True], [False, False, True]])
    """
    xp = _namespace(rows)
    if xp is np:
        offsets = np.arange(1 - length, 1, dtype=np.int64)
    else:
        offsets = xp.arange(1 - length, 1, dtype=rows.dtype, device=rows.device)
    here = rows[:, None]
    idx = here + offsets[None, :]
    mask = idx >= start[rows][:, None]
    idx = xp.where(mask, idx, here)  # padded steps read the row itself, then are zeroed
    return X[idx] * mask[..., None], mask


# --- inputs ----------------------------------------------------------------------------


def fit_pca(
    X: np.ndarray, k: int, *, columns: Sequence[int] | None = None, rows: np.ndarray | None = None, block: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the first ``k`` principal axes of ``X[rows][:, columns]``.

    The axes are the right singular vectors of the centred rows, taken from the SVD of
    their ``d × d`` Gram matrix (the same vectors), summed in float64 over blocks of rows,
    so that neither the selection nor a centred copy of it is ever made (a window of the
    seed's embedding is ~10⁵ rows × 768 columns). Missing values count as the column's
    mean. Each axis is signed so that its largest loading is positive.

    Parameters
    ----------
    X
        ``(n, p)`` rows.
    k
        Components (at most the number of columns and of rows).
    columns, rows
        The columns (default all) and a boolean mask of the rows (default all) to fit on.

    Returns
    -------
    mean : (d,) float64
    axes : (d, k) float64
        The projection is ``(X[:, columns] - mean) @ axes`` (:func:`project`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    >>> mean, axes = fit_pca(E, 2)
    >>> vt = np.linalg.svd(E - E.mean(0), full_matrices=False)[2][:2].T
    >>> bool(np.allclose(np.abs(axes.T @ vt), np.eye(2), atol=1e-8))
    True
    """
    cols = list(range(X.shape[1])) if columns is None else list(columns)
    mask = np.ones(X.shape[0], dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    d = len(cols)
    total, count = np.zeros(d), np.zeros(d)
    for s in range(0, X.shape[0], block):
        E = X[s : s + block][mask[s : s + block]][:, cols].astype(np.float64)
        ok = np.isfinite(E)
        total += np.where(ok, E, 0.0).sum(axis=0)
        count += ok.sum(axis=0)
    mean = np.divide(total, count, out=np.zeros(d), where=count > 0)
    G = np.zeros((d, d))
    for s in range(0, X.shape[0], block):
        C = _centred(X[s : s + block][mask[s : s + block]][:, cols], mean)
        G += C.T @ C
    k = int(min(k, d, int(mask.sum())))
    axes = np.linalg.svd(G, hermitian=True)[0][:, :k]
    sign = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(k)])
    return mean, axes * np.where(sign == 0, 1.0, sign)


def _centred(E: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``E - mean`` in float64, missing values 0 (at the mean)."""
    C = E.astype(np.float64) - mean
    C[~np.isfinite(C)] = 0.0
    return C


def project(
    X: np.ndarray, columns: Sequence[int], mean: np.ndarray, axes: np.ndarray, block: int = 65_536
) -> np.ndarray:
    """``(X[:, columns] - mean) @ axes`` as float32, block by block (missing values at the
    mean)."""
    cols = list(columns)
    out = np.empty((X.shape[0], axes.shape[1]), dtype=np.float32)
    for s in range(0, X.shape[0], block):
        out[s : s + block] = _centred(X[s : s + block, cols], mean) @ axes
    return out


def _scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN-ignoring column means and population standard deviations (1 where constant)."""
    if values.shape[0] == 0:
        return np.zeros(values.shape[1]), np.ones(values.shape[1])
    mean = np.nanmean(values, axis=0, dtype=np.float64)
    sd = np.nanstd(values, axis=0, dtype=np.float64)
    return np.nan_to_num(mean), np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)


@dataclass
class SequenceInputs:
    """A window's rows ready for a sequence network (:func:`prepare_inputs`).

    Attributes
    ----------
    Z
        ``(n, f)`` float32 standardised inputs, rows sorted by ``(permno, day)``; missing
        values are 0 (the fitting years' mean).
    y, y_raw
        ``(n,)`` the standardised target (float32) and the target itself.
    start
        ``(n,)`` first row of each row's stock.
    fit_rows, valid_rows, test_rows
        The rows of the fitting years, of the validation year (empty with one training
        year) and of the test year.
    names
        The ``f`` input columns: the non-embedding columns, then ``pc0 …``.
    pca
        ``(mean, axes)`` of the embedding projection (None without embedding columns or
        with ``pca_components = 0``).
    y_mean, y_sd
        The target's scaler (fitting years).
    keys
        ``permno, day, year`` of the rows.
    """

    Z: np.ndarray
    y: np.ndarray
    y_raw: np.ndarray
    start: np.ndarray
    fit_rows: np.ndarray
    valid_rows: np.ndarray
    test_rows: np.ndarray
    names: list[str]
    pca: tuple[np.ndarray, np.ndarray] | None
    y_mean: float
    y_sd: float
    keys: pd.DataFrame


def prepare_inputs(window: Window, columns: Sequence[str], params: SequenceSettings) -> SequenceInputs:
    """The window's rows as standardised sequence inputs: the embedding columns (``e\\d+``)
    projected on ``params.pca_components`` principal components of the training years' rows
    (the test year's rows never enter the fit), the other columns as they are; then every
    input and the target standardised with the fitting years' means and deviations."""
    cols = list(columns)
    keys, X, y_raw = window.history(cols)
    year = keys["year"].to_numpy()
    years = list(window.train_years)
    fit_years, valid_years = (years[:-1], years[-1:]) if len(years) > 1 else (years, [])
    labelled = np.isfinite(y_raw)  # (the sample has no row without a target; kept safe)
    train, fit = np.isin(year, years), np.isin(year, fit_years) & labelled
    emb = [j for j, c in enumerate(cols) if _EMBEDDING.fullmatch(c)]
    plain = [j for j in range(len(cols)) if j not in set(emb)]
    parts, names, pca = [X[:, plain]], [cols[j] for j in plain], None
    if emb and params.pca_components > 0 and train.any():
        pca = fit_pca(X, params.pca_components, columns=emb, rows=train)
        parts.append(project(X, emb, *pca))
        names += [f"pc{j}" for j in range(pca[1].shape[1])]
    Z = np.concatenate(parts, axis=1).astype(np.float32)
    mu, sd = _scale(Z[fit])
    Z = ((Z - mu) / sd).astype(np.float32)
    Z[~np.isfinite(Z)] = 0.0
    y_mean, y_sd = (float(v[0]) for v in _scale(y_raw[fit, None]))
    return SequenceInputs(
        Z=Z,
        y=((y_raw - y_mean) / y_sd).astype(np.float32),
        y_raw=y_raw,
        start=sequence_index(keys["permno"].to_numpy()),
        fit_rows=np.flatnonzero(fit),
        valid_rows=np.flatnonzero(np.isin(year, valid_years) & labelled),
        test_rows=np.flatnonzero(year == window.test_year),
        names=names,
        pca=pca,
        y_mean=y_mean,
        y_sd=y_sd,
        keys=keys,
    )


def row_keys(stocks: np.ndarray, permno: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The int64 search key ``rank · 2^32 + day + 2^31`` of each (permno, day), ``rank`` the
    stock's position in the sorted ``stocks`` (permnos may be 62-bit hashes, so the permno
    itself cannot be shifted), and whether the stock is among them.

    >>> k, known = row_keys(np.array([5, 2 ** 62]), np.array([2 ** 62, 7]), np.array([3, 3]))
    >>> (k[0] - (1 << 32) - (1 << 31)).item(), known.tolist()
    (3, [True, False])
    """
    permno = np.asarray(permno, dtype=np.int64)
    rank = np.searchsorted(stocks, permno)
    if len(stocks):
        known = stocks[np.minimum(rank, len(stocks) - 1)] == permno
    else:
        known = np.zeros(len(permno), dtype=bool)
    return rank.astype(np.int64) * _RANK_SCALE + (np.asarray(day, dtype=np.int64) + _DAY_OFFSET), known


# --- networks ---------------------------------------------------------------------------


@cache
def _networks() -> dict[str, type]:
    """The three network classes (defined on first use, so that torch is imported lazily)."""
    torch = _torch()
    nn = torch.nn
    Module: Any = nn.Module  # torch is imported at run time: a base class of type Any to mypy

    class LSTMNet(Module):
        """LSTM(hidden) → Linear(1) on the last step; input ``(B, L, f)``."""

        def __init__(self, n_inputs: int, length: int, p: SequenceSettings) -> None:
            super().__init__()
            self.lstm = nn.LSTM(n_inputs, p.hidden, batch_first=True)
            self.out = nn.Linear(p.hidden, 1)

        def forward(self, x: Any) -> Any:
            h, _ = self.lstm(x)
            return self.out(h[:, -1]).squeeze(-1)

    class CNNNet(Module):
        """Conv1d + ReLU → MaxPool1d(2) → flatten → Linear(dense) + ReLU → Linear(1)."""

        def __init__(self, n_inputs: int, length: int, p: SequenceSettings) -> None:
            super().__init__()
            self.conv = nn.Conv1d(n_inputs, p.filters, p.kernel)
            self.pool = nn.MaxPool1d(2)
            steps = (length - p.kernel + 1) // 2
            self.dense = nn.Linear(p.filters * steps, p.dense)
            self.out = nn.Linear(p.dense, 1)

        def forward(self, x: Any) -> Any:
            z = self.pool(torch.relu(self.conv(x.transpose(1, 2)))).flatten(1)
            return self.out(torch.relu(self.dense(z))).squeeze(-1)

    class CNNLSTMNet(Module):
        """Conv1d + ReLU → LSTM(hidden) → Linear(1) on the last step."""

        def __init__(self, n_inputs: int, length: int, p: SequenceSettings) -> None:
            super().__init__()
            self.conv = nn.Conv1d(n_inputs, p.filters, p.kernel)
            self.lstm = nn.LSTM(p.filters, p.hidden, batch_first=True)
            self.out = nn.Linear(p.hidden, 1)

        def forward(self, x: Any) -> Any:
            z = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
            h, _ = self.lstm(z)
            return self.out(h[:, -1]).squeeze(-1)

    return {"lstm": LSTMNet, "cnn": CNNNet, "cnn_lstm": CNNLSTMNet}


@contextmanager
def _threads(device: str) -> Iterator[None]:
    """Train and forecast with as many torch threads as this process may use cores (restored
    after): torch's default counts the machine's cores, which oversubscribes a Slurm job or a
    container limited to fewer (:func:`wsb_gpu.sysinfo.usable_cores`)."""
    from wsb_gpu.sysinfo import usable_cores

    torch = _torch()
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, usable_cores()))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _min_length(arch: str, kernel: int) -> int:
    """The shortest sequence an architecture accepts (a valid convolution, then pooling by 2).

    >>> _min_length("lstm", 2), _min_length("cnn", 2), _min_length("cnn_lstm", 2)
    (1, 3, 2)
    """
    return {"lstm": 1, "cnn": kernel + 1, "cnn_lstm": kernel}[arch]


# --- training --------------------------------------------------------------------------


class _Batches:
    """Sequences of any rows of a window, on the training device (the mask as one more
    input channel, so that padding is told from a row at the fitting mean)."""

    def __init__(self, inputs: SequenceInputs, length: int, device: str) -> None:
        torch = _torch()
        self.torch, self.length, self.device = torch, length, device
        self.Z = torch.from_numpy(inputs.Z).to(device)
        self.y = torch.from_numpy(inputs.y).to(device)
        self.start = torch.from_numpy(inputs.start).to(device)
        n, f = inputs.Z.shape
        self.all = None
        if n * length * (f + 1) * inputs.Z.itemsize <= _PREBUILD_BYTES:
            self.all = self._build(torch.arange(n, device=device))

    def _build(self, rows: Any) -> Any:
        seq, mask = gather(self.Z, self.start, rows, self.length)
        return self.torch.cat([seq, mask.unsqueeze(-1).to(seq.dtype)], dim=-1)

    def x(self, rows: Any) -> Any:
        return self.all[rows] if self.all is not None else self._build(rows)

    def rows(self, rows: np.ndarray) -> Any:
        return self.torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)

    def predict(self, net: Any, rows: np.ndarray) -> np.ndarray:
        """Standardised forecasts of ``rows`` (eval mode, no gradients)."""
        torch = self.torch
        out = []
        net.eval()
        with torch.no_grad():
            for s in range(0, len(rows), _PREDICT_BATCH):
                out.append(net(self.x(self.rows(rows[s : s + _PREDICT_BATCH]))).float().cpu().numpy())
        net.train()
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def train_network(
    arch: str, inputs: SequenceInputs, params: SequenceSettings, device: str
) -> tuple[Any, dict[str, Any], _Batches]:
    """Fit one network on the fitting rows, early-stopped on the validation rows.

    Returns the network with its best epoch's weights, what the fit recorded (``epochs``,
    ``best_epoch`` (1-based), ``valid_mse`` per epoch in the target's units) and the batch
    builder (to forecast with).
    """
    torch = _torch()
    p, L = params, int(params.length)
    batches = _Batches(inputs, L, device)
    n_inputs = inputs.Z.shape[1] + 1
    fit_rows, valid_rows = inputs.fit_rows, inputs.valid_rows
    y_valid = inputs.y_raw[valid_rows]
    # The global RNG is left as it was: the seed is set inside a forked RNG state.
    with torch.random.fork_rng(devices=[] if device == "cpu" else None):
        torch.manual_seed(int(p.seed))
        net = _networks()[arch](n_inputs, L, p).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=float(p.learning_rate))
        shuffle = torch.Generator().manual_seed(int(p.seed))
        fit_t = batches.rows(fit_rows)
        losses: list[float] = []
        best, best_epoch, best_state, waited = np.inf, 0, None, 0
        for epoch in range(1, int(p.epochs) + 1):
            order = fit_t[torch.randperm(len(fit_rows), generator=shuffle).to(device)]
            for s in range(0, len(order), int(p.batch_size)):
                rows = order[s : s + int(p.batch_size)]
                loss = torch.mean((net(batches.x(rows)) - batches.y[rows]) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if len(valid_rows) == 0:
                best_epoch = epoch
                continue
            yhat = batches.predict(net, valid_rows) * inputs.y_sd + inputs.y_mean
            mse = float(np.mean((yhat - y_valid) ** 2))
            losses.append(mse)
            if mse < best:
                best, best_epoch, waited = mse, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                waited += 1
                if waited >= int(p.patience):
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
    return net, {"epochs": epoch, "best_epoch": best_epoch, "valid_mse": losses}, batches


# --- the models ------------------------------------------------------------------------


class SequenceModel(Model):
    """A network on each stock's last ``length`` rows (see the module docstring); subclasses
    name the architecture.

    The hyperparameters are the ``train.sequence`` settings under the same names, but
    ``train.sequence.feature_set``, which is the run's choice of the set the sequence models
    are fitted on (the model receives that set as ``feature_set``).

    Learned state: ``stocks_`` (sorted permnos of the window), ``keys_`` and ``yhat_`` (the
    sorted search keys of the test year's rows and their forecasts), ``inputs_`` (the input
    columns after the projection), ``pca_`` (the embedding projection ``(mean, axes)`` or
    None) and ``info_``.
    """

    arch: ClassVar[str]
    sections = ("sequence",)
    predicts_by_key = True

    def __init__(
        self,
        feature_set: FeatureSet | None = None,
        *,
        length: int,
        pca_components: int,
        hidden: int,
        filters: int,
        kernel: int,
        dense: int,
        epochs: int,
        patience: int,
        batch_size: int,
        learning_rate: float,
        seed: int,
    ) -> None:
        super().__init__(feature_set)
        self.length = length
        self.pca_components = pca_components
        self.hidden = hidden
        self.filters = filters
        self.kernel = kernel
        self.dense = dense
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed

    def fit(self, window: Window) -> SequenceModel:
        t0 = time.perf_counter()
        self._start(window)
        p = self
        missing = [c for c in self.columns_ if c not in window.feature_columns]
        if missing:
            msg = (
                f"the {self.name} model's feature set lacks the column(s) {', '.join(missing[:5])} in the "
                f"window; choose another train.sequence.feature_set"
            )
            raise WsbError(msg)
        if p.length < _min_length(self.arch, p.kernel):
            msg = (
                f"train.sequence.length {p.length} is too short for the {self.name} model with kernel "
                f"{p.kernel}; use length >= {_min_length(self.arch, p.kernel)}"
            )
            raise WsbError(msg)
        inputs = self.prepare(window)
        if len(inputs.fit_rows) == 0:
            msg = f"no training rows for the {self.name} model in years {list(window.train_years)}; use more training years"
            raise WsbError(msg)
        test, keys, device = inputs.test_rows, inputs.keys, window.backend.torch_device
        t1 = time.perf_counter()
        with _threads(device):
            net, record, batches = train_network(self.arch, inputs, p, device)
            yhat = batches.predict(net, test)
        train_s = time.perf_counter() - t1
        self.stocks_ = np.unique(keys["permno"].to_numpy())
        self.keys_, _ = row_keys(self.stocks_, keys["permno"].to_numpy()[test], keys["day"].to_numpy()[test])
        self.yhat_ = yhat.astype(np.float64) * inputs.y_sd + inputs.y_mean
        self.inputs_ = list(inputs.names)
        self.pca_ = inputs.pca
        self.info_ = {
            **record,
            "n_fit": int(len(inputs.fit_rows)),
            "n_valid": int(len(inputs.valid_rows)),
            "n_test": int(len(test)),
            "n_inputs": int(inputs.Z.shape[1]),
            "pca_components": 0 if inputs.pca is None else int(inputs.pca[1].shape[1]),
            "fit_s": round(time.perf_counter() - t0, 3),
            "train_s": round(train_s, 3),
        }
        return self

    def prepare(self, window: Window) -> SequenceInputs:
        """The window's standardised inputs for this model's columns (:func:`prepare_inputs`)."""
        return prepare_inputs(window, self.columns(window), self)

    def predict_frame(self, frame: Frame) -> np.ndarray:
        """The forecasts of a partition's rows, looked up by ``(permno, day)`` (float64,
        NaN for a row that is not a test-year row of the window)."""
        if not hasattr(self, "keys_"):
            raise WsbError(f"the {self.name} model is not fitted; call fit(window) before predict_frame")
        key, known = row_keys(self.stocks_, to_numpy(frame["permno"]), to_numpy(frame["day"]))
        if len(self.keys_) == 0:
            return np.full(len(key), np.nan)
        pos = np.minimum(np.searchsorted(self.keys_, key), len(self.keys_) - 1)
        hit = known & (self.keys_[pos] == key)
        return np.where(hit, self.yhat_[pos], np.nan)

    def predict(self, frame: Frame) -> np.ndarray:
        return self.predict_frame(frame)

    def predict_array(self, X: Array) -> Any:
        msg = (
            f"the {self.name} model forecasts each row from its stock's history and predicts by key; "
            "call predict_frame(frame) with the rows' permno and day columns"
        )
        raise WsbError(msg)

    def info(self) -> dict[str, Any]:
        return dict(self.info_) if hasattr(self, "info_") else {}


class LSTMModel(SequenceModel):
    """LSTM(hidden) → Linear(1) on the sequences (tanh cell activation, see the module docstring)."""

    name = "lstm"
    arch = "lstm"


class CNNModel(SequenceModel):
    """Conv1d(filters, kernel) + ReLU → MaxPool1d(2) → Linear(dense) + ReLU → Linear(1)."""

    name = "cnn"
    arch = "cnn"


class CNNLSTMModel(SequenceModel):
    """Conv1d(filters, kernel) + ReLU → LSTM(hidden) → Linear(1) (tanh cell activation)."""

    name = "cnn_lstm"
    arch = "cnn_lstm"
