"""Building a model of a run from its name: the one place where settings meet a model class.

A model class declares where its hyperparameters come from (:attr:`Model.sections
<wsb_gpu.models.base.Model.sections>`: sections of ``train``; :attr:`Model.settings
<wsb_gpu.models.base.Model.settings>`: top-level ``train`` keys) and takes them as
keyword-only ``__init__`` parameters (:meth:`Model.hyperparameters
<wsb_gpu.models.base.Model.hyperparameters>`). :func:`make_model` passes each class those
values of :class:`~wsb_gpu.config.TrainParams` and nothing else, whatever the model: no
model is named here.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from wsb_gpu.errors import WsbError
from wsb_gpu.models import model_class as model_class  # the registry's loader, for the tasks

if TYPE_CHECKING:
    from wsb_gpu.config import TrainParams
    from wsb_gpu.models.base import Model
    from wsb_gpu.signals.families import FeatureSet


def declared_settings(cls: type[Model], params: TrainParams) -> dict[str, Any]:
    """Every value the settings declared by ``cls`` hold: its sections' keys (a later
    section's value where two share a key), then its top-level keys.

    >>> from wsb_gpu.config import load_settings
    >>> p = load_settings().params("train")
    >>> sorted(declared_settings(model_class("log_har"), p)), declared_settings(model_class("har"), p)
    (['forecast_floor'], {})
    """
    values: dict[str, Any] = {}
    for section in cls.sections:
        block = getattr(params, section, None)
        if block is None or not hasattr(type(block), "model_fields"):
            msg = f"{cls.__name__}.sections names '{section}', which is not a section of train; fix the class"
            raise WsbError(msg)
        values.update({k: getattr(block, k) for k in type(block).model_fields})
    for key in cls.settings:
        if key not in type(params).model_fields:
            msg = f"{cls.__name__}.settings names '{key}', which is not a key of train; fix the class"
            raise WsbError(msg)
        values[key] = getattr(params, key)
    return values


def hyperparameters_of(cls: type[Model], params: TrainParams) -> dict[str, Any]:
    """The keyword arguments of ``cls``: of its declared settings, those that are its
    hyperparameters. A hyperparameter without a default that no declared setting holds is
    an error naming both."""
    values = declared_settings(cls, params)
    init = inspect.signature(cls.__init__).parameters
    missing = [k for k in cls.hyperparameters() if k not in values and init[k].default is inspect.Parameter.empty]
    if missing:
        where = [f"train.{s}" for s in cls.sections] + [f"train.{k}" for k in cls.settings]
        msg = (
            f"{cls.__name__} takes {', '.join(missing)}, which none of its declared settings "
            f"({', '.join(where) or 'none'}) holds; declare the section or key in {cls.__name__}.sections / .settings"
        )
        raise WsbError(msg)
    return {k: values[k] for k in cls.hyperparameters() if k in values}


def make_model(name: str, params: TrainParams, feature_set: FeatureSet | None, task: str = "regression") -> Model:
    """A new, unfitted model ``name`` of ``task`` on ``feature_set`` with its settings.

    >>> from wsb_gpu.config import load_settings
    >>> m = make_model("ridge", load_settings().params("train"), None)
    >>> sorted(m.get_params())
    ['cv_folds', 'engine', 'feature_set', 'lambda_max', 'lambda_min', 'n_lambdas', 'penalize_har']
    """
    cls = model_class(name, task)
    return cls(feature_set, **hyperparameters_of(cls, params))
