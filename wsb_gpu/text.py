"""Text cleaning shared by the stages.

Mentions are extracted from the raw (HTML-unescaped) text, so a ticker inside a URL such
as ``.../quote/TSLA/`` still counts; the embedding stage sees :func:`clean_text`, which
strips URLs and markdown as the seed did.

This module runs on the host on both backends, on purpose: the texts go to the host-side
Rust tokenizer anyway, and its patterns use Python regex features that libcudf's regex
engine lacks (inline flags such as ``(?m)``, ``re.IGNORECASE`` on a compiled pattern:
``Series.str.replace`` raises for ``flags != 0`` and drops the flags of a compiled pattern).
Moving it to cuDF strings would mean rewriting every pattern without flags.
"""

from __future__ import annotations

import html
import re

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")  # [text](target) -> text
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3}|~~|`{1,3})")  # bold/italic/strike/code markers
_MD_LINE_PREFIX = re.compile(r"(?m)^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+]\s+|\d+\.\s+)")
_MD_RULE = re.compile(r"(?m)^\s*(?:[-*_]\s*){3,}$")
_SPACES = re.compile(r"\s+")


def clean_text(text: str | None) -> str:
    """Text for the language model: HTML entities decoded, URLs and markdown removed,
    white space folded.

    >>> clean_text("**YOLO** on [GME](https://x.com/GME) &amp; $TSLA 🚀\\n> quoted")
    'YOLO on GME & $TSLA 🚀 quoted'
    >>> clean_text(None)
    ''
    """
    if not text:
        return ""
    text = html.unescape(text)
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _MD_RULE.sub(" ", text)
    text = _MD_LINE_PREFIX.sub("", text)
    text = _MD_EMPHASIS.sub("", text)
    return _SPACES.sub(" ", text).strip()
