"""The HAR benchmark: pooled OLS ``y ~ 1 + vol_1 + vol_5 + vol_22 + vol_63``.

:class:`HAR` fits on rows (NumPy or CuPy; least squares on centred data);
:meth:`HAR.from_moments` gives the same fit from the sufficient statistics of the
``stats`` engine without touching the rows again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsb_gpu.backend import to_numpy
from wsb_gpu.errors import WsbError
from wsb_gpu.models.ridge import LinearFit, Moments, array_module, solve_ols

HAR_COLUMNS = ("vol_1", "vol_5", "vol_22", "vol_63")


class HAR:
    """Pooled OLS with an intercept (scikit-learn estimator contract).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(100, 4)); y = 0.1 + X @ [0.4, 0.3, 0.2, 0.1]
    >>> m = HAR().fit(X, y)
    >>> np.round(m.coef_, 8).tolist(), round(m.intercept_, 8)
    ([0.4, 0.3, 0.2, 0.1], 0.1)
    """

    def __init__(self) -> None:
        pass

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def set_params(self, **params: Any) -> HAR:
        return self

    def fit(self, X: Any, y: Any) -> HAR:
        if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] <= X.shape[1]:
            msg = f"HAR.fit needs more rows than columns, got X {X.shape} and y {y.shape}; use more training years"
            raise WsbError(msg)
        xp = array_module(X)
        mx = X.mean(axis=0)
        my = y.mean()
        coef, *_ = xp.linalg.lstsq(X - mx, y - my, rcond=None)
        self.coef_ = np.asarray(to_numpy(coef), dtype=np.float64)
        self.intercept_ = float(to_numpy(my)) - float(to_numpy(mx) @ self.coef_)
        self.mean_ = np.asarray(to_numpy(mx), dtype=np.float64)
        self.scale_ = np.ones_like(self.coef_)
        return self

    def predict(self, X: Any) -> Any:
        xp = array_module(X)
        return X @ xp.asarray(self.coef_) + self.intercept_

    @classmethod
    def from_moments(cls, m: Moments) -> HAR:
        """The OLS fit from moments of ``[vol_1, vol_5, vol_22, vol_63, y]``."""
        fit = solve_ols(m)
        model = cls()
        model.coef_ = fit.coef
        model.intercept_ = fit.intercept
        model.mean_ = fit.mean
        model.scale_ = np.ones_like(fit.coef)
        return model

    def to_fit(self) -> LinearFit:
        return LinearFit(self.coef_, self.intercept_, self.mean_, self.scale_, 0.0)
