"""Ridge regression on standardised features, with two engines that give the same answer.

The model for one training set is

    minimise  || y - b0 - Z w ||^2 + lam * || w_pen ||^2,   Z = (X - mean) / scale,

with ``mean`` and ``scale`` (population standard deviation) taken from the training rows
only and the intercept ``b0`` not penalised. ``w_pen`` is every coefficient but the first
``free`` ones: the training stage puts the HAR terms first and leaves them unpenalised
(``train.ridge.penalize_har: false``), so the model nests HAR and λ shrinks only the text
columns. With ``free = 0`` this is scikit-learn's ``Ridge(alpha=lam)`` on standardised
inputs. With ``free = k`` the free block is partialled out (Frisch–Waugh–Lovell): the text
block solves ``(S + lam I) w_t = r`` with the Schur complement ``S = Z_t'Z_t - Z_t'Z_f
(Z_f'Z_f)^-1 Z_f'Z_t`` and ``r`` the same reduction of ``Z'y``, then
``w_f = (Z_f'Z_f)^-1 (Z_f'y - Z_f'Z_t w_t)``; the estimator engine fits scikit-learn's /
cuML's ridge on the text columns residualised on the free ones, the same solution. Coefficients are reported on the original scale:
``coef = w / scale``, ``intercept = mean(y) - mean @ coef``. Columns that are constant in
the training rows get ``scale = 1`` (as scikit-learn's ``StandardScaler`` does).

Engines
-------
``estimator``
    :class:`StandardizedRidge`: one fit of ``backend.ridge_estimator(alpha)`` (cuML on GPU,
    scikit-learn on CPU) per window, fold and lambda, on the rows themselves.
``stats``
    From the per-month :class:`~wsb_gpu.models.moments.Moments` of ``[X, y]`` (one pass
    over the rows, :mod:`wsb_gpu.models.moments`): any window or fold is a sum of months;
    its ridge solutions for the lambda grid come from its standardised ``Z'Z`` alone
    (:func:`solve_ridge_path`: one Cholesky factorisation per lambda for a small grid, one
    eigendecomposition for all lambdas of a large one), and the squared error of any
    coefficients on any set of months follows exactly from that set's moments
    (:func:`~wsb_gpu.models.moments.moments_sse`).

:class:`RidgeModel` is the model family the training stage fits (the :class:`Model`
contract of :mod:`wsb_gpu.models.base`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from sklearn.base import BaseEstimator, RegressorMixin
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from wsb_gpu.backend import Backend, array_namespace, to_numpy
from wsb_gpu.errors import WsbError
from wsb_gpu.models.base import Model, Window
from wsb_gpu.models.moments import (
    LinearFit,
    Moments,
    moments_sse,
    safe_scale,
    standardised,
    sum_moments,
)
from wsb_gpu.models.splits import BlockedTimeFolds
from wsb_gpu.models.validation import checked

if TYPE_CHECKING:
    from wsb_gpu.backend import Array
    from wsb_gpu.signals.families import FeatureSet

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


# --- solving from moments --------------------------------------------------------------


def solve_ridge_path(
    m: Moments, lambdas: Sequence[float] | np.ndarray, xp: Any = np, free: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    free
        The first ``free`` coefficients are not penalised (see the module docstring).

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
    G, c, mean_x, scale = standardised(m)
    lam = np.asarray(lambdas, dtype=np.float64).reshape(-1)
    k = int(free)
    # One BLAS thread: at p ~ 800 OpenBLAS's threaded potrf/syevd gain little, and on busy
    # cores their spin-waiting threads make them several times slower (measured on 2 shared
    # cores: Cholesky 0.15 s threaded vs 0.03 s single-threaded, eigh 0.95 s vs 0.23 s).
    with threadpool_limits(1, user_api="blas"):
        if k:
            # Partial out the free block: F = Gff^-1 [Gft | cf] (a k x k solve, k = 4 HAR terms).
            F = _solve_small(G[:k, :k], np.column_stack([G[:k, k:], c[:k]]))
            S = G[k:, k:] - G[k:, :k] @ F[:, :-1]
            r = c[k:] - G[k:, :k] @ F[:, -1]
        else:
            S, r = G, c
        if S.shape[0] == 0:
            beta_t: np.ndarray = np.zeros((0, lam.size))
        else:
            path = _cholesky_path(S, r, lam) if lam.size <= _CHOLESKY_MAX_LAMBDAS else None
            beta_t = path if path is not None else _eigen_path(S, r, lam, xp)
        beta_z = np.vstack([F[:, -1:] - F[:, :-1] @ beta_t, beta_t]) if k else beta_t
    coef = beta_z / scale[:, None]
    intercept = m.y_mean - mean_x @ coef
    return coef, intercept, mean_x, scale


def _solve_small(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A^-1 B`` for the small, normally positive definite block of the free columns
    (least squares if it is singular, e.g. a HAR term constant in a window)."""
    try:
        return cho_solve(cho_factor(A, check_finite=False), B, check_finite=False)
    except LinAlgError:
        return np.linalg.lstsq(A, B, rcond=None)[0]


def _cholesky_path(G: np.ndarray, c: np.ndarray, lam: np.ndarray) -> np.ndarray | None:
    """``(G + lam_j I)^-1 c`` for each lambda, one LAPACK Cholesky each; None if one fails."""
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
    lambdas: Sequence[float] | np.ndarray,
    index: Sequence[int] | None = None,
    xp: Any = np,
    free: int = 0,
    gap: int = 0,
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
    free
        Leading columns left unpenalised (the HAR terms).
    gap
        Months purged before each validation block from its fold's training part.
    """
    lambdas = np.asarray(lambdas, dtype=np.float64)

    def total(periods: Iterable[int]) -> Moments:
        m = sum_moments(period_moments[int(k)] for k in periods if int(k) in period_moments)
        return m.select(index) if index is not None else m

    block_totals, train_totals = fold_moments(total, blocks, gap)
    fold_mse = np.empty((len(blocks), lambdas.size))
    for k in range(len(blocks)):
        train = train_totals[k]
        valid = block_totals[k]
        coef, icpt, _, _ = solve_ridge_path(train, lambdas, xp=xp, free=free)
        fold_mse[k] = moments_sse(valid, coef, icpt) / valid.n
    best, cv = _choose(lambdas, fold_mse)
    window = sum_moments(block_totals)
    coef, icpt, mean, scale = solve_ridge_path(window, [best], xp=xp, free=free)
    return CVResult(LinearFit(coef[:, 0], float(icpt[0]), mean, scale, best), lambdas, cv, fold_mse)


def fold_moments(
    total: Callable[[Iterable[int]], Moments], blocks: Sequence[np.ndarray], gap: int = 0
) -> tuple[list[Moments], list[Moments]]:
    """Each CV block's moments and each fold's training moments (``total(months)`` sums the
    months asked for). Each block is summed once and a fold's training set is the sum of the
    other blocks; with a ``gap``, the ``gap`` months before the fold's block are left out
    (:meth:`BlockedTimeFolds.purged`), so the fold sums its own months."""
    block_totals = [total(sorted(int(x) for x in block)) for block in blocks]
    if not gap:
        trains = [sum_moments(m for j, m in enumerate(block_totals) if j != k) for k in range(len(blocks))]
        return block_totals, trains
    folds = BlockedTimeFolds(len(blocks), gap=gap)
    every = sorted(int(p) for b in blocks for p in b)
    trains = []
    for k in range(len(blocks)):
        out = set(folds.purged(blocks, k).tolist())
        trains.append(total([p for p in every if p not in out]))
    return block_totals, trains


# --- the estimator engine --------------------------------------------------------------


@dataclass
class RowDesign:
    """A training set's penalised columns, standardised and residualised on the free ones
    (in Fortran order when asked: scikit-learn's and cuML's coordinate descent want it), and
    its target centred and residualised likewise."""

    Z: Any
    y: Any
    F: np.ndarray | None  # G_ff^-1 [G_ft | c_f] on the host, k x (q + 1)
    mean: np.ndarray
    scale: np.ndarray
    y_mean: float

    @property
    def r(self) -> np.ndarray:
        """``Z_t'M y / n``: the reduced ``c`` of the module docstring (for λ_max)."""
        return np.asarray(to_numpy(self.Z.T @ self.y), dtype=np.float64).reshape(-1) / self.Z.shape[0]

    def full_coef(self, coef_t: np.ndarray) -> tuple[np.ndarray, float]:
        F = self.F
        coef_z = np.concatenate([F[:, -1] - F[:, :-1] @ coef_t, coef_t]) if F is not None else coef_t
        coef = coef_z / self.scale
        return coef, self.y_mean - float(self.mean @ coef)


def row_design(X: Array, y: Array, free: int, name: str = "fit", fortran: bool = False) -> RowDesign:
    """Standardise the rows with their own means and deviations, then partial out the first
    ``free`` columns (Frisch–Waugh–Lovell, see the module docstring): the design both
    :class:`StandardizedRidge` and :class:`~wsb_gpu.models.enet.StandardizedEnet` fit."""
    xp = array_namespace(X)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        msg = f"{name} needs X of shape (n, p) and y of shape (n,), got {X.shape} and {y.shape}"
        raise WsbError(msg)
    mean = xp.mean(X, axis=0)
    mean_h = np.asarray(to_numpy(mean), dtype=np.float64)
    scale_h = safe_scale(to_numpy(xp.std(X, axis=0)), mean_h)
    Z = (X - mean) / xp.asarray(scale_h)
    y_mean = float(to_numpy(xp.mean(y)))
    yc = y - y_mean
    k = int(free)
    F = None
    if k:
        Zf = Z[:, :k]
        B = np.column_stack([to_numpy(Zf.T @ Z[:, k:]), to_numpy(Zf.T @ yc)])
        F = np.asarray(_solve_small(to_numpy(Zf.T @ Zf), B), dtype=np.float64)
        Fd = xp.asarray(F)
        Z = Z[:, k:] - Zf @ Fd[:, :-1]
        yc = yc - Zf @ Fd[:, -1]
    to_fortran = getattr(xp, "asfortranarray", None) if fortran else None  # NumPy and CuPy
    if to_fortran is not None:  # coordinate descent (scikit-learn's, cuML's) wants columns
        Z = to_fortran(Z)
    return RowDesign(Z, yc, F, mean_h, scale_h, y_mean)


def fit_design(design: RowDesign, est: Any) -> np.ndarray:
    """Fit ``est`` on the design; its penalised coefficients (standardised) on the host."""
    if design.Z.shape[1] == 0:
        return np.zeros(0)
    est.fit(design.Z, design.y)
    return np.asarray(to_numpy(est.coef_), dtype=np.float64).reshape(-1)


_FLOATS = (np.float64, np.float32)  # other numeric input becomes float64


class StandardizedLinear(RegressorMixin, BaseEstimator):
    """What the standardised linear estimators share (scikit-learn regressors): the input
    checks, the learned attributes from a :class:`RowDesign` and its penalised
    coefficients, ``predict`` and the :class:`~wsb_gpu.models.moments.LinearFit` they hand
    on."""

    alpha: float

    def _checked(self, X: Array, y: Any) -> tuple[Any, Any]:
        """``(X, y)`` checked at ``fit`` (:func:`~wsb_gpu.models.validation.checked`)."""
        return checked(self, X, y, reset=True, dtype=_FLOATS, y_numeric=True)

    def _learned(self, design: RowDesign, coef_t: np.ndarray) -> Any:
        self.mean_, self.scale_ = design.mean, design.scale
        self.coef_, self.intercept_ = design.full_coef(coef_t)
        return self

    def predict(self, X: Array) -> Any:
        X = checked(self, X, reset=False, dtype=_FLOATS)
        xp = array_namespace(X)
        return X @ xp.asarray(self.coef_) + self.intercept_

    def to_fit(self) -> LinearFit:
        return LinearFit(self.coef_, self.intercept_, self.mean_, self.scale_, float(self.alpha))


class StandardizedRidge(StandardizedLinear):
    """Standardise with the training rows' own means and deviations, then ridge.

    A scikit-learn regressor: ``__init__`` stores parameters, ``fit`` returns self,
    learned attributes end in ``_``. The ridge itself is ``backend.ridge_estimator(alpha)``
    (cuML on GPU, scikit-learn on CPU); inputs are NumPy or CuPy float matrices.

    Parameters
    ----------
    alpha
        Penalty on the standardised coefficients (the intercept is not penalised).
    backend
        Where to fit; None = CPU.
    free
        The first ``free`` columns are not penalised: the estimator is fitted on the other
        columns residualised on them (Frisch–Waugh–Lovell; see the module docstring).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1]; y = X @ [1.0, 0.1, 10.0] + 2
    >>> est = StandardizedRidge(alpha=1e-9).fit(X, y)
    >>> np.round(est.coef_, 6).tolist(), round(est.intercept_, 6)
    ([1.0, 0.1, 10.0], 2.0)
    """

    def __init__(self, alpha: float = 1.0, backend: Backend | None = None, free: int = 0) -> None:
        self.alpha = alpha
        self.backend = backend
        self.free = free

    def fit(self, X: Array, y: Any) -> StandardizedRidge:
        X, y = self._checked(X, y)
        design = row_design(X, y, self.free, "StandardizedRidge.fit")
        if design.Z.shape[1] == 0:
            return self._learned(design, np.zeros(0))
        est = (self.backend or Backend("cpu")).ridge_estimator(float(self.alpha))
        if "copy_X" in est.get_params():
            est.set_params(copy_X=False)  # Z is our own temporary: no need for the estimator to copy it
        return self._learned(design, fit_design(design, est))


def ridge_cv_from_rows(
    X: Array,
    y: Array,
    periods: np.ndarray,
    folds: BlockedTimeFolds,
    lambdas: Sequence[float] | np.ndarray,
    backend: Backend | None = None,
    free: int = 0,
) -> CVResult:
    """Blocked-CV ridge with one estimator fit per fold and lambda, then a refit.

    ``periods`` (host array) labels each row's month; ``folds.split(groups=periods)`` gives
    the rows of each fold (the same blocks of months as the ``stats`` engine's).
    """
    lambdas = np.asarray(lambdas, dtype=np.float64)
    xp = array_namespace(X)
    fold_mse = np.empty((folds.get_n_splits(), lambdas.size))
    for k, (train_rows, valid_rows) in enumerate(folds.split(groups=periods)):
        tr, va = xp.asarray(train_rows), xp.asarray(valid_rows)
        X_tr, y_tr, X_va, y_va = X[tr], y[tr], X[va], y[va]  # gathered once per fold, not per lambda
        for j, lam in enumerate(lambdas):
            est = StandardizedRidge(alpha=lam, backend=backend, free=free).fit(X_tr, y_tr)
            resid = y_va - est.predict(X_va)
            fold_mse[k, j] = float(to_numpy(xp.mean(resid * resid)))
    best, cv = _choose(lambdas, fold_mse)
    est = StandardizedRidge(alpha=best, backend=backend, free=free).fit(X, y)
    return CVResult(est.to_fit(), lambdas, cv, fold_mse)


class PenalizedLinearModel(Model):
    """What ridge and the elastic net share: HAR terms first and unpenalised unless the
    model's ``penalize_har``, a cross-validated :class:`LinearFit` in ``cv_.fit``, the
    test-year error exactly from the moments on the ``stats`` engine.

    Subclasses set :meth:`fit` (calling :meth:`_free` after ``_start``) and :meth:`info`.
    """

    penalize_har: bool

    def _free(self, window: Window) -> int:
        """The leading HAR columns left unpenalised (0 when penalised or not leading)."""
        har = list(window.sample.har_columns)
        free = 0 if self.penalize_har else len(har)
        if free and self.columns_[:free] != har:
            free = 0
        self.free_ = free
        return free

    def predict_array(self, X: Array) -> Any:
        return self.cv_.fit.predict_array(X)

    def test_sse(self, window: Window) -> tuple[float, int] | None:
        if window.engine != "stats":
            return None
        tm = window.test_moments(self.columns_)
        return float(moments_sse(tm, self.cv_.fit.coef, self.cv_.fit.intercept)[0]), tm.n

    @property
    def linear(self) -> LinearFit:
        return self.cv_.fit

    @property
    def lam(self) -> float:
        return float(self.cv_.fit.lam)


class RidgeModel(PenalizedLinearModel):
    """Ridge on HAR + text, λ chosen per window by blocked-in-time cross-validation.

    The folds are contiguous blocks of the window's months (:class:`BlockedTimeFolds`), the
    grid :func:`lambda_grid` of ``train.ridge``. With the ``stats`` engine every fold and λ
    is solved from the window's monthly moments (:func:`ridge_cv_from_moments`); with the
    ``estimator`` engine from the collected rows with scikit-learn / cuML
    (:func:`ridge_cv_from_rows`). Both give the same λ and coefficients.

    Parameters
    ----------
    feature_set
        The feature set (its columns after the HAR terms).
    engine
        ``train.ridge.engine``; the window's engine (:attr:`Window.engine`) is the one used.
    n_lambdas, lambda_min, lambda_max, cv_folds, penalize_har
        The ``train.ridge`` settings.
    """

    name = "ridge"
    sections = ("ridge",)

    def __init__(
        self,
        feature_set: FeatureSet | None = None,
        *,
        engine: str,
        n_lambdas: int,
        lambda_min: float,
        lambda_max: float,
        cv_folds: int,
        penalize_har: bool,
    ) -> None:
        super().__init__(feature_set)
        self.engine = engine
        self.n_lambdas = n_lambdas
        self.lambda_min = lambda_min
        self.lambda_max = lambda_max
        self.cv_folds = cv_folds
        self.penalize_har = penalize_har

    def fit(self, window: Window) -> RidgeModel:
        self._start(window)
        free = self._free(window)
        lambdas = lambda_grid(self.n_lambdas, self.lambda_min, self.lambda_max)
        folds = BlockedTimeFolds(self.cv_folds, gap=window.cv_gap)
        if window.engine == "stats":
            blocks = folds.blocks(sorted(window.months))
            index = window.index(self.columns_)
            self.cv_ = ridge_cv_from_moments(
                window.months, blocks, lambdas, index=index, xp=window.xp, free=free, gap=folds.gap
            )
        else:
            X, y, periods = window.rows(self.columns_)
            # One BLAS thread, as for the stats engine's solves: each fit forms Z'Z of one fold
            # (p ~ 400-800), and threaded OpenBLAS on shared cores is slower (measured on the
            # demo's 12 ridge CVs on 2 cores: 13.5 s with 2 threads, 7.5 s with 1).
            with threadpool_limits(1, user_api="blas"):
                self.cv_ = ridge_cv_from_rows(X, y, periods, folds, lambdas, backend=window.backend, free=free)
        return self

    def info(self) -> dict[str, Any]:
        c = self.cv_
        return {
            "lambda": c.fit.lam,
            "unpenalised": self.columns_[: self.free_],
            "cv_mse": c.cv_mse.tolist(),
            "fold_mse": c.fold_mse.tolist(),
        }
