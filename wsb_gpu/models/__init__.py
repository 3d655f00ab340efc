"""The model families of the training stage, behind one contract (:mod:`wsb_gpu.models.base`).

:data:`MODELS` maps each name that ``train.models`` accepts to its class; the report and the
demo take their labels and colours from the same classes.
"""

from __future__ import annotations

from wsb_gpu.models.base import Model
from wsb_gpu.models.har import HARModel
from wsb_gpu.models.ridge import RidgeModel
from wsb_gpu.models.xgb import XGBoostModel

MODELS: dict[str, type[Model]] = {m.name: m for m in (HARModel, RidgeModel, XGBoostModel)}
"""Every model family, in the order the report lists them; HAR, the benchmark, first."""


def label(name: str) -> str:
    """The report's name of a model (the name itself for one this version does not know).

    >>> label("ridge"), label("lasso")
    ('Ridge (HAR + text)', 'lasso')
    """
    return MODELS[name].label if name in MODELS else name


def short_label(name: str) -> str:
    """A short name for tables (``Ridge``)."""
    return MODELS[name].short if name in MODELS else name


def color(name: str) -> str | None:
    """The colour a model is drawn in."""
    return MODELS[name].color if name in MODELS else None


def ordered(names: list[str]) -> list[str]:
    """Model names in the registry's order, unknown ones last.

    >>> ordered(["xgboost", "lasso", "har"])
    ['har', 'xgboost', 'lasso']
    """
    return [m for m in MODELS if m in names] + [m for m in names if m not in MODELS]
