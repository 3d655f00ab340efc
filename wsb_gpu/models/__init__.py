"""The model families of the training stage, behind one contract (:mod:`wsb_gpu.models.base`).

:data:`MODELS` maps each name that ``train.models`` accepts to its class; the report and the
demo take their labels and colours from the same classes. A forecast of a run is a model on
a feature set; its key is ``har`` for the benchmark and ``<model>__<set>`` otherwise
(``ridge__vader``), as in the predictions' ``yhat_<key>`` columns.
"""

from __future__ import annotations

from wsb_gpu.models.base import Model
from wsb_gpu.models.enet import EnetModel
from wsb_gpu.models.har import HARModel, LogHARModel
from wsb_gpu.models.ridge import RidgeModel
from wsb_gpu.models.sequence import CNNLSTMModel, CNNModel, LSTMModel
from wsb_gpu.models.xgb import XGBoostModel

MODELS: dict[str, type[Model]] = {
    m.name: m for m in (HARModel, LogHARModel, RidgeModel, EnetModel, XGBoostModel, LSTMModel, CNNModel, CNNLSTMModel)
}
"""Every model family, in the order the report lists them; HAR, the benchmark, first."""


def split_key(key: str) -> tuple[str, str | None]:
    """``(model, feature set)`` of a forecast key (set None for a bare model name).

    >>> split_key("ridge__vader"), split_key("har")
    (('ridge', 'vader'), ('har', None))
    """
    model, sep, fs = key.partition("__")
    return (model, fs) if sep else (key, None)


def label(name: str) -> str:
    """The report's name of a model or forecast key (the name itself for one this version
    does not know).

    >>> label("ridge"), label("ridge__vader"), label("lasso")
    ('Ridge (HAR + text)', 'Ridge · vader', 'lasso')
    """
    model, fs = split_key(name)
    if model not in MODELS:
        return name
    return MODELS[model].label if fs is None else f"{MODELS[model].short} · {fs}"


def short_label(name: str) -> str:
    """A short name for tables (``Ridge``, ``Ridge · vader``)."""
    model, fs = split_key(name)
    if model not in MODELS:
        return name
    return MODELS[model].short if fs is None else f"{MODELS[model].short} · {fs}"


def color(name: str) -> str | None:
    """The colour a model (or a forecast of it) is drawn in."""
    model, _ = split_key(name)
    return MODELS[model].color if model in MODELS else None


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
