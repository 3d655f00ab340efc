"""VADER sentiment per post (Hutto and Gilbert, 2014), from the ``vaderSentiment`` package.

VADER is a lexicon of about 7,500 words, emoticons and slang with valences from -4 to +4,
plus rules for negation, intensifiers, capitals and punctuation; the package ships its
lexicon, so nothing is downloaded. For each post it gives ``compound`` (the normalised sum
of valences, -1 … 1) and the shares ``pos``, ``neg``, ``neu`` of the text that is
positive, negative and neutral.

It is pure Python and CPU-only on both backends (there is no GPU implementation): the
signals stage runs it on the workers' CPU threads, also on a GPU cluster.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from wsb_gpu.errors import missing_package

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
