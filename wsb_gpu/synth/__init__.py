"""Synthetic r/WallStreetBets dumps and CRSP files with a planted text -> volatility effect.

:func:`generate` writes, deterministically for a seed (the same uncompressed bytes on every
run and machine):

* ``wallstreetbets_submissions.zst``, ``wallstreetbets_comments.zst`` - Pushshift-style
  NDJSON, zstd stream-compressed with a 2 GiB window and no content size;
* ``stocknames.csv`` - CRSP name history; ``crsp_daily.csv`` - CRSP daily file;
* ``truth.json`` - parameters, the planted effect, quirk shares and counts;
* ``latent.parquet`` - the generator's latent series per stock-day (hype, log-volatility
  with and without the hype term, planned post counts), for checks and plots.

Posts are spread around the clock with a New York daytime peak (:mod:`~wsb_gpu.synth.clock`);
with ``effect_after_close`` the posts made between a close and the next open are news about
the next trading day's return (the one a forecast made at the close is about).

The data-generating process is documented with its formulas in ``docs/synthetic-data.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wsb_gpu.dates import epoch_day
from wsb_gpu.errors import WsbError

__all__ = ["generate", "FILES", "DEFAULT_EFFECT"]

FILES = {
    "submissions": "wallstreetbets_submissions.zst",
    "comments": "wallstreetbets_comments.zst",
    "stocknames": "stocknames.csv",
    "crsp": "crsp_daily.csv",
    "truth": "truth.json",
    "latent": "latent.parquet",
}

DEFAULT_EFFECT = 0.5
GENERATOR_VERSION = 3
# 2: attention, tone and topic channels; hype phrases with positive words
# 3: New York time-of-day profile (posts around the clock), sessions with early closes, the after-close channel
CHUNK_RECORDS = 40_000  # target records per chunk (bounds each worker's memory)


def _as_date(value: Any, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as e:
        raise WsbError(f"--{name} must be a date like 2012-01-01, got {value!r}; pass YYYY-MM-DD") from e


def generate(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    tickers: int = 50,
    start: str | dt.date = "2012-01-01",
    end: str | dt.date = "2019-12-31",
    posts_per_day: float = 200.0,
    effect: float = DEFAULT_EFFECT,
    effect_attention: float = 0.0,
    effect_tone: float = 0.0,
    effect_topic: float = 0.0,
    effect_after_close: float = 0.0,
    malformed: float = 0.0,
    processes: int | None = None,
    params: dict | None = None,
    text_params: dict | None = None,
    quirks: dict | None = None,
    progress: bool = False,
) -> dict:
    """Write a synthetic WSB + CRSP data set into ``out`` and return a summary.

    Parameters
    ----------
    out
        Folder to write into (created; files already there with the same names are
        replaced, other files are left alone).
    seed
        Seed of every random stream; the same seed gives the same uncompressed bytes.
    tickers
        Number of PERMNOs (at least 10: the special cases are always included).
    start, end
        Calendar range (inclusive) of posts and trading days.
    posts_per_day
        Mean records (submissions + comments) per calendar day over the range; activity
        grows over the years and is lower at weekends.
    effect
        ``b`` in ``log sigma[t+1] = base + b * h[t] + ...``: the hype, which moves both the
        number and the tone of the posts about a stock. 0 with the three below 0 is the
        placebo (no text state enters volatility).
    effect_attention, effect_tone, effect_topic
        The effects of the states that each move one observable only: the number of
        posts (attention), the share of hype phrases (tone) and the share of earnings
        talk (topic). 0 by default; planting one alone (with ``effect=0``) makes a world
        where only that signal can forecast volatility.
    effect_after_close
        ``B`` of the after-close news: the posts about a stock made after the close of
        trading day t and before the open of t+1 grow in number with ``|ret[t+1]|`` (the
        close t -> close t+1 return) and carry good or bad after-hours news with its sign.
        Nothing else: volatility never depends on it. With every other effect 0 the only
        text that knows anything about a target is that one, so a forecast dated by the
        market close must not gain from the text and one dated by the UTC day must.
    malformed
        Rate of broken lines (blank, truncated JSON, invalid UTF-8) inserted per record.
    processes
        Worker processes making chunks; None = every core for large runs, 1 for small.
    params, text_params, quirks
        Overrides of :data:`~wsb_gpu.synth.process.DEFAULT_PARAMS`,
        :data:`~wsb_gpu.synth.dumps.DEFAULT_TEXT_PARAMS` and
        :data:`~wsb_gpu.synth.dumps.DEFAULT_QUIRKS`.

    Returns
    -------
    dict
        ``files`` (name -> path, bytes), ``records`` (per dump), ``malformed`` (per dump
        and kind), ``seconds``, ``records_per_s``, ``truth`` (path), the parameters, and
        where in the day the records fall: ``after_close_share`` (between a close and the
        next open, weekends and holidays included) and ``time_of_day`` (that share, the
        session's, and the after-close share still on the close's UTC date).
    """
    from wsb_gpu.synth import clock, crsp, dumps
    from wsb_gpu.synth.calendar import sessions_utc, trading_days
    from wsb_gpu.synth.process import DEFAULT_PARAMS, build_universe, simulate_latent

    t0 = time.perf_counter()
    start_d, end_d = _as_date(start, "start"), _as_date(end, "end")
    if end_d <= start_d:
        raise WsbError(f"--end ({end_d}) must be after --start ({start_d}); pass a later --end")
    if not (posts_per_day > 0 and math.isfinite(posts_per_day)):
        raise WsbError(f"--posts-per-day must be a positive number, got {posts_per_day!r}")
    effects = {"attention": effect_attention, "tone": effect_tone, "topic": effect_topic}
    checked = {
        "effect": effect,
        **{f"effect-{k}": v for k, v in effects.items()},
        "effect-after-close": effect_after_close,
    }
    for name, value in checked.items():
        if not math.isfinite(value):
            raise WsbError(f"--{name} must be a finite number, got {value!r}; 0 plants nothing")
    effects = {k: float(v) for k, v in effects.items()}
    effect_after_close = float(effect_after_close)
    if not 0.0 <= malformed <= 0.5:
        raise WsbError(f"--malformed must be a rate between 0 and 0.5, got {malformed!r}; e.g. 0.001")
    seed = int(seed)
    if seed < 0:
        raise WsbError(f"--seed must be a non-negative integer, got {seed}")
    p = {**DEFAULT_PARAMS, **(params or {})}
    tp = {**dumps.DEFAULT_TEXT_PARAMS, **(text_params or {})}
    qk = {**dumps.DEFAULT_QUIRKS, **(quirks or {})}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    days = trading_days(start_d, end_d)
    stocks = build_universe(days, int(tickers), seed)
    latent = simulate_latent(stocks, len(days), seed=seed, effect=float(effect), effects=effects, params=p)
    n_st = len(stocks)

    # --- calendar days -> trading day, and the symbol each stock goes by ----------------
    cal = np.arange(np.datetime64(start_d, "D"), np.datetime64(end_d, "D") + 1)
    day_td = np.searchsorted(days, cal, side="left")
    day_td = np.where(day_td < len(days), day_td, -1)
    symbols: list[str] = sorted({n.ticker for s in stocks for n in s.names})
    sym_pos = {t: i for i, t in enumerate(symbols)}
    sym_idx = np.full((len(cal), n_st), -1, dtype=np.int16 if len(symbols) < 32000 else np.int32)
    for j, s in enumerate(stocks):
        for nm in s.names:
            a = np.searchsorted(cal, np.datetime64(nm.namedt, "D"), side="left")
            b = np.searchsorted(cal, np.datetime64(nm.nameendt, "D"), side="right")
            sym_idx[a:b, j] = sym_pos[nm.ticker]
    td_ok = day_td >= 0
    alive_cal = np.zeros((len(cal), n_st), dtype=bool)
    alive_cal[td_ok] = latent["alive"][day_td[td_ok]]
    sym_idx[~alive_cal] = -1

    # --- the plan: records per day, and per stock for the posts about it ----------------
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(dumps.STREAM_PLAN,))))
    g = dumps.day_factor(cal, tp["yearly_growth"], tp["weekend_factor"])
    weight = np.array([s.weight for s in stocks])
    kappa, kappa_g = tp["hype_count_loading"], tp["attention_count_loading"]
    h_cal = np.zeros((len(cal), n_st))
    h_cal[td_ok] = kappa * latent["hype"][day_td[td_ok]] + kappa_g * latent["attention"][day_td[td_ok]]
    lam = (
        tp["mention_share"]
        * posts_per_day
        * g[:, None]
        * weight[None, :]
        * np.exp(h_cal - (kappa * kappa + kappa_g * kappa_g) / 2.0)
        * (sym_idx >= 0)
    )
    # --- when in the UTC day: the New York profile, split at the open and the close ------
    day_s = cal.astype("datetime64[s]").astype(np.int64)
    opens, closes = sessions_utc(days)
    open_s = np.full(len(cal), clock.DAY_SECONDS, dtype=np.int64)
    end_s = np.full(len(cal), clock.DAY_SECONDS, dtype=np.int64)
    is_td = np.zeros(len(cal), dtype=bool)
    cal_of_td = np.searchsorted(cal, days)
    is_td[cal_of_td] = True
    open_s[cal_of_td] = opens - day_s[cal_of_td]
    end_s[cal_of_td] = closes - day_s[cal_of_td] + 1
    day_cdf, day_pattern = clock.minute_cdfs(clock.utc_offsets(cal))
    bounds = dumps.piece_bounds(open_s, end_s)
    share = np.diff(clock.cdf_at(day_cdf, bounds, rows=day_pattern[:, None]), axis=1)  # (days, pieces)
    # --- the after-close channel: the trading day whose open each piece precedes ----------
    n_td = len(days)
    news_td = np.stack([day_td, np.full(len(cal), -1), np.where(is_td, day_td + 1, -1)], axis=1)
    news_td = np.where((news_td >= 0) & (news_td < n_td), news_td, -1)
    mult = np.ones((len(cal), n_st, len(dumps.PIECES)))
    news = None
    if effect_after_close != 0:
        rho = np.minimum(np.abs(latent["ret"]) / tp["news_scale"], tp["news_cap"])
        raw = np.exp(effect_after_close * tp["news_count_loading"] * rho)
        raw = raw / raw[latent["alive"]].mean()  # mean 1 over the stock-days: volume unchanged on average
        has = news_td >= 0
        safe = np.where(has, news_td, 0)
        live = latent["alive"][safe] & has[:, :, None]  # (days, pieces, stocks)
        mult = np.where(live, raw[safe], 1.0).transpose(0, 2, 1)
        news = (
            np.sign(latent["ret"]) * (1.0 - np.exp(-abs(effect_after_close) * tp["news_phrase_loading"] * rho))
        ).astype(np.float32)
    n_about = rng.poisson(lam[:, :, None] * share[:, None, :] * mult)
    about_sub = rng.binomial(n_about, tp["submission_share"]).astype(np.int32)
    about_com = (n_about - about_sub).astype(np.int32)
    n_gen = rng.poisson((1.0 - tp["mention_share"]) * posts_per_day * g)
    gen_sub = rng.binomial(n_gen, tp["submission_share"]).astype(np.int64)
    gen_com = (n_gen - gen_sub).astype(np.int64)

    forced, special = _special_cases(stocks, days, cal)
    chunk_days = int(min(16, max(1, CHUNK_RECORDS // max(1.0, posts_per_day * float(g.max())))))
    n_chunks = -(-len(cal) // chunk_days)
    per_day_sub = about_sub.sum(axis=(1, 2)) + gen_sub
    per_day_com = about_com.sum(axis=(1, 2)) + gen_com
    for f in forced:
        per_day_com[f["day"]] += 1
    edges = np.minimum(np.arange(n_chunks + 1) * chunk_days, len(cal))
    sub_offset = np.concatenate([[0], np.cumsum(per_day_sub)])[edges]
    com_offset = np.concatenate([[0], np.cumsum(per_day_com)])[edges]
    n_records = int(sub_offset[-1] + com_offset[-1])
    authors = dumps.make_authors(seed, int(min(200_000, max(2000, posts_per_day * 30))))
    old_symbol = [s.names[0].ticker if len({n.ticker for n in s.names}) > 1 else None for s in stocks]

    ctx = dumps.DumpContext(
        seed=seed,
        day0=epoch_day(start_d),
        n_days=len(cal),
        day_td=day_td,
        year=cal.astype("datetime64[Y]").astype(int) + 1970,
        sym_idx=sym_idx,
        symbols=symbols,
        protected=np.array([s.common_word or len(s.names[0].ticker) == 1 for s in stocks]),
        old_symbol=old_symbol,
        about_sub=about_sub,
        about_com=about_com,
        gen_sub=gen_sub,
        gen_com=gen_com,
        hype=latent["hype"],
        tone_state=latent["tone"],
        topic_state=latent["topic"],
        day_cdf=day_cdf,
        day_pattern=day_pattern,
        open_s=open_s,
        end_s=end_s,
        news=news,
        alive=latent["alive"],
        chunk_days=chunk_days,
        sub_offset=sub_offset,
        com_offset=com_offset,
        authors=authors,
        text_params=tp,
        quirks=qk,
        malformed=float(malformed),
        forced=forced,
    )
    if processes is None:
        processes = dumps.default_processes() if n_records > 150_000 else 1
    processes = max(1, int(processes))

    paths = {k: out / v for k, v in FILES.items()}
    tmp = {k: v.with_name(f".{v.name}.tmp") for k, v in paths.items()}
    try:
        t_dump = time.perf_counter()
        stats, lat_rows = dumps.write_dumps(ctx, tmp["submissions"], tmp["comments"], processes)
        dump_seconds = time.perf_counter() - t_dump
        n_names = crsp.write_stocknames(stocks, tmp["stocknames"], seed)
        panel = crsp.daily_panel(stocks, days, latent, seed)
        n_daily = crsp.write_daily(stocks, days, panel, latent["alive"], tmp["crsp"])
        _write_latent(tmp["latent"], stocks, days, latent, lat_rows)
        forced_ids = stats.pop("forced_ids")
        sha = {k: stats.pop(f"sha256_{k}") for k in ("submissions", "comments")}
        for cid, fi in forced_ids.items():
            forced[fi]["id"] = cid
        for f in forced:
            f.pop("stock", None)
            f.pop("day", None)
        truth = _truth(
            seed=seed,
            tickers=int(tickers),
            start=start_d,
            end=end_d,
            posts_per_day=posts_per_day,
            effect=float(effect),
            effects=effects,
            effect_after_close=effect_after_close,
            malformed=float(malformed),
            p=p,
            tp=tp,
            qk=qk,
            stats=stats,
            crsp_counts=panel["counts"],
            special=special,
            forced=forced,
            stocks=stocks,
            n_days=len(days),
            n_cal=len(cal),
            chunk_days=chunk_days,
            n_chunks=n_chunks,
            n_names=n_names,
            n_daily=n_daily,
            latent=latent,
            lat_rows=lat_rows,
        )
        truth["files"] = {k: {"name": FILES[k], "sha256_uncompressed": sha[k]} for k in ("submissions", "comments")}
        with open(tmp["truth"], "w", encoding="utf-8") as fh:
            json.dump(truth, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        for k in FILES:
            os.replace(tmp[k], paths[k])
    finally:
        for v in tmp.values():
            if v.exists():
                v.unlink()

    seconds = time.perf_counter() - t0
    recs = {"submissions": stats.get("records_submissions", 0), "comments": stats.get("records_comments", 0)}
    mal = {
        name: {kind: stats.get(f"malformed_{name}_{kind}", 0) for kind in dumps.MALFORMED_KINDS}
        for name in ("submissions", "comments")
    }
    unc = stats["uncompressed_bytes_submissions"] + stats["uncompressed_bytes_comments"]
    time_of_day = _time_of_day(stats)
    return {
        "out": str(out),
        "files": {k: {"path": str(v), "bytes": v.stat().st_size} for k, v in paths.items()},
        "records": recs,
        "malformed": mal,
        "stocknames_rows": n_names,
        "crsp_rows": n_daily,
        "uncompressed_bytes": unc,
        "seconds": seconds,
        "dump_seconds": dump_seconds,
        "records_per_s": (recs["submissions"] + recs["comments"]) / max(dump_seconds, 1e-9),
        "uncompressed_mb_per_s": unc / 1e6 / max(dump_seconds, 1e-9),
        "processes": processes,
        "seed": seed,
        "effect": float(effect),
        "effects": {**effects, "after_close": effect_after_close},
        "after_close_share": time_of_day["after_close_share"],
        "time_of_day": time_of_day,
        "tickers": int(tickers),
        "truth": str(paths["truth"]),
    }


def _time_of_day(stats: dict) -> dict:
    """Shares of the records by where in the market day they were made."""
    n = max(stats.get("records_submissions", 0) + stats.get("records_comments", 0), 1)
    return {
        "session_share": stats.get("time_session", 0) / n,
        "after_close_share": stats.get("time_after_close", 0) / n,
        "after_close_same_utc_day_share": stats.get("time_after_close_same_utc_day", 0) / n,
    }


def _special_cases(stocks, days, cal) -> tuple[list[dict], dict]:
    """Boundary posts (forced comments) and the description of the special stocks."""
    one = dt.timedelta(days=1)
    chg = next(s for s in stocks if len({n.ticker for n in s.names}) > 1)
    dead = next(s for s in stocks if s.delisted)
    reuse = next(s for s in stocks if s is not dead and s.names[0].ticker == dead.names[-1].ticker)
    renamed = next(s for s in stocks if len(s.names) > 1 and len({n.ticker for n in s.names}) == 1)
    day0 = dt.date.fromisoformat(str(cal[0]))

    def ix(d: dt.date) -> int:
        return (d - day0).days

    j_of = {s.permno: j for j, s in enumerate(stocks)}
    d_dead = dead.names[-1].nameendt
    d_chg = chg.names[0].nameendt
    old, new = chg.names[0].ticker, chg.names[1].ticker
    sym = dead.names[-1].ticker
    forced = [
        dict(
            day=ix(d_dead),
            second=86370,
            stock=j_of[dead.permno],
            text=f"${sym} holders, last day before the delisting",
            expect_ticker=sym,
            expect_permno=dead.permno,
        ),
        dict(
            day=ix(d_dead + one),
            second=30,
            stock=j_of[reuse.permno],
            text=f"${sym} is a new listing today, same symbol different company",
            expect_ticker=sym,
            expect_permno=reuse.permno,
        ),
        dict(
            day=ix(d_chg),
            second=86370,
            stock=j_of[chg.permno],
            text=f"${old} last day under the old ticker",
            expect_ticker=old,
            expect_permno=chg.permno,
        ),
        dict(
            day=ix(d_chg + one),
            second=30,
            stock=j_of[chg.permno],
            text=f"${new} first day under the new ticker",
            expect_ticker=new,
            expect_permno=chg.permno,
        ),
        dict(
            day=ix(d_chg + one),
            second=90,
            stock=j_of[chg.permno],
            text=f"${old} will always be {old} to me",
            expect_ticker=None,
            expect_permno=None,
        ),
    ]
    for f in forced:
        f["created_utc"] = int(
            (
                dt.datetime(day0.year, day0.month, day0.day, tzinfo=dt.timezone.utc)
                + dt.timedelta(days=f["day"], seconds=f["second"])
            ).timestamp()
        )
    special = {
        "ticker_change": {
            "permno": chg.permno,
            "old": old,
            "new": new,
            "old_nameendt": d_chg.isoformat(),
            "new_namedt": (d_chg + one).isoformat(),
        },
        "reused_symbol": {
            "ticker": sym,
            "first_permno": dead.permno,
            "first_nameendt": d_dead.isoformat(),
            "second_permno": reuse.permno,
            "second_namedt": reuse.names[0].namedt.isoformat(),
            "delisting_date": str(days[dead.last]),
        },
        "name_change": {
            "permno": renamed.permno,
            "ticker": renamed.names[0].ticker,
            "names": [n.comnam for n in renamed.names],
            "new_namedt": renamed.names[1].namedt.isoformat(),
        },
        "common_word_tickers": sorted(s.names[0].ticker for s in stocks if s.common_word),
        "single_letter_tickers": sorted({n.ticker for s in stocks for n in s.names if len(n.ticker) == 1}),
    }
    return forced, special


def _write_latent(path: Path, stocks, days, latent, lat_rows) -> None:
    n_days, n = latent["alive"].shape
    counts = np.zeros((n_days, n, 6), dtype=np.int64)
    for t, j, *c in lat_rows:
        if t < n_days:
            counts[t, j] += c
    ti, jj = np.nonzero(latent["alive"])
    permno = np.array([s.permno for s in stocks], dtype=np.int64)
    table = pa.table(
        {
            "permno": permno[jj],
            "date": pa.array(days[ti].astype("datetime64[D]"), type=pa.date32()),
            "hype": latent["hype"][ti, jj],
            "attention": latent["attention"][ti, jj],
            "tone": latent["tone"][ti, jj],
            "topic": latent["topic"][ti, jj],
            "log_sigma_base": latent["log_sigma_base"][ti, jj],
            "log_sigma": latent["log_sigma"][ti, jj],
            "ret": latent["ret"][ti, jj],
            "n_posts": counts[ti, jj, 0].astype(np.int32),
            "n_hype_phrases": counts[ti, jj, 1].astype(np.int32),
            "n_tone_phrases": counts[ti, jj, 2].astype(np.int32),
            "n_topic_posts": counts[ti, jj, 3].astype(np.int32),
            "n_after_close_posts": counts[ti, jj, 4].astype(np.int32),
            "n_news_phrases": counts[ti, jj, 5].astype(np.int32),
        }
    )
    order = np.lexsort((days[ti], permno[jj]))
    pq.write_table(table.take(pa.array(order)), path)


def _truth(
    *,
    seed,
    tickers,
    start,
    end,
    posts_per_day,
    effect,
    effects,
    effect_after_close,
    malformed,
    p,
    tp,
    qk,
    stats,
    crsp_counts,
    special,
    forced,
    stocks,
    n_days,
    n_cal,
    chunk_days,
    n_chunks,
    n_names,
    n_daily,
    latent,
    lat_rows,
) -> dict:
    from wsb_gpu.synth import clock
    from wsb_gpu.synth.crsp import DEFAULT_CRSP_QUIRKS
    from wsb_gpu.synth.dumps import MALFORMED_KINDS

    n_sub = stats.get("records_submissions", 0)
    n_com = stats.get("records_comments", 0)
    n_all = max(n_sub + n_com, 1)
    about = sum(r[2] for r in lat_rows)
    share_keys = (
        "text_deleted",
        "text_removed",
        "author_deleted",
        "edited_int",
        "edited_float",
        "long_body",
        "lone_surrogate",
        "html_entity",
        "non_ascii_escaped",
        "non_ascii_raw",
        "created_utc_string",
        "old_symbol",
        "second_mention",
    )
    forms = {k[5:]: v for k, v in sorted(stats.items()) if k.startswith("form_")}
    alive = latent["alive"]
    return {
        "generator": {"name": "wsb_gpu.synth", "version": GENERATOR_VERSION},
        "parameters": {
            "seed": seed,
            "tickers": tickers,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "posts_per_day": posts_per_day,
            "effect": effect,
            **{f"effect_{k}": v for k, v in effects.items()},
            "effect_after_close": effect_after_close,
            "malformed": malformed,
        },
        "effect": {
            "b": effect,
            "channels": {"hype": effect, **effects, "after_close": effect_after_close},
            "placebo": effect == 0 and not any(effects.values()) and effect_after_close == 0,
            "after_close_only": effect == 0 and not any(effects.values()) and effect_after_close != 0,
            "formula": (
                "log_sigma[t,i] = mu_i + m[t] + a[t,i] + b * h[t-1,i] + b_attention * g[t-1,i] "
                "+ b_tone * u[t-1,i] + b_topic * q[t-1,i];  ret[t,i] = sigma[t,i] * z[t,i]"
            ),
            "timing": (
                "h of trading day t drives the posts dated (UTC) on the calendar days after the "
                "previous trading day up to and including t, and the log-volatility of the next "
                "trading day t+1"
            ),
            "hype": "h[t,i] = phi * h[t-1,i] + sqrt(1 - phi^2) * eta[t,i], eta ~ N(0,1); g, u, q: the same, own streams",
            "posts_about_stock": (
                "Poisson(mention_share * posts_per_day * g(d) * w_i * exp(kappa*h + kappa_g*g - (kappa^2 + kappa_g^2)/2))"
            ),
            "tone": (
                "each phrase is hype with probability sigmoid(gamma * h + gamma_u * u + mood), mood ~ N(0, mood_sd^2)"
            ),
            "topic": (
                "a post is earnings talk with probability sigmoid(logit(topic_share) + topic_loading * q); "
                "then each phrase is an earnings phrase with probability topic_phrase_share"
            ),
            "after_close": {
                "posts": (
                    "about a stock, created after the close of trading day t (16:00 New York time, 13:00 on "
                    "early-close days; the second after the close onwards) and before the open of trading day "
                    "t+1 (09:30 New York time), weekends and holidays included"
                ),
                "count": (
                    "their Poisson mean is multiplied by exp(B * news_count_loading * rho) / mean, "
                    "rho = min(|ret[t+1,i]| / news_scale, news_cap), the mean over all stock-days"
                ),
                "tone": (
                    "each phrase is an after-hours news phrase with probability 1 - exp(-|B| * news_phrase_loading * rho), "
                    "good news (VADER-positive) if ret[t+1,i] > 0, bad news (VADER-negative) if < 0"
                ),
                "answer": (
                    "volatility never depends on these posts; with every other effect 0 they are the only text "
                    "related to a target, and only to |ret[t+1]|: dated by the market close they feed the "
                    "forecast made at the close of t+1 (of |ret[t+2]|) and no text set may beat the benchmark; "
                    "dated by the UTC day the ones before midnight UTC feed the forecast of |ret[t+1]| (look-ahead)"
                ),
            },
        },
        "time_of_day": {
            "profile": (
                "posting rate at New York local hour h: floor + sum_k a_k exp(-d(h, c_k)^2 / (2 s_k^2)), "
                "d the distance on the 24-hour circle; a UTC date keeps its planned count, its posts' "
                "instants follow the rate at their New York time"
            ),
            "floor": clock.PROFILE_FLOOR,
            "bumps": [{"name": n, "centre_h": c, "sd_h": sd, "amplitude": a} for n, c, sd, a in clock.PROFILE_BUMPS],
            "sessions": "09:30-16:00 America/New_York (13:00 close on early-close days), DST-aware (zoneinfo)",
            **_time_of_day(stats),
        },
        "process": p,
        "text": tp,
        "quirks_configured": qk,
        "crsp_quirks_configured": DEFAULT_CRSP_QUIRKS,
        "counts": {
            "submissions": n_sub,
            "comments": n_com,
            "posts_about_stocks": about,
            "topic_posts": sum(r[5] for r in lat_rows),
            "after_close_posts_about_stocks": sum(r[6] for r in lat_rows),
            "news_phrases": sum(r[7] for r in lat_rows),
            "records_session": stats.get("time_session", 0),
            "records_after_close": stats.get("time_after_close", 0),
            "records_after_close_same_utc_day": stats.get("time_after_close_same_utc_day", 0),
            "trading_days": n_days,
            "calendar_days": n_cal,
            "chunks": n_chunks,
            "chunk_days": chunk_days,
            "stocknames_rows": n_names,
            "crsp_rows": n_daily,
            "stock_days": int(alive.sum()),
            "stock_days_with_posts": len({(r[0], r[1]) for r in lat_rows if r[2] > 0}),
            "swapped_neighbours": {
                "submissions": stats.get("swapped_submissions", 0),
                "comments": stats.get("swapped_comments", 0),
            },
            "huge_body": stats.get("huge_body", 0),
            "uncompressed_bytes": {
                "submissions": stats["uncompressed_bytes_submissions"],
                "comments": stats["uncompressed_bytes_comments"],
            },
            "malformed": {
                name: {kind: stats.get(f"malformed_{name}_{kind}", 0) for kind in MALFORMED_KINDS}
                for name in ("submissions", "comments")
            },
            **{k: stats.get(k, 0) for k in share_keys},
        },
        "shares": {k: stats.get(k, 0) / n_all for k in share_keys},
        "mention_forms": forms,
        "crsp": crsp_counts,
        "special_cases": special,
        "boundary_posts": forced,
        "stocks": [
            {
                "permno": s.permno,
                "tickers": [n.ticker for n in s.names],
                "comnam": s.names[-1].comnam,
                "weight": s.weight,
                "dividend": s.dividend,
                "common_word": s.common_word,
                "delisted": s.delisted,
                "mu": float(latent["mu"][j]),
            }
            for j, s in enumerate(stocks)
        ],
    }
