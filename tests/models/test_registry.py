"""The model registry and the model contract's parameters: names resolve lazily, settings
reach a model only through its declaration, and every registered model is a scikit-learn
``BaseEstimator`` whose ``clone`` is an unfitted copy with the same parameters."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.base import BaseEstimator, clone

from wsb_gpu import models
from wsb_gpu.config import load_settings
from wsb_gpu.errors import WsbError
from wsb_gpu.models.base import Model
from wsb_gpu.signals.families import FeatureSet
from wsb_gpu.training.build import hyperparameters_of, make_model, model_class

MODELS_DIR = Path(models.__file__).resolve().parent
FS = FeatureSet("text", ("embedding",), ("e000", "e001"))
EVERY = [("regression", m) for m in models.MODELS] + [("spike", m) for m in models.SPIKE_CLASSIFIERS]


@pytest.fixture(scope="module")
def params():
    return load_settings(overrides={"backend": "cpu", "cluster.kind": "none"}).params("train")


def test_reading_the_registry_and_the_settings_imports_no_model_library():
    code = (
        "import json, sys, wsb_gpu.config, wsb_gpu.models\n"
        "wsb_gpu.config.load_settings(overrides={'train.models': ','.join(wsb_gpu.models.MODELS)})\n"
        "heavy = ('sklearn', 'torch', 'xgboost', 'numba', 'scipy')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_no_model_module_reads_the_settings():
    """Configuration stops at the task: nothing under wsb_gpu/models imports wsb_gpu.config,
    not even for type checking, or names TrainParams."""
    for path in sorted(MODELS_DIR.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "wsb_gpu.config", path.name
            elif isinstance(node, ast.Import):
                assert all(a.name != "wsb_gpu.config" for a in node.names), path.name
        assert "TrainParams" not in source, path.name


@pytest.mark.parametrize(("task", "name"), EVERY)
def test_registry_entries_resolve_to_models_of_that_name(task, name):
    cls = model_class(name, task)
    assert issubclass(cls, Model) and issubclass(cls, BaseEstimator) and cls.name == name


def test_unknown_name_is_a_clear_error():
    with pytest.raises(WsbError, match="unknown model 'lasso' for the spike task; choose from har, ridge, xgboost"):
        model_class("lasso", "spike")


@pytest.mark.parametrize(("task", "name"), EVERY)
def test_get_params_are_the_declared_settings_and_clone_is_an_unfitted_copy(params, task, name):
    model = make_model(name, params, FS, task)
    cls = type(model)
    got = model.get_params()
    assert set(got) == {"feature_set", *cls.hyperparameters()}
    assert got["feature_set"] == FS
    # Each hyperparameter holds its setting unchanged: from the last declared section that has
    # it, or the top-level key.
    for key in cls.hyperparameters():
        blocks = [getattr(params, s) for s in cls.sections if key in type(getattr(params, s)).model_fields]
        expected = getattr(blocks[-1], key) if blocks else getattr(params, key)
        assert got[key] == expected, key
    copy = clone(model)
    assert type(copy) is cls and copy is not model
    assert copy.get_params() == got
    assert not [k for k in vars(copy) if k.endswith("_")]  # no learned state
    assert repr(copy).startswith(cls.__name__ + "(")


def test_spike_xgboost_takes_its_rounds_from_the_spike_section(params):
    p = params.model_copy(update={"spike": params.spike.model_copy(update={"n_estimators": 7})})
    assert make_model("xgboost", p, FS, "spike").n_estimators == 7
    assert make_model("xgboost", p, FS).n_estimators == params.xgboost.n_estimators
    assert "C" not in make_model("har", p, None, "spike").get_params()  # the benchmark's C is fixed


def test_a_declaration_that_does_not_match_the_settings_is_a_clear_error(params):
    class NoSection(Model):
        name = "no_section"
        sections = ("lasso",)

        def fit(self, window):
            return self

        def predict_array(self, X):
            return X[:, 0]

    class Undeclared(NoSection):
        sections = ()

        def __init__(self, feature_set=None, *, alpha):
            super().__init__(feature_set)
            self.alpha = alpha

    class WithDefault(Undeclared):
        def __init__(self, feature_set=None, *, alpha=0.5):
            super().__init__(feature_set, alpha=alpha)

    with pytest.raises(WsbError, match="names 'lasso', which is not a section of train"):
        hyperparameters_of(NoSection, params)
    with pytest.raises(WsbError, match="Undeclared takes alpha, which none of its declared settings"):
        hyperparameters_of(Undeclared, params)
    assert hyperparameters_of(WithDefault, params) == {}
