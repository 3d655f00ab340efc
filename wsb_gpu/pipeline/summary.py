"""What happened to each stage of a run: the records, and the summary table printed at the end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import JustifyMethod
from rich.table import Table

from wsb_gpu.manifest import Manifest
from wsb_gpu.stages import get_stage


@dataclass
class StageRecord:
    """One stage in one run (a row of the summary table and of ``run.json``)."""

    stage: str
    status: str = "pending"  # ran | skipped | failed | interrupted | pending (not reached)
    seconds: float = 0.0  # wall time in this run (0 when skipped)
    rows_in: int | float | None = None
    rows_out: int | float | None = None
    throughput: float | None = None  # from the manifest: the stage's own speed
    unit: str = ""
    error: str | None = None
    manifest_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fill(self, manifest: Manifest | None) -> None:
        """Rows and throughput from the stage's manifest, in the unit its declaration names
        (``MB/s`` of decompressed JSON for ingest, posts embedded for embed, rows in else)."""
        if not manifest:
            return
        stage = get_stage(self.stage)
        self.rows_in = _count(manifest.get("rows_in"))
        self.rows_out = _count(manifest.get("rows_out"))
        seconds = manifest.get("seconds")
        self.manifest_seconds = float(seconds) if isinstance(seconds, int | float) else None
        self.unit = stage.unit
        if not self.manifest_seconds:
            return
        if stage.unit == "MB/s":
            nbytes = _bytes_in(manifest)
            self.throughput = nbytes / 1e6 / self.manifest_seconds if nbytes else None
        else:
            rows = self.rows_out if stage.name == "embed" else self.rows_in
            self.throughput = rows / self.manifest_seconds if isinstance(rows, int | float) else None


def _count(value: Any) -> int | float | None:
    """Rows of a manifest field that may be a number or a per-file mapping.

    >>> _count(5), _count({"a": 2, "b": 3}), _count(None)
    (5, 5, None)
    """
    if isinstance(value, Mapping):
        parts = [_count(v) for v in value.values()]
        nums = [p for p in parts if isinstance(p, int | float)]
        return sum(nums) if nums else None
    if isinstance(value, bool):
        return None
    return value if isinstance(value, int | float) else None


def _bytes_in(manifest: Mapping[str, Any]) -> float | None:
    """Bytes of decompressed JSON (what the parser chews through), else of the input files."""
    for key in ("bytes_json", "bytes_in"):
        n = _count(manifest.get(key))
        if n:
            return float(n)
    found = [v.get("size") for v in (manifest.get("inputs") or {}).values() if isinstance(v, Mapping)]
    sizes = [s for s in found if isinstance(s, int | float)]
    return float(sum(sizes)) if sizes else None


def _fmt_rows(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, int | float) else "—"


def summary_table(records: list[StageRecord], total_seconds: float) -> Table:
    """A rich table: stage, status, rows in/out, throughput, seconds."""
    table = Table(title=f"wsb-gpu run: {total_seconds:.1f} s", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("stage", "left"),
        ("status", "left"),
        ("rows in", "right"),
        ("rows out", "right"),
        ("throughput", "right"),
        ("seconds", "right"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    style = {"ran": "green", "skipped": "dim", "failed": "bold red", "interrupted": "bold yellow", "pending": "yellow"}
    for r in records:
        speed = f"{r.throughput:,.1f} {r.unit}" if r.throughput else "—"
        status = {"pending": "not run"}.get(r.status, r.status)
        seconds = f"{r.seconds:.1f}" if r.status in ("ran", "failed", "interrupted") else "—"
        table.add_row(
            r.stage, f"[{style[r.status]}]{status}[/]", _fmt_rows(r.rows_in), _fmt_rows(r.rows_out), speed, seconds
        )
    return table
