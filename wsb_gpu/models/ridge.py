"""Ridge regression on standardised features, with two engines that give the same answer.

The model for one training set is

    minimise  || y - b0 - Z w ||^2 + lam * || w ||^2,   Z = (X - mean) / scale,

with ``mean`` and ``scale`` (population standard deviation) taken from the training rows
only and the intercept ``b0`` not penalised. This is scikit-learn's ``Ridge(alpha=lam)``
on standardised inputs. Coefficients are reported on the original scale:
``coef = w / scale``, ``intercept = mean(y) - mean @ coef``. Columns that are constant in
the training rows get ``scale = 1`` (as scikit-learn's ``StandardScaler`` does).

Engines
-------
``estimator``
    :class:`StandardizedRidge`: one fit of ``backend.ridge_estimator(alpha)`` (cuML on GPU,
    scikit-learn on CPU) per window, fold and lambda, on the rows themselves.
``stats``
    :class:`Moments` holds, per month, the count, the means and the *centred*
    cross-product matrix of ``[X, y]`` in float64. They are computed by the workers in one
    pass (:func:`partition_moments` per partition, merged by a tree reduction) and merged
    with Chan's parallel update, which never forms ``sum(x x') - n mean mean'`` and so
    avoids the cancellation of raw sums. Any window or fold is a sum of months; its ridge
    solutions for the lambda grid come from its standardised ``Z'Z`` alone
    (:func:`solve_ridge_path`: one Cholesky factorisation per lambda for a small grid, one
    eigendecomposition for all lambdas of a large one), and the squared error of any
    coefficients on any set of months follows exactly from that set's moments
    (:func:`moments_sse`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsb_gpu.backend import Backend, is_gpu_frame, to_numpy
from wsb_gpu.errors import WsbError

# A column whose training deviation is below this (relative to its mean) counts as constant.
_CONSTANT_TOL = 1e-10
# Up to this many lambdas a ridge path is solved with one Cholesky factorisation per lambda,
# above it with one eigendecomposition for all of them. At p = 772 a LAPACK Cholesky (p³/3
# flops) takes ~0.02 s and a symmetric eigendecomposition with vectors ~0.3 s on the same
# core (ratio ~13-15, measured), so Cholesky wins for the default grid of 5 and for the
# single-lambda refit; the eigendecomposition only pays off for grids of more than ~12.
_CHOLESKY_MAX_LAMBDAS = 10


def lambda_grid(n_lambdas: int, lambda_min: float, lambda_max: float) -> np.ndarray:
    """``n_lambdas`` log-spaced penalties from ``lambda_min`` to ``lambda_max``.

    >>> lambda_grid(3, 0.01, 100.0).tolist()
    [0.01, 1.0, 100.0]
    """
    if n_lambdas < 1 or not (0 < lambda_min <= lambda_max):
        msg = (
            f"invalid lambda grid (n_lambdas={n_lambdas}, lambda_min={lambda_min}, lambda_max={lambda_max}); "
            "use n_lambdas >= 1 and 0 < lambda_min <= lambda_max"
        )
        raise WsbError(msg)
    if n_lambdas == 1:
        return np.array([float(lambda_min)])
    return np.logspace(np.log10(lambda_min), np.log10(lambda_max), int(n_lambdas))


def safe_scale(scale: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Replace the deviations of (numerically) constant columns by 1.

    >>> safe_scale(np.array([2.0, 0.0, 1e-20]), np.array([0.0, 5.0, 1.0])).tolist()
    [2.0, 1.0, 1.0]
    """
    scale = np.array(scale, dtype=np.float64, copy=True)
    tiny = _CONSTANT_TOL * np.maximum(1.0, np.abs(mean))
    scale[~(scale > tiny)] = 1.0
    return scale


# --- sufficient statistics -------------------------------------------------------------


@dataclass
class Moments:
    """Count, means and centred cross-products of the columns ``[x_1 … x_p, y]``.

    ``m2[i, j] = sum_r (v_ri - mean_i) (v_rj - mean_j)``. Adding two ``Moments`` gives the
    moments of the union of their rows (Chan, Golub & LeVeque's pairwise update).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = rng.normal(size=(10, 3))
    >>> m = Moments.from_array(v[:4]) + Moments.from_array(v[4:])
    >>> bool(np.allclose(m.m2, (v - v.mean(0)).T @ (v - v.mean(0))))
    True
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def from_array(cls, values: Any, overwrite: bool = False) -> Moments:
        """Moments of the rows of a 2-D NumPy or CuPy array (float64), returned on the host.

        ``overwrite=True`` centres ``values`` in place instead of allocating a centred copy.
        """
        n = int(values.shape[0])
        mean = values.mean(axis=0)
        if overwrite:
            values -= mean
            centred = values
        else:
            centred = values - mean
        m2 = centred.T @ centred  # the A'A pattern: NumPy and CuPy call BLAS syrk (half a GEMM)
        return cls(n, np.asarray(to_numpy(mean), dtype=np.float64), np.asarray(to_numpy(m2), dtype=np.float64))

    def __add__(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        return Moments(n, mean, m2)

    def select(self, index: Sequence[int]) -> Moments:
        """The moments of a subset of the columns (e.g. the HAR block plus ``y``)."""
        ix = np.asarray(index)
        return Moments(self.n, self.mean[ix], self.m2[np.ix_(ix, ix)])

    @property
    def sst(self) -> float:
        """Sum of squares of ``y`` (the last column) around its own mean."""
        return float(self.m2[-1, -1])

    @property
    def y_mean(self) -> float:
        return float(self.mean[-1])


def sum_moments(items: Iterable[Moments]) -> Moments:
    """The moments of the union of several row sets, combined in one step.

    ``mean = sum n_i mean_i / N`` and ``m2 = sum m2_i + sum n_i (mean_i - mean)(mean_i - mean)'``:
    the two-pass group formula, as stable as pairwise updates and one matrix product.
    """
    parts = [m for m in items if m.n > 0]
    if not parts:
        msg = "no rows: cannot combine an empty set of statistics; check the sample and the years"
        raise WsbError(msg)
    if len(parts) == 1:
        return parts[0]
    n = np.array([m.n for m in parts], dtype=np.float64)
    means = np.stack([m.mean for m in parts])
    total = int(n.sum())
    mean = (n @ means) / n.sum()
    d = means - mean
    m2 = (d * n[:, None]).T @ d
    for m in parts:  # in place: stacking the (p+1)² matrices first would copy them all
        m2 += m.m2
    return Moments(total, mean, m2)


def merge_moment_dicts(*parts: Mapping[int, Moments]) -> dict[int, Moments]:
    """Merge ``{period: Moments}`` maps (the combine step of the tree reduction)."""
    groups: dict[int, list[Moments]] = {}
    for part in parts:
        for key, m in part.items():
            groups.setdefault(key, []).append(m)
    return {key: sum_moments(ms) for key, ms in groups.items()}


def frame_matrix(frame: Any, columns: Sequence[str]) -> Any:
    """The columns of a pandas/cuDF frame as a float64 NumPy/CuPy matrix (NaN for nulls)."""
    sub = frame[list(columns)]
    if is_gpu_frame(frame):
        return sub.to_cupy(dtype="float64", na_value=np.nan)
    return sub.to_numpy(dtype="float64", na_value=np.nan)


def array_module(values: Any) -> Any:
    """NumPy or CuPy, whichever ``values`` belongs to."""
    if type(values).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def partition_moments(frame: Any, columns: Sequence[str], target: str, key: str = "period") -> dict[int, Moments]:
    """The per-``key`` :class:`Moments` of ``[columns…, target]`` in one pandas/cuDF partition.

    This is the map step of the ``stats`` engine; it runs on the worker that holds the
    partition (on its GPU for cuDF partitions) and returns small host arrays.
    """
    if len(frame) == 0:
        return {}
    values = frame_matrix(frame, [*columns, target])
    keys = frame[key].values
    xp = array_module(values)
    keys = xp.asarray(keys)
    # One stable sort makes every month a contiguous block of rows: one centring and one
    # syrk per month on a slice, no per-month gathers. ``values[order]`` is a fresh copy,
    # so the blocks may be centred in place.
    order = xp.argsort(keys, kind="stable")
    keys = keys[order]
    values = values[order]
    uniq, starts = (to_numpy(a) for a in xp.unique(keys, return_index=True))
    bounds = [*starts.tolist(), len(frame)]
    return {int(k): Moments.from_array(values[bounds[i]: bounds[i + 1]], overwrite=True) for i, k in enumerate(uniq)}


# --- solving from moments --------------------------------------------------------------


@dataclass
class LinearFit:
    """A fitted linear predictor on the original scale, plus the scaler it was fitted with."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    lam: float = 0.0

    def predict_array(self, X: Any) -> Any:
        xp = array_module(X)
        return X @ xp.asarray(self.coef) + self.intercept


def _standardised(m: Moments) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(G, c, mean_x, scale)``: ``Z'Z`` and ``Z'(y - ybar)`` of the standardised features."""
    p = m.mean.size - 1
    mean_x = m.mean[:p]
    scale = safe_scale(np.sqrt(np.maximum(np.diag(m.m2)[:p], 0.0) / m.n), mean_x)
    G = m.m2[:p, :p] / np.outer(scale, scale)
    c = m.m2[:p, p] / scale
    return G, c, mean_x, scale


def solve_ridge_path(m: Moments, lambdas: Sequence[float], xp: Any = np) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ridge solutions for every lambda from the moments of the training rows.

    The standardised normal equations ``(Z'Z + lam I) w = Z'(y - ybar)`` are solved with one
    Cholesky factorisation per lambda when the grid is small (at most
    ``_CHOLESKY_MAX_LAMBDAS``, on the host with LAPACK), else with one eigendecomposition
    ``Z'Z = V diag(w) V'`` for all lambdas at once (on ``xp``), which costs about as much
    as 13 Cholesky factorisations. Should a factorisation fail (a lambda negligible
    against ``Z'Z`` in float64), the eigendecomposition is used.

    Parameters
    ----------
    m
        Moments of the training rows, columns ``[x_1 … x_p, y]``.
    lambdas
        Penalties (scikit-learn's ``alpha``) on the standardised coefficients.
    xp
        Array module for the eigendecomposition (NumPy on the driver, CuPy on a GPU).

    Returns
    -------
    coef : (p, L) array
        Original-scale coefficients, one column per lambda.
    intercept : (L,) array
    mean, scale : (p,) arrays
        The training scaler.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = rng.normal(size=(40, 4)); m = Moments.from_array(v)
    >>> few = solve_ridge_path(m, [0.1, 10.0])[0]
    >>> many = solve_ridge_path(m, np.r_[[0.1, 10.0], np.ones(_CHOLESKY_MAX_LAMBDAS)])[0]
    >>> bool(np.allclose(few, many[:, :2], rtol=1e-12))
    True
    """
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    G, c, mean_x, scale = _standardised(m)
    lam = np.asarray(lambdas, dtype=np.float64).reshape(-1)
    # One BLAS thread: at p ~ 800 OpenBLAS's threaded potrf/syevd gain little, and on busy
    # cores their spin-waiting threads make them several times slower (measured on 2 shared
    # cores: Cholesky 0.15 s threaded vs 0.03 s single-threaded, eigh 0.95 s vs 0.23 s).
    with threadpool_limits(1, user_api="blas"):
        beta_z = _cholesky_path(G, c, lam) if lam.size <= _CHOLESKY_MAX_LAMBDAS else None
        if beta_z is None:
            beta_z = _eigen_path(G, c, lam, xp)
    coef = beta_z / scale[:, None]
    intercept = m.y_mean - mean_x @ coef
    return coef, intercept, mean_x, scale


def _cholesky_path(G: np.ndarray, c: np.ndarray, lam: np.ndarray) -> np.ndarray | None:
    """``(G + lam_j I)^-1 c`` for each lambda, one LAPACK Cholesky each; None if one fails."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    out = np.empty((c.size, lam.size))
    A = np.empty_like(G)
    diag = np.diag(G)
    for j, lj in enumerate(lam):
        np.copyto(A, G)
        np.fill_diagonal(A, diag + lj)
        try:
            factor = cho_factor(A, overwrite_a=True, check_finite=False)
        except LinAlgError:
            return None
        out[:, j] = cho_solve(factor, c, check_finite=False)
    return out


def _eigen_path(G: np.ndarray, c: np.ndarray, lam: np.ndarray, xp: Any) -> np.ndarray:
    """``(G + lam_j I)^-1 c`` for every lambda from one eigendecomposition of ``G``."""
    w, V = xp.linalg.eigh(xp.asarray(G))
    w = xp.maximum(w, 0.0)  # G is PSD; clip round-off below zero
    q = V.T @ xp.asarray(c)
    return to_numpy(V @ (q[:, None] / (w[:, None] + xp.asarray(lam)[None, :])))


def solve_ols(m: Moments) -> LinearFit:
    """Least squares with an intercept from moments (solved on the standardised scale).

    >>> rng = np.random.default_rng(1)
    >>> X = rng.normal(size=(50, 2)); y = 1 + X @ [2.0, -1.0]
    >>> fit = solve_ols(Moments.from_array(np.column_stack([X, y])))
    >>> np.round(fit.coef, 8).tolist(), round(fit.intercept, 8)
    ([2.0, -1.0], 1.0)
    """
    G, c, mean_x, scale = _standardised(m)
    beta_z, *_ = np.linalg.lstsq(G, c, rcond=None)
    coef = beta_z / scale
    return LinearFit(coef, float(m.y_mean - mean_x @ coef), mean_x, scale, 0.0)


def moments_sse(m: Moments, coef: np.ndarray, intercept: Any) -> np.ndarray:
    """Exact ``sum (y - intercept - x'coef)^2`` over the rows summarised by ``m``.

    Uses the centred form ``Syy - 2 b'Sxy + b'Sxx b + n (ybar - b0 - xbar'b)^2``; ``coef``
    may be (p,) or (p, L) with ``intercept`` (L,), giving (L,) errors.
    """
    p = m.mean.size - 1
    B = coef.reshape(p, -1)
    b0 = np.asarray(intercept, dtype=np.float64).reshape(-1)
    Sxx, Sxy = m.m2[:p, :p], m.m2[:p, p]
    quad = np.einsum("il,il->l", B, Sxx @ B) - 2.0 * (Sxy @ B)
    bias = m.y_mean - b0 - m.mean[:p] @ B
    sse = m.sst + quad + m.n * bias**2
    return np.maximum(sse, 0.0)


@dataclass
class CVResult:
    """The outcome of choosing lambda by blocked cross-validation."""

    fit: LinearFit
    lambdas: np.ndarray
    cv_mse: np.ndarray  # (L,) mean validation MSE over folds
    fold_mse: np.ndarray  # (K, L)


def _choose(lambdas: np.ndarray, fold_mse: np.ndarray) -> tuple[float, np.ndarray]:
    cv = fold_mse.mean(axis=0)
    return float(lambdas[int(np.argmin(cv))]), cv


def ridge_cv_from_moments(
    period_moments: Mapping[int, Moments],
    blocks: Sequence[np.ndarray],
    lambdas: Sequence[float],
    index: Sequence[int] | None = None,
    xp: Any = np,
) -> CVResult:
    """Blocked-CV ridge over the given training months, entirely from per-month moments.

    Parameters
    ----------
    period_moments
        ``{month period: Moments}`` of the training window (other months ignored).
    blocks
        The month periods of each CV block (:meth:`BlockedTimeFolds.blocks`).
    lambdas
        The penalty grid.
    index
        Columns of the moments to use (features then ``y``); None = all.
    """
    lambdas = np.asarray(lambdas, dtype=np.float64)

    def total(periods: Iterable[int]) -> Moments:
        m = sum_moments(period_moments[int(k)] for k in periods if int(k) in period_moments)
        return m.select(index) if index is not None else m

    # Each block is summed once; a fold's training set is the sum of the other blocks.
    block_totals = [total(sorted(int(x) for x in block)) for block in blocks]
    fold_mse = np.empty((len(blocks), lambdas.size))
    for k in range(len(blocks)):
        train = sum_moments(m for j, m in enumerate(block_totals) if j != k)
        valid = block_totals[k]
        coef, icpt, _, _ = solve_ridge_path(train, lambdas, xp=xp)
        fold_mse[k] = moments_sse(valid, coef, icpt) / valid.n
    best, cv = _choose(lambdas, fold_mse)
    window = sum_moments(block_totals)
    coef, icpt, mean, scale = solve_ridge_path(window, [best], xp=xp)
    return CVResult(LinearFit(coef[:, 0], float(icpt[0]), mean, scale, best), lambdas, cv, fold_mse)


# --- the estimator engine --------------------------------------------------------------


class StandardizedRidge:
    """Standardise with the training rows' own means and deviations, then ridge.

    scikit-learn estimator contract: ``__init__`` stores parameters, ``fit`` returns self,
    learned attributes end in ``_``. The ridge itself is ``backend.ridge_estimator(alpha)``
    (cuML on GPU, scikit-learn on CPU); inputs are NumPy or CuPy float64 matrices.

    Parameters
    ----------
    alpha
        Penalty on the standardised coefficients (the intercept is not penalised).
    backend
        Where to fit; None = CPU.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1]; y = X @ [1.0, 0.1, 10.0] + 2
    >>> est = StandardizedRidge(alpha=1e-9).fit(X, y)
    >>> np.round(est.coef_, 6).tolist(), round(est.intercept_, 6)
    ([1.0, 0.1, 10.0], 2.0)
    """

    def __init__(self, alpha: float = 1.0, backend: Backend | None = None) -> None:
        self.alpha = alpha
        self.backend = backend

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"alpha": self.alpha, "backend": self.backend}

    def set_params(self, **params: Any) -> StandardizedRidge:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def fit(self, X: Any, y: Any) -> StandardizedRidge:
        xp = array_module(X)
        if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
            msg = f"StandardizedRidge.fit needs X of shape (n, p) and y of shape (n,), got {X.shape} and {y.shape}"
            raise WsbError(msg)
        mean = X.mean(axis=0)
        mean_h = to_numpy(mean)
        scale_h = safe_scale(to_numpy(X.std(axis=0)), mean_h)
        Z = X - mean
        Z /= xp.asarray(scale_h)
        backend = self.backend or Backend("cpu")
        est = backend.ridge_estimator(float(self.alpha))
        if "copy_X" in est.get_params():
            est.set_params(copy_X=False)  # Z is our own temporary: no need for the estimator to copy it
        est = est.fit(Z, y)
        coef_z = np.asarray(to_numpy(est.coef_), dtype=np.float64).reshape(-1)
        self.mean_ = mean_h
        self.scale_ = scale_h
        self.coef_ = coef_z / scale_h
        self.intercept_ = float(np.asarray(to_numpy(est.intercept_)).reshape(-1)[0]) - float(mean_h @ self.coef_)
        return self

    def predict(self, X: Any) -> Any:
        xp = array_module(X)
        return X @ xp.asarray(self.coef_) + self.intercept_

    def to_fit(self) -> LinearFit:
        return LinearFit(self.coef_, self.intercept_, self.mean_, self.scale_, float(self.alpha))


def ridge_cv_from_rows(
    X: Any,
    y: Any,
    periods: np.ndarray,
    blocks: Sequence[np.ndarray],
    lambdas: Sequence[float],
    backend: Backend | None = None,
) -> CVResult:
    """Blocked-CV ridge with one estimator fit per fold and lambda, then a refit.

    ``periods`` (host array) labels each row's month; ``blocks`` are the CV blocks.
    """
    lambdas = np.asarray(lambdas, dtype=np.float64)
    xp = array_module(X)
    fold_mse = np.empty((len(blocks), lambdas.size))
    for k, block in enumerate(blocks):
        held = np.isin(periods, block)
        tr = xp.asarray(np.flatnonzero(~held))
        va = xp.asarray(np.flatnonzero(held))
        X_tr, y_tr, X_va, y_va = X[tr], y[tr], X[va], y[va]  # gathered once per fold, not per lambda
        for j, lam in enumerate(lambdas):
            est = StandardizedRidge(alpha=lam, backend=backend).fit(X_tr, y_tr)
            resid = y_va - est.predict(X_va)
            fold_mse[k, j] = float(to_numpy((resid * resid).mean()))
    best, cv = _choose(lambdas, fold_mse)
    est = StandardizedRidge(alpha=best, backend=backend).fit(X, y)
    return CVResult(est.to_fit(), lambdas, cv, fold_mse)


def collect_moments(ddf: Any, columns: Sequence[str], target: str, *, key: str = "period",
                    split_every: int = 4, progress: bool = False, label: str = "statistics") -> dict[int, Moments]:
    """One pass over a Dask frame: per-``key`` moments, mapped on the workers, tree-reduced.

    Each partition becomes ``{period: Moments}`` where it lives (:func:`partition_moments`);
    groups of ``split_every`` results are merged (:func:`merge_moment_dicts`) level by
    level until one remains, so only small matrices travel and no process ever holds
    more than ``split_every`` partial results at once. (A partition that spans every
    month yields ``months × (p+1)² × 8`` bytes, ~0.75 GB at the seed's width, hence the
    small ``split_every``.)

    The pass runs with one BLAS thread per task: the parallelism is over partitions (as
    on ``distributed`` workers, whose nannies set ``OPENBLAS_NUM_THREADS=1``); threaded
    BLAS inside each of the scheduler's threads oversubscribes the cores, which made the
    per-month ``syrk`` 2-3 times slower in CPU time (measured on 2 cores).
    """
    from dask import delayed
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    from wsb_gpu.progress import compute

    cols = list(columns)
    level = [delayed(partition_moments)(part, cols, target, key) for part in ddf.to_delayed()]
    if not level:
        return {}
    while len(level) > 1:
        level = [delayed(merge_moment_dicts)(*level[i: i + split_every]) for i in range(0, len(level), split_every)]
    with threadpool_limits(1, user_api="blas"):
        (result,) = compute(level[0], label=label, show=progress)
    return result
