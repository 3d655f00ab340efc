"""Input checks of the row-level estimators (:class:`~wsb_gpu.models.har.HAR`,
:class:`~wsb_gpu.models.ridge.StandardizedRidge`, the spike classifiers …), the
scikit-learn way.

Host input (NumPy arrays, lists, pandas) goes through scikit-learn's ``validate_data``:
2-D, at least one row and one column, finite (unless the estimator allows NaN), the number
of columns recorded at ``fit`` (``n_features_in_``) and checked at ``predict``. Arrays of
another array-API library (CuPy on the GPU backend) are checked for their shape only and
stay where they are: ``validate_data`` would copy them to the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from wsb_gpu.backend import to_numpy


def on_device(X: Any) -> bool:
    """Whether ``X`` is an array of an array-API library other than NumPy (CuPy …).

    >>> on_device(np.zeros(2)), on_device([1.0])
    (False, False)
    """
    return hasattr(X, "__array_namespace__") and not isinstance(X, np.ndarray)


_NO_Y = "no_validation"  # scikit-learn's marker of "no y to check"


def checked(est: Any, X: Any, y: Any = _NO_Y, *, reset: bool, **check: Any) -> Any:
    """``X`` (or ``(X, y)`` when ``y`` is given, as at ``fit``: None is refused) checked for
    ``est``; ``reset=True`` at ``fit`` records ``n_features_in_``, ``reset=False`` checks it
    (the estimator must be fitted)."""
    if not reset:
        check_is_fitted(est)
    if not on_device(X):
        if isinstance(y, str) and y == _NO_Y:
            check.pop("y_numeric", None)
            return validate_data(est, X, reset=reset, **check)
        return validate_data(est, X, y, reset=reset, **check)
    if X.ndim != 2:
        msg = f"{type(est).__name__} needs a 2-D X, got shape {tuple(X.shape)}"
        raise ValueError(msg)
    n_features = int(X.shape[1])
    if reset:
        est.n_features_in_ = n_features
    elif n_features != est.n_features_in_:
        msg = (
            f"X has {n_features} features, but {type(est).__name__} is expecting {est.n_features_in_} features as input"
        )
        raise ValueError(msg)
    if isinstance(y, str) and y == _NO_Y:
        return X
    if y is None:
        msg = f"This {type(est).__name__} estimator requires y to be passed, but the target y is None."
        raise ValueError(msg)
    if y.ndim != 1 or int(y.shape[0]) != int(X.shape[0]):
        msg = f"{type(est).__name__} needs y of shape ({X.shape[0]},), got {tuple(y.shape)}"
        raise ValueError(msg)
    return X, y


def binary_classes(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(classes_, codes)`` of the labels ``y`` of a binary classifier: the sorted distinct
    labels (one or two) and each row's position among them (on the host).

    >>> binary_classes(np.array(["b", "a", "b"]))
    (array(['a', 'b'], dtype='<U1'), array([1, 0, 1]))
    """
    labels = to_numpy(y)
    check_classification_targets(labels)  # "Unknown label type" for a continuous y
    kind = type_of_target(labels, input_name="y", raise_unknown=True)
    if kind != "binary":
        msg = f"Only binary classification is supported. The type of the target is {kind}."
        raise ValueError(msg)
    classes, codes = np.unique(labels, return_inverse=True)
    return classes, codes.reshape(-1)
