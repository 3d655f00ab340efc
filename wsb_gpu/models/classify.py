"""The volatility-spike task: classifiers and the metrics of a rare-event forecast.

A stock-day is a **spike** when the next day's volatility jumps above a multiple of the
month's: ``y_1 > k * vol_22`` (``train.spike.k``; with ``vol_22`` the root of 22 squared
returns, the default ``k = 0.55`` is a move of 2.6 daily standard deviations, ~5 % of
stock-days once returns have fat tails). The classifiers
mirror the regression families:

``har``
    Logistic regression on the four standardised HAR terms (practically unpenalised,
    ``C = 1e6``): the benchmark.
``ridge``
    L2-penalised logistic regression on the HAR terms and a feature set's columns
    (standardised; ``train.spike.C``), the linear model of seed 002's comparison. (Seed
    002 tuned an RBF SVM; its kernel matrix is quadratic in the rows, hours on a panel of
    millions of stock-days, so the linear model stands in for it.)
``xgboost``
    Gradient-boosted trees (``binary:logistic``) with seed 002's settings: 200 rounds
    (``train.spike.n_estimators``), depth, learning rate and subsampling from
    ``train.xgboost``, ``scale_pos_weight = negatives / positives`` of the fitting rows,
    early stopping on the window's last training year.

Metrics (NumPy, written out here and tested against scikit-learn): ROC AUC (Mann–Whitney
with average ranks for ties), average precision (scikit-learn's step-wise definition), the
Brier score, the log loss, and accuracy, precision, recall and F1 at a threshold chosen on
the training window (the F1-maximising one: on the training rows for the logistic models,
on the held-out last training year for XGBoost, whose training rows it has memorised).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from wsb_gpu.backend import Backend, array_namespace, to_numpy
from wsb_gpu.errors import WsbError
from wsb_gpu.models import SPIKE_CLASSIFIERS
from wsb_gpu.models.base import Model, Window
from wsb_gpu.models.moments import safe_scale
from wsb_gpu.models.validation import binary_classes, checked

if TYPE_CHECKING:
    from wsb_gpu.backend import Array
    from wsb_gpu.signals.families import FeatureSet

_HAR_C = 1e6  # the benchmark logistic model: practically unpenalised


# --- metrics ---------------------------------------------------------------------------


def _sorted_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, highest score first, and the scores."""
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order].astype(np.float64), p[order]
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), ys.size - 1]
    tp = np.cumsum(ys)[last]
    fp = (last + 1) - tp
    return tp, fp, ps[last]


def roc_auc(y: Any, p: Any) -> float:
    """Area under the ROC curve: the Mann–Whitney statistic with average ranks for ties
    (NaN when ``y`` has one class).

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    from scipy.stats import rankdata

    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=np.float64)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(y: Any, p: Any) -> float:
    """Average precision: ``sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds
    (scikit-learn's definition; NaN without positives).

    >>> average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.8333333333333333
    """
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=np.float64)
    n1 = int(y.sum())
    if n1 == 0:
        return float("nan")
    tp, fp, _ = _sorted_counts(y, p)
    precision = tp / (tp + fp)
    recall = tp / n1
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def delong(y: Any, p_a: Any, p_b: Any) -> tuple[float, float]:
    """DeLong, DeLong and Clarke-Pearson's (1988) test of two correlated ROC AUCs on the
    same rows: ``(z, p)`` with ``z = (AUC_a - AUC_b) / se`` and the one-sided ``p`` for
    H1 "a has the larger AUC" (NaN with one class or a zero variance). The covariance of
    the two AUCs comes from their placement values (Sun and Xu's 2014 midrank algorithm,
    O(n log n)). It treats the rows as independent; stock-days of one date are not, so
    read the p-value as indicative.

    >>> y = np.array([0, 0, 0, 1, 1, 1]); a = np.array([.1, .2, .3, .7, .8, .9])
    >>> b = np.array([.1, .6, .3, .2, .8, .4])
    >>> [round(v, 4) for v in delong(y, a, b)]
    [1.2247, 0.1103]
    """
    from scipy.stats import norm, rankdata

    y = np.asarray(y, dtype=bool)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return float("nan"), float("nan")
    aucs, v01, v10 = [], [], []
    for p in (np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)):
        pos, neg = p[y], p[~y]
        tz = rankdata(np.r_[pos, neg])
        tx, ty = rankdata(pos), rankdata(neg)
        aucs.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v01.append((tz[:m] - tx) / n)  # per positive: the share of negatives scored below it
        v10.append(1.0 - (tz[m:] - ty) / m)  # per negative: the share of positives scored above it
    S = np.cov(np.vstack(v01)) / m + np.cov(np.vstack(v10)) / n
    var = S[0, 0] + S[1, 1] - 2 * S[0, 1]
    if not var > 0:
        return float("nan"), float("nan")
    z = (aucs[0] - aucs[1]) / math.sqrt(var)
    return float(z), float(norm.sf(z))


def brier(y: Any, p: Any) -> float:
    """Mean squared error of the probabilities.

    >>> brier(np.array([0, 1]), np.array([0.2, 0.6]))
    0.1
    """
    d = np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return float(round(np.mean(d * d), 15))


def log_loss(y: Any, p: Any, eps: float = float(np.finfo(np.float64).eps)) -> float:
    """Mean negative log-likelihood of the labels (probabilities clipped to [eps, 1 - eps],
    eps the float64 machine epsilon, as scikit-learn does)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def best_f1_threshold(y: Any, p: Any) -> float:
    """The score threshold (predict a spike when ``p >= threshold``) with the largest F1
    on ``(y, p)``; 0.5 when ``y`` has no positives.

    >>> best_f1_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.35
    """
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=np.float64)
    n1 = int(y.sum())
    if n1 == 0 or y.size == 0:
        return 0.5
    tp, fp, scores = _sorted_counts(y, p)
    f1 = 2 * tp / (2 * tp + fp + (n1 - tp))
    return float(scores[int(np.argmax(f1))])


def threshold_counts(y: Any, p: Any, threshold: float) -> dict[str, int]:
    """True/false positives and negatives when ``p >= threshold`` predicts a spike."""
    y, hit = np.asarray(y, dtype=bool), np.asarray(p, dtype=np.float64) >= threshold
    return {
        "tp": int(np.sum(hit & y)),
        "fp": int(np.sum(hit & ~y)),
        "fn": int(np.sum(~hit & y)),
        "tn": int(np.sum(~hit & ~y)),
    }


def rates(c: dict[str, int]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 from :func:`threshold_counts` (NaN where undefined).

    >>> rates({"tp": 2, "fp": 1, "fn": 2, "tn": 5})
    {'accuracy': 0.7, 'precision': 0.6666666666666666, 'recall': 0.5, 'f1': 0.5714285714285714}
    """
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    n = tp + fp + fn + tn

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {
        "accuracy": div(tp + tn, n),
        "precision": div(tp, tp + fp),
        "recall": div(tp, tp + fn),
        "f1": div(2 * tp, 2 * tp + fp + fn),
    }


# --- classifiers -----------------------------------------------------------------------

_FLOATS = (np.float64, np.float32)  # other numeric input becomes float64


def _check_rows(X: Array) -> None:
    if int(X.shape[0]) == 0:
        msg = "no training rows for a spike classifier in this window's fitting years; use more training years"
        raise WsbError(msg)


def _binary_tags(tags: Any) -> Any:
    tags.classifier_tags.multi_class = False
    return tags


class LogitClassifier(ClassifierMixin, BaseEstimator):
    """Binary logistic regression on standardised columns (a scikit-learn classifier; the
    logistic regression itself is scikit-learn's or cuML's, the scaler from the fitting
    rows). Labels of one class give that class as the forecast.

    Parameters
    ----------
    C
        The inverse L2 penalty of the standardised coefficients.
    backend
        Where to fit; None = CPU.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = np.where(X[:, 0] + 0.1 * rng.normal(size=200) > 0, "up", "down")
    >>> clf = LogitClassifier(C=10.0).fit(X, y)
    >>> clf.classes_.tolist(), float(clf.score(X, y)) > 0.9
    (['down', 'up'], True)
    """

    def __init__(self, C: float = 1.0, backend: Backend | None = None) -> None:
        self.C = C
        self.backend = backend

    def __sklearn_tags__(self) -> Any:
        return _binary_tags(super().__sklearn_tags__())

    def fit(self, X: Array, y: Any) -> LogitClassifier:
        X, y = checked(self, X, y, reset=True, dtype=_FLOATS)
        self.classes_, codes = binary_classes(y)
        xp = array_namespace(X)
        mean = xp.mean(X, axis=0)
        self.mean_ = mean
        self.scale_ = xp.asarray(safe_scale(to_numpy(xp.std(X, axis=0)), to_numpy(mean)))
        self.est_ = None
        if self.classes_.size == 2:
            est = (self.backend or Backend("cpu")).logistic_estimator(self.C)
            self.est_ = est.fit((X - mean) / self.scale_, xp.asarray(codes.astype(np.float64)))
        return self

    def predict_proba(self, X: Array) -> np.ndarray:
        """The probability of each class (``classes_``) for each row, on the host."""
        X = checked(self, X, reset=False, dtype=_FLOATS)
        if self.est_ is None:
            return np.ones((int(X.shape[0]), 1))
        proba = self.est_.predict_proba((X - self.mean_) / self.scale_)
        return np.asarray(to_numpy(proba), dtype=np.float64)

    def predict(self, X: Array) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    @property
    def coef_standardised(self) -> list[float] | None:
        """The coefficients of the standardised columns (None with one class)."""
        if self.est_ is None:
            return None
        coef: list[float] = np.asarray(to_numpy(self.est_.coef_), dtype=np.float64).ravel().tolist()
        return coef


class XGBClassifier(ClassifierMixin, BaseEstimator):
    """Boosted trees for a binary label (``binary:logistic``; a scikit-learn classifier).

    ``scale_pos_weight`` is ``negatives / positives`` of the fitting rows; given validation
    rows, the rounds are early-stopped on them. NaN is a missing value. Labels of one class
    give that class as the forecast (no trees are grown).

    Parameters
    ----------
    n_estimators
        Boosting rounds (at most, with early stopping).
    max_depth, learning_rate, subsample, colsample_bytree, min_child_weight, max_bin, seed
        The booster parameters (:func:`~wsb_gpu.models.xgb.booster_params`).
    early_stopping_rounds
        Rounds without improvement of the validation log loss before stopping (None: never).
    backend
        Where to fit (the XGBoost device); None = CPU.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        max_depth: int = 6,
        learning_rate: float = 0.3,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        min_child_weight: float = 1.0,
        max_bin: int = 256,
        seed: int = 0,
        early_stopping_rounds: int | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.max_bin = max_bin
        self.seed = seed
        self.early_stopping_rounds = early_stopping_rounds
        self.backend = backend

    def __sklearn_tags__(self) -> Any:
        tags = _binary_tags(super().__sklearn_tags__())
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X: Array, y: Any, X_valid: Array | None = None, y_valid: Any = None) -> XGBClassifier:
        """Grow the trees on ``(X, y)``, early-stopped on ``(X_valid, y_valid)`` when given."""
        from wsb_gpu.models.xgb import _xgboost, booster_params

        X, y = checked(self, X, y, reset=True, dtype=_FLOATS, ensure_all_finite="allow-nan")
        self.classes_, codes = binary_classes(y)
        self.booster_, self.n_rounds_, self.scale_pos_weight_ = None, 0, float("nan")
        if self.classes_.size < 2:
            return self
        xgb = _xgboost()
        xp = array_namespace(X)
        pos = int(codes.sum())
        bp = booster_params(
            self.backend or Backend("cpu"),
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight,
            max_bin=self.max_bin,
            seed=self.seed,
        )
        bp.update(
            objective="binary:logistic",
            eval_metric="logloss",
            scale_pos_weight=(codes.size - pos) / pos if pos else 1.0,
        )
        dtrain = xgb.QuantileDMatrix(X, label=xp.asarray(codes.astype(np.float32)), max_bin=bp["max_bin"])
        evals = []
        if X_valid is not None and y_valid is not None and int(X_valid.shape[0]):
            Xv = checked(self, X_valid, reset=False, dtype=_FLOATS, ensure_all_finite="allow-nan")
            codes_v = np.searchsorted(self.classes_, to_numpy(y_valid)).astype(np.float32)
            evals = [(xgb.QuantileDMatrix(Xv, label=xp.asarray(codes_v), ref=dtrain, max_bin=bp["max_bin"]), "valid")]
        stop = self.early_stopping_rounds
        self.booster_ = xgb.train(
            bp,
            dtrain,
            num_boost_round=int(self.n_estimators),
            evals=evals,
            early_stopping_rounds=int(stop) if (evals and stop is not None) else None,
            verbose_eval=False,
        )
        best = getattr(self.booster_, "best_iteration", None)
        self.n_rounds_ = int(best) + 1 if (evals and best is not None) else self.booster_.num_boosted_rounds()
        self.scale_pos_weight_ = float(bp["scale_pos_weight"])
        return self

    def predict_proba(self, X: Array) -> np.ndarray:
        """The probability of each class (``classes_``) for each row, on the host."""
        X = checked(self, X, reset=False, dtype=_FLOATS, ensure_all_finite="allow-nan")
        if self.booster_ is None:
            return np.ones((int(X.shape[0]), 1))
        p = np.asarray(to_numpy(self.booster_.inplace_predict(X, iteration_range=(0, self.n_rounds_))), np.float64)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Array) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def positive_proba(est: Any, X: Array) -> np.ndarray:
    """``P(label 1)`` of each row from a fitted binary classifier of 0/1 labels: the
    ``predict_proba`` column of class 1 (0 when the fitting rows had no 1).

    >>> clf = LogitClassifier().fit(np.array([[0.0], [1.0], [2.0]]), np.zeros(3))
    >>> positive_proba(clf, np.array([[5.0]])).tolist()
    [0.0]
    """
    proba = est.predict_proba(X)
    classes = np.asarray(to_numpy(est.classes_)).tolist()
    return proba[:, classes.index(1)] if 1 in classes else np.zeros(int(proba.shape[0]))


def spike_labels(y: Any, vol_22: Any, k: float) -> Any:
    """The spike label ``y > k * vol_22`` as float32 0/1 (NumPy or CuPy, as given).

    >>> spike_labels(np.array([1.0, 3.0]), np.array([2.0, 2.0]), 1.0).tolist()
    [0.0, 1.0]
    """
    xp = array_namespace(y)
    return xp.astype(y > k * vol_22, xp.float32)


class SpikeClassifier(Model):
    """Base of the spike classifiers: :meth:`fit` learns ``P(spike)`` from a window's training
    years and picks the F1-maximising threshold; :meth:`predict_proba` scores rows of
    :meth:`columns`. The label of a row is :func:`spike_labels` with ``k``
    (``train.spike.k``).

    The hyperparameters come from ``train.spike`` (``k``; ``C`` for the penalised logistic
    model), XGBoost's also from ``train.xgboost`` (its rounds are ``train.spike.n_estimators``).
    """

    sections: ClassVar[tuple[str, ...]] = ("spike",)

    def __init__(self, feature_set: FeatureSet | None = None, *, k: float) -> None:
        super().__init__(feature_set)
        self.k = k

    def _labels(self, X: Array, y: Array) -> Array:
        return spike_labels(y, X[:, self.columns_.index("vol_22")], float(self.k))

    @abstractmethod
    def predict_proba(self, X: Array) -> np.ndarray:
        """``P(spike)`` of each row of a float64 matrix of :meth:`columns` (a NumPy array)."""

    def predict_array(self, X: Array) -> Any:
        return self.predict_proba(X)


class _Logit(SpikeClassifier):
    """Logistic regression on the window's training rows (standardised columns)."""

    @abstractmethod
    def penalty(self) -> float:
        """The inverse penalty ``C``."""

    def fit(self, window: Window) -> _Logit:
        self._start(window)
        X, y, _ = window.rows(self.columns_)
        _check_rows(X)
        label = self._labels(X, y)
        self.est_ = LogitClassifier(self.penalty(), window.backend).fit(X, label)
        self.threshold_ = best_f1_threshold(to_numpy(label) > 0.5, positive_proba(self.est_, X))
        self.train_rate_ = float(to_numpy(label).astype(bool).mean())
        self.n_train_ = int(X.shape[0])
        return self

    def predict_proba(self, X: Array) -> np.ndarray:
        return positive_proba(self.est_, X)

    def info(self) -> dict[str, Any]:
        est = self.est_
        return {
            "threshold": self.threshold_,
            "C": est.C,
            "coef_standardised": est.coef_standardised,
            "train_rate": self.train_rate_,
        }


class LogitHAR(_Logit):
    """The benchmark: logistic regression on the HAR terms, practically unpenalised."""

    name = "har"
    uses_feature_sets = False

    def columns(self, window: Window) -> list[str]:
        return list(window.sample.har_columns)

    def penalty(self) -> float:
        return _HAR_C


class PenalisedLogit(_Logit):
    """L2-penalised logistic regression on the HAR terms and a feature set's columns."""

    name = "ridge"

    def __init__(self, feature_set: FeatureSet | None = None, *, k: float, C: float) -> None:
        super().__init__(feature_set, k=k)
        self.C = C

    def penalty(self) -> float:
        return float(self.C)


class XGBoostSpike(SpikeClassifier):
    """Boosted trees for the spike label, early-stopped on the window's last training year,
    whose rows also set the threshold (the trees have memorised their fitting rows)."""

    name = "xgboost"
    sections = ("xgboost", "spike")  # the rounds: train.spike.n_estimators

    def __init__(
        self,
        feature_set: FeatureSet | None = None,
        *,
        k: float,
        n_estimators: int,
        max_depth: int,
        learning_rate: float,
        subsample: float,
        colsample_bytree: float,
        min_child_weight: float,
        max_bin: int,
        early_stopping_rounds: int,
        seed: int,
    ) -> None:
        super().__init__(feature_set, k=k)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed

    def fit(self, window: Window) -> XGBoostSpike:
        self._start(window)
        years = list(window.train_years)
        fit_years, valid_years = (years[:-1], years[-1:]) if len(years) > 1 else (years, [])
        X, y = window.year_rows(fit_years, self.columns_)
        _check_rows(X)
        label = self._labels(X, y)
        booster = {k: getattr(self, k) for k in self.hyperparameters() if k != "k"}
        est = XGBClassifier(**booster, backend=window.backend)
        Xv, yv = window.year_rows(valid_years, self.columns_) if valid_years else (X[:0], y[:0])
        if int(Xv.shape[0]):
            label_v = self._labels(Xv, yv)
            self.est_ = est.fit(X, label, Xv, label_v)
            self.threshold_ = best_f1_threshold(to_numpy(label_v) > 0.5, positive_proba(self.est_, Xv))
            self.n_train_ = int(X.shape[0])
            return self
        if valid_years:  # no rows in the last training year: fit on every training year
            X, y = window.year_rows(years, self.columns_)
            label = self._labels(X, y)
        self.est_ = est.fit(X, label)
        self.threshold_ = best_f1_threshold(to_numpy(label) > 0.5, positive_proba(self.est_, X))
        self.n_train_ = int(X.shape[0])
        return self

    def predict_proba(self, X: Array) -> np.ndarray:
        xp = array_namespace(X)
        return positive_proba(self.est_, xp.astype(X, xp.float32))

    def info(self) -> dict[str, Any]:
        est = self.est_
        return {"threshold": self.threshold_, "n_rounds": est.n_rounds_, "scale_pos_weight": est.scale_pos_weight_}


SPIKE_MODELS = tuple(SPIKE_CLASSIFIERS)
"""The models that have a spike form (the names of :data:`wsb_gpu.models.SPIKE_CLASSIFIERS`)."""


def spike_rate_note(k: float) -> str:
    """What ``k`` means in daily standard deviations (``vol_22`` sums 22 squared returns).

    >>> spike_rate_note(0.55)
    'y_1 > 0.55 * vol_22 (a move of about 2.58 daily standard deviations of the last 22 days)'
    """
    return (
        f"y_1 > {k:g} * vol_22 (a move of about {k * math.sqrt(22):.2f} daily standard deviations of the last 22 days)"
    )
