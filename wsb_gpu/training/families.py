"""The fitted families of one window: fitted on its training years, joined to its rows.

A window whose feature sets use a fitted family (topics, lexicon, TF-IDF) fits those
families on its training years' posts (:mod:`wsb_gpu.signals.fitted`), scores the posts of
its training and test years and joins the stock-day columns to its rows, which are written
once to a scratch folder and read back by every pass of the window. Nothing fitted ever
sees the test year.

Configuration stops here: each fitted family of the registry gets its own section of the
``train`` settings (``train.lexicon``, ``train.tfidf``, ``train.topics``: the family's
``section``), by :func:`configured_families`; :mod:`wsb_gpu.signals` never sees the rest.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wsb_gpu.backend import to_host
from wsb_gpu.datasets import HAR_COLUMNS
from wsb_gpu.models.base import in_years
from wsb_gpu.models.moments import solve_ols, sum_moments
from wsb_gpu.progress import compute
from wsb_gpu.signals import fitted as signals_fitted
from wsb_gpu.signals.base import Family, FittedFamily, Labels
from wsb_gpu.signals.families import configure, fitted_sections
from wsb_gpu.signals.fitted import Fitted

if TYPE_CHECKING:
    import dask.dataframe as dd

    from wsb_gpu.config import TrainParams
    from wsb_gpu.training.run import TrainingRun


def configured_families(params: TrainParams) -> dict[str, Family]:
    """The family registry with every fitted family given its own section of ``train``."""
    return configure({section: getattr(params, section) for section in fitted_sections()})


def fitted_families(params: TrainParams, names: Sequence[str]) -> list[FittedFamily]:
    """The fitted families ``names`` (as :func:`~wsb_gpu.signals.fitted.families_asked`
    gives them), configured."""
    families = configured_families(params)
    return [fam for fam in (families[n] for n in names) if isinstance(fam, FittedFamily)]


@dataclass
class WindowFamilies:
    """A window's rows with its fitted family columns (None without fitted families: the
    run's sample then serves), the columns of its design matrix and the family fits."""

    frame: dd.DataFrame | None
    columns: list[str]
    fitted: Fitted | None
    scratch: Path | None = None

    def close(self) -> None:
        """Remove the window's scratch rows."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def fit_window_families(run: TrainingRun, test_year: int, train_years: tuple[int, ...]) -> WindowFamilies:
    """Fit the run's fitted families on the window's training years and join their
    stock-day columns to its rows (training and test years)."""
    S = run.sample
    if not run.families or run.sources is None or run.posts is None:
        return WindowFamilies(None, list(S.feature_columns), None)
    backend, target = run.backend, S.target
    years = [*train_years, test_year]
    posts = run.sources.window_posts(run.posts)
    with run.timed("families_fit"):
        # The window's HAR fit from the statistics (for the lexicon's har_residual label).
        idx = [run.stat_cols.index(c) for c in HAR_COLUMNS] + [len(run.stat_cols)]
        end = run.train_end(train_years)
        months = [p for p in sorted(in_years(run.stats, train_years)) if end is None or p <= end]
        har = solve_ols(sum_moments(run.stats[p].select(idx) for p in months))
        train_rows = S.ddf[S.ddf["year"].isin(list(train_years))]
        if end is not None:  # labels not yet known at the end of the window
            train_rows = train_rows[train_rows["period"] <= end]
        labels = Labels(to_host(train_rows[["permno", "day", target, *HAR_COLUMNS]]), target, har)
        fitted = signals_fitted.fit_families(
            fitted_families(run.params, run.families),
            posts.years(train_years),
            labels,
            backend=backend,
            progress=run.progress,
        )
    with run.timed("families_columns"):
        fam_cols = fitted.columns()
        cols = signals_fitted.family_columns_frame(fitted, posts.years(years))
        rows = S.ddf[S.ddf["year"].isin(years)]
        frame = rows.merge(backend.from_host(cols), on=["permno", "day"], how="left")
        frame = frame.assign(**{c: frame[c].fillna(0.0) for c in fam_cols})
        # The window's rows with its family columns are computed once and written, then read
        # by every pass of the window (statistics, XGBoost's rows, predictions) and removed.
        # (Persisting them in cluster memory instead hits dask/dask#11160 with dask 2026.8.)
        scratch = run.out / f"_window-{test_year}"
        compute(backend.to_parquet(frame, scratch), label=f"train {test_year}: score posts", show=run.progress)
        frame = backend.read_parquet(scratch)
    return WindowFamilies(frame, [*S.feature_columns, *fam_cols], fitted, scratch)
