"""Configuration: packaged defaults -> dask.config / environment -> user YAML -> command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dask.config
import pytest
import yaml

from wsb_gpu.config import DEFAULTS_FILE, OPEN_MAPPINGS, Settings, load_settings, read_config_file
from wsb_gpu.errors import WsbError


def _packaged() -> dict:
    # An independent read of the packaged file, not through wsb_gpu.config.
    with open(DEFAULTS_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)["wsb_gpu"]


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v and f"{prefix}{k}" not in OPEN_MAPPINGS:
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.fixture
def env(monkeypatch):
    """Set DASK_* variables for one test; dask's config is re-read before and after."""

    def setenv(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        dask.config.refresh()

    yield setenv
    monkeypatch.undo()
    dask.config.refresh()


def test_defaults_equal_the_packaged_file():
    s = load_settings()
    assert s.to_dict() == _packaged()
    assert s.sources == ("defaults.yaml",)
    assert s.backend == "auto"
    assert s.cluster["kind"] == "local"
    assert s.stage("embed")["max_length"] == 64
    assert s.get("cluster.slurm.tls") is True


def test_every_default_key_is_commented():
    # Each leaf key of defaults.yaml is preceded by a comment line or carries one.
    lines = DEFAULTS_FILE.read_text(encoding="utf-8").splitlines()
    uncommented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue
        key = stripped.split(":")[0]
        above = lines[i - 1].strip() if i else ""
        # keys of a block introduced by a comment (like xgboost's hyperparameters) count
        block_commented = any(lines[j].strip().startswith("#") for j in range(max(0, i - 12), i))
        if "#" not in line and not above.startswith("#") and not block_commented:
            uncommented.append(key)
    assert not uncommented, f"keys without a comment in defaults.yaml: {uncommented}"


@pytest.mark.parametrize("wrapped", [True, False])
def test_user_yaml_with_and_without_top_key(tmp_path: Path, wrapped: bool):
    body = {"backend": "cpu", "cluster": {"kind": "none", "slurm": {"jobs": 7}}, "embed": {"max_length": 32}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"wsb_gpu": body} if wrapped else body), encoding="utf-8")
    s = load_settings(path)
    assert s.backend == "cpu"
    assert s.cluster["kind"] == "none"
    assert s.get("cluster.slurm.jobs") == 7
    assert s.get("cluster.slurm.tls") is True  # untouched keys keep their defaults
    assert s.stage("embed")["max_length"] == 32
    assert s.stage("embed")["pooling"] == _packaged()["embed"]["pooling"]
    assert s.sources == ("defaults.yaml", str(path))


def test_command_line_beats_file(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("backend: gpu\ncluster: {kind: slurm}\n", encoding="utf-8")
    s = load_settings(path, {"backend": "cpu", "cluster.kind": None})
    assert s.backend == "cpu"  # the option given
    assert s.cluster["kind"] == "slurm"  # None = option not given: the file's value stays
    assert s.sources[-1] == "command line"


def test_environment_variable_override(env):
    env("DASK_WSB_GPU__CLUSTER__SLURM__JOBS", "5")
    env("DASK_WSB_GPU__BACKEND", "cpu")
    env("DASK_WSB_GPU__CLUSTER__SLURM__JOB_NAME", "wsb-worker-42")
    s = load_settings()
    assert s.get("cluster.slurm.jobs") == 5
    assert s.backend == "cpu"
    assert s.get("cluster.slurm.job_name") == "wsb-worker-42"


def test_environment_variable_unknown_key_is_refused(env):
    env("DASK_WSB_GPU__CLUSTER__SLURM__JOBZ", "5")
    with pytest.raises(WsbError, match="did you mean 'cluster.slurm.jobs'"):
        load_settings()


def test_unknown_key_one_line_with_suggestion(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("cluster:\n  kidn: slurm\n", encoding="utf-8")
    with pytest.raises(WsbError) as info:
        load_settings(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "cluster.kidn" in msg and "did you mean 'cluster.kind'" in msg
    assert "docs/configuration.md" in msg


def test_bad_choice_lists_the_choices():
    with pytest.raises(WsbError, match="choose one of: none, local, cuda, slurm"):
        load_settings(overrides={"cluster.kind": "kubernetes"})


def test_section_given_a_scalar(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("cluster: local\n", encoding="utf-8")
    with pytest.raises(WsbError, match="must be a mapping"):
        load_settings(path)


def test_bad_yaml_names_the_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("backend: cpu\ncluster: [\n", encoding="utf-8")
    with pytest.raises(WsbError, match=r"not valid YAML at line \d+") as info:
        load_settings(path)
    assert "\n" not in str(info.value)


def test_missing_and_non_mapping_files(tmp_path: Path):
    with pytest.raises(WsbError, match="does not exist"):
        read_config_file(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(WsbError, match="must hold a mapping"):
        read_config_file(path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_settings(empty).to_dict() == _packaged()


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.data = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.data["backend"] = "gpu"  # type: ignore[index]
    with pytest.raises(TypeError):
        s.cluster["slurm"]["jobs"] = 9  # type: ignore[index]
    params = s.stage("train")
    params["models"].append("extra")
    assert "extra" not in s.stage("train")["models"]  # stage() hands out copies


def test_replace_makes_a_checked_copy():
    s = load_settings()
    t = s.replace(**{"cluster.kind": "none", "cluster.slurm.jobs": 3})
    assert isinstance(t, Settings)
    assert (t.cluster["kind"], t.get("cluster.slurm.jobs")) == ("none", 3)
    assert s.cluster["kind"] == "local"
    with pytest.raises(WsbError, match="unknown setting"):
        s.replace(**{"cluster.nope": 1})


def test_all_leaf_keys_reachable_by_dotted_get():
    s = load_settings()
    for dotted, value in _leaves(_packaged()).items():
        assert s.get(dotted) == value


def test_every_key_is_documented():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [k for k in _leaves(_packaged()) if f"`{k}`" not in doc]
    assert not missing, f"keys of defaults.yaml missing from docs/configuration.md: {missing}"


def test_train_models_accepts_exactly_the_registry(monkeypatch):
    """``train.models`` is validated against the model registry itself (no second list): every
    registered name is accepted, an unregistered one refused with the choices, and a name
    registered later is accepted from then on."""
    from wsb_gpu import models

    every = ",".join(models.MODELS)
    assert load_settings(overrides={"train.models": every}).params("train").models == tuple(models.MODELS)
    with pytest.raises(WsbError, match=f"unknown model.*lasso.*choose from {', '.join(models.MODELS)}"):
        load_settings(overrides={"train.models": "har,lasso"})
    monkeypatch.setitem(models.MODELS, "lasso", "somewhere:Lasso")
    assert load_settings(overrides={"train.models": "har,lasso"}).params("train").models == ("har", "lasso")
