"""Planted world vs placebo: do the text models beat HAR on MSE *and* QLIKE, and does the
spike classifier with text beat the logistic HAR in AUC? (The study behind the numbers in
docs/models.md, "Planted world and placebo".)

Each world is the demo's (``wsb-gpu synth``: 50 tickers, 80 posts a day, 2012–2019,
all-MiniLM-L6-v2 embeddings) with its planted hype effect (``--effect 0.5``, the default) or
none (``--effect 0``, the placebo). The pipeline runs to the features once per world; then
the regression task trains HAR, log-HAR, ridge, elastic net, XGBoost and the LSTM, and the
spike task the logistic HAR, the penalised logistic model and XGBoost, on the sets ``har``,
``attention`` and ``text``.

    python scripts/model_study.py --out /tmp/study            # both worlds, ~15 min on 2 cores
    python scripts/model_study.py --out /tmp/study --seed 8   # another draw of the worlds

Prints the pooled tables as Markdown and writes them to ``<out>/study.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

FEATURE_SETS = {"har": [], "attention": ["attention"], "text": ["embedding", "attention"]}
REGRESSION = ["har", "log_har", "ridge", "enet", "xgboost", "lstm"]


def build_world(root: Path, effect: float, seed: int) -> Path:
    """Synthetic inputs and the pipeline up to the features; returns the lake."""
    from wsb_gpu.config import load_settings
    from wsb_gpu.demo import DEMO_SIZE, input_paths
    from wsb_gpu.pipeline import run_pipeline
    from wsb_gpu.synth import generate

    lake = root / "lake"
    if (lake / "features" / "_manifest.json").is_file():
        return lake
    generate(root / "data", **{**DEMO_SIZE, "seed": seed}, effect=effect)
    config = {
        "backend": "cpu",
        "lake": str(lake),
        "inputs": input_paths(root / "data"),
        "cluster": {"kind": "local", "n_workers": 2, "threads_per_worker": 1, "dashboard_address": ":0"},
        "embed": {"model": "minilm", "pooling": "mean", "local_files_only": True, "partition_size": 4000},
        "train": {"models": ["har"], "feature_sets": {"har": []}},
    }
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    run_pipeline(load_settings(root / "run.yaml"), progress=False, until_stage="features")
    return lake


def train(lake: Path, out: Path, **params: object) -> pd.DataFrame:
    from wsb_gpu.backend import Backend
    from wsb_gpu.stages import run_stage

    args = {"train_years": 4, "feature_sets": FEATURE_SETS, "backend": Backend("cpu"), **params}
    run_stage("train", out, features=lake / "features", **args)
    metrics = pd.read_csv(out / "metrics.csv", dtype={"test_year": str})
    return metrics[metrics["test_year"] == "all"]


def regression_table(m: pd.DataFrame) -> str:
    har = m[m["model"] == "har"].iloc[0]
    lines = ["| forecast | ΔR² vs HAR | DM p (MSE) | QLIKE − HAR | DM p (QLIKE) |", "| :-- | --: | --: | --: | --: |"]
    for _, r in m.iterrows():
        key = r["model"] if r["feature_set"] == "har" else f"{r['model']} · {r['feature_set']}"
        if r["model"] == "har":
            continue
        lines.append(
            f"| {key} | {r['r2'] - har['r2']:+.4f} | {_p(r['dm_pvalue'])} | {r['qlike'] - har['qlike']:+.4f} | "
            f"{_p(r['dm_qlike_pvalue'])} |"
        )
    return "\n".join(lines)


def spike_table(m: pd.DataFrame) -> str:
    har = m[m["model"] == "har"].iloc[0]
    lines = [
        f"spike rate of the test rows {har['base_rate']:.3f}; logistic HAR AUC {har['auc']:.3f}, AP {har['ap']:.3f}",
        "",
        "| classifier | AUC | ΔAUC vs HAR | DeLong p | AP |",
        "| :-- | --: | --: | --: | --: |",
    ]
    for _, r in m[m["model"] != "har"].iterrows():
        lines.append(
            f"| {r['model']} · {r['feature_set']} | {r['auc']:.3f} | {r['auc'] - har['auc']:+.3f} | "
            f"{_p(r['auc_pvalue'])} | {r['ap']:.3f} |"
        )
    return "\n".join(lines)


def _p(v: float) -> str:
    return "—" if pd.isna(v) else ("< 0.001" if v < 0.001 else f"{v:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="working folder (reused: worlds already built are kept)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the synthetic worlds (the demo's: 7)")
    args = ap.parse_args(argv)
    parts = []
    for name, effect in (("planted", 0.5), ("placebo", 0.0)):
        t = time.perf_counter()
        root = args.out / f"{name}-{args.seed}"
        lake = build_world(root, effect, args.seed)
        reg = train(lake, root / "regression", models=REGRESSION)
        spk = train(lake, root / "spike", task="spike", models=["har", "ridge", "xgboost"])
        parts += [
            f"### {name} (effect {effect}, seed {args.seed})",
            "",
            regression_table(reg),
            "",
            spike_table(spk),
            "",
            f"_{time.perf_counter() - t:.0f} s_",
            "",
        ]
        print("\n".join(parts[-8:]), flush=True)
    (args.out / "study.md").write_text("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
