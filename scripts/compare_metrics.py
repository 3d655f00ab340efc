"""Compare two runs' ``metrics.csv`` to the digits the report prints.

    python scripts/compare_metrics.py OLD/results/metrics.csv NEW/results/metrics.csv [--digits 4] [--ignore mcs_pvalue]

Rows are matched on ``(model, feature_set, test_year)``; every float column is compared after
formatting to ``--digits`` significant digits. Prints the differing cells (up to 40), the count
per model, and exits 1 when any differs (or the rows differ), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

KEY = ["model", "feature_set", "test_year"]


def fmt(v: float, digits: int) -> str:
    """``v`` to ``digits`` significant digits (``nan`` for a missing value).

    >>> fmt(0.0022891, 4), fmt(float("nan"), 4)
    ('0.002289', 'nan')
    """
    return "nan" if pd.isna(v) else f"{v:.{digits}g}"


def differences(old: pd.DataFrame, new: pd.DataFrame, digits: int, ignore: list[str]) -> list[tuple]:
    """``(row key, column, old, new)`` of every float cell that prints differently."""
    a, b = old.set_index(KEY).sort_index(), new.set_index(KEY).sort_index()
    if list(a.index) != list(b.index):
        missing = sorted(set(a.index) ^ set(b.index))
        raise SystemExit(f"the two files hold different rows, e.g. {missing[:5]}")
    cols = [c for c in a.columns if a[c].dtype.kind == "f" and c not in ignore]
    out = []
    for key in a.index:
        for c in cols:
            x, y = fmt(a.at[key, c], digits), fmt(b.at[key, c], digits)
            if x != y:
                out.append((key, c, x, y))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--digits", type=int, default=4)
    ap.add_argument("--ignore", action="append", default=[], help="a column to leave out (repeatable)")
    args = ap.parse_args(argv)
    old, new = pd.read_csv(args.old), pd.read_csv(args.new)
    diff = differences(old, new, args.digits, args.ignore)
    for key, c, x, y in diff[:40]:
        print(f"{key} {c}: {x} -> {y}")
    per_model: dict[str, int] = {}
    for key, *_ in diff:
        per_model[key[0]] = per_model.get(key[0], 0) + 1
    for model in sorted(set(old["model"])):
        print(f"{model}: {per_model.get(model, 0)} cells differ")
    print(f"{len(diff)} cells differ at {args.digits} significant digits")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
