"""The stage seam: each entry point's typed inputs match its declaration, and the one rerun
key (which settings count, what identifies an input) that the runner writes into the
manifest and that ``wsb-gpu run`` and embed's resume both read."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import shutil
import typing
from pathlib import Path

import pandas as pd
import pytest

from wsb_gpu.backend import Backend
from wsb_gpu.config import EmbedParams
from wsb_gpu.stages import STAGES, get_stage, run_stage

UNTYPED: set[str] = set()
"""Stages whose entry point still takes ``Mapping[str, Path | None]`` (none)."""


def _inputs_type(stage):
    module_name, function = stage.entry.split(":")
    module = importlib.import_module(module_name)
    annotation = inspect.signature(getattr(module, function)).parameters["inputs"].annotation
    return getattr(module, annotation, None) if isinstance(annotation, str) else annotation


@pytest.mark.parametrize("stage", [s for s in STAGES if s.name not in UNTYPED], ids=lambda s: s.name)
def test_entry_inputs_are_typed_as_declared(stage):
    """Required inputs are ``Path``, optional ones ``Path | None``: what mypy checks the
    stage's body against is what the table declares."""
    typed = _inputs_type(stage)
    assert typing.is_typeddict(typed), f"{stage.name}: inputs are not a TypedDict"
    hints = typing.get_type_hints(typed)
    assert list(hints) == [i.name for i in stage.inputs]
    for spec in stage.inputs:
        assert hints[spec.name] == (Path if spec.required else Path | None), spec.name


def test_output_neutral_names_settings_of_the_stage():
    for stage in STAGES:
        assert set(stage.output_neutral) <= set(stage.params.model_fields), stage.name
    with pytest.raises(ValueError, match="token_budgt, which is not a setting of EmbedParams"):
        dataclasses.replace(get_stage("embed"), output_neutral=("token_budgt",))


@pytest.fixture
def datasets(tmp_path):
    """Two hand-written dataset folders, as the embed stage reads them."""
    for name, frame in {
        "posts": pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"]}),
        "mentions": pd.DataFrame({"id": ["a"], "ticker": ["GME"]}),
    }.items():
        (tmp_path / name).mkdir()
        frame.to_parquet(tmp_path / name / "part.0.parquet")
    return {"posts": tmp_path / "posts", "mentions": tmp_path / "mentions"}


def test_rerun_key_counts_output_settings_backend_and_input_content(datasets, tmp_path):
    embed = get_stage("embed")
    params = embed.make_params({})
    key = embed.rerun_key(datasets, params, "cpu")
    same = embed.rerun_key(datasets, params, "cpu")
    assert key == same and len(key) == 64

    def other(**kw):
        return embed.rerun_key(datasets, params.model_copy(update=kw), "cpu")

    # Speed and where the weights may come from: not in the key.
    assert other(token_budget=params.token_budget * 2) == key
    assert other(local_files_only=not params.local_files_only, allow_pickle=not params.allow_pickle) == key
    # What changes the vectors, or the shards: in the key.
    assert other(max_length=params.max_length + 1) != key
    assert other(partition_size=params.partition_size + 1) != key
    assert embed.rerun_key(datasets, params, "gpu") != key

    # Inputs count by content: a copy elsewhere is the same input, an edit is another.
    moved = {name: shutil.copytree(path, tmp_path / "elsewhere" / name) for name, path in datasets.items()}
    assert embed.rerun_key(moved, params, "cpu") == key
    pd.DataFrame({"id": ["b"], "ticker": ["AMC"]}).to_parquet(moved["mentions"] / "part.0.parquet")
    assert embed.rerun_key(moved, params, "cpu") != key


def test_the_runner_writes_the_key_that_current_manifest_reads(tmp_path):
    crsp = tmp_path / "crsp.csv"
    crsp.write_text(
        "PERMNO,date,RET\n" + "".join(f"1,2020-01-{d:02d},0.01\n" for d in range(2, 30)),
    )
    stage = get_stage("volatility")
    out = tmp_path / "vol"
    manifest = run_stage(stage, out, crsp=crsp, backend=Backend("cpu", "tests"))
    params = stage.make_params({})
    assert manifest["key"] == stage.rerun_key({"crsp": crsp}, params, "cpu")
    assert stage.current_manifest(out, {"crsp": crsp}, params, "cpu") == manifest
    assert stage.current_manifest(out, {"crsp": crsp}, params.model_copy(update={"partition_rows": 7}), "cpu") is None
    assert stage.current_manifest(tmp_path / "missing", {"crsp": crsp}, params, "cpu") is None


def test_params_type_is_the_protocols():
    # The protocol's settings are the stage's section: embed's entry takes EmbedParams.
    import wsb_gpu.stages.embed as embed

    assert inspect.signature(embed.run).parameters["params"].annotation in ("EmbedParams", EmbedParams)
    assert inspect.signature(embed.run).parameters["key"].kind is inspect.Parameter.KEYWORD_ONLY
