"""Ridge engines and sufficient statistics against direct NumPy computations."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from wsb_gpu.models.har import HAR
from wsb_gpu.models.moments import Moments, merge_moment_dicts, moments_sse, partition_moments
from wsb_gpu.models.ridge import StandardizedRidge, ridge_cv_from_moments, ridge_cv_from_rows, solve_ridge_path
from wsb_gpu.models.splits import BlockedTimeFolds


def _data(n=600, p=6, seed=0, offset=50.0):
    rng = np.random.default_rng(seed)
    # Large means relative to the spread: raw sums would cancel badly.
    X = offset + rng.normal(size=(n, p)) * rng.uniform(0.01, 2, p)
    y = 3 + X @ rng.normal(size=p) + rng.normal(size=n)
    return X, y


def test_moments_merge_is_exact_and_stable():
    X, y = _data()
    V = np.column_stack([X, y])
    parts = [Moments.from_array(V[i : i + 97]) for i in range(0, len(V), 97)]
    m = parts[0]
    for q in parts[1:]:
        m = m + q
    C = V - V.mean(0)
    np.testing.assert_allclose(m.mean, V.mean(0), rtol=1e-14)
    np.testing.assert_allclose(m.m2, C.T @ C, rtol=1e-10, atol=1e-9)


def test_partition_moments_groups_by_key():
    import pandas as pd

    X, y = _data(n=50, p=2)
    f = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": y, "period": np.arange(50) % 3})
    got = merge_moment_dicts(
        partition_moments(f.iloc[:20], ["a", "b"], "y"), partition_moments(f.iloc[20:], ["a", "b"], "y")
    )
    for k in range(3):
        V = f[f.period == k][["a", "b", "y"]].to_numpy()
        np.testing.assert_allclose(got[k].m2, (V - V.mean(0)).T @ (V - V.mean(0)), rtol=1e-10)
        assert got[k].n == len(V)


def test_stats_path_equals_sklearn_on_standardised_data():
    X, y = _data()
    lambdas = [0.01, 1.0, 100.0]
    coef, icpt, mean, scale = solve_ridge_path(Moments.from_array(np.column_stack([X, y])), lambdas)
    Z = (X - X.mean(0)) / X.std(0)
    for j, lam in enumerate(lambdas):
        ref = Ridge(alpha=lam).fit(Z, y)
        np.testing.assert_allclose(coef[:, j], ref.coef_ / X.std(0), rtol=1e-8)
        np.testing.assert_allclose(icpt[j], ref.intercept_ - (X.mean(0) / X.std(0)) @ ref.coef_, rtol=1e-8)
        est = StandardizedRidge(alpha=lam).fit(X, y)
        np.testing.assert_allclose(est.coef_, coef[:, j], rtol=1e-8)


def _augmented_lstsq(X, y, lam, free):
    """min ||y - b0 - Z w||^2 + lam ||w[free:]||^2 as one least-squares problem (rows
    sqrt(lam) e_j appended for the penalised j), written independently of the package."""
    Z = (X - X.mean(0)) / X.std(0)
    p = Z.shape[1]
    P = np.sqrt(lam) * np.eye(p)[free:]
    A = np.vstack([np.column_stack([np.ones(len(Z)), Z]), np.column_stack([np.zeros(len(P)), P])])
    b = np.concatenate([y, np.zeros(len(P))])
    sol = np.linalg.lstsq(A, b, rcond=None)[0]
    coef = sol[1:] / X.std(0)
    return coef, sol[0] - (X.mean(0) / X.std(0)) @ sol[1:]


@pytest.mark.parametrize("n_lambdas", [3, 14])  # the Cholesky path and the eigendecomposition path
def test_unpenalised_leading_block_equals_augmented_least_squares(n_lambdas):
    """The HAR terms first and free: both engines solve exactly the partly penalised problem;
    free = p is OLS whatever lambda; free = 0 is the plain ridge."""
    X, y = _data(p=7)
    lambdas = np.geomspace(0.1, 1e4, n_lambdas)
    coef, icpt, _, _ = solve_ridge_path(Moments.from_array(np.column_stack([X, y])), lambdas, free=4)
    for j, lam in enumerate(lambdas):
        ref_coef, ref_icpt = _augmented_lstsq(X, y, lam, free=4)
        np.testing.assert_allclose(coef[:, j], ref_coef, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(icpt[j], ref_icpt, rtol=1e-8)
        est = StandardizedRidge(alpha=lam, free=4).fit(X, y)
        np.testing.assert_allclose(est.coef_, ref_coef, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(est.intercept_, ref_icpt, rtol=1e-8)
    # Large lambda: the text coefficients go to 0 and the free ones to OLS on the free columns.
    big = solve_ridge_path(Moments.from_array(np.column_stack([X, y])), [1e14], free=4)[0][:, 0]
    ols = np.linalg.lstsq(np.column_stack([np.ones(len(X)), X[:, :4]]), y, rcond=None)[0][1:]
    np.testing.assert_allclose(big[:4], ols, rtol=1e-6)
    assert np.abs(big[4:]).max() < 1e-8
    every = solve_ridge_path(Moments.from_array(np.column_stack([X, y])), [1e6], free=7)[0][:, 0]
    np.testing.assert_allclose(
        every, np.linalg.lstsq(np.column_stack([np.ones(len(X)), X]), y, rcond=None)[0][1:], rtol=1e-8
    )
    np.testing.assert_allclose(StandardizedRidge(alpha=1e6, free=7).fit(X, y).coef_, every, rtol=1e-8)


def test_unpenalised_cv_engines_agree():
    X, y = _data(n=900, p=8, seed=3)
    periods = np.repeat(np.arange(12), 75)
    lambdas = np.geomspace(0.1, 1e4, 5)
    table = {int(k): Moments.from_array(np.column_stack([X, y])[periods == k]) for k in range(12)}
    blocks = BlockedTimeFolds(3).blocks(list(range(12)))
    a = ridge_cv_from_moments(table, blocks, lambdas, free=4)
    b = ridge_cv_from_rows(X, y, periods, BlockedTimeFolds(3), lambdas, free=4)
    assert a.fit.lam == b.fit.lam
    np.testing.assert_allclose(a.fold_mse, b.fold_mse, rtol=1e-9)
    np.testing.assert_allclose(a.fit.coef, b.fit.coef, rtol=1e-8)


def test_sse_from_moments_equals_residuals():
    X, y = _data()
    Xt, yt = _data(seed=9)
    m = Moments.from_array(np.column_stack([Xt, yt]))
    b = np.linspace(-1, 1, X.shape[1])
    direct = np.sum((yt - 0.7 - Xt @ b) ** 2)
    assert abs(moments_sse(m, b, 0.7)[0] - direct) / direct < 1e-10


def test_cv_engines_agree():
    X, y = _data(n=480)
    periods = np.repeat(np.arange(24), 20)
    blocks = BlockedTimeFolds(3).blocks(periods)
    lambdas = np.logspace(-2, 4, 5)
    table = {int(k): Moments.from_array(np.column_stack([X, y])[periods == k]) for k in range(24)}
    a = ridge_cv_from_moments(table, blocks, lambdas)
    b = ridge_cv_from_rows(X, y, periods, BlockedTimeFolds(3), lambdas)
    assert a.fit.lam == b.fit.lam
    np.testing.assert_allclose(a.fit.coef, b.fit.coef, rtol=1e-8)
    np.testing.assert_allclose(a.fold_mse, b.fold_mse, rtol=1e-10)
    np.testing.assert_allclose(a.fit.scale, b.fit.scale, rtol=1e-12)


def test_har_from_moments_equals_lstsq():
    X, y = _data(p=4, offset=0.02)
    A = np.column_stack([np.ones(len(X)), X])
    ref, *_ = np.linalg.lstsq(A, y, rcond=None)
    for model in (HAR().fit(X, y), HAR.from_moments(Moments.from_array(np.column_stack([X, y])))):
        np.testing.assert_allclose(model.coef_, ref[1:], rtol=1e-8)
        assert abs(model.intercept_ - ref[0]) < 1e-8 * max(1, abs(ref[0]))


def test_constant_column_is_left_unpenalised_noise():
    X, y = _data()
    X[:, 2] = 1.0
    est = StandardizedRidge(alpha=1.0).fit(X, y)
    coef, _, _, scale = solve_ridge_path(Moments.from_array(np.column_stack([X, y])), [1.0])
    assert scale[2] == 1.0 and abs(est.coef_[2]) < 1e-8 and abs(coef[2, 0]) < 1e-8


@pytest.mark.gpu
def test_gpu_engines_agree_with_cpu(backend):
    xp = backend.xp
    X, y = _data(n=480)
    periods = np.repeat(np.arange(24), 20)
    blocks = BlockedTimeFolds(3).blocks(periods)
    lambdas = np.logspace(-2, 4, 5)
    cpu = ridge_cv_from_rows(X, y, periods, BlockedTimeFolds(3), lambdas)
    gpu = ridge_cv_from_rows(xp.asarray(X), xp.asarray(y), periods, BlockedTimeFolds(3), lambdas, backend=backend)
    table = {int(k): Moments.from_array(xp.asarray(np.column_stack([X, y])[periods == k])) for k in range(24)}
    stats = ridge_cv_from_moments(table, blocks, lambdas, xp=xp)
    np.testing.assert_allclose(gpu.fit.coef, cpu.fit.coef, rtol=1e-6)
    np.testing.assert_allclose(stats.fit.coef, cpu.fit.coef, rtol=1e-8)


def test_large_lambda_grid_uses_one_eigendecomposition_and_agrees():
    # More lambdas than the Cholesky cut-off: the eigendecomposition path, same answer.
    from wsb_gpu.models import ridge

    X, y = _data()
    lambdas = np.logspace(-2, 4, ridge._CHOLESKY_MAX_LAMBDAS + 3)
    coef, _, _, _ = solve_ridge_path(Moments.from_array(np.column_stack([X, y])), lambdas)
    Z = (X - X.mean(0)) / X.std(0)
    for j in (0, lambdas.size // 2, lambdas.size - 1):
        ref = Ridge(alpha=lambdas[j], solver="svd").fit(Z, y)
        np.testing.assert_allclose(coef[:, j], ref.coef_ / X.std(0), rtol=1e-8)
