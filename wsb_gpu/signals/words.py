"""The words of a post, as the word-based signals (lexicon, TF-IDF, topic words) see them.

A post's words are the lower-cased runs of letters and digits that start with a letter and
are at least two characters long, taken from :func:`wsb_gpu.text.clean_text` (URLs and
markdown removed), so ``$GME`` and ``gme`` are the word ``gme`` and numbers are dropped. The
signals stage stores them once per post, space-separated, in the ``tokens`` column; the
families read that column, never the raw text again.

English stop words (scikit-learn's list) carry no market meaning and are left out where a
family fits on words (:data:`STOP_WORDS`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from wsb_gpu.text import clean_text

_WORD = re.compile(r"[a-z][a-z0-9]+")


def words(text: str | None) -> list[str]:
    """The words of a raw post text, in order (repeats kept).

    >>> words("**YOLO** on $GME 🚀 &amp; 420.69 calls, see https://x.com/GME")
    ['yolo', 'on', 'gme', 'calls', 'see']
    """
    return _WORD.findall(clean_text(text).lower())


def tokens(text: str | None) -> str:
    """:func:`words` joined by single spaces: the ``tokens`` column of the signals dataset.

    >>> tokens("Buy the dip, buy it NOW")
    'buy the dip buy it now'
    """
    return " ".join(words(text))


def split(tokens: str | None) -> list[str]:
    """The words of a ``tokens`` value (empty for None or "").

    >>> split("a bb cc"), split(None)
    (['a', 'bb', 'cc'], [])
    """
    return tokens.split() if tokens else []


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


class _Lazy:
    """The stop-word set, built on first use (scikit-learn is slow to import)."""

    _value: frozenset[str] | None = None

    def __contains__(self, word: object) -> bool:
        return word in self.get()

    def get(self) -> frozenset[str]:
        if self._value is None:
            self._value = _stop_words()
        return self._value


STOP_WORDS = _Lazy()
"""English stop words (``word in STOP_WORDS``); scikit-learn's ``ENGLISH_STOP_WORDS``."""


def content_words(tokens_value: str | None) -> list[str]:
    """The words of a ``tokens`` value without stop words, in order.

    >>> content_words("the squeeze is on and gme is up")
    ['squeeze', 'gme']
    """
    stop = STOP_WORDS.get()
    return [w for w in split(tokens_value) if w not in stop]


def distinct(values: Iterable[str]) -> list[str]:
    """The distinct words in first-seen order.

    >>> distinct(["b", "a", "b"])
    ['b', 'a']
    """
    return list(dict.fromkeys(values))
