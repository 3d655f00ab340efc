"""The feature families (named sets of stock-day columns) and the feature sets built from them.

A **family** is one kind of text signal. Four are plain averages that the features stage
already wrote; three are fitted on data and so are computed inside each rolling training
window, from the training years only (:mod:`wsb_gpu.signals.fitted`):

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

A **feature set** (``train.feature_sets``) names the families one model sees; every set's
design matrix starts with the four HAR terms. A set whose families have no columns in this
run (``finbert_sentiment`` with a model without a sentiment head) is skipped, with a line
saying so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wsb_gpu.errors import WsbError

FAMILIES = ("attention", "embedding", "finbert_sentiment", "vader", "topics", "topic_tone", "lexicon", "tfidf")
"""Every family, in the order their columns appear in a design matrix."""

FITTED = ("topics", "topic_tone", "lexicon", "tfidf")
"""The families fitted inside each training window."""

DESCRIPTIONS = {
    "attention": "how much the stock is talked about: log(1 + posts), log(1 + mentions)",
    "embedding": "the mean text embedding of the stock-day's posts (FinBERT CLS by default)",
    "finbert_sentiment": "mean FinBERT class probabilities and mean p_positive - p_negative",
    "vader": "mean VADER scores and the shares of positive and negative posts",
    "topics": "the share of the stock-day's posts in each topic (UMAP + HDBSCAN on the training window's posts)",
    "topic_tone": "the mean VADER compound of the stock-day's posts within each topic",
    "lexicon": "mean score of a market-learned lexicon fitted on the training window",
    "tfidf": "mean TF-IDF vector over the training window's K most frequent terms",
}

_SET_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def family_columns(family: str, columns: Sequence[str], *, tfidf_terms: int = 50, max_topics: int = 10) -> list[str]:
    """The stock-day columns of ``family``: picked from ``columns`` (the sample's) for the
    plain families, named by the settings for the fitted ones.

    >>> family_columns("vader", ["vol_1", "vader_compound", "vader_pos_share", "e000"])
    ['vader_compound', 'vader_pos_share']
    >>> family_columns("topics", [], max_topics=2), family_columns("topic_tone", [], max_topics=2)
    (['topic_00', 'topic_01', 'topic_other'], ['topic_tone_00', 'topic_tone_01'])
    """
    if family == "attention":
        return [c for c in ("log_posts", "log_mentions", "has_posts") if c in columns]
    if family == "embedding":
        return [c for c in columns if re.fullmatch(r"e\d+", c)]
    if family == "finbert_sentiment":
        return [c for c in columns if c.startswith("p_")]
    if family == "vader":
        return [c for c in columns if c.startswith("vader_")]
    if family == "lexicon":
        return ["lexicon"]
    if family == "tfidf":
        return [f"tfidf_{k:02d}" for k in range(tfidf_terms)]
    if family == "topics":
        return [*(f"topic_{k:02d}" for k in range(max_topics)), "topic_other"]
    if family == "topic_tone":
        return [f"topic_tone_{k:02d}" for k in range(max_topics)]
    msg = f"unknown feature family {family!r}; choose from {', '.join(FAMILIES)}"
    raise WsbError(msg)


@dataclass(frozen=True)
class FeatureSet:
    """One feature set: its name, its families and the columns after the HAR terms."""

    name: str
    families: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def fitted(self) -> tuple[str, ...]:
        """Its families that are fitted per window."""
        return tuple(f for f in self.families if f in FITTED)


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
        bad = [f for f in fams if f not in FAMILIES]
        if bad:
            msg = f"feature set '{name}' names unknown famil(ies) {', '.join(map(str, bad))}; choose from {', '.join(FAMILIES)}"
            raise WsbError(msg)
        out[str(name)] = tuple(dict.fromkeys(fams))
    return out


def resolve_feature_sets(
    sets: Mapping[str, Sequence[str]],
    columns: Sequence[str],
    *,
    tfidf_terms: int,
    max_topics: int,
    fitted_available: bool,
    embeddings_available: bool = True,
) -> tuple[list[FeatureSet], dict[str, str]]:
    """The feature sets of a run, with their columns; and the sets skipped, with why.

    ``columns`` are the sample's columns; ``fitted_available`` says whether the run has the
    links and signals the fitted families need, ``embeddings_available`` whether it has
    the embeddings the topics family clusters.

    >>> sets, skipped = resolve_feature_sets({"har": [], "s": ["finbert_sentiment"], "v": ["vader"]},
    ...     ["vol_1", "vader_compound"], tfidf_terms=2, max_topics=2, fitted_available=True)
    >>> [(s.name, s.columns) for s in sets], skipped
    ([('har', ()), ('v', ('vader_compound',))], {'s': 'the run has no finbert_sentiment columns'})
    """
    out, skipped = [], {}
    for name, fams in check_feature_sets(sets).items():
        if not fitted_available and any(f in FITTED for f in fams):
            skipped[name] = "the fitted families need the links and signals datasets (pass --links and --signals)"
            continue
        if not embeddings_available and ("topics" in fams or "topic_tone" in fams):
            skipped[name] = "the topics family needs the embeddings dataset (pass --embeddings)"
            continue
        cols: list[str] = []
        empty = []
        for fam in fams:
            found = family_columns(fam, columns, tfidf_terms=tfidf_terms, max_topics=max_topics)
            if not found:
                empty.append(fam)
            cols += [c for c in found if c not in cols]
        if empty and (not cols or len(empty) == len(fams)):
            skipped[name] = f"the run has no {', '.join(empty)} columns"
            continue
        out.append(FeatureSet(name, tuple(fams), tuple(cols)))
    return out, skipped
