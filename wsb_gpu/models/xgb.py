"""Gradient-boosted trees with XGBoost, early-stopped on the last training year.

For a window with training years ``Y-k … Y-1`` the trees are grown on ``Y-k … Y-2`` and
the number of rounds is chosen by early stopping on year ``Y-1``: a validation set that
lies after the fitting rows in time, never a random subset. The booster at its best
iteration then predicts year ``Y``. (With a one-year window there is nothing to validate
on and all ``n_estimators`` rounds are used.)

On a Dask cluster with more than one worker the fit uses :mod:`xgboost.dask` with the
data left on the workers; otherwise the window is collected into the process and fitted
with :func:`xgboost.train`. The device (``cuda``/``cpu``) comes from the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wsb_gpu.backend import Backend, matrix
from wsb_gpu.errors import WsbError, missing_package
from wsb_gpu.models.base import Model, Window

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

    from wsb_gpu.backend import Array
    from wsb_gpu.signals.families import FeatureSet

XGB_INSTALL = "pip install 'wsb_gpu[cpu]' (xgboost-cpu) or 'wsb_gpu[gpu]' (xgboost with CUDA)"


def _xgboost() -> Any:
    try:
        import xgboost
        import xgboost.dask  # noqa: F401  (not loaded by `import xgboost`; used on multi-worker clusters)
    except ImportError as e:
        raise missing_package("xgboost", XGB_INSTALL, "the xgboost model") from e
    return xgboost


def booster_params(
    backend: Backend,
    *,
    max_depth: int,
    learning_rate: float,
    subsample: float,
    colsample_bytree: float,
    min_child_weight: float,
    seed: int,
    max_bin: int = 256,
    **_: Any,
) -> dict[str, Any]:
    """XGBoost training parameters from the ``train.xgboost`` settings.

    >>> booster_params(Backend("cpu"), max_depth=3, learning_rate=0.1, subsample=1.0,
    ...                colsample_bytree=1.0, min_child_weight=1.0, seed=0)["device"]
    'cpu'
    """
    return {
        "objective": "reg:squarederror",
        "tree_method": "hist",
        "device": backend.xgb_device,
        "max_depth": int(max_depth),
        "eta": float(learning_rate),
        "subsample": float(subsample),
        "colsample_bytree": float(colsample_bytree),
        "min_child_weight": float(min_child_weight),
        "max_bin": int(max_bin),
        "seed": int(seed),
        "eval_metric": "rmse",
    }


@dataclass
class XGBFit:
    """A trained booster and the number of rounds it predicts with."""

    booster: Any
    n_rounds: int
    n_fit: int
    n_valid: int

    def predict_array(self, X: Array) -> Any:
        """Predictions for a NumPy/CuPy float matrix (on the booster's device)."""
        return self.booster.inplace_predict(X, iteration_range=(0, self.n_rounds))


def _n_workers(client: Client | None) -> int:
    if client is None:
        return 0
    try:
        return len(client.scheduler_info().get("workers", {}))
    except Exception:
        return 0


def fit_window(
    ddf: dd.DataFrame,
    features: Sequence[str],
    target: str,
    train_years: Sequence[int],
    *,
    backend: Backend,
    client: Client | None = None,
    params: Mapping[str, Any],
    n_rows: int | None = None,
    rows: Callable[[Sequence[int], Sequence[str]], tuple[Any, Any]] | None = None,
) -> XGBFit:
    """Fit one window's booster.

    Parameters
    ----------
    ddf
        Dask frame of the sample with a ``year`` column, the ``features`` and ``target``.
    features, target
        Column names.
    train_years
        The window's training years in order; the last one is the validation year.
    params
        The ``train.xgboost`` settings by name (``n_estimators``, ``early_stopping_rounds``,
        ``distributed_min_rows`` and the booster parameters of :func:`booster_params`).
    n_rows
        Training rows of the window, when the caller knows them: a window smaller than
        ``distributed_min_rows`` is fitted in one process even on a multi-worker cluster,
        because the collective's start-up costs more than collecting it.
    rows
        ``rows(years, columns) -> (X float32, y)`` of the collected rows, when the caller
        keeps them (:meth:`Window.year_rows`: one collection per window for every set);
        None = collect here.
    """
    xgb = _xgboost()
    years = list(train_years)
    fit_years, valid_years = (years[:-1], years[-1:]) if len(years) > 1 else (years, [])
    bp = booster_params(backend, **params)
    rounds = int(params["n_estimators"])
    stop = int(params["early_stopping_rounds"]) if valid_years else None
    cols = list(features)

    fit_part = ddf[ddf["year"].isin(fit_years)]
    valid_part = ddf[ddf["year"].isin(valid_years)] if valid_years else None

    min_rows = int(params["distributed_min_rows"] or 0)
    if _n_workers(client) > 1 and (n_rows is None or n_rows >= min_rows):
        # Data stay on the workers: xgboost.dask builds the quantile sketches where the
        # partitions live and trains with its collective (NCCL on GPUs).
        dtrain = xgb.dask.DaskQuantileDMatrix(client, fit_part[cols].astype("float32"), fit_part[target])
        evals = []
        if valid_part is not None:
            dvalid = xgb.dask.DaskQuantileDMatrix(
                client, valid_part[cols].astype("float32"), valid_part[target], ref=dtrain
            )
            evals = [(dvalid, "valid")]
        out = xgb.dask.train(
            client, bp, dtrain, num_boost_round=rounds, evals=evals, early_stopping_rounds=stop, verbose_eval=False
        )
        booster = out["booster"]
        n_fit = n_valid = -1  # not counted here: the caller has the counts from its statistics
    else:
        X, y = rows(fit_years, cols) if rows is not None else _collect(fit_part, cols, target)
        if X.shape[0] == 0:
            msg = f"no training rows for XGBoost in years {fit_years}; use more training years"
            raise WsbError(msg)
        dtrain = xgb.QuantileDMatrix(X, label=y, max_bin=bp["max_bin"])
        evals = []
        n_valid = 0
        if valid_part is not None:
            Xv, yv = rows(valid_years, cols) if rows is not None else _collect(valid_part, cols, target)
            n_valid = int(Xv.shape[0])
            if n_valid:
                dvalid = xgb.QuantileDMatrix(Xv, label=yv, ref=dtrain, max_bin=bp["max_bin"])
                evals = [(dvalid, "valid")]
        booster = xgb.train(
            bp,
            dtrain,
            num_boost_round=rounds,
            evals=evals,
            early_stopping_rounds=stop if evals else None,
            verbose_eval=False,
        )
        n_fit = int(X.shape[0])
    best = getattr(booster, "best_iteration", None)
    n_rounds = int(best) + 1 if (evals and best is not None) else booster.num_boosted_rounds()
    return XGBFit(booster, n_rounds, int(n_fit), int(n_valid))


def _collect(part: dd.DataFrame, cols: Sequence[str], target: str) -> tuple[Any, Any]:
    frame = part[[*cols, target]].compute()
    return matrix(frame, cols).astype("float32"), matrix(frame, [target])[:, 0]


class XGBoostModel(Model):
    """Gradient-boosted trees on HAR + text, early-stopped on the window's last training year
    (see the module docstring).

    The hyperparameters are the ``train.xgboost`` settings under the same names
    (:func:`fit_window`, :func:`booster_params`); ``feature_set`` is the feature set (its
    columns after the HAR terms).
    """

    name = "xgboost"
    sections = ("xgboost",)

    def __init__(
        self,
        feature_set: FeatureSet | None = None,
        *,
        n_estimators: int,
        max_depth: int,
        learning_rate: float,
        subsample: float,
        colsample_bytree: float,
        min_child_weight: float,
        max_bin: int,
        early_stopping_rounds: int,
        distributed_min_rows: int,
        seed: int,
    ) -> None:
        super().__init__(feature_set)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.distributed_min_rows = distributed_min_rows
        self.seed = seed

    def fit(self, window: Window) -> XGBoostModel:
        self._start(window)
        S = window.sample
        self.fit_ = fit_window(
            window.learnable(window.data),
            self.columns_,
            S.target,
            window.train_years,
            backend=window.backend,
            client=window.client,
            params={k: getattr(self, k) for k in self.hyperparameters()},
            n_rows=window.n_train,
            rows=window.year_rows,
        )
        return self

    def predict_array(self, X: Array) -> Any:
        return self.fit_.predict_array(X)

    def info(self) -> dict[str, Any]:
        return {"n_rounds": self.fit_.n_rounds}
