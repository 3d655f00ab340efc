"""VADER sentiment per post (Hutto and Gilbert, 2014), from the ``vaderSentiment`` package.

VADER is a lexicon of about 7,500 words, emoticons and slang with valences from -4 to +4,
plus rules for negation, intensifiers, capitals and punctuation; the package ships its
lexicon, so nothing is downloaded. For each post it gives ``compound`` (the normalised sum
of valences, -1 … 1) and the shares ``pos``, ``neg``, ``neu`` of the text that is
positive, negative and neutral.

It is pure Python and CPU-only on both backends (there is no GPU implementation): the
signals stage runs it on the workers' CPU threads, also on a GPU cluster.

:data:`FAMILY` is the ``vader`` feature family: the stock-day means of the four scores and
the shares of positive and negative posts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from wsb_gpu.backend import array_namespace, column_array
from wsb_gpu.errors import missing_package
from wsb_gpu.signals.base import PlainFamily

if TYPE_CHECKING:
    from wsb_gpu.backend import Array, Frame

COLUMNS = ("vader_compound", "vader_pos", "vader_neg", "vader_neu")
"""The per-post columns, in the order of :func:`scores`."""

POSITIVE, NEGATIVE = 0.05, -0.05
"""The usual VADER thresholds: a post is positive when compound > 0.05, negative when < -0.05."""


@functools.lru_cache(maxsize=1)
def analyzer():
    """The package's analyser (loads its lexicon once per process)."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as e:
        raise missing_package("vaderSentiment", "pip install vaderSentiment", "the VADER signal") from e
    return SentimentIntensityAnalyzer()


def scores(texts: Sequence[str]) -> np.ndarray:
    """``(n, 4)`` float32 array of ``compound, pos, neg, neu`` for cleaned texts.

    >>> s = scores(["I love this stock, it is great", "terrible loss, I hate it", ""])
    >>> bool(s[0, 0] > 0.5), bool(s[1, 0] < -0.5), s[2].tolist()
    (True, True, [0.0, 0.0, 0.0, 0.0])
    """
    a = analyzer()
    out = np.zeros((len(texts), 4), dtype=np.float32)
    for i, text in enumerate(texts):
        if text:
            p = a.polarity_scores(text)
            out[i] = (p["compound"], p["pos"], p["neg"], p["neu"])
    return out


def shares(values: Frame) -> dict[str, Array]:
    """Per post (pandas or cuDF rows with ``vader_compound``): whether it is positive
    (``vader_pos_share``) and whether it is negative (``vader_neg_share``), as float32 0/1;
    their stock-day means are the shares of such posts.

    >>> import pandas as pd
    >>> {k: v.tolist() for k, v in shares(pd.DataFrame({"vader_compound": [0.6, -0.06, 0.05]})).items()}
    {'vader_pos_share': [1.0, 0.0, 0.0], 'vader_neg_share': [0.0, 1.0, 0.0]}
    """
    compound = column_array(values["vader_compound"], "float32")
    xp = array_namespace(compound)
    return {
        "vader_pos_share": xp.astype(compound > POSITIVE, xp.float32),
        "vader_neg_share": xp.astype(compound < NEGATIVE, xp.float32),
    }


FAMILY = PlainFamily(
    "vader",
    "mean VADER scores and the shares of positive and negative posts",
    pattern=r"vader_.*",
    source="signals",
    derive=shares,
)
"""The ``vader`` family: ``vader_compound, vader_pos, vader_neg, vader_neu`` (the means of the
signals dataset's columns) and ``vader_pos_share``, ``vader_neg_share``."""
