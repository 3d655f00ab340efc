"""What a run fits: one entry per (model, feature set)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsb_gpu.models import ordered
from wsb_gpu.training.build import make_model, model_class

if TYPE_CHECKING:
    from wsb_gpu.config import TrainParams
    from wsb_gpu.models.base import Model
    from wsb_gpu.signals.families import FeatureSet


@dataclass(frozen=True)
class Entry:
    """One forecast of the run: a model on a feature set (HAR: on its own terms)."""

    model: str
    feature_set: FeatureSet | None
    task: str = "regression"

    @property
    def set_name(self) -> str:
        return self.feature_set.name if self.feature_set is not None else "har"

    @property
    def key(self) -> str:
        """Its name in the predictions' ``yhat_<key>`` columns: ``har``, ``ridge__text`` …"""
        return self.model if self.feature_set is None else f"{self.model}__{self.feature_set.name}"

    def make(self, params: TrainParams) -> Model:
        return make_model(self.model, params, self.feature_set, self.task)


def model_names(models: Sequence[str]) -> list[str]:
    """The models to fit, in the registry's order; HAR, the benchmark of the Diebold–Mariano
    test, always first.

    >>> model_names(["xgboost", "ridge"])
    ['har', 'ridge', 'xgboost']
    """
    return ordered(["har", *[m for m in models if m != "har"]])


def entries_of(
    models: Sequence[str], sets: Sequence[FeatureSet], sequence_set: str | None = None, task: str = "regression"
) -> list[Entry]:
    """HAR once, the other models without feature sets (log-HAR) once, the sequence models
    on the set named ``sequence_set`` (else on the first set), every other model on every set.

    >>> from wsb_gpu.signals.families import FeatureSet
    >>> fs = [FeatureSet("har", (), ()), FeatureSet("vader", ("vader",), ("vader_compound",))]
    >>> [e.key for e in entries_of(["har", "log_har", "ridge"], fs)]
    ['har', 'log_har', 'ridge__har', 'ridge__vader']
    """
    out = [Entry("har", None, task)]
    for m in models:
        cls = model_class(m, task)
        if m == "har":
            continue
        if not cls.uses_feature_sets:
            out.append(Entry(m, None, task))
        elif cls.predicts_by_key:
            chosen = [fs for fs in sets if fs.name == sequence_set] or list(sets[:1])
            out += [Entry(m, fs, task) for fs in chosen]
        else:
            out += [Entry(m, fs, task) for fs in sets]
    return out
