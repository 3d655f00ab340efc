"""Sufficient statistics of a design matrix, and what follows from them exactly.

:class:`Moments` holds, for a set of rows, the count, the means and the *centred*
cross-product matrix of ``[X, y]`` in float64. They are computed by the workers in one pass
(:func:`partition_moments` per partition and month, merged by a tree reduction in
:func:`collect_moments`) and merged with Chan's parallel update, which never forms
``sum(x x') - n mean mean'`` and so avoids the cancellation of raw sums. Any window or fold
is then a sum of months: least squares (:func:`solve_ols`), ridge
(:mod:`wsb_gpu.models.ridge`) and the squared error of any coefficients on any set of months
(:func:`moments_sse`) follow from it without touching the rows again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from dask import delayed
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from wsb_gpu.backend import array_namespace, column_array, matrix, to_numpy
from wsb_gpu.errors import WsbError
from wsb_gpu.progress import compute

if TYPE_CHECKING:
    import dask.dataframe as dd

    from wsb_gpu.backend import Array, Frame

# A column whose training deviation is below this (relative to its mean) counts as constant.
_CONSTANT_TOL = 1e-10


def safe_scale(scale: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Replace the deviations of (numerically) constant columns by 1.

    >>> safe_scale(np.array([2.0, 0.0, 1e-20]), np.array([0.0, 5.0, 1.0])).tolist()
    [2.0, 1.0, 1.0]
    """
    scale = np.array(scale, dtype=np.float64, copy=True)
    tiny = _CONSTANT_TOL * np.maximum(1.0, np.abs(mean))
    scale[~(scale > tiny)] = 1.0
    return scale


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
    def from_array(cls, values: Array, overwrite: bool = False) -> Moments:
        """Moments of the rows of a 2-D NumPy or CuPy array (float64), returned on the host.

        ``overwrite=True`` centres ``values`` in place instead of allocating a centred copy.
        Array API (NumPy, CuPy, array-api-strict).
        """
        xp = array_namespace(values)
        n = int(values.shape[0])
        mean = xp.mean(values, axis=0)
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


def partition_moments(frame: Frame, columns: Sequence[str], target: str, key: str = "period") -> dict[int, Moments]:
    """The per-``key`` :class:`Moments` of ``[columns…, target]`` in one pandas/cuDF partition.

    This is the map step of the ``stats`` engine; it runs on the worker that holds the
    partition (on its GPU for cuDF partitions) and returns small host arrays.
    """
    if len(frame) == 0:
        return {}
    return array_moments(matrix(frame, [*columns, target]), column_array(frame[key], "int64"))


def array_moments(values: Array, keys: Array) -> dict[int, Moments]:
    """The :class:`Moments` of the rows of ``values`` per distinct ``key`` (array API).

    One stable sort makes every key a contiguous block of rows: one centring and one syrk
    per key on a slice, no per-key gathers. The sorted copy is fresh, so the blocks may be
    centred in place.

    >>> m = array_moments(np.array([[1.0, 2], [3, 4], [5, 7]]), np.array([9, 8, 9]))
    >>> sorted(m), m[9].n, m[9].mean.tolist()
    ([8, 9], 2, [3.0, 4.5])
    """
    xp = array_namespace(values, keys)
    order = xp.argsort(keys, stable=True)
    keys = xp.take(keys, order)
    values = xp.take(values, order, axis=0)
    found = xp.unique_all(keys)
    uniq, starts = to_numpy(found.values), to_numpy(found.indices)
    rank = np.argsort(starts, kind="stable")  # unique_all need not return the keys in order
    uniq, starts = uniq[rank], starts[rank]
    bounds = [*starts.tolist(), int(values.shape[0])]
    return {
        int(k): Moments.from_array(values[bounds[i] : bounds[i + 1], ...], overwrite=True) for i, k in enumerate(uniq)
    }


@dataclass
class LinearFit:
    """A fitted linear predictor on the original scale, plus the scaler it was fitted with."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    lam: float = 0.0

    def predict_array(self, X: Array) -> Array:
        xp = array_namespace(X)
        return X @ xp.asarray(self.coef) + self.intercept


def standardised(m: Moments) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(G, c, mean_x, scale)``: ``Z'Z`` and ``Z'(y - ybar)`` of the standardised features."""
    p = m.mean.size - 1
    mean_x = m.mean[:p]
    scale = safe_scale(np.sqrt(np.maximum(np.diag(m.m2)[:p], 0.0) / m.n), mean_x)
    G = m.m2[:p, :p] / np.outer(scale, scale)
    c = m.m2[:p, p] / scale
    return G, c, mean_x, scale


def solve_ols(m: Moments) -> LinearFit:
    """Least squares with an intercept from moments (solved on the standardised scale).

    >>> rng = np.random.default_rng(1)
    >>> X = rng.normal(size=(50, 2)); y = 1 + X @ [2.0, -1.0]
    >>> fit = solve_ols(Moments.from_array(np.column_stack([X, y])))
    >>> np.round(fit.coef, 8).tolist(), round(fit.intercept, 8)
    ([2.0, -1.0], 1.0)
    """
    G, c, mean_x, scale = standardised(m)
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


def collect_moments(
    ddf: dd.DataFrame,
    columns: Sequence[str],
    target: str,
    *,
    key: str = "period",
    split_every: int = 4,
    progress: bool = False,
    label: str = "statistics",
    persisted: bool = False,
) -> dict[int, Moments]:
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
    cols = list(columns)
    # A persisted frame must not be optimised again: dask renames the optimised expression's
    # keys while its graph holds only the persisted ones ("missing dependency").
    parts = ddf.to_delayed(optimize_graph=not persisted)
    level = [delayed(partition_moments)(part, cols, target, key) for part in parts]
    if not level:
        return {}
    while len(level) > 1:
        level = [delayed(merge_moment_dicts)(*level[i : i + split_every]) for i in range(0, len(level), split_every)]
    with threadpool_limits(1, user_api="blas"):
        (result,) = compute(level[0], label=label, show=progress)
    return result
