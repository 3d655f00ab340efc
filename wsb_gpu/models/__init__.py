"""The model families of the training stage, behind one contract (:mod:`wsb_gpu.models.base`).

:data:`MODELS` maps each name that ``train.models`` accepts to its class, written as
``"module:Class"`` (as the stage table names its entry points), in the order the runs and
the report list them; :data:`SPIKE_CLASSIFIERS` does the same for the spike task
(``train.task: spike``). Reading the tables imports no model module, so validating the
settings (:mod:`wsb_gpu.config`) imports neither scikit-learn, XGBoost, Numba nor torch;
:func:`model_class` imports the one class asked for.

A forecast of a run is a model on a feature set; its key is ``har`` for the benchmark and
``<model>__<set>`` otherwise (``ridge__vader``), as in the predictions' ``yhat_<key>``
columns. How the report names and draws the models is :mod:`wsb_gpu.report.names`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from wsb_gpu.errors import WsbError

if TYPE_CHECKING:
    from wsb_gpu.models.base import Model

MODELS: dict[str, str] = {
    "har": "wsb_gpu.models.har:HARModel",
    "log_har": "wsb_gpu.models.har:LogHARModel",
    "har_fe": "wsb_gpu.models.har:HARFEModel",
    "ridge": "wsb_gpu.models.ridge:RidgeModel",
    "enet": "wsb_gpu.models.enet:EnetModel",
    "xgboost": "wsb_gpu.models.xgb:XGBoostModel",
    "lstm": "wsb_gpu.models.sequence:LSTMModel",
    "cnn": "wsb_gpu.models.sequence:CNNModel",
    "cnn_lstm": "wsb_gpu.models.sequence:CNNLSTMModel",
}
"""Every model family, ``name -> "module:Class"``, in the order the report lists them; HAR,
the benchmark, first. ``train.models`` accepts exactly these names."""

SPIKE_CLASSIFIERS: dict[str, str] = {
    "har": "wsb_gpu.models.classify:LogitHAR",
    "ridge": "wsb_gpu.models.classify:PenalisedLogit",
    "xgboost": "wsb_gpu.models.classify:XGBoostSpike",
}
"""The spike form of each ``train.models`` name that has one, ``name -> "module:Class"``."""

REGISTRIES: dict[str, dict[str, str]] = {"regression": MODELS, "spike": SPIKE_CLASSIFIERS}
"""The registry of each task (``train.task``)."""


def model_class(name: str, task: str = "regression") -> type[Model]:
    """The class of model ``name`` in ``task`` (``regression`` or ``spike``), imported on
    first use.

    >>> model_class("ridge").__name__, model_class("ridge", "spike").__name__
    ('RidgeModel', 'PenalisedLogit')
    """
    table = REGISTRIES[task]
    if name not in table:
        msg = f"unknown model '{name}' for the {task} task; choose from {', '.join(table)}"
        raise WsbError(msg)
    module, _, cls = table[name].partition(":")
    found: type[Model] = getattr(importlib.import_module(module), cls)
    return found


def split_key(key: str) -> tuple[str, str | None]:
    """``(model, feature set)`` of a forecast key (set None for a bare model name).

    >>> split_key("ridge__vader"), split_key("har")
    (('ridge', 'vader'), ('har', None))
    """
    model, sep, fs = key.partition("__")
    return (model, fs) if sep else (key, None)


def ordered(names: list[str]) -> list[str]:
    """Model names or forecast keys in the registry's order of their models (the given order
    within one model), unknown ones last.

    >>> ordered(["xgboost", "lasso", "har", "ridge__b", "ridge__a"])
    ['har', 'ridge__b', 'ridge__a', 'xgboost', 'lasso']
    """
    rank = {m: i for i, m in enumerate(MODELS)}
    known = [n for n in names if split_key(n)[0] in rank]
    unknown = [n for n in names if split_key(n)[0] not in rank]
    return sorted(known, key=lambda n: rank[split_key(n)[0]]) + unknown
