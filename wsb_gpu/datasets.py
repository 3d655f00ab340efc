"""The datasets of a run and their contracts: which columns, of which Arrow types.

Every stage writes one dataset of the lake and reads others. Their contracts
(``docs/outputs.md``) are declared here once; :func:`check` verifies a folder against one
(the stage runner does so before a stage starts, for each input, and after it ends, for its
output), so no stage checks columns itself.

A contract lists required columns with their Arrow type (``None`` = any type), column
*patterns* (a regular expression, for the ``e000 … e767`` embedding columns or the
``yhat_<model>`` predictions) and, for results that are not one Parquet dataset, the files
the folder must hold and the sub-folder holding its Parquet part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from wsb_gpu.errors import WsbError

VOL_COLUMNS = {f"{p}_{w}": "double" for p in ("vol", "y") for w in (1, 5, 22, 63)}
HAR_COLUMNS = ("vol_1", "vol_5", "vol_22", "vol_63")
"""The volatility columns HAR regresses on: realised volatility over 1, 5, 22 and 63 days."""


@dataclass(frozen=True)
class Dataset:
    """The contract of one dataset folder.

    Attributes
    ----------
    name
        Folder name in the lake (``posts``, ``mentions`` …).
    producer
        The stage (and ``wsb-gpu`` command) that writes it.
    columns
        Required column -> Arrow type as ``str(pyarrow type)`` (``None`` = any type).
    patterns
        Regular expression -> Arrow type for families of columns (``e\\d+``); with
        ``min_matches`` the first pattern must match at least that many columns.
    files
        Files the folder must hold besides Parquet data (``metrics.csv`` …).
    parquet
        Sub-folder holding the Parquet data (``predictions``); ``""`` = the folder itself,
        ``None`` = no Parquet data at all (the report).
    """

    name: str
    producer: str
    columns: Mapping[str, str | None] = field(default_factory=dict)
    patterns: Mapping[str, str | None] = field(default_factory=dict)
    min_matches: int = 0
    files: tuple[str, ...] = ()
    parquet: str | None = ""

    def describe(self) -> str:
        """``name: type`` of the contract, for messages and docs.

        >>> DATASETS["mentions"].describe()[:38]
        'id: string, kind: string, created_utc:'
        """
        cols = [f"{c}: {t or 'any'}" for c, t in self.columns.items()]
        cols += [f"{p}: {t or 'any'}" for p, t in self.patterns.items()]
        return ", ".join(cols + list(self.files))


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "posts",
            "ingest",
            {
                "id": "string",
                "kind": "string",
                "created_utc": "int64",
                "date": "date32[day]",
                "author": "string",
                "text": "string",
                "source": "string",
            },
        ),
        Dataset(
            "mentions",
            "mentions",
            {
                "id": "string",
                "kind": "string",
                "created_utc": "int64",
                "date": "date32[day]",
                "ticker": "string",
                "permno": "int64",
                "n_occ": "int32",
            },
        ),
        Dataset(
            "embeddings",
            "embed",
            {"id": "string", "n_tokens": "int32"},
            {r"e\d+": "float", r"p_\w+": "float"},
            min_matches=1,
        ),
        Dataset(
            "signals",
            "signals",
            {
                "id": "string",
                "vader_compound": "float",
                "vader_pos": "float",
                "vader_neg": "float",
                "vader_neu": "float",
                "tokens": "string",
                "n_words": "int32",
            },
        ),
        Dataset("volatility", "volatility", {"permno": "int64", "date": "date32[day]", "ret": "double", **VOL_COLUMNS}),
        Dataset(
            "links",
            "links",
            {
                "permno": "int64",
                "date": "date32[day]",
                "id": "string",
                "post_date": "date32[day]",
                "created_utc": "int64",
                "n_occ": "int32",
            },
        ),
        Dataset(
            "features",
            "features",
            {"permno": "int64", "date": "date32[day]", "n_posts": "int64", "n_mentions": "int64", **VOL_COLUMNS},
            {r"e\d+": "float", r"p_\w+": "float", r"vader_\w+": "float"},
        ),
        Dataset(
            "results",
            "train",
            {"permno": "int64", "date": None, "y": "double"},
            # yhat_<entry> forecasts (regression) or p_<entry> spike probabilities (spike task).
            {r"(?:yhat|p)_\w+": "double"},
            min_matches=1,
            files=("metrics.csv", "metrics.json", "coefficients.csv", "models.json", "signals.json"),
            parquet="predictions",
        ),
        Dataset("report", "report", files=("report.md",), parquet=None),
    )
}


# --- reading what a folder holds -----------------------------------------------------------------


def parquet_dataset(folder: str | Path) -> ds.Dataset:
    """The Parquet files of a folder as one Arrow dataset (hidden and ``_`` files skipped)."""
    return ds.dataset(str(folder), format="parquet", exclude_invalid_files=True)


def schema_of(folder: str | Path) -> dict[str, str]:
    """Column name -> Arrow type of a Parquet dataset folder (for manifests and checks)."""
    return {f.name: str(f.type) for f in parquet_dataset(folder).schema if not f.name.startswith("__")}


def count_rows(folder: str | Path) -> int:
    """Rows of a Parquet dataset folder, from the file footers (no data read)."""
    return int(parquet_dataset(folder).count_rows())


def _kind(arrow_type: str) -> str:
    """The family of an Arrow type name: integer, floating, string, temporal or itself.

    >>> _kind("int32"), _kind("large_string"), _kind("timestamp[ns]"), _kind("bool")
    ('integer', 'string', 'temporal', 'bool')
    """
    if re.fullmatch(r"u?int\d+", arrow_type):
        return "integer"
    if arrow_type in ("float", "double", "halffloat", "float16", "float32", "float64"):
        return "floating"
    if arrow_type in ("string", "large_string", "string_view"):
        return "string"
    if arrow_type.startswith(("date32", "date64", "timestamp")):
        return "temporal"
    return arrow_type


def _same_type(found: str, wanted: str, strict: bool) -> bool:
    """Whether a column's type satisfies the contract's.

    Outputs must match exactly (``large_string`` counts as ``string``: dask writes Arrow
    strings either way); inputs need only the same family, since the stages cast integer
    widths, float widths and dates themselves.

    >>> _same_type("large_string", "string", True), _same_type("int32", "int64", True)
    (True, False)
    >>> _same_type("int32", "int64", False), _same_type("string", "int64", False)
    (True, False)
    """
    if found == wanted:
        return True
    if strict:
        return _kind(found) == _kind(wanted) == "string"
    return _kind(found) == _kind(wanted)


def problems(contract: Dataset, schema: Mapping[str, str], strict: bool = True) -> list[str]:
    """What ``schema`` lacks or types wrongly against ``contract`` (empty when it fits).

    >>> problems(DATASETS["embeddings"], {"id": "string", "n_tokens": "int32"})
    ['no column matching e\\\\d+']
    >>> problems(DATASETS["mentions"], {"id": "string", "permno": "string"})[:2]
    ['column permno is string, not int64', 'lacks column(s) kind, created_utc, date, ticker, n_occ']
    """
    out = []
    missing = [c for c in contract.columns if c not in schema]
    for column, wanted in contract.columns.items():
        if column in schema and wanted is not None and not _same_type(schema[column], wanted, strict):
            out.append(f"column {column} is {schema[column]}, not {wanted}")
    if missing:
        out.append(f"lacks column(s) {', '.join(missing)}")
    for i, (pattern, wanted) in enumerate(contract.patterns.items()):
        matched = [c for c in schema if re.fullmatch(pattern, c)]
        if i == 0 and len(matched) < contract.min_matches:
            out.append(f"no column matching {pattern}")
        for c in matched:
            if wanted is not None and not _same_type(schema[c], wanted, strict):
                out.append(f"column {c} is {schema[c]}, not {wanted}")
                break
    return out


def check(contract: Dataset, folder: str | Path, *, role: str = "input") -> dict[str, str]:
    """Verify ``folder`` against ``contract``; return the schema of its Parquet data.

    Parameters
    ----------
    contract
        The dataset's contract.
    folder
        The folder to check.
    role
        ``input`` (the user passed a wrong folder: the message names the producing command)
        or ``output`` (the stage broke its contract: a bug).

    Raises
    ------
    WsbError
        One line naming the folder, what is wrong and the fix.
    """
    folder = Path(folder)
    fix = (
        f"pass the folder written by `wsb-gpu {contract.producer}`"
        if role == "input"
        else f"the {contract.producer} stage broke its output contract ({contract.describe()})"
    )
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        msg = f"{contract.name} dataset '{folder}' {what}; {fix}"
        raise WsbError(msg)
    missing_files = [f for f in contract.files if not (folder / f).is_file()]
    if missing_files:
        msg = f"{contract.name} dataset '{folder}' lacks {', '.join(missing_files)}; {fix}"
        raise WsbError(msg)
    if contract.parquet is None:
        return {
            p.name: p.suffix.lstrip(".") or "file"
            for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith((".", "_"))
        }
    data = folder / contract.parquet if contract.parquet else folder
    try:
        schema = schema_of(data)
    except (OSError, pa.ArrowException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        msg = f"{contract.name} dataset '{folder}' holds no readable Parquet files ({first}); {fix}"
        raise WsbError(msg) from e
    if not schema:
        msg = f"{contract.name} dataset '{folder}' holds no Parquet files; {fix}"
        raise WsbError(msg)
    found = problems(contract, schema, strict=role == "output")
    if found:
        shown = ", ".join(list(schema)[:12]) + (" …" if len(schema) > 12 else "")
        msg = f"{contract.name} dataset '{folder}' {'; '.join(found)} (columns: {shown}); {fix}"
        raise WsbError(msg)
    return schema
