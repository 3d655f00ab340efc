"""How the report, its figures and the demo's table name and draw the models.

One table per task, by the registry's names (:data:`wsb_gpu.models.MODELS`,
:data:`wsb_gpu.models.SPIKE_CLASSIFIERS`): the report's label, a short name for tables and
legends, and the colour of the regression models. A model the tables do not name (one
added to the registry later) is shown under its own name, in the plotting library's next
colour. The order the report lists models in is the registry's
(:func:`wsb_gpu.models.ordered`).
"""

from __future__ import annotations

from typing import NamedTuple

from wsb_gpu.models import split_key


class Names(NamedTuple):
    """How one model is shown."""

    label: str
    short: str
    color: str | None = None


NAMES: dict[str, Names] = {
    "har": Names("HAR", "HAR", "#4C72B0"),
    "log_har": Names("log-HAR", "log-HAR", "#8C8C8C"),
    "har_fe": Names("HAR with stock effects", "HAR-FE", "#64B5CD"),
    "ridge": Names("Ridge (HAR + text)", "Ridge", "#DD8452"),
    "enet": Names("Elastic net (HAR + text)", "Enet", "#8172B3"),
    "xgboost": Names("XGBoost (HAR + text)", "XGBoost", "#55A868"),
    "lstm": Names("LSTM (HAR + text sequences)", "LSTM", "#C44E52"),
    "cnn": Names("CNN (HAR + text sequences)", "CNN", "#937860"),
    "cnn_lstm": Names("CNN-LSTM (HAR + text sequences)", "CNN-LSTM", "#DA8BC3"),
}
"""The regression models (``train.task: regression``)."""

SPIKE_NAMES: dict[str, Names] = {
    "har": Names("Logistic HAR", "Logit HAR"),
    "ridge": Names("Penalised logistic (HAR + text)", "Logit"),
    "xgboost": Names("XGBoost classifier (HAR + text)", "XGBoost"),
}
"""The spike classifiers (``train.task: spike``); their figures draw each forecast in the
colour of its regression model (:func:`color`)."""


def label(name: str) -> str:
    """The report's name of a model or forecast key (the name itself for one the table
    does not know).

    >>> label("ridge"), label("ridge__vader"), label("lasso")
    ('Ridge (HAR + text)', 'Ridge · vader', 'lasso')
    """
    model, fs = split_key(name)
    if model not in NAMES:
        return name
    return NAMES[model].label if fs is None else f"{NAMES[model].short} · {fs}"


def short_label(name: str) -> str:
    """A short name for tables (``Ridge``, ``Ridge · vader``).

    >>> short_label("enet"), short_label("enet__text"), short_label("lasso__text")
    ('Enet', 'Enet · text', 'lasso__text')
    """
    model, fs = split_key(name)
    if model not in NAMES:
        return name
    return NAMES[model].short if fs is None else f"{NAMES[model].short} · {fs}"


def color(name: str) -> str | None:
    """The colour a model (or a forecast of it) is drawn in (None: the next default one).

    >>> color("ridge__text"), color("lasso")
    ('#DD8452', None)
    """
    model, _ = split_key(name)
    return NAMES[model].color if model in NAMES else None


def spike_label(model: str) -> str:
    """The report's name of a spike classifier (the name itself for one the table does not know).

    >>> spike_label("har"), spike_label("lasso")
    ('Logistic HAR', 'lasso')
    """
    return SPIKE_NAMES[model].label if model in SPIKE_NAMES else model


def spike_short(model: str) -> str:
    """A short name of a spike classifier for tables and legends.

    >>> spike_short("ridge")
    'Logit'
    """
    return SPIKE_NAMES[model].short if model in SPIKE_NAMES else model
