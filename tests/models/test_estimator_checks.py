"""The row-level estimators follow scikit-learn's estimator contract, proven by its own
checks (``sklearn.utils.estimator_checks``).

Every check applies and passes: none is listed in ``expected_failed_checks``. Two tags say
what the contract is: the classifiers are binary (``classifier_tags.multi_class = False``:
a spike or not), and XGBoost takes NaN as a missing value (``input_tags.allow_nan``). The
array-API checks are skipped unless ``SCIPY_ARRAY_API=1`` is set before SciPy is imported
(scikit-learn's condition); the estimators' CuPy path is tested on a GPU by the train tests.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from wsb_gpu.models.classify import LogitClassifier, XGBClassifier
from wsb_gpu.models.enet import StandardizedEnet
from wsb_gpu.models.har import HAR
from wsb_gpu.models.ridge import StandardizedRidge

pytest.importorskip("xgboost")

ESTIMATORS = [HAR(), StandardizedRidge(), StandardizedEnet(), LogitClassifier(), XGBClassifier(n_estimators=20)]


@parametrize_with_checks(ESTIMATORS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
