"""The feature families (named sets of stock-day columns) and the feature sets built from them.

A **family** is one kind of text signal. Four are plain averages that the features stage
already wrote; four are fitted on data (by three models: one topic model gives ``topics`` and
``topic_tone``) and so are computed inside each rolling training window, from the training
years only (:mod:`wsb_gpu.signals.fitted`):

==================  =========================================================  ==========
family              stock-day columns                                          fitted on
==================  =========================================================  ==========
attention           ``log_posts``, ``log_mentions`` (and ``has_posts`` with    --
                    ``sample: all``)
embedding           ``e000`` … (mean post embedding)                           --
finbert_sentiment   ``p_*`` (mean class probabilities) and ``p_net``           --
vader               ``vader_compound, vader_pos, vader_neg, vader_neu``,       --
                    ``vader_pos_share``, ``vader_neg_share``
topics              ``topic_00`` … (share of posts per topic), ``topic_other``  training
                                                                               window
topic_tone          ``topic_tone_00`` … (mean VADER compound within a topic)   training
                                                                               window
lexicon             ``lexicon`` (mean market-learned word score of the posts)  training
                                                                               window
tfidf               ``tfidf_00`` … (mean TF-IDF vector over K terms)           training
                                                                               window
==================  =========================================================  ==========

Each family is one object in one registry, :data:`FAMILIES` (the contract is
:mod:`wsb_gpu.signals.base`): the plain ones are defined here (VADER's beside its scorer,
:mod:`wsb_gpu.signals.vader`), the fitted ones beside the code they call
(:mod:`~wsb_gpu.signals.topics`, :mod:`~wsb_gpu.signals.lexicon`,
:mod:`~wsb_gpu.signals.tfidf`). The features stage averages the per-post columns of the plain
families (:func:`averaged`); the training sample takes their stock-day columns
(:func:`text_columns`); a feature set's columns are asked of its families. Adding a family is
adding an entry (docs/architecture.md, "How to add a feature family").

A **feature set** (``train.feature_sets``) names the families one model sees; every set's
design matrix starts with the four HAR terms. A set whose families have no columns in this
run (``finbert_sentiment`` with a model without a sentiment head) is skipped, with a line
saying so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsb_gpu.backend import column_array
from wsb_gpu.errors import WsbError
from wsb_gpu.signals import vader
from wsb_gpu.signals.base import Family, FittedFamily, PlainFamily
from wsb_gpu.signals.lexicon import LexiconFamily
from wsb_gpu.signals.tfidf import TfidfFamily
from wsb_gpu.signals.topics import TopicsFamily, TopicToneFamily

if TYPE_CHECKING:
    from wsb_gpu.backend import Array, Frame


def _number(column: str) -> int:
    """The number of an embedding column (``e012`` -> 12): their order."""
    return int(column[1:])


def net_sentiment(values: Frame) -> dict[str, Array]:
    """Per post: ``p_net = p_positive - p_negative`` (float32), when the model has both.

    >>> import pandas as pd
    >>> net_sentiment(pd.DataFrame({"p_negative": [0.25], "p_positive": [0.5]}))["p_net"].tolist()
    [0.25]
    """
    if "p_positive" not in values.columns or "p_negative" not in values.columns:
        return {}
    return {"p_net": column_array(values["p_positive"], "float32") - column_array(values["p_negative"], "float32")}


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        PlainFamily(
            "attention",
            "how much the stock is talked about: log(1 + posts), log(1 + mentions)",
            pattern="log_posts|log_mentions|has_posts",
        ),
        PlainFamily(
            "embedding",
            "the mean text embedding of the stock-day's posts (FinBERT CLS by default)",
            pattern=r"e\d+",
            source="embeddings",
            key=_number,
        ),
        PlainFamily(
            "finbert_sentiment",
            "mean FinBERT class probabilities and mean p_positive - p_negative",
            pattern="p_.*",
            source="embeddings",
            key=str,
            derive=net_sentiment,
        ),
        vader.FAMILY,
        TopicsFamily(
            "topics",
            "the share of the stock-day's posts in each topic (UMAP + HDBSCAN on the training window's posts)",
        ),
        TopicToneFamily("topic_tone", "the mean VADER compound of the stock-day's posts within each topic"),
        LexiconFamily("lexicon", "mean score of a market-learned lexicon fitted on the training window"),
        TfidfFamily("tfidf", "mean TF-IDF vector over the training window's K most frequent terms"),
    )
}
"""Every family by name, in the order their columns appear in a design matrix. Adding an
entry (a :class:`~wsb_gpu.signals.base.PlainFamily` or a
:class:`~wsb_gpu.signals.base.FittedFamily`) is all it takes for ``train.feature_sets`` to
accept its name."""

_SET_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def averaged(source: str, available: Sequence[str]) -> list[tuple[PlainFamily, list[str]]]:
    """The plain families the features stage averages from the per-post dataset ``source``
    (``"embeddings"`` or ``"signals"``), each with its columns among ``available`` (that
    dataset's columns); families with none are left out.

    >>> [(f.name, cols) for f, cols in averaged("embeddings", ["id", "e001", "e000", "p_positive", "n_tokens"])]
    [('embedding', ['e000', 'e001']), ('finbert_sentiment', ['p_positive'])]
    """
    out = []
    for fam in FAMILIES.values():
        if isinstance(fam, PlainFamily) and fam.source == source:
            cols = fam.columns(available)
            if cols:
                out.append((fam, cols))
    return out


def text_columns(columns: Sequence[str]) -> list[str]:
    """The stock-day columns of the features dataset that the features stage averaged (every
    plain family with a source), family by family, among ``columns``.

    >>> text_columns(["id", "e001", "e000", "p_positive", "p_net", "p_negative", "n_tokens", "vader_pos"])
    ['e000', 'e001', 'p_negative', 'p_net', 'p_positive', 'vader_pos']
    """
    out: list[str] = []
    for fam in FAMILIES.values():
        if isinstance(fam, PlainFamily) and fam.source is not None:
            out += [c for c in fam.columns(columns) if c not in out]
    return out


def configure(settings: Mapping[str, object]) -> dict[str, Family]:
    """The registry with each fitted family given its settings, ``settings[family.section]``
    (the training task hands over ``train.lexicon``, ``train.tfidf`` … this way).

    >>> from types import SimpleNamespace
    >>> configure({"tfidf": SimpleNamespace(terms=2)})["tfidf"].columns()
    ['tfidf_00', 'tfidf_01']
    """
    out = dict(FAMILIES)
    for name, fam in FAMILIES.items():
        if isinstance(fam, FittedFamily) and fam.section is not None and fam.section in settings:
            out[name] = fam.configured(settings[fam.section])
    return out


def fitted_sections() -> list[str]:
    """The sections of ``train`` that hold the fitted families' settings.

    >>> fitted_sections()
    ['topics', 'lexicon', 'tfidf']
    """
    sections = [f.section for f in FAMILIES.values() if isinstance(f, FittedFamily) and f.section]
    return list(dict.fromkeys(sections))


@dataclass(frozen=True)
class FeatureSet:
    """One feature set: its name, its families and the columns after the HAR terms."""

    name: str
    families: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def fitted(self) -> tuple[str, ...]:
        """Its families that are fitted per window."""
        return tuple(f for f in self.families if FAMILIES[f].fitted)


def check_feature_sets(sets: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Validate ``train.feature_sets``: names are lower-case identifiers, families known.

    >>> check_feature_sets({"vader": ["vader"], "har": []})
    {'vader': ('vader',), 'har': ()}
    >>> check_feature_sets({"x": ["vadr"]})
    Traceback (most recent call last):
    ...
    wsb_gpu.errors.WsbError: feature set 'x' names unknown famil(ies) vadr; choose from attention, embedding, finbert_sentiment, vader, topics, topic_tone, lexicon, tfidf
    """
    if not sets:
        raise WsbError("train.feature_sets is empty; name at least one set, e.g. {har: [], text: [embedding]}")
    out = {}
    for name, fams in sets.items():
        if not _SET_NAME.match(str(name)):
            msg = f"feature set name {name!r} must be lower case letters, digits and _ (it becomes a column name)"
            raise WsbError(msg)
        fams = [fams] if isinstance(fams, str) else list(fams or [])
        bad = [f for f in fams if not isinstance(f, str) or f not in FAMILIES]
        if bad:
            msg = f"feature set '{name}' names unknown famil(ies) {', '.join(map(str, bad))}; choose from {', '.join(FAMILIES)}"
            raise WsbError(msg)
        out[str(name)] = tuple(dict.fromkeys(fams))
    return out


def resolve_feature_sets(
    sets: Mapping[str, Sequence[str]],
    columns: Sequence[str],
    *,
    families: Mapping[str, Family],
    fitted_available: bool,
    embeddings_available: bool = True,
) -> tuple[list[FeatureSet], dict[str, str]]:
    """The feature sets of a run, with their columns; and the sets skipped, with why.

    ``columns`` are the sample's columns; ``families`` the registry with the fitted families
    configured (:func:`configure`), which name their columns; ``fitted_available`` says
    whether the run has the links and signals the fitted families need,
    ``embeddings_available`` whether it has the embeddings some of them read.

    >>> from types import SimpleNamespace
    >>> fams = configure({"topics": SimpleNamespace(max_topics=2)})
    >>> sets, skipped = resolve_feature_sets({"har": [], "s": ["finbert_sentiment"], "v": ["vader"]},
    ...     ["vol_1", "vader_compound"], families=fams, fitted_available=True)
    >>> [(s.name, s.columns) for s in sets], skipped
    ([('har', ()), ('v', ('vader_compound',))], {'s': 'the run has no finbert_sentiment columns'})
    >>> resolve_feature_sets({"t": ["topic_tone"]}, [], families=fams, fitted_available=True,
    ...     embeddings_available=False)[1]
    {'t': 'the topics family needs the embeddings dataset (pass --embeddings)'}
    """
    out, skipped = [], {}
    for name, fams in check_feature_sets(sets).items():
        objs = [families[f] for f in fams]
        if not fitted_available and any(f.fitted for f in objs):
            skipped[name] = "the fitted families need the links and signals datasets (pass --links and --signals)"
            continue
        reading = [f for f in objs if isinstance(f, FittedFamily) and f.embeddings]
        if not embeddings_available and reading:
            skipped[name] = f"the {reading[0].model} family needs the embeddings dataset (pass --embeddings)"
            continue
        cols: list[str] = []
        empty = []
        for fam in objs:
            found = fam.columns(columns)
            if not found:
                empty.append(fam.name)
            cols += [c for c in found if c not in cols]
        if empty and (not cols or len(empty) == len(fams)):
            skipped[name] = f"the run has no {', '.join(empty)} columns"
            continue
        out.append(FeatureSet(name, tuple(fams), tuple(cols)))
    return out, skipped
