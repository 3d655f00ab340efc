"""Building a model of a run from its name: the one place where settings meet a model class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsb_gpu.models import MODELS
from wsb_gpu.models.classify import SPIKE_CLASSIFIERS

if TYPE_CHECKING:
    from wsb_gpu.config import TrainParams
    from wsb_gpu.models.base import Model
    from wsb_gpu.signals.families import FeatureSet


def model_class(name: str, task: str = "regression") -> type[Model]:
    """The class of model ``name`` in ``task`` (``regression`` or ``spike``)."""
    return (SPIKE_CLASSIFIERS if task == "spike" else MODELS)[name]


def make_model(name: str, params: TrainParams, feature_set: FeatureSet | None, task: str = "regression") -> Model:
    """A new, unfitted model ``name`` of ``task`` on ``feature_set`` with its settings."""
    return model_class(name, task)(params, feature_set)
