"""WSB-like text: vocabulary, ticker mention forms, and post composition.

A post *about* a stock is built from short phrases. Each phrase is drawn from the
**hype** bank (squeeze, moon, calls, 🚀, tendies, with clearly positive words) with
probability ``s`` and from the **calm** bank (dividend, hold, valuation ...) otherwise, where
``s = sigmoid(gamma * h + gamma_u * u + delta)`` is the post's tone, ``h`` the stock's hype
state that day, ``u`` its tone state and ``delta`` the author's own mood. So what the posts
about a stock *say* moves with its hype; averaged over a stock-day, the share of hype
phrases estimates ``gamma * h + gamma_u * u``. A post is about the **topic** (earnings and
guidance talk, the ``TOPIC`` bank, tone-free) with a probability that moves with the
stock's topic state ``q``; most of its phrases are then topic phrases. Posts made after a
close about a stock whose next-day return is news (``--effect-after-close``) carry **news**
phrases: after-hours good news (``NEWS_GOOD``, VADER-positive) when that return is
positive, bad news (``NEWS_BAD``, VADER-negative) when it is negative.

Posts that mention no stock (most of them) are generic chatter whose tone is unrelated
to any hype. They carry the traps of real WSB text: common words in capitals (``ALL IN``,
``IT'S``, ``CEO``, ``DD``, ``YOLO``), lower-case symbols (``tsla`` is not a mention),
``S&P`` (HTML-escaped by Reddit to ``S&amp;P``), markdown and URLs.

Random draws come from :class:`Draws`, a buffer of PCG64 uniforms consumed in order, so a
chunk's text is a pure function of its seed (no ``random`` module, no hash order).
"""

from __future__ import annotations

import string

import numpy as np

HYPE = (
    "{T} to the moon 🚀🚀🚀 love it",
    "short squeeze incoming on {T}, so excited",
    "loaded up on {T} calls, {S}c {D} 🚀 best trade ever",
    "tendies tonight boys, what a win",
    "diamond hands 💎🙌 not selling {T}, this is amazing",
    "this is going parabolic, awesome",
    "gamma squeeze is real, huge gains coming",
    "YOLO'd my entire savings into {T} calls, feeling great",
    "apes together strong 🦍🦍",
    "buy the dip and hold the line, {T} squeeze not squoze, so happy",
    "FOMO'd in at the open, best day ever",
    "short interest over {PCT}%, hedgies are fukd, we win",
    "{T} 🚀🚀 next stop ${S}, love this",
    "unstoppable 🚀 great vibes",
    "lambo or food stamps, all in on {T}, excited",
    "calls are printing, literally free money, amazing",
    "{T} ripping after hours, moon mission confirmed 🌕 wonderful",
    "bought more {T} weeklies, we ride at dawn, glorious",
    "squeeze of the century, incredible gains",
    "{T} options chain is on fire, {S}c for {D}, best play",
    "my {T} calls went up {PCT}% today 🚀 huge win",
    "hold 💎🙌 the squeeze is just starting, great",
    "retail is buying every dip on {T}, tendies incoming, awesome",
    "rocket fuel loaded 🚀🚀 {T} breaking out, love it",
)
"""Exuberant phrases: VADER and FinBERT-style sentiment read them as clearly positive."""

CALM = (
    "{T} pays a dividend, I just reinvest it",
    "holding {T} for the long term, steady as it goes",
    "P/E around {PE}, valuation in the usual range",
    "balance sheet looks fine, debt unchanged",
    "selling covered calls on {T} for a little income",
    "nothing happening with {T} today, flat as usual",
    "dollar cost averaging into {T} every month",
    "free cash flow covers the payout",
    "trimmed my {T} position to rebalance the portfolio",
    "{T} is a value stock, margins unchanged",
    "the dividend yield on {T} is about {DY}%",
    "long term holder of {T}, I check it once a quarter",
    "{T} trades in a tight range most days",
    "buyback program continues, slow and steady",
    "fundamentals unchanged, nothing new here",
    "not much going on, {T} is just sitting there",
)
"""Unexcited phrases (VADER scores nearly all of them 0, as it does the topic phrases)."""

TOPIC = (
    "earnings next week, guidance should be in line",
    "quarterly revenue grew {PCT}% year over year",
    "management reiterated full-year guidance",
    "analysts expect EPS of {EPS} this quarter",
    "waiting for the 10-K before adding more {T}",
    "conference call was uneventful, outlook unchanged",
    "{T} reports earnings after the close",
    "{T} earnings call tomorrow, watch the guidance",
    "consensus EPS estimate is {EPS} for the quarter",
    "the quarterly report comes out {D}, revenue and margins in focus",
    "guidance for next quarter is what matters in the {T} report",
    "earnings whisper number for {T} is {EPS}",
    "{T} earnings date is {D}, implied move {PCT}%",
    "reading the {T} earnings transcript, segment revenue in line",
)
"""Earnings and guidance talk: one topic, tone-free (VADER scores these phrases 0)."""

NEWS_GOOD = (
    "{T} up {PCT}% after hours, great earnings beat",
    "{T} smashed estimates, stock soaring after hours, amazing",
    "huge beat from {T} tonight, guidance raised, love it",
    "{T} surging after the close on great news",
    "{T} beat and raise, calls will print tomorrow, awesome",
    "strong quarter from {T}, excellent results after the bell",
)
"""After-hours good news (the next day's return is positive): VADER reads them as positive."""

NEWS_BAD = (
    "{T} down {PCT}% after hours, terrible miss",
    "{T} missed badly, stock crashing after the close, awful",
    "guidance cut at {T}, this is a disaster",
    "{T} tanking after hours on bad news, RIP my calls",
    "{T} plunging after the close, worst earnings ever, ugly",
    "horrible report from {T} tonight, bagholders crying",
)
"""After-hours bad news (the next day's return is negative): VADER reads them as negative."""

NEUTRAL = (
    "what do you guys think about {T}?",
    "{T} at ${P} right now",
    "anyone else holding {T}?",
    "position: {N} shares of {T}",
    "thoughts on {T}?",
    "saw {T} on the news today",
    "{T} chart for today",
    "is it too late to get into {T}?",
)

GENERIC = (
    "what are your moves tomorrow?",
    "loss porn incoming",
    "DD inside, read before you comment",
    "YOLO",
    "ALL IN on red, wish me luck",
    "IT'S HAPPENING",
    "the CEO just tweeted again lol",
    "this sub is a casino",
    "I'm financially ruined",
    "bears r fuk 🌈🐻",
    "positions or ban",
    "S&P 500 at all time highs again",
    "my wife's boyfriend says hi",
    "LOL this market",
    "WSB never changes",
    "FOMO is a hell of a drug",
    "USA USA USA",
    "FDA approval tomorrow, coin flip",
    "IPO lockup ends soon",
    "the SEC is watching this sub",
    "ATH again, what a time",
    "my P&L looks sad today",
    "Fed meeting on Wednesday, stay safe",
    "anyone else lose everything on theta?",
    "just here for the memes",
    "guh",
    "sir this is a Wendy's",
    "I like the stock",
    "this is the way",
    "ban",
    "paper hands everywhere today",
    "DD: read it before you buy anything",
    "Daily Discussion Thread",
    "what's your favourite broker?",
    "CPI numbers out tomorrow",
    "IT guy here, can confirm",
    "CEO of losing money",
    "dividend investors are sleeping well tonight",
    "I'm not a financial advisor",
    "opened my account, up {PCT}% then down {PCT}%",
)

# Lower-case symbols WSB writes that are *not* mentions (the rules count capitals only).
LOWER_TRAPS = ("tsla", "gme", "amc", "spy", "nvda", "aapl", "bb", "nok")

EMOJI = ("🚀", "💎", "🙌", "🦍", "🌕", "🌈", "🐻", "📈", "📉", "🤡", "💰", "🔥")

URLS = (
    "https://finance.yahoo.com/quote/{T}/",
    "https://i.redd.it/{R}.jpg",
    "https://www.reddit.com/r/wallstreetbets/comments/{R}/",
    "https://imgur.com/a/{R}",
)

DD_PARAGRAPH = (
    "**Thesis.** {X}\n\n> {Y}\n\n* revenue: {PCT}% growth\n* margin: {DY}%\n\n"
    "I ran the numbers again & again and {Z}. Sources: {URL}\n\n---\n\n"
)

# Mention forms: (name, probability) for ordinary and for stop-listed / one-letter tickers.
FORMS = ("dollar", "bare", "emoji", "punct", "lower")
FORM_P = (0.35, 0.35, 0.08, 0.12, 0.10)
FORM_P_PROTECTED = (0.80, 0.08, 0.02, 0.02, 0.08)
_PUNCT = ("'s", ".", ",", "!", "?", ":")


class Draws:
    """Uniform draws from a PCG64 generator, consumed in order with cheap Python calls.

    >>> d = Draws(np.random.Generator(np.random.PCG64(0)), block=4)
    >>> xs = [d.u() for _ in range(6)]
    >>> all(0 <= x < 1 for x in xs), d.pick(("a", "b")) in ("a", "b"), 2 <= d.int(2, 5) < 5
    (True, True, True)
    """

    __slots__ = ("_rng", "_next", "_block")

    def __init__(self, rng: np.random.Generator, block: int = 65536):
        self._rng, self._block = rng, block
        self._next = iter(()).__next__

    def u(self) -> float:
        try:
            return self._next()
        except StopIteration:
            self._next = iter(self._rng.random(self._block).tolist()).__next__
            return self._next()

    def int(self, lo: int, hi: int) -> int:
        """Integer in ``[lo, hi)``."""
        return lo + int(self.u() * (hi - lo))

    def pick(self, seq):
        return seq[int(self.u() * len(seq))]

    def choose(self, names, probs):
        x, acc = self.u(), 0.0
        for name, p in zip(names, probs):
            acc += p
            if x < acc:
                return name
        return names[-1]

    def normal(self) -> float:
        # Sum of 4 uniforms, centred and scaled: cheap, smooth enough for a mood shift.
        return (self.u() + self.u() + self.u() + self.u() - 2.0) * 1.7320508075688772


def mention(sym: str, protected: bool, d: Draws) -> tuple[str, str]:
    """One way WSB writes a ticker: returns (form, text).

    >>> d = Draws(np.random.Generator(np.random.PCG64(1)))
    >>> {mention("GME", False, d)[0] for _ in range(200)} == set(FORMS)
    True
    """
    form = d.choose(FORMS, FORM_P_PROTECTED if protected else FORM_P)
    if form == "dollar":
        return form, "$" + sym
    if form == "bare":
        return form, sym
    if form == "emoji":
        return form, sym + d.pick(EMOJI)
    if form == "punct":
        return form, sym + d.pick(_PUNCT)
    return form, sym.lower()


_SLOTS: dict[str, tuple[str, ...]] = {}
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def _slot(name: str, tick: str, d: Draws) -> str | int:
    if name == "T":
        return tick
    if name == "S":
        return d.int(5, 90) * 5
    if name == "D":
        return f"{d.int(1, 13)}/{d.int(1, 29)}"
    if name == "PCT":
        return d.int(2, 140)
    if name == "PE":
        return d.int(8, 40)
    if name == "EPS":
        return f"{d.int(10, 400) / 100:.2f}"
    if name == "DY":
        return f"{d.int(10, 60) / 10:.1f}"
    if name == "P":
        return f"{d.int(500, 90000) / 100:.2f}"
    if name == "N":
        return d.int(1, 50) * 10
    return "".join(_ALNUM[int(d.u() * 36)] for _ in range(6))  # R: a random id


def _fill(template: str, tick: str, d: Draws) -> str:
    """Fill a template's slots; only the slots it has consume random draws.

    >>> _fill("{T} at ${P}", "GME", Draws(np.random.Generator(np.random.PCG64(0))))[:5]
    'GME a'
    """
    slots = _SLOTS.get(template)
    if slots is None:
        slots = tuple(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(template) if f))
        _SLOTS[template] = slots
    if not slots:
        return template
    return template.format(**{name: _slot(name, tick, d) for name in slots})


def tone_phrases(
    tick: str, tone: float, k: int, d: Draws, topic: float = 0.0, news: float = 0.0
) -> tuple[list[str], int, int, int]:
    """``k`` phrases: each a news phrase with probability ``|news|`` (good news if
    ``news > 0``, bad news if ``< 0``), else hype with probability ``tone``, else a topic
    phrase with probability ``topic``, else calm; returns (phrases, n_hype, n_topic, n_news).

    With ``topic = 0`` and ``news = 0`` no extra random number is drawn.
    """
    out, n_hype, n_topic, n_news = [], 0, 0, 0
    p_news = abs(news)
    for _ in range(k):
        if p_news > 0.0 and d.u() < p_news:
            out.append(_fill(d.pick(NEWS_GOOD if news > 0 else NEWS_BAD), tick, d))
            n_news += 1
        elif d.u() < tone:
            out.append(_fill(d.pick(HYPE), tick, d))
            n_hype += 1
        elif topic > 0.0 and d.u() < topic:
            # A topic post talks earnings where another post would be calm: its tone (the
            # share of hype phrases) is the same as any post's.
            out.append(_fill(d.pick(TOPIC), tick, d))
            n_topic += 1
        else:
            out.append(_fill(d.pick(CALM), tick, d))
    return out, n_hype, n_topic, n_news


def about_text(
    sym: str,
    protected: bool,
    tone: float,
    submission: bool,
    d: Draws,
    stats: dict,
    other: str | None = None,
    topic: float = 0.0,
    news: float = 0.0,
) -> tuple[str, str, int, int, int, int]:
    """Text of a post about one stock: returns (title, body, n_hype_phrases,
    n_tone_phrases, n_topic_phrases, n_news_phrases).

    For comments the title is empty. The first phrase carries the ticker; a second,
    unrelated ticker ``other`` is mentioned in passing when given. ``topic`` is the share of
    phrases that are earnings talk (0 for a post that is not about the topic); ``news`` the
    signed share of after-hours news phrases (0 for a post that carries no news).
    n_tone_phrases counts the hype and calm phrases (neither topic nor news).
    """
    form, tick = mention(sym, protected, d)
    stats["form_" + form] = stats.get("form_" + form, 0) + 1
    k = (2 + int(d.u() * 4)) if submission else (1 + int(d.u() * 2.2))
    phrases, n_hype, n_topic, n_news = tone_phrases(tick, tone, k, d, topic, news)
    if tick not in phrases[0]:
        phrases[0] = f"{tick} {phrases[0]}" if d.u() < 0.5 else f"{phrases[0]} {tick}"
    if d.u() < 0.25:
        phrases.insert(1 if d.u() < 0.7 else 0, _fill(d.pick(NEUTRAL), tick, d))
    if other is not None:
        phrases.append(f"also watching ${other}")
    if d.u() < 0.15:
        phrases.append(d.pick(EMOJI) * d.int(1, 4))
    if submission:
        title = phrases[0]
        rest = phrases[1:]
        if d.u() < 0.2:
            rest.append(_fill(d.pick(URLS), sym, d))
        sep = "\n\n" if d.u() < 0.5 else " "
        return title, sep.join(rest), n_hype, k - n_topic - n_news, n_topic, n_news
    return "", " ".join(phrases), n_hype, k - n_topic - n_news, n_topic, n_news


def generic_text(submission: bool, d: Draws) -> tuple[str, str]:
    """Chatter that mentions no stock (but is full of capitalised non-tickers)."""
    k = (1 + int(d.u() * 4)) if submission else (1 + int(d.u() * 1.6))
    parts = []
    for _ in range(k):
        x = d.u()
        if x < 0.75:
            parts.append(_fill(d.pick(GENERIC), "", d))
        elif x < 0.87:
            parts.append(_fill(d.pick(HYPE if d.u() < 0.5 else CALM), "it", d))
        elif x < 0.95:
            parts.append(f"{d.pick(LOWER_TRAPS)} {d.pick(('gang', 'holders', 'is dead', 'lol'))}")
        else:
            parts.append(_fill(d.pick(URLS), d.pick(("tsla", "gme")), d))
    if submission:
        title = parts[0]
        body = " ".join(parts[1:]) if d.u() < 0.7 else ""
        return title, body
    return "", " ".join(parts)


def long_body(target_chars: int, d: Draws) -> str:
    """A long due-diligence style body of about ``target_chars`` characters."""
    out, n = [], 0
    while n < target_chars:
        para = DD_PARAGRAPH.format(
            X=_fill(d.pick(CALM), "the company", d),
            Y=_fill(d.pick(GENERIC), "", d),
            Z=_fill(d.pick(HYPE + CALM), "it", d),
            PCT=d.int(2, 90),
            DY=d.int(5, 60),
            URL=_fill(d.pick(URLS), "XYZ", d),
        )
        out.append(para)
        n += len(para)
    return "".join(out)[:target_chars]


def html_escape(text: str) -> str:
    """Reddit stores ``&``, ``<`` and ``>`` HTML-escaped.

    >>> html_escape("S&P > 4000 <3")
    'S&amp;P &gt; 4000 &lt;3'
    """
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text
