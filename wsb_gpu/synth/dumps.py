"""Pushshift-style dumps: the post plan, per-chunk record generation, the zstd writer.

The **plan** (how many submissions and comments each calendar day has, and how many of
them are about each stock, split into the parts of the UTC day before the open, in the
session and after the close) is drawn once in the parent from the latent series. Post
instants follow the New York time-of-day profile of :mod:`wsb_gpu.synth.clock`. The
calendar is then cut into chunks of consecutive days; each chunk's records are a pure
function of ``(seed, chunk index, plan)`` (its own PCG64 stream), so chunks can be made
by any number of worker processes and the parent writes them in chunk order into one
zstd stream per file. Record ids are exact, increasing base-36 counters because the plan
fixes every chunk's id offset in advance.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard as zstd

from wsb_gpu.synth import clock
from wsb_gpu.synth import text as tx

STREAM_PLAN, STREAM_AUTHORS, STREAM_CHUNK, STREAM_CHUNK_TEXT = 20, 21, 100, 101

SUBREDDIT, SUBREDDIT_ID = "wallstreetbets", "t5_2th52"
SUB_ID_BASE = 36**5  # first submission id "100000"
COM_ID_BASE = 36**6  # first comment id "1000000"

# Quirks and their shares (written to truth.json). Era rules are by the post's UTC year.
DEFAULT_TEXT_PARAMS: dict = {
    "mention_share": 0.30,  # expected share of records that are about a stock
    "submission_share": 0.10,  # share of records that are submissions (rest comments)
    "hype_count_loading": 0.6,  # kappa: posts about a stock scale with exp(kappa * h + kappa_g * g)
    "hype_tone_loading": 1.5,  # gamma: tone s = sigmoid(gamma * h + gamma_u * u + mood)
    "attention_count_loading": 0.6,  # kappa_g: the attention state moves only the number of posts
    "tone_loading": 1.5,  # gamma_u: the tone state moves only the share of hype phrases
    "topic_share": 0.15,  # share of about-posts that are earnings talk when the topic state is 0
    "topic_loading": 1.5,  # the topic state q moves that share: sigmoid(logit(topic_share) + loading * q)
    "topic_phrase_share": 1.0,  # share of a topic post's non-hype phrases that are earnings talk
    "mood_sd": 0.8,  # sd of the author's own mood shift
    "second_mention_share": 0.08,  # about-posts that also name another stock
    "old_symbol_share": 0.10,  # posts about a renamed stock that still use the old symbol
    "weekend_factor": 0.6,  # activity on Saturdays and Sundays relative to weekdays
    "yearly_growth": 1.15,  # activity grows by this factor per year
    # After-close news (--effect-after-close B): posts about a stock made between a close and
    # the next open depend on the next trading day's return r, through rho = min(|r| / news_scale, news_cap).
    "news_scale": 0.02,  # |r| in units of a typical daily move (2 %)
    "news_cap": 5.0,  # rho saturates at |r| = 10 %
    "news_count_loading": 1.0,  # after-close posts scale with exp(B * loading * rho) (mean 1 over stock-days)
    "news_phrase_loading": 1.0,  # each phrase is news with probability 1 - exp(-B * loading * rho)
}

PIECES = ("before_open", "session", "after_close")
"""The parts of a UTC day the plan draws separately: up to the open (after the previous
close), the session (open to close, both included) and after the close."""

DEFAULT_QUIRKS: dict = {
    "deleted": 0.03,  # author "[deleted]" and text "[deleted]"
    "removed": 0.04,  # text "[removed]" (author kept)
    "author_deleted": 0.06,  # author "[deleted]", text intact
    "edited": 0.06,  # edited = timestamp (float before 2016, int from 2016)
    "long_body": 0.001,  # 5k-40k character bodies
    "lone_surrogate": 0.0001,  # a lone "\\ud83d" escape at the end of the text
    "swapped_neighbours": 0.002,  # adjacent records out of time order
    "created_utc_string_years": [2013, 2016, 2017],  # created_utc is a JSON string then
    "ascii_escaped_until": 2015,  # non-ASCII as \\u escapes up to this year, raw UTF-8 after
    "new_schema_from": 2017,  # field set of the newer Pushshift era from this year
}

MALFORMED_KINDS = ("blank", "truncated", "bad_utf8")

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int) -> str:
    """Reddit's base-36 ids.

    >>> base36(36 ** 5), base36(35)
    ('100000', 'z')
    """
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out)) or "0"


def base36_array(start: int, n: int) -> list[str]:
    """``[base36(start), ..., base36(start + n - 1)]``, vectorised.

    >>> base36_array(36 ** 5 - 1, 2)
    ['zzzzz', '100000']
    """
    if n <= 0:
        return []
    x = np.arange(start, start + n, dtype=np.int64)
    width = len(base36(start + n - 1))
    digits = np.empty((n, width), dtype=np.uint8)
    for p in range(width - 1, -1, -1):
        x, r = np.divmod(x, 36)
        digits[:, p] = np.frombuffer(_B36.encode(), dtype=np.uint8)[r]
    out = digits.view(f"S{width}").ravel().astype(str).tolist()
    return [s.lstrip("0") or "0" for s in out]


_ENC = {
    True: json.JSONEncoder(ensure_ascii=True, separators=(",", ":")),
    False: json.JSONEncoder(ensure_ascii=False, separators=(",", ":")),
}


@dataclass
class DumpContext:
    """Everything a chunk worker needs (picklable; sent once per worker process)."""

    seed: int
    day0: int  # first calendar day, days since 1970-01-01
    n_days: int
    day_td: np.ndarray  # calendar day -> index of first trading day >= it, or -1
    year: np.ndarray  # calendar day -> year
    sym_idx: np.ndarray  # (days x stocks) int16 index into symbols, -1 = no ticker
    symbols: list[str]
    protected: np.ndarray  # stock -> bare form never counts (common word / 1 letter)
    old_symbol: list[str | None]  # stock -> its previous ticker (still used by some posters)
    about_sub: np.ndarray  # (days x stocks x PIECES) planned submissions about each stock
    about_com: np.ndarray
    gen_sub: np.ndarray  # (days,) planned generic submissions
    gen_com: np.ndarray
    hype: np.ndarray  # (trading days x stocks)
    tone_state: np.ndarray  # (trading days x stocks) u: moves the tone only
    topic_state: np.ndarray  # (trading days x stocks) q: moves the share of earnings posts only
    day_cdf: np.ndarray  # (patterns x 1441) within-day CDF of post times (clock.minute_cdfs)
    day_pattern: np.ndarray  # (days,) the CDF row of each calendar day
    open_s: np.ndarray  # (days,) second of the UTC day of the open (86400 on days without a session)
    end_s: np.ndarray  # (days,) close second + 1 (the session is [open_s, end_s)); 86400 without one
    news: np.ndarray | None  # (trading days x stocks) signed news-phrase probability; None = no channel
    alive: np.ndarray  # (trading days x stocks) the stock trades that day
    chunk_days: int
    sub_offset: np.ndarray  # (chunks + 1,) first submission counter of each chunk
    com_offset: np.ndarray
    authors: list[str]
    text_params: dict
    quirks: dict
    malformed: float
    forced: list[dict] = field(default_factory=list)

    @property
    def n_chunks(self) -> int:
        return len(self.sub_offset) - 1


def day_factor(days: np.ndarray, growth: float, weekend: float) -> np.ndarray:
    """Relative activity of each calendar day (mean 1): yearly growth, quieter weekends.

    >>> f = day_factor(np.arange(np.datetime64("2019-01-01"), np.datetime64("2019-01-15")), 1.0, 0.5)
    >>> round(float(f.mean()), 12), float(f[4] / f[3])     # Sat 5 Jan vs Fri 4 Jan
    (1.0, 0.5)
    """
    t = (days - days[0]).astype("int64") / 365.25
    weekday = (days.astype("int64") + 3) % 7
    f = growth**t * np.where(weekday >= 5, weekend, 1.0)
    return f / f.mean()


def make_authors(seed: int, n: int) -> list[str]:
    """A deterministic pool of Reddit-like user names."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(STREAM_AUTHORS,))))
    first = (
        "Diamond",
        "Paper",
        "Tendie",
        "Moon",
        "Bear",
        "Bull",
        "Gamma",
        "Theta",
        "Yolo",
        "Smooth",
        "Retarded",
        "Autist",
        "Stonk",
        "Rocket",
        "Banana",
        "Crayon",
        "Wife",
        "Ape",
        "Hedgie",
        "Degen",
        "Lambo",
        "Guh",
        "Margin",
        "Put",
        "Call",
    )
    second = (
        "Hands",
        "Boy",
        "Man",
        "Lord",
        "King",
        "Queen",
        "Trader",
        "Eater",
        "Master",
        "Gang",
        "Wizard",
        "Hodler",
        "Bagholder",
        "Chad",
        "Kid",
        "Captain",
        "Monke",
    )
    a = rng.integers(0, len(first), n)
    b = rng.integers(0, len(second), n)
    num = rng.integers(0, 10000, n)
    style = rng.integers(0, 4, n)
    out = []
    for i in range(n):
        base = first[a[i]] + ("_" if style[i] == 1 else "") + second[b[i]]
        if style[i] == 2:
            base = base.lower()
        out.append(f"{base}{num[i]}" if style[i] != 3 else f"{base}_{num[i] % 100}")
    return out


def _template(fields: list[tuple[str, object]]) -> dict:
    # Pushshift writes keys in sorted order; a sorted template keeps that order when the
    # variable fields are assigned later (assignment keeps insertion order).
    return dict(sorted(fields))


_SUB_OLD = _template(
    [
        ("approved_by", None),
        ("archived", False),
        ("author", None),
        ("author_flair_css_class", None),
        ("author_flair_text", None),
        ("banned_by", None),
        ("created_utc", None),
        ("distinguished", None),
        ("domain", None),
        ("downs", 0),
        ("edited", False),
        ("gilded", 0),
        ("hide_score", False),
        ("id", None),
        ("is_self", True),
        ("link_flair_css_class", None),
        ("link_flair_text", None),
        ("media", None),
        ("media_embed", {}),
        ("name", None),
        ("num_comments", 0),
        ("over_18", False),
        ("permalink", None),
        ("quarantine", False),
        ("retrieved_on", None),
        ("score", 0),
        ("secure_media", None),
        ("secure_media_embed", {}),
        ("selftext", ""),
        ("stickied", False),
        ("subreddit", SUBREDDIT),
        ("subreddit_id", SUBREDDIT_ID),
        ("thumbnail", "self"),
        ("title", ""),
        ("ups", 0),
        ("url", None),
    ]
)
_SUB_NEW = _template(
    [
        ("all_awardings", []),
        ("author", None),
        ("author_flair_css_class", None),
        ("author_flair_text", None),
        ("author_fullname", None),
        ("created_utc", None),
        ("distinguished", None),
        ("domain", None),
        ("edited", False),
        ("gilded", 0),
        ("id", None),
        ("is_self", True),
        ("is_video", False),
        ("link_flair_text", None),
        ("locked", False),
        ("media", None),
        ("num_comments", 0),
        ("over_18", False),
        ("permalink", None),
        ("pinned", False),
        ("removed_by_category", None),
        ("retrieved_on", None),
        ("score", 0),
        ("selftext", ""),
        ("send_replies", True),
        ("spoiler", False),
        ("stickied", False),
        ("subreddit", SUBREDDIT),
        ("subreddit_id", SUBREDDIT_ID),
        ("thumbnail", "self"),
        ("title", ""),
        ("total_awards_received", 0),
        ("upvote_ratio", 1.0),
        ("url", None),
        ("whitelist_status", "some_ads"),
    ]
)
_COM_OLD = _template(
    [
        ("archived", False),
        ("author", None),
        ("author_flair_css_class", None),
        ("author_flair_text", None),
        ("body", ""),
        ("controversiality", 0),
        ("created_utc", None),
        ("distinguished", None),
        ("downs", 0),
        ("edited", False),
        ("gilded", 0),
        ("id", None),
        ("link_id", None),
        ("name", None),
        ("parent_id", None),
        ("retrieved_on", None),
        ("score", 0),
        ("score_hidden", False),
        ("stickied", False),
        ("subreddit", SUBREDDIT),
        ("subreddit_id", SUBREDDIT_ID),
        ("ups", 0),
    ]
)
_COM_NEW = _template(
    [
        ("all_awardings", []),
        ("associated_award", None),
        ("author", None),
        ("author_flair_css_class", None),
        ("author_flair_text", None),
        ("author_fullname", None),
        ("author_premium", False),
        ("awarders", []),
        ("body", ""),
        ("collapsed", False),
        ("controversiality", 0),
        ("created_utc", None),
        ("distinguished", None),
        ("edited", False),
        ("gilded", 0),
        ("id", None),
        ("is_submitter", False),
        ("link_id", None),
        ("locked", False),
        ("no_follow", True),
        ("parent_id", None),
        ("permalink", None),
        ("retrieved_on", None),
        ("score", 0),
        ("send_replies", True),
        ("stickied", False),
        ("subreddit", SUBREDDIT),
        ("subreddit_id", SUBREDDIT_ID),
        ("total_awards_received", 0),
    ]
)
_FLAIRS = ("🦍", "Not a financial advisor", "Tendie Eater", "🚀🚀🚀", "Bagholder", "Theta Gang")
_LINK_FLAIRS = ("DD", "YOLO", "Discussion", "Gain", "Loss", "Meme", "News", "Shitpost")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _score(d: tx.Draws) -> int:
    u = d.u()
    if u < 0.08:
        return -int(d.u() * 20)
    return int(1.0 / (1.0 - 0.9995 * d.u()) ** 0.8)


def piece_bounds(open_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """``(days, 4)`` second bounds of the :data:`PIECES` of each UTC day: [0, open, close + 1, 86400]."""
    n = len(open_s)
    return np.stack([np.zeros(n, np.int64), open_s, end_s, np.full(n, clock.DAY_SECONDS)], axis=1).astype(np.int64)


def after_close_news_day(
    seconds: np.ndarray, day: np.ndarray, day_td: np.ndarray, open_s: np.ndarray, end_s: np.ndarray, n_td: int
) -> np.ndarray:
    """For posts at ``seconds`` of UTC day ``day``: the trading day whose open they precede
    when they fall between a close and the next open, else -1 (session, or no next day).

    >>> after_close_news_day(np.array([10, 50000, 80000]), np.zeros(3, int), np.array([4]),
    ...                      np.array([48600]), np.array([72001]), 6)
    array([ 4, -1,  5])
    """
    before = seconds < open_s[day]
    after = seconds >= end_s[day]
    td = day_td[day]
    out = np.where(before, td, np.where(after & (td >= 0), td + 1, -1))
    return np.where((out >= 0) & (out < n_td), out, -1)


def make_chunk(ctx: DumpContext, k: int) -> tuple[bytes, bytes, dict, list]:
    """Records of chunk ``k``: (submission NDJSON bytes, comment NDJSON bytes, stats, latent).

    ``latent`` is ``[(trading day, stock, n_posts, n_hype_phrases, n_tone_phrases,
    n_topic_posts, n_after_close_posts, n_news_phrases), ...]``: the first four count the
    posts whose trading day (first on or after their UTC date) is that day, the last two the
    posts made between the previous close and that day's open.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(ctx.seed, spawn_key=(STREAM_CHUNK, k))))
    d = tx.Draws(
        np.random.Generator(np.random.PCG64(np.random.SeedSequence(ctx.seed, spawn_key=(STREAM_CHUNK_TEXT, k))))
    )
    tp, q = ctx.text_params, ctx.quirks
    lo, hi = k * ctx.chunk_days, min((k + 1) * ctx.chunk_days, ctx.n_days)
    n_stocks = ctx.about_sub.shape[1]

    # --- which posts exist: (kind, time, day, stock) --------------------------------
    kinds, times, dayix, stock, forced_ix = [], [], [], [], []
    bounds = piece_bounds(ctx.open_s, ctx.end_s)
    for di in range(lo, hi):
        day_start = (ctx.day0 + di) * 86400
        cdf = ctx.day_cdf[ctx.day_pattern[di]]
        for kind, about, gen in ((0, ctx.about_sub, ctx.gen_sub), (1, ctx.about_com, ctx.gen_com)):
            # posts about stocks, piece by piece (their counts may depend on the piece) ...
            for piece in range(len(PIECES)):
                counts = about[di, :, piece]
                nz = np.flatnonzero(counts)
                st = np.repeat(nz, counts[nz]).astype(np.int64)
                n = len(st)
                a, b = int(bounds[di, piece]), int(bounds[di, piece + 1])
                times.append(day_start + clock.sample_seconds(rng, cdf, a, b, n))
                kinds.append(np.full(n, kind))
                dayix.append(np.full(n, di))
                stock.append(st)
                forced_ix.append(np.full(n, -1))
            # ... and generic chatter over the whole day
            n = int(gen[di])
            times.append(day_start + clock.sample_seconds(rng, cdf, 0, clock.DAY_SECONDS, n))
            kinds.append(np.full(n, kind))
            dayix.append(np.full(n, di))
            stock.append(np.full(n, -1, dtype=np.int64))
            forced_ix.append(np.full(n, -1))
    for fi, f in enumerate(ctx.forced):
        if lo <= f["day"] < hi:
            kinds.append(np.array([1]))
            times.append(np.array([(ctx.day0 + f["day"]) * 86400 + f["second"]]))
            dayix.append(np.array([f["day"]]))
            stock.append(np.array([f["stock"]]))
            forced_ix.append(np.array([fi]))
    kinds, times, dayix, stock, forced_ix = (np.concatenate(a) for a in (kinds, times, dayix, stock, forced_ix))
    n_td = ctx.hype.shape[0]
    secs = times - (ctx.day0 + dayix) * 86400
    news_td = after_close_news_day(secs, dayix, ctx.day_td, ctx.open_s, ctx.end_s, n_td)
    after = (secs < ctx.open_s[dayix]) | (secs >= ctx.end_s[dayix])

    stats: dict = {
        "time_after_close": int(after.sum()),
        "time_after_close_same_utc_day": int((secs >= ctx.end_s[dayix]).sum()),
        "time_session": int((~after).sum()),
    }
    td_lo = max(int(ctx.day_td[lo:hi].min()), 0) if hi > lo else 0
    td_hi = int(ctx.day_td[lo:hi].max()) + 1 if hi > lo else 0
    # rows td_lo .. td_hi: the last one for posts after the chunk's last close
    lat = np.zeros((max(td_hi - td_lo, 0) + 1, n_stocks, 6), dtype=np.int64)
    topic_logit = math.log(tp["topic_share"] / (1.0 - tp["topic_share"]))
    forced_ids: dict = {}

    sub_sel = np.flatnonzero(kinds == 0)
    sub_sel = sub_sel[np.argsort(times[sub_sel], kind="stable")]
    com_sel = np.flatnonzero(kinds == 1)
    com_sel = com_sel[np.argsort(times[com_sel], kind="stable")]
    n_sub_plan = int(ctx.sub_offset[k + 1] - ctx.sub_offset[k])
    n_com_plan = int(ctx.com_offset[k + 1] - ctx.com_offset[k])
    if len(sub_sel) != n_sub_plan or len(com_sel) != n_com_plan:
        raise RuntimeError(f"chunk {k}: planned and generated record counts differ")
    sub_ids = base36_array(SUB_ID_BASE + int(ctx.sub_offset[k]), len(sub_sel))
    com_ids = base36_array(COM_ID_BASE + int(ctx.com_offset[k]), len(com_sel))
    sub_times = times[sub_sel]

    def texts(i: int, submission: bool) -> tuple[str, str]:
        j, di = int(stock[i]), int(dayix[i])
        if forced_ix[i] >= 0:
            f = ctx.forced[int(forced_ix[i])]
            return "", f["text"]
        if j < 0:
            return tx.generic_text(submission, d)
        sym = ctx.symbols[ctx.sym_idx[di, j]]
        if ctx.old_symbol[j] not in (None, sym) and d.u() < tp["old_symbol_share"]:
            sym = ctx.old_symbol[j]
            stats["old_symbol"] = stats.get("old_symbol", 0) + 1
        td = int(ctx.day_td[di])
        nd = int(news_td[i])
        if nd >= 0 and not ctx.alive[nd, j]:
            nd = -1  # after the stock's last close: no next return to be news about
        news = float(ctx.news[nd, j]) if ctx.news is not None and nd >= 0 else 0.0
        h, u = float(ctx.hype[td, j]), float(ctx.tone_state[td, j])
        tone = _sigmoid(tp["hype_tone_loading"] * h + tp["tone_loading"] * u + tp["mood_sd"] * d.normal())
        on_topic = d.u() < _sigmoid(topic_logit + tp["topic_loading"] * float(ctx.topic_state[td, j]))
        other = None
        if d.u() < tp["second_mention_share"]:
            j2 = int(d.u() * n_stocks)
            s2 = ctx.sym_idx[di, j2]
            if j2 != j and s2 >= 0:
                other = ctx.symbols[s2]
                stats["second_mention"] = stats.get("second_mention", 0) + 1
        topic = tp["topic_phrase_share"] if on_topic else 0.0
        title, body, n_hype, n_tone, _, n_news = tx.about_text(
            sym, bool(ctx.protected[j]), tone, submission, d, stats, other, topic, news
        )
        cell = lat[td - td_lo, j]
        cell[0] += 1
        cell[1] += n_hype
        cell[2] += n_tone
        cell[3] += on_topic
        if nd >= 0:
            cell = lat[nd - td_lo, j]
            cell[4] += 1
            cell[5] += n_news
        return title, body

    def finish(rec: dict, year: int, created: int, text_key: str, is_sub: bool, keep_text: bool = False) -> bytes:
        u = 1.0 if keep_text else d.u()
        if u < q["deleted"]:
            rec["author"] = "[deleted]"
            rec[text_key] = "[deleted]"
            stats["text_deleted"] = stats.get("text_deleted", 0) + 1
        elif u < q["deleted"] + q["removed"]:
            rec[text_key] = "[removed]"
            stats["text_removed"] = stats.get("text_removed", 0) + 1
            if "removed_by_category" in rec:
                rec["removed_by_category"] = "moderator"
        elif u < q["deleted"] + q["removed"] + q["author_deleted"]:
            rec["author"] = "[deleted]"
            stats["author_deleted"] = stats.get("author_deleted", 0) + 1
        elif not keep_text and d.u() < q["long_body"]:
            rec[text_key] = tx.long_body(5000 + int(d.u() * 35000), d)
            stats["long_body"] = stats.get("long_body", 0) + 1
        if rec["author"] == "[deleted]":
            for key in ("author_flair_text", "author_fullname"):
                if key in rec:
                    rec[key] = None
        if d.u() < q["edited"]:
            when = created + 60 + int(d.u() * 7200)
            if year < 2016:
                rec["edited"] = when + 0.0 if d.u() < 0.5 else when + int(d.u() * 1000) / 1000
                stats["edited_float"] = stats.get("edited_float", 0) + 1
            else:
                rec["edited"] = when
                stats["edited_int"] = stats.get("edited_int", 0) + 1
        escaped = year <= q["ascii_escaped_until"]
        if d.u() < q["lone_surrogate"] and rec[text_key] not in ("[deleted]", "[removed]"):
            rec[text_key] += "\ud83d"
            escaped = True
            stats["lone_surrogate"] = stats.get("lone_surrogate", 0) + 1
        for key in ("title", "selftext", "body"):
            if key in rec and rec[key]:
                rec[key] = tx.html_escape(rec[key])
        txt = rec[text_key] + (rec.get("title") or "")
        if "&amp;" in txt or "&gt;" in txt or "&lt;" in txt:
            stats["html_entity"] = stats.get("html_entity", 0) + 1
        if not txt.isascii():
            key = "non_ascii_escaped" if escaped else "non_ascii_raw"
            stats[key] = stats.get(key, 0) + 1
        if year in q["created_utc_string_years"]:
            rec["created_utc"] = str(created)
            stats["created_utc_string"] = stats.get("created_utc_string", 0) + 1
        stats["records_" + ("submissions" if is_sub else "comments")] = (
            stats.get("records_" + ("submissions" if is_sub else "comments"), 0) + 1
        )
        return _ENC[escaped].encode(rec).encode("utf-8")

    # --- submissions -----------------------------------------------------------------
    sub_lines = []
    for n, i in enumerate(sub_sel):
        di, created = int(dayix[i]), int(times[i])
        year = int(ctx.year[di])
        new = year >= q["new_schema_from"]
        rec = dict(_SUB_NEW if new else _SUB_OLD)
        sid = sub_ids[n]
        author = ctx.authors[int(len(ctx.authors) * d.u() ** 2.5)]
        title, body = texts(i, True)
        link_post = not body and d.u() < 0.5
        score = _score(d)
        slug = "_".join(title.lower().split()[:6])[:50] if title else "post"
        rec.update(
            author=author,
            created_utc=created,
            id=sid,
            title=title,
            selftext="" if link_post else body,
            is_self=not link_post,
            score=score,
            num_comments=int(d.u() ** 3 * 400),
            permalink=f"/r/wallstreetbets/comments/{sid}/{slug}/",
            retrieved_on=created + 3600 + int(d.u() * 86400 * 30),
            domain="i.redd.it" if link_post else "self.wallstreetbets",
            url=(
                f"https://i.redd.it/{base36(int(d.u() * 36**8))}.jpg"
                if link_post
                else f"https://www.reddit.com/r/wallstreetbets/comments/{sid}/{slug}/"
            ),
            link_flair_text=d.pick(_LINK_FLAIRS) if d.u() < 0.6 else None,
        )
        if link_post:
            rec["thumbnail"] = "default"
        if d.u() < 0.1:
            rec["author_flair_text"] = d.pick(_FLAIRS)
        if new:
            rec["author_fullname"] = "t2_" + base36(hash_author(author))
            rec["upvote_ratio"] = round(0.5 + d.u() * 0.5, 2)
        else:
            rec["ups"] = score
            rec["name"] = "t3_" + sid
        sub_lines.append(finish(rec, year, created, "selftext", True))

    # --- comments --------------------------------------------------------------------
    com_lines = []
    links: list[str] = []
    com_done = 0
    prev_block = SUB_ID_BASE + int(ctx.sub_offset[k])  # ids before this chunk: earlier posts
    n_before = np.searchsorted(sub_times, times[com_sel], side="left").tolist()
    for n, i in enumerate(com_sel):
        di, created = int(dayix[i]), int(times[i])
        year = int(ctx.year[di])
        new = year >= q["new_schema_from"]
        rec = dict(_COM_NEW if new else _COM_OLD)
        # link to a recent submission created before the comment (or one before this chunk)
        m = n_before[n]
        if m > 0:
            link = sub_ids[m - 1 - int(d.u() * min(m, 100))]
        else:
            link = base36(max(prev_block - 1 - int(d.u() * 500), SUB_ID_BASE))
        if com_done > 0 and d.u() < 0.45:
            pj = com_done - 1 - int(d.u() * min(com_done, 50))
            parent = "t1_" + com_ids[pj]
            link = links[pj]
        else:
            parent = "t3_" + link
        links.append(link)
        com_done += 1  # noqa: SIM113 (counts comments, not loop turns)
        cid = com_ids[n]
        author = ctx.authors[int(len(ctx.authors) * d.u() ** 2.5)]
        _, body = texts(i, False)
        huge = k == 0 and n == 0 and forced_ix[i] < 0
        if huge:
            # Every dump carries one extreme body (about 300k characters), early on.
            body = tx.long_body(300_000, d)
            stats["huge_body"] = stats.get("huge_body", 0) + 1
        keep = huge or forced_ix[i] >= 0
        if forced_ix[i] >= 0:
            forced_ids[cid] = int(forced_ix[i])
        score = _score(d)
        rec.update(
            author=author,
            created_utc=created,
            id=cid,
            body=body,
            link_id="t3_" + link,
            parent_id=parent,
            score=score,
            controversiality=1 if d.u() < 0.03 else 0,
            retrieved_on=created + 600 + int(d.u() * 86400 * 30),
        )
        if d.u() < 0.1:
            rec["author_flair_text"] = d.pick(_FLAIRS)
        if new:
            rec["author_fullname"] = "t2_" + base36(hash_author(author))
            rec["permalink"] = f"/r/wallstreetbets/comments/{link}/_/{cid}/"
        else:
            rec["ups"] = score
            rec["name"] = "t1_" + cid
        com_lines.append(finish(rec, year, created, "body", False, keep_text=keep))

    out = []
    for name, lines in (("submissions", sub_lines), ("comments", com_lines)):
        _swap_neighbours(lines, q["swapped_neighbours"], d, stats, name)
        lines = _add_malformed(lines, ctx.malformed, d, stats, name)
        out.append(b"\n".join(lines) + b"\n" if lines else b"")

    latent = []
    for a, j in zip(*np.nonzero(lat.any(axis=2))):
        latent.append((int(a + td_lo), int(j), *(int(c) for c in lat[a, j])))
    stats["forced_ids"] = forced_ids
    return out[0], out[1], stats, latent


def hash_author(name: str) -> int:
    """A stable (not Python-hash-seeded) number for an author name.

    >>> hash_author("Ape1") == hash_author("Ape1")
    True
    """
    h = 1469598103934665603
    for ch in name.encode("utf-8"):
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFF
    return h


def _swap_neighbours(lines: list, share: float, d: tx.Draws, stats: dict, name: str) -> None:
    i, n = 0, 0
    while i < len(lines) - 1:
        if d.u() < share:
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
            n += 1
            i += 2
        else:
            i += 1
    stats["swapped_" + name] = stats.get("swapped_" + name, 0) + n


def _add_malformed(lines: list, rate: float, d: tx.Draws, stats: dict, name: str) -> list:
    if rate <= 0 or not lines:
        return lines
    out = []
    for line in lines:
        if d.u() < rate:
            kind = MALFORMED_KINDS[int(d.u() * 3)]
            if kind == "blank":
                bad = d.pick((b"", b"   ", b"\t", b" \r"))
            elif kind == "truncated":
                # cut on a character boundary: broken JSON, but still valid UTF-8
                chars = line.decode("utf-8")
                bad = chars[: 1 + int(d.u() * (len(chars) - 2))].encode("utf-8")
            else:
                cut = 1 + int(d.u() * (len(line) - 2))
                bad = line[:cut] + d.pick((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x9f")) + line[cut:]
            out.append(bad)
            key = f"malformed_{name}_{kind}"
            stats[key] = stats.get(key, 0) + 1
        out.append(line)
    return out


# --- writer ----------------------------------------------------------------------------

_WORKER_CTX: DumpContext | None = None


def _init_worker(ctx: DumpContext) -> None:
    global _WORKER_CTX
    _WORKER_CTX = ctx


def _run_chunk(k: int):
    return make_chunk(_WORKER_CTX, k)


def open_zstd_writer(path: Path):
    """A zstd stream writer like the Pushshift dumps': level 3, 2 GiB window, no content size."""

    params = zstd.ZstdCompressionParameters.from_level(3, window_log=31)
    cctx = zstd.ZstdCompressor(compression_params=params)
    fh = open(path, "wb")  # noqa: SIM115 (the caller closes it after the stream writer)
    return fh, cctx.stream_writer(fh, closefd=False)


def write_dumps(ctx: DumpContext, sub_path: Path, com_path: Path, processes: int) -> tuple[dict, list]:
    """Make every chunk (in ``processes`` workers) and write both dumps in chunk order.

    Returns the summed stats (with the SHA-256 of each dump's uncompressed content) and
    the latent per-stock-day rows.
    """

    totals: dict = {"uncompressed_bytes_submissions": 0, "uncompressed_bytes_comments": 0}
    hs, hc = hashlib.sha256(), hashlib.sha256()
    forced_ids: dict = {}
    latent: list = []
    fs, ws = open_zstd_writer(sub_path)
    fc, wc = open_zstd_writer(com_path)
    try:
        if processes <= 1 or ctx.n_chunks <= 1:
            results = (make_chunk(ctx, k) for k in range(ctx.n_chunks))
            pool = None
        else:
            import multiprocessing as mp

            # spawn, not fork: the caller may hold threads (dask, torch) that fork would copy.
            pool = mp.get_context("spawn").Pool(processes, initializer=_init_worker, initargs=(ctx,))
            results = pool.imap(_run_chunk, range(ctx.n_chunks), chunksize=1)
        try:
            for sub, com, stats, lat in results:
                ws.write(sub)
                wc.write(com)
                hs.update(sub)
                hc.update(com)
                totals["uncompressed_bytes_submissions"] += len(sub)
                totals["uncompressed_bytes_comments"] += len(com)
                forced_ids.update(stats.pop("forced_ids"))
                for key, v in stats.items():
                    totals[key] = totals.get(key, 0) + v
                latent.extend(lat)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        ws.close()
        wc.close()
    finally:
        fs.close()
        fc.close()
    totals["forced_ids"] = forced_ids
    totals["sha256_submissions"] = hs.hexdigest()
    totals["sha256_comments"] = hc.hexdigest()
    return totals, latent


def default_processes() -> int:
    """Worker processes for GB-scale runs: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
