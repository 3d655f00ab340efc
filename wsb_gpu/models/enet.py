"""Elastic net on standardised features, with two engines that give the same answer.

The model for one training set is scikit-learn's ``ElasticNet(alpha=lam, l1_ratio=a)`` on
standardised columns,

    minimise  (1/2n) || y - ybar - Z w ||^2 + lam * (a ||w_pen||_1 + (1 - a)/2 ||w_pen||^2),

with ``Z = (X - mean) / scale`` standardised exactly as ridge does (training rows' means and
population deviations, constant columns scale 1, :func:`~wsb_gpu.models.moments.standardised`).
``w_pen`` is every coefficient but the first ``free`` ones (the HAR terms, unless
``train.enet.penalize_har``), partialled out as in :mod:`wsb_gpu.models.ridge`
(Frisch–Waugh–Lovell): with ``G = Z'Z/n`` and ``c = Z'(y - ybar)/n`` the penalised block
minimises ``1/2 w'Sw - r'w + penalty(w)`` with the Schur complement
``S = G_tt - G_tf G_ff^-1 G_ft`` and ``r = c_t - G_tf G_ff^-1 c_f``, and then
``w_f = G_ff^-1 (c_f - G_ft w_t)``. Coefficients are reported on the original scale:
``coef = w / scale``, ``intercept = ybar - mean @ coef``. With ``a = 0`` (allowed here, not
by the configuration) the objective is ridge with penalty ``n * lam`` on ``||y - ybar - Zw||^2``.

The penalty grid, per ``a``, is ``n_lambdas`` log-spaced values from
``lambda_max(a) = max_j |r_j| / a``, the smallest ``lam`` at which every penalised
coefficient is zero, down to ``eps * lambda_max(a)``; it is computed once from the whole
training window, so every fold searches the same grid.

Engines
-------
``stats``
    From the per-month :class:`~wsb_gpu.models.moments.Moments` only
    (:func:`enet_path_from_moments`): cyclic coordinate descent on ``S`` (glmnet's
    "covariance updates": the gradient ``g = r - S w`` is kept and moved by one column of
    ``S`` per coordinate change), compiled with Numba, warm-started along each λ path from
    the largest λ, with active-set iterations (sweeps over the nonzero coefficients until
    they settle, then a full sweep to confirm). Validation errors come exactly from the
    held-out months' moments.
``estimator``
    :class:`StandardizedEnet`: ``backend.enet_estimator(lam, a)`` (scikit-learn on CPU,
    cuML on GPU) fitted on the standardised rows with the free columns partialled out.

:class:`EnetModel` is the model family the training stage fits.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from wsb_gpu.backend import Backend, array_namespace, to_numpy
from wsb_gpu.errors import WsbError
from wsb_gpu.models.base import Window
from wsb_gpu.models.moments import LinearFit, Moments, moments_sse, standardised, sum_moments
from wsb_gpu.models.ridge import (
    PenalizedLinearModel,
    RowDesign,
    StandardizedLinear,
    _solve_small,
    fit_design,
    fold_moments,
    row_design,
)
from wsb_gpu.models.splits import BlockedTimeFolds

if TYPE_CHECKING:
    from wsb_gpu.backend import Array
    from wsb_gpu.signals.families import FeatureSet

# A penalised column whose (reduced) variance is below this, in standardised units, carries
# nothing the free columns and the intercept do not: it is skipped and keeps coefficient 0.
_MIN_VARIANCE = 1e-12


class _PathSettings(TypedDict):
    """The settings of the λ path and its solver that both CV engines take as keywords."""

    n_lambdas: int
    eps: float
    free: int
    max_iter: int
    tol: float


# --- the coordinate-descent kernel -----------------------------------------------------


def _cd_path_kernel(
    S: np.ndarray,
    r: np.ndarray,
    l1: np.ndarray,
    l2: np.ndarray,
    w: np.ndarray,
    max_iter: int,
    tol: float,
    min_var: float,
    coefs: np.ndarray,
    n_iter: np.ndarray,
) -> None:
    """Coordinate descent for ``1/2 w'Sw - r'w + l1 ||w||_1 + l2/2 ||w||^2`` along a path.

    Solves for each ``(l1[t], l2[t])`` in turn, starting from ``w`` (updated in place:
    warm starts), and writes the solution to ``coefs[:, t]`` and the sweeps it took to
    ``n_iter[t]``. A sweep visits the usable coordinates (``S_jj > min_var``) in order;
    a move ``d`` of coordinate ``j`` counts as ``S_jj d²`` (glmnet's convergence measure:
    the change of the fitted values' mean square it causes). After a full sweep with a
    move of ``tol`` or more, sweeps run over the nonzero coefficients only until no move
    reaches ``tol``, then a full sweep confirms.
    Compiled by :func:`_compiled_kernel`; plain Python here.
    """
    q = r.shape[0]
    usable = np.empty(q, np.int64)
    m = 0
    for j in range(q):
        if S[j, j] > min_var:
            usable[m] = j
            m += 1
        else:
            w[j] = 0.0
    g = np.empty(q)
    for i in range(q):
        acc = r[i]
        for j in range(q):
            acc -= S[i, j] * w[j]
        g[i] = acc
    active = np.empty(q, np.int64)
    for t in range(l1.shape[0]):
        a1 = l1[t]
        a2 = l2[t]
        sweeps = 0
        full = True
        n_active = 0
        while sweeps < max_iter:
            idx = usable if full else active
            count = m if full else n_active
            dmax = 0.0
            for s in range(count):
                j = idx[s]
                sjj = S[j, j]
                old = w[j]
                z = g[j] + sjj * old
                if z > a1:
                    new = (z - a1) / (sjj + a2)
                elif z < -a1:
                    new = (z + a1) / (sjj + a2)
                else:
                    new = 0.0
                d = new - old
                if d != 0.0:
                    w[j] = new
                    for i in range(q):  # S is symmetric: row j is column j, and contiguous
                        g[i] -= d * S[j, i]
                    # glmnet's measure of a move: the change of the fit it causes, S_jj d².
                    if sjj * d * d > dmax:
                        dmax = sjj * d * d
            sweeps += 1
            if full:
                if dmax < tol:
                    break
                n_active = 0
                for s in range(m):
                    if w[usable[s]] != 0.0:
                        active[n_active] = usable[s]
                        n_active += 1
                full = False
            elif dmax < tol:
                full = True
        for j in range(q):
            coefs[j, t] = w[j]
        n_iter[t] = sweeps


@functools.cache
def _compiled_kernel() -> Any:
    """:func:`_cd_path_kernel` compiled with Numba (imported here: ``import wsb_gpu`` stays
    fast). ``cache=True`` keeps the machine code under ``__pycache__``, so only the first
    call on a machine pays the compilation; ``nogil`` lets other threads run meanwhile."""
    import numba  # a dependency of umap-learn, a core dependency

    return numba.njit(cache=True, nogil=True)(_cd_path_kernel)


# --- solving from moments --------------------------------------------------------------


@dataclass
class _Reduced:
    """The penalised block's problem ``1/2 w'Sw - r'w + penalty`` (per row: ``S = Z_t'M Z_t/n``)
    and what it takes to return to every coefficient on the original scale."""

    S: np.ndarray
    r: np.ndarray
    F: np.ndarray | None  # G_ff^-1 [G_ft | c_f], k x (q + 1); None when nothing is free
    mean: np.ndarray
    scale: np.ndarray
    y_mean: float
    y_sd: float

    def full_coef(self, w_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original-scale coefficients (p, L) and intercepts (L,) of penalised solutions (q, L)."""
        F = self.F
        w = np.vstack([F[:, -1:] - F[:, :-1] @ w_t, w_t]) if F is not None else w_t
        coef = w / self.scale[:, None]
        return coef, self.y_mean - self.mean @ coef


def _reduce(m: Moments, free: int) -> _Reduced:
    """Standardise ``m``, scale it per row (the objective's ``1/2n``) and partial out its
    first ``free`` columns."""
    G, c, mean, scale = standardised(m)
    G, c = G / m.n, c / m.n
    k = int(free)
    F = None
    if k:
        F = _solve_small(G[:k, :k], np.column_stack([G[:k, k:], c[:k]]))
        S = G[k:, k:] - G[k:, :k] @ F[:, :-1]
        r = c[k:] - G[k:, :k] @ F[:, -1]
    else:
        S, r = G, c
    r = np.where(np.diag(S) > _MIN_VARIANCE, r, 0.0)  # the columns the solver skips: λ_max ignores them
    y_sd = float(np.sqrt(max(m.sst, 0.0) / m.n))
    return _Reduced(np.ascontiguousarray(S), np.ascontiguousarray(r), F, mean, scale, m.y_mean, y_sd)


def _lambda_max(r: np.ndarray, l1_ratio: float) -> float:
    """``max |r_j| / a``; 1 when every penalised coefficient is zero whatever λ (r = 0)."""
    if not 0 < l1_ratio <= 1:
        msg = (
            f"l1_ratio must be in (0, 1] for a lambda grid, got {l1_ratio!r}; l1_ratio 0 is ridge: use the ridge model"
        )
        raise WsbError(msg)
    top = float(np.max(np.abs(r))) if r.size else 0.0
    return top / l1_ratio if top > 0 else 1.0


def _grid(r: np.ndarray, l1_ratios: Sequence[float] | np.ndarray, n_lambdas: int, eps: float) -> np.ndarray:
    if n_lambdas < 1 or not 0 < eps < 1:
        msg = f"invalid elastic-net grid (n_lambdas={n_lambdas}, eps={eps}); use n_lambdas >= 1 and 0 < eps < 1"
        raise WsbError(msg)
    rows = []
    for a in l1_ratios:
        top = _lambda_max(r, float(a))
        rows.append(np.geomspace(top, top * eps, int(n_lambdas)) if n_lambdas > 1 else np.array([top]))
    return np.vstack(rows)


def enet_lambda_max(m: Moments, l1_ratio: float, free: int = 0) -> float:
    """The smallest λ at which every penalised coefficient is zero: ``max_j |r_j| / a``.

    >>> rng = np.random.default_rng(0)
    >>> v = rng.normal(size=(50, 3)); m = Moments.from_array(v)
    >>> top = enet_lambda_max(m, 0.5)
    >>> bool(np.all(enet_path_from_moments(m, [top], 0.5).coef == 0))
    True
    """
    return _lambda_max(_reduce(m, free).r, float(l1_ratio))


def enet_lambda_grid(
    m: Moments, l1_ratios: Sequence[float], n_lambdas: int = 10, eps: float = 1e-3, free: int = 0
) -> np.ndarray:
    """The (a × λ) grid: per ``l1_ratio``, ``n_lambdas`` log-spaced penalties from
    ``lambda_max(a)`` down to ``eps * lambda_max(a)`` (largest first).

    >>> rng = np.random.default_rng(0)
    >>> m = Moments.from_array(rng.normal(size=(50, 3)))
    >>> grid = enet_lambda_grid(m, [0.5, 1.0], n_lambdas=3, eps=0.01)
    >>> grid.shape, bool(np.allclose(grid[0] / grid[1], 2.0)), bool(np.allclose(grid[:, 0] / grid[:, -1], 100))
    ((2, 3), True, True)
    """
    return _grid(_reduce(m, free).r, l1_ratios, n_lambdas, eps)


@dataclass
class EnetPath:
    """Elastic-net solutions for a λ path: one column per λ, in the order given."""

    coef: np.ndarray  # (p, L) original scale
    intercept: np.ndarray  # (L,)
    mean: np.ndarray  # (p,) the training scaler
    scale: np.ndarray
    n_iter: np.ndarray  # (L,) coordinate-descent sweeps
    max_iter: int

    @property
    def converged(self) -> bool:
        return bool(np.all(self.n_iter < self.max_iter))


def _solve_reduced(
    red: _Reduced, lambdas: np.ndarray, l1_ratio: float, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Penalised-block solutions (q, L) for ``lambdas`` (solved largest first) and their sweeps."""
    q = red.r.size
    order = np.argsort(-lambdas, kind="stable")
    l1 = np.ascontiguousarray(lambdas[order] * l1_ratio)
    l2 = np.ascontiguousarray(lambdas[order] * (1.0 - l1_ratio))
    w_t = np.zeros((q, lambdas.size))
    n_iter = np.zeros(lambdas.size, dtype=np.int64)
    if q:
        coefs = np.empty((q, lambdas.size))
        sweeps = np.empty(lambdas.size, dtype=np.int64)
        # glmnet's rule, relative to var(y): the same tol for volatilities of 0.02 or 20.
        tol_abs = float(tol) * (red.y_sd**2 if red.y_sd > 0 else 1.0)
        _compiled_kernel()(red.S, red.r, l1, l2, np.zeros(q), int(max_iter), tol_abs, _MIN_VARIANCE, coefs, sweeps)
        w_t[:, order], n_iter[order] = coefs, sweeps
    return w_t, n_iter


def enet_path_from_moments(
    m: Moments,
    lambdas: Sequence[float],
    l1_ratio: float,
    free: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-7,
) -> EnetPath:
    """Elastic-net solutions for every λ from the moments of the training rows.

    Parameters
    ----------
    m
        Moments of the training rows, columns ``[x_1 … x_p, y]``.
    lambdas
        Penalties (scikit-learn's ``alpha``); solved from the largest down, each warm-started
        from the previous solution, and returned in the order given.
    l1_ratio
        The mix ``a`` in ``[0, 1]`` (1 = lasso, 0 = ridge with penalty ``n * lam``).
    free
        The first ``free`` coefficients are not penalised (see the module docstring).
    max_iter, tol
        Coordinate-descent sweeps per λ at most, and the stopping rule (glmnet's): a full
        sweep in which no standardised coefficient's move ``d`` has ``S_jj d² >= tol * var(y)``.

    Returns
    -------
    EnetPath

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = X @ [1.0, 0.0, -2.0] + 0.1 * rng.normal(size=200)
    >>> path = enet_path_from_moments(Moments.from_array(np.column_stack([X, y])), [0.5], 1.0)
    >>> np.round(path.coef[:, 0], 2).tolist(), path.converged
    ([0.54, 0.0, -1.53], True)
    """
    lam = np.asarray(lambdas, dtype=np.float64).reshape(-1)
    if not 0 <= l1_ratio <= 1 or np.any(lam < 0):
        msg = (
            f"invalid elastic-net penalty (l1_ratio={l1_ratio!r}, lambdas={lam.tolist()}); "
            "use 0 <= l1_ratio <= 1 and lambdas >= 0"
        )
        raise WsbError(msg)
    with threadpool_limits(1, user_api="blas"):
        red = _reduce(m, free)
        w_t, n_iter = _solve_reduced(red, lam, float(l1_ratio), max_iter, tol)
        coef, icpt = red.full_coef(w_t)
    return EnetPath(coef, icpt, red.mean, red.scale, n_iter, int(max_iter))


@dataclass
class EnetCVResult:
    """The outcome of choosing ``(l1_ratio, lambda)`` by blocked cross-validation."""

    fit: LinearFit  # refitted on the whole window; fit.lam is the chosen lambda
    l1_ratio: float
    l1_ratios: np.ndarray  # (A,)
    lambdas: np.ndarray  # (A, L), each row largest first
    cv_mse: np.ndarray  # (A, L) mean validation MSE over folds
    fold_mse: np.ndarray  # (K, A, L)
    converged: bool = True


def _choose(l1_ratios: np.ndarray, lambdas: np.ndarray, fold_mse: np.ndarray) -> tuple[int, int, np.ndarray]:
    """The (a, λ) cell with the smallest mean validation MSE (the first one on a tie)."""
    cv = fold_mse.mean(axis=0)
    i, j = np.unravel_index(int(np.argmin(cv)), cv.shape)
    return int(i), int(j), cv


def _warn_unconverged(converged: bool, max_iter: int) -> None:
    if not converged:
        msg = (
            f"elastic-net coordinate descent stopped at max_iter={max_iter} sweeps before meeting tol; "
            "raise train.enet.max_iter or train.enet.tol"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def enet_cv_from_moments(
    period_moments: Mapping[int, Moments],
    blocks: Sequence[np.ndarray],
    l1_ratios: Sequence[float],
    n_lambdas: int = 10,
    eps: float = 1e-3,
    index: Sequence[int] | None = None,
    free: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-7,
    gap: int = 0,
) -> EnetCVResult:
    """Blocked-CV elastic net over the given training months, entirely from per-month moments.

    The grid (:func:`enet_lambda_grid`) comes from the whole window's moments; each fold
    trains on the other blocks (standardised on them) and is scored exactly on its own
    block (:func:`~wsb_gpu.models.moments.moments_sse`); the best ``(a, λ)`` is refitted on
    the window. The solver runs on the host whatever the backend: a sequential coordinate
    descent on a ``p × p`` matrix (``p`` ≲ 800) is a few milliseconds per λ on one core.

    Parameters
    ----------
    period_moments
        ``{month period: Moments}`` of the training window (other months ignored).
    blocks
        The month periods of each CV block (:meth:`BlockedTimeFolds.blocks`).
    l1_ratios
        The mixes ``a`` to search, each in ``(0, 1]``.
    n_lambdas, eps
        The λ grid per ``a`` (see the module docstring).
    index
        Columns of the moments to use (features then ``y``); None = all.
    free
        Leading columns left unpenalised (the HAR terms).
    max_iter, tol
        As :func:`enet_path_from_moments`.
    gap
        Months purged before each validation block from its fold's training part.
    """
    ratios = np.asarray(l1_ratios, dtype=np.float64).reshape(-1)

    def total(periods: Iterable[int]) -> Moments:
        m = sum_moments(period_moments[int(k)] for k in periods if int(k) in period_moments)
        return m.select(index) if index is not None else m

    # One BLAS thread, as in solve_ridge_path: the products here are p x p at most, and on
    # busy cores OpenBLAS's spinning threads made them several times slower.
    with threadpool_limits(1, user_api="blas"):
        result = _cv_moments(fold_moments(total, blocks, gap), ratios, n_lambdas, eps, free, max_iter, tol)
    _warn_unconverged(result.converged, max_iter)
    return result


def _cv_moments(
    totals: tuple[list[Moments], list[Moments]],
    ratios: np.ndarray,
    n_lambdas: int,
    eps: float,
    free: int,
    max_iter: int,
    tol: float,
) -> EnetCVResult:
    """:func:`enet_cv_from_moments` once each block's and each fold's moments are summed."""
    block_totals, train_totals = totals
    window = _reduce(sum_moments(block_totals), free)
    grid = _grid(window.r, ratios, n_lambdas, eps)
    fold_mse = np.empty((len(block_totals), *grid.shape))
    converged = True
    for k in range(len(block_totals)):
        train = _reduce(train_totals[k], free)
        valid = block_totals[k]
        for i, a in enumerate(ratios):
            w_t, n_iter = _solve_reduced(train, grid[i], float(a), max_iter, tol)
            converged &= bool(np.all(n_iter < max_iter))
            coef, icpt = train.full_coef(w_t)
            fold_mse[k, i] = moments_sse(valid, coef, icpt) / valid.n
    i, j, cv = _choose(ratios, grid, fold_mse)
    # The refit walks the chosen a's path down to the chosen λ (warm starts all the way).
    w_t, n_iter = _solve_reduced(window, grid[i, : j + 1], float(ratios[i]), max_iter, tol)
    converged &= bool(np.all(n_iter < max_iter))
    coef, icpt = window.full_coef(w_t[:, -1:])
    fit = LinearFit(coef[:, 0], float(icpt[0]), window.mean, window.scale, float(grid[i, j]))
    return EnetCVResult(fit, float(ratios[i]), ratios, grid, cv, fold_mse, converged)


# --- the estimator engine --------------------------------------------------------------


class StandardizedEnet(StandardizedLinear):
    """Standardise with the training rows' own means and deviations, then elastic net.

    A scikit-learn regressor: ``__init__`` stores parameters, ``fit`` returns self,
    learned attributes end in ``_``. The elastic net itself is
    ``backend.enet_estimator(alpha, l1_ratio)`` (cuML on GPU, scikit-learn on CPU).

    Parameters
    ----------
    alpha, l1_ratio
        scikit-learn's ``ElasticNet`` penalty on the standardised coefficients.
    backend
        Where to fit; None = CPU.
    free
        The first ``free`` columns are not penalised: the estimator is fitted on the other
        columns residualised on them.
    max_iter, tol
        Passed to the estimator.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1]; y = X @ [1.0, 0.1, 10.0] + 2
    >>> est = StandardizedEnet(alpha=1e-3, l1_ratio=1.0, tol=1e-12).fit(X, y)
    >>> np.round(est.coef_, 3).tolist(), round(est.intercept_, 3)
    ([0.999, 0.1, 9.988], 2.0)
    """

    def __init__(
        self,
        alpha: float = 1.0,
        l1_ratio: float = 0.5,
        backend: Backend | None = None,
        free: int = 0,
        max_iter: int = 1000,
        tol: float = 1e-7,
    ) -> None:
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.backend = backend
        self.free = free
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: Array, y: Any) -> StandardizedEnet:
        X, y = self._checked(X, y)
        design = row_design(X, y, self.free, "StandardizedEnet.fit", fortran=True)
        return self._fit(design)

    def _fit(self, design: RowDesign) -> StandardizedEnet:
        backend = self.backend or Backend("cpu")
        est = backend.enet_estimator(float(self.alpha), float(self.l1_ratio), max_iter=self.max_iter, tol=self.tol)
        self._learned(design, fit_design(design, est))
        if getattr(est, "n_iter_", None) is not None:  # scikit-learn's count of sweeps (cuML keeps none)
            self.n_iter_ = int(np.max(np.asarray(est.n_iter_)))
        return self


def enet_cv_from_rows(
    X: Array,
    y: Array,
    periods: np.ndarray,
    folds: BlockedTimeFolds,
    l1_ratios: Sequence[float],
    n_lambdas: int = 10,
    eps: float = 1e-3,
    backend: Backend | None = None,
    free: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-7,
) -> EnetCVResult:
    """Blocked-CV elastic net with one estimator fit per fold, ``a`` and λ, then a refit.

    The grid comes from the whole window's rows, as :func:`enet_cv_from_moments`' from its
    moments; ``periods`` (host array) labels each row's month and
    ``folds.split(groups=periods)`` gives the same blocks of months as the ``stats``
    engine's. Each fold is standardised and residualised once for the whole grid; along a
    λ path the estimator is warm-started where it can be (scikit-learn's ``warm_start``;
    cuML has none).
    """
    ratios = np.asarray(l1_ratios, dtype=np.float64).reshape(-1)
    xp = array_namespace(X)
    be = backend or Backend("cpu")
    window = row_design(X, y, free, "StandardizedEnet.fit", fortran=True)
    grid = _grid(window.r, ratios, n_lambdas, eps)
    fold_mse = np.empty((folds.get_n_splits(), *grid.shape))
    for k, (train_rows, valid_rows) in enumerate(folds.split(groups=periods)):
        tr, va = xp.asarray(train_rows), xp.asarray(valid_rows)
        design = row_design(X[tr], y[tr], free, "StandardizedEnet.fit", fortran=True)
        X_va, y_va = X[va], y[va]
        for i, a in enumerate(ratios):
            est = _path_estimator(be, grid[i, 0], float(a), max_iter, tol)
            for j, lam in enumerate(grid[i]):
                est.set_params(alpha=float(lam))
                coef, icpt = design.full_coef(fit_design(design, est))
                resid = y_va - (X_va @ xp.asarray(coef) + icpt)
                fold_mse[k, i, j] = float(to_numpy(xp.mean(resid * resid)))
    i, j, cv = _choose(ratios, grid, fold_mse)
    best = StandardizedEnet(
        alpha=float(grid[i, j]), l1_ratio=float(ratios[i]), backend=be, free=free, max_iter=max_iter, tol=tol
    )
    fit = best._fit(window).to_fit()
    return EnetCVResult(fit, float(ratios[i]), ratios, grid, cv, fold_mse)


def _path_estimator(backend: Backend, alpha: float, l1_ratio: float, max_iter: int, tol: float) -> Any:
    """One estimator for a λ path, warm-started from fit to fit where the library allows."""
    est = backend.enet_estimator(alpha, l1_ratio, max_iter=max_iter, tol=tol)
    params = est.get_params()
    if "warm_start" in params:
        est.set_params(warm_start=True)
    if "copy_X" in params:
        est.set_params(copy_X=False)  # the design is our own temporary
    return est


# --- the model family ------------------------------------------------------------------


class EnetModel(PenalizedLinearModel):
    """Elastic net on HAR + text, ``(a, λ)`` chosen per window by blocked-in-time CV.

    The folds are the ridge's (:class:`BlockedTimeFolds` of the window's months), the grid
    ``train.enet`` (``l1_ratios`` × ``n_lambdas`` from each ``lambda_max(a)``), the engine
    the window's (``train.ridge.engine``): ``stats`` solves every fold from the monthly
    moments (:func:`enet_cv_from_moments`), ``estimator`` fits scikit-learn / cuML on the
    collected rows (:func:`enet_cv_from_rows`). Both choose the same ``(a, λ)``.

    Parameters
    ----------
    feature_set
        The feature set (its columns after the HAR terms).
    l1_ratios, n_lambdas, eps, cv_folds, penalize_har, max_iter, tol
        The ``train.enet`` settings.
    """

    name = "enet"
    sections = ("enet",)

    def __init__(
        self,
        feature_set: FeatureSet | None = None,
        *,
        l1_ratios: Sequence[float],
        n_lambdas: int,
        eps: float,
        cv_folds: int,
        penalize_har: bool,
        max_iter: int,
        tol: float,
    ) -> None:
        super().__init__(feature_set)
        self.l1_ratios = l1_ratios
        self.n_lambdas = n_lambdas
        self.eps = eps
        self.cv_folds = cv_folds
        self.penalize_har = penalize_har
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, window: Window) -> EnetModel:
        self._start(window)
        free = self._free(window)
        folds = BlockedTimeFolds(self.cv_folds, gap=window.cv_gap)
        grid: _PathSettings = {
            "n_lambdas": self.n_lambdas,
            "eps": self.eps,
            "free": free,
            "max_iter": self.max_iter,
            "tol": self.tol,
        }
        if window.engine == "stats":
            blocks = folds.blocks(sorted(window.months))
            index = window.index(self.columns_)
            self.cv_ = enet_cv_from_moments(window.months, blocks, self.l1_ratios, index=index, gap=folds.gap, **grid)
        else:
            X, y, periods = window.rows(self.columns_)
            with threadpool_limits(1, user_api="blas"):  # as for ridge's estimator engine
                self.cv_ = enet_cv_from_rows(X, y, periods, folds, self.l1_ratios, backend=window.backend, **grid)
        return self

    def info(self) -> dict[str, Any]:
        c = self.cv_
        return {
            "lambda": c.fit.lam,
            "l1_ratio": c.l1_ratio,
            "l1_ratios": c.l1_ratios.tolist(),
            "lambdas": c.lambdas.tolist(),
            "cv_mse": c.cv_mse.tolist(),
            "fold_mse": c.fold_mse.tolist(),
            "unpenalised": self.columns_[: self.free_],
            "nonzero": int(np.count_nonzero(c.fit.coef[self.free_ :])),
            "converged": c.converged,
        }

    @property
    def l1_ratio(self) -> float:
        return float(self.cv_.l1_ratio)
