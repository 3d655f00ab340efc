"""A training run: built once by :func:`prepare`, then asked for its windows.

:class:`TrainingRun` holds everything the tasks share: the settings, the backend and
client, the results folder, the sample, its feature sets and fitted families, the
per-month statistics of the first pass, the rolling windows they allow and the run's
timings. A task asks it for one window at a time (``with run.window(year) as window``) and
gets a :class:`~wsb_gpu.models.base.Window`: the fitted families fitted and joined, the
window's statistics computed, its scratch rows removed when the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from wsb_gpu.errors import WsbError
from wsb_gpu.models.base import Sample, Window, gap_months, in_years, target_horizon
from wsb_gpu.models.moments import Moments, collect_moments
from wsb_gpu.models.splits import RollingYearSplit, month_period, period_year
from wsb_gpu.progress import Timings, log
from wsb_gpu.signals.families import FeatureSet, resolve_feature_sets
from wsb_gpu.signals.fitted import Fitted, PostSources, families_asked
from wsb_gpu.training.entries import model_names
from wsb_gpu.training.families import configured_families, fit_window_families
from wsb_gpu.training.sample import load_sample, post_sources

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

    from wsb_gpu.backend import Backend
    from wsb_gpu.config import TrainParams


class TrainInputs(TypedDict):
    """The inputs of the train stage: the features (text models) and/or the volatility panel
    (HAR terms alone; the stock-days without posts for ``sample: all``), and the per-post
    datasets of the fitted families (default: those the features stage read)."""

    features: Path | None
    volatility: Path | None
    links: Path | None
    signals: Path | None
    embeddings: Path | None


PANEL_SET = "har"
"""The one feature set of a run on the volatility panel alone: the HAR terms."""


@dataclass
class TrainingRun:
    """What every task of the train stage starts from (see the module docstring).

    Attributes
    ----------
    params, backend, out, client, progress
        The stage's settings, where it computes, its results folder, whether it shows bars.
    sample
        The rows every model is fitted and scored on.
    sets, skipped
        The feature sets of the run, and those skipped with the reason.
    families
        The fitted families the sets need (``topics`` for either topic family).
    models
        The models asked for, in the registry's order, HAR first.
    stats, stat_cols
        Per-month moments of the sample (pass 1) and their columns.
    windows
        ``(test year, training years)`` of every window.
    sources, posts
        The fitted families' per-post inputs (None without fitted families).
    timings, fitted
        Seconds per phase, and what each window's fitted families learned.
    """

    params: TrainParams
    backend: Backend
    out: Path
    sample: Sample
    sets: list[FeatureSet]
    skipped: dict[str, str]
    families: list[str]
    models: list[str]
    stats: dict[int, Moments]
    stat_cols: list[str]
    windows: list[tuple[int, tuple[int, ...]]]
    sources: PostSources | None = None
    posts: dd.DataFrame | None = None
    client: Client | None = None
    progress: bool = False
    timings: Timings = field(default_factory=Timings)
    fitted: dict[int, Fitted] = field(default_factory=dict)

    def timed(self, name: str) -> AbstractContextManager[None]:
        """Add the seconds the block takes to ``timings[name]``."""
        return self.timings.timed(name)

    @property
    def rows_in(self) -> int:
        """Rows of the sample (counted by the statistics pass)."""
        return sum(int(m.n) for m in self.stats.values())

    @property
    def horizon(self) -> int:
        """The days the target spans (1 for ``y_1``)."""
        return target_horizon(self.sample.target)

    def train_end(self, train_years: tuple[int, ...]) -> int | None:
        """The last month period a window of ``train_years`` learns from: None for a one-day
        target, else :func:`~wsb_gpu.models.base.gap_months` before the window's end (the
        targets of the rows after it reach into the test year)."""
        gap = gap_months(self.horizon)
        return None if gap == 0 else month_period(max(train_years), 12) - gap

    @property
    def test_years(self) -> list[int]:
        return [int(w[0]) for w in self.windows]

    @contextmanager
    def window(self, test_year: int, *, statistics: bool = True) -> Iterator[Window]:
        """The window of ``test_year``: its fitted families fitted on its training years and
        joined to its rows, and (``statistics``) the per-month moments of its own rows.
        Its scratch rows are removed when the block ends."""
        train_years = dict(self.windows)[test_year]
        S, engine = self.sample, self.params.ridge.engine
        fam = fit_window_families(self, test_year, train_years)
        try:
            if fam.frame is not None and statistics:
                stat_cols = fam.columns if engine == "stats" else list(S.har_columns)
                with self.timed("window_statistics"):
                    months = collect_moments(
                        fam.frame, stat_cols, S.target, progress=self.progress, label=f"train {test_year}: statistics"
                    )
            else:
                stat_cols, months = list(self.stat_cols), dict(self.stats)
            end = self.train_end(train_years)
            train_months = {p: m for p, m in in_years(months, train_years).items() if end is None or p <= end}
            window = Window(
                test_year,
                train_years,
                S,
                train_months,
                in_years(months, [test_year]),
                stat_cols,
                engine,
                self.backend,
                self.client,
                frame=fam.frame,
                columns=fam.columns,
                train_end=end,
                cv_gap=gap_months(self.horizon),
            )
            window.floor = float(self.params.forecast_floor) * window.moments(S.har_columns).y_mean
            yield window
            if fam.fitted is not None:
                self.fitted[test_year] = fam.fitted
        finally:
            fam.close()


def plan(stats: Mapping[int, Moments], train_years: int) -> list[tuple[int, tuple[int, ...]]]:
    """``(test year, training years)`` of the windows that have training and test rows."""
    years_present = sorted({int(period_year(p)) for p in stats})
    out = []
    for test_year, years in RollingYearSplit(train_years).windows(years_present):
        if in_years(stats, years) and in_years(stats, [test_year]):
            out.append((int(test_year), tuple(int(y) for y in years)))
    if not out:
        msg = (
            f"the sample covers the years {years_present[0]}–{years_present[-1]}: too few for "
            f"--train-years {train_years} plus one test year; lower --train-years or add data"
        )
        raise WsbError(msg)
    return out


def resolve_sets(params: TrainParams, sample: Sample, sources: PostSources | None) -> tuple[list[FeatureSet], dict]:
    """The run's feature sets, logging the ones skipped. Without text (the volatility panel
    alone) one set, ``har``: every model asked for is fitted on the HAR terms (ridge and the
    elastic net reduce to their HAR-set fits, XGBoost and the sequence models read the HAR
    terms and the stock's history)."""
    if sample.source != "features":
        return [FeatureSet(PANEL_SET, (), ())], {}
    sets, skipped = resolve_feature_sets(
        params.feature_sets,
        sample.feature_columns,
        families=configured_families(params),
        fitted_available=sources is not None,
        embeddings_available=sources is not None and sources.embeddings is not None,
    )
    for name, why in skipped.items():
        log(f"train: feature set '{name}' skipped: {why}")
    if not sets:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise WsbError(f"none of the feature sets can run ({reasons}); fix train.feature_sets")
    return sets, skipped


def prepare(
    inputs: TrainInputs,
    out: Path,
    *,
    params: TrainParams,
    backend: Backend,
    client: Client | None = None,
    progress: bool = False,
    all_statistics: bool = False,
) -> TrainingRun:
    """Load the sample, resolve the feature sets, compute the per-month statistics (pass 1:
    of every feature column with ``all_statistics``, for a task whose models fit from them,
    else of the HAR block) and plan the windows."""
    features = inputs.get("features")
    models = model_names(params.models)
    S = load_sample(
        features=features,
        volatility=inputs.get("volatility"),
        sample=params.sample,
        target=params.target,
        backend=backend,
    )
    if features is None and params.models != ("har",):
        log(f"train: no --features, so no text: fitting {', '.join(models)} on the HAR terms of the volatility panel")
    sources = post_sources(inputs, features)
    sets, skipped = resolve_sets(params, S, sources)
    families = list(families_asked(sets))
    timings = Timings()
    stat_cols = list(S.feature_columns if all_statistics else S.har_columns)
    with timings.timed("statistics"):
        stats = collect_moments(S.ddf, stat_cols, S.target, progress=progress, label="train: statistics")
    if not stats:
        msg = "the sample is empty after dropping rows with a missing target or HAR regressor; check the inputs"
        raise WsbError(msg)
    return TrainingRun(
        params=params,
        backend=backend,
        out=out,
        sample=S,
        sets=sets,
        skipped=skipped,
        families=families,
        models=models,
        stats=stats,
        stat_cols=stat_cols,
        windows=plan(stats, params.train_years),
        sources=sources,
        posts=sources.posts() if (families and sources is not None) else None,
        client=client,
        progress=progress,
        timings=timings,
    )
