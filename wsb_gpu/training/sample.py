"""The rows every model of a training run is fitted and scored on.

The sample is built once per run: the features dataset (text models) or the volatility
panel (HAR only), with the derived count features, ``year``, ``period`` (month) and ``day``
columns, and the rows whose target or a HAR regressor is missing dropped. With
``train.sample: all`` the stock-days without posts come from the volatility dataset, with
zero text features and ``has_posts = 0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wsb_gpu.backend import Backend, concat_columns
from wsb_gpu.datasets import HAR_COLUMNS
from wsb_gpu.dates import day_number
from wsb_gpu.errors import WsbError
from wsb_gpu.manifest import read_manifest
from wsb_gpu.models.base import Sample
from wsb_gpu.models.splits import month_period
from wsb_gpu.signals.families import text_columns
from wsb_gpu.signals.fitted import PostSources

if TYPE_CHECKING:
    from wsb_gpu.backend import Frame

COUNT_FEATURES = ("log_posts", "log_mentions")


def prepare_partition(frame: Frame, *, target: str, text_cols: Sequence[str], sample: str | None) -> Frame:
    """Kernel: derived features, missing-value rule, ``year``, ``period`` and ``day`` columns.

    ``sample`` is None for the volatility-only panel; ``"all"`` fills stock-days without
    posts with zero text features and adds ``has_posts``. Rows whose target or any HAR
    regressor is missing are dropped.
    """
    frame = frame.dropna(subset=[target, *HAR_COLUMNS])
    new: dict[str, Any] = {}
    if sample is not None:
        n_posts = frame["n_posts"].fillna(0).astype("float64")
        n_mentions = frame["n_mentions"].fillna(0).astype("float64")
        if sample == "posts":
            keep = (n_posts > 0).values
            frame, n_posts, n_mentions = frame[keep], n_posts[keep], n_mentions[keep]
        if text_cols:
            # One block operation: per-column assignment fragments a frame of ~800 columns.
            filled = frame[list(text_cols)].fillna(0.0)
            frame = concat_columns([frame.drop(columns=list(text_cols)), filled])
        new["log_posts"] = np.log1p(n_posts)
        new["log_mentions"] = np.log1p(n_mentions)
        if sample == "all":
            new["has_posts"] = (n_posts > 0).astype("float64")
    year = frame["date"].dt.year.astype("int64")
    new["year"] = year
    new["period"] = month_period(year, frame["date"].dt.month.astype("int64"))
    new["day"] = day_number(frame["date"]).astype("int64")
    return frame.assign(**new)


def load_sample(
    *, features: Path | None, volatility: Path | None, sample: str, target: str, backend: Backend
) -> Sample:
    """Build the run's sample from the features (or volatility-only) dataset."""
    if features is None:
        if volatility is None:
            msg = "train needs --features DIR (text) or --volatility DIR (HAR only); pass one of them"
            raise WsbError(msg)
        v = backend.read_parquet(volatility)
        v = v[["permno", "date", *HAR_COLUMNS, target]]
        ddf = v.map_partitions(prepare_partition, target=target, text_cols=[], sample=None)
        return Sample(ddf, target, list(HAR_COLUMNS), list(HAR_COLUMNS), "volatility", "panel")

    f = backend.read_parquet(features)
    tcols = text_columns(list(f.columns))
    if sample == "all":
        if volatility is None:
            volatility = recorded_input(features, "volatility")
        if volatility is None:
            msg = (
                f"--sample all needs the volatility dataset to add the stock-days without posts; "
                f"features '{features}' does not record it, so pass --volatility DIR"
            )
            raise WsbError(msg)
        v = backend.read_parquet(volatility)
        text = f[["permno", "date", "n_posts", "n_mentions", *tcols]]
        base = v[["permno", "date", *HAR_COLUMNS, target]]
        joined = base.merge(text, on=["permno", "date"], how="left")
        extra = ["has_posts"]
    else:
        joined = f[["permno", "date", "n_posts", "n_mentions", *tcols, *HAR_COLUMNS, target]]
        extra = []
    ddf = joined.map_partitions(prepare_partition, target=target, text_cols=tcols, sample=sample)
    cols = [*HAR_COLUMNS, *tcols, *COUNT_FEATURES, *extra]
    return Sample(ddf, target, list(HAR_COLUMNS), cols, "features", sample)


def recorded_input(features: Path, name: str) -> Path | None:
    """An input of the features stage as its manifest recorded it (None when absent)."""
    manifest = read_manifest(features)
    inputs: Mapping[str, Any] = (manifest.get("inputs") if manifest else None) or {}  # as read: not validated
    entry = inputs.get(name) or {}
    path = entry.get("path") if isinstance(entry, Mapping) else None
    return Path(path) if path else None


def post_sources(inputs: Mapping[str, Any], features: Path | None) -> PostSources | None:
    """Where the fitted families' per-post inputs are: the stage's inputs, else the datasets
    the features stage read (its manifest); None when the links or signals are missing."""
    if features is None:
        return None
    links = inputs.get("links") or recorded_input(features, "links")
    signals = inputs.get("signals") or recorded_input(features, "signals")
    embeddings = inputs.get("embeddings") or recorded_input(features, "embeddings")
    if not (links and signals and Path(links).exists() and Path(signals).exists()):
        return None
    emb = Path(embeddings) if embeddings and Path(embeddings).exists() else None
    return PostSources(Path(links), Path(signals), emb)
