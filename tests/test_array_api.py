"""The array kernels the GPU runs on CuPy, run here under ``array-api-strict``.

``array-api-strict`` implements exactly the array API standard and nothing more: a kernel
that calls a NumPy-only function (``np.flatnonzero``, ``lexsort``, ``out=``, fancy-index
assignment, ``.sum()`` of booleans …) fails here, on the CPU, long before it meets CuPy.
Every kernel is also compared with its NumPy result, value for value.
"""

from __future__ import annotations

import numpy as np
import pytest

xps = pytest.importorskip("array_api_strict")

from wsb_gpu.models.moments import Moments, array_moments  # noqa: E402
from wsb_gpu.models.ridge import _CHOLESKY_MAX_LAMBDAS, _eigen_path, solve_ridge_path  # noqa: E402
from wsb_gpu.stages.links import next_trading_row  # noqa: E402
from wsb_gpu.stages.volatility import (  # noqa: E402
    WINDOWS,
    duplicate_rows,
    ohlcv_returns,
    panel_volatility,
    sort_order,
    window_sums,
)


def host(a):
    return np.from_dlpack(a) if not isinstance(a, np.ndarray) else a


def panel(seed=0, n_stocks=7):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 90, n_stocks)
    permno = np.repeat(np.arange(10_000, 10_000 + n_stocks), lengths).astype(np.int64)
    day = np.concatenate([np.sort(rng.choice(400, n, replace=False)) for n in lengths]).astype(np.int64)
    ret = rng.normal(0, 0.02, permno.size)
    ret[rng.random(permno.size) < 0.05] = np.nan
    return permno, day, ret


def test_panel_volatility_is_standard_and_equal_to_numpy():
    permno, _, ret = panel()
    want = panel_volatility(permno, ret)
    got = panel_volatility(xps.asarray(permno), xps.asarray(ret))
    assert list(got) == list(want) == ["ret", *(f"vol_{w}" for w in WINDOWS), *(f"y_{w}" for w in WINDOWS)]
    for name in want:
        np.testing.assert_array_equal(host(got[name]), want[name])
    empty = panel_volatility(xps.asarray(np.zeros(0, np.int64)), xps.asarray(np.zeros(0)))
    assert all(host(v).size == 0 for v in empty.values())


def test_window_sums_are_standard():
    x = np.abs(np.random.default_rng(1).normal(size=300))
    want = window_sums(x, WINDOWS)
    got = window_sums(xps.asarray(x), WINDOWS)
    for w in WINDOWS:
        np.testing.assert_array_equal(host(got[w]), want[w])


@pytest.mark.parametrize("wide", [False, True])
def test_sort_order_combined_key_and_the_two_sort_fallback(wide):
    permno, day, _ = panel(2)
    rng = np.random.default_rng(3)
    shuffle = rng.permutation(permno.size)
    permno, day = permno[shuffle], day[shuffle]
    if wide:  # 63-bit hash ids (OHLCV): the combined key does not fit, the fallback sorts twice
        permno = permno * np.int64(2**40)
    want = np.lexsort((day, permno))
    np.testing.assert_array_equal(sort_order(permno, day), want)
    np.testing.assert_array_equal(host(sort_order(xps.asarray(permno), xps.asarray(day))), want)
    assert sort_order(xps.asarray(np.sort(permno)), xps.asarray(np.zeros(permno.size, np.int64))) is None


def test_duplicates_and_ohlcv_returns_are_standard():
    permno = np.array([1, 1, 1, 2, 2], np.int64)
    day = np.array([5, 5, 6, 5, 5], np.int64)
    value = np.array([0.1, 0.1, 0.2, np.nan, np.nan])
    dup, conflict = duplicate_rows(xps.asarray(permno), xps.asarray(day), xps.asarray(value))
    assert host(dup).tolist() == [False, True, False, False, True]
    assert host(conflict).tolist() == [False, False, False, False, False]
    close = np.array([10.0, 11.0, 12.1, 5.0, 4.0])
    np.testing.assert_allclose(
        host(ohlcv_returns(xps.asarray(permno), xps.asarray(close))), ohlcv_returns(permno, close)
    )


@pytest.mark.parametrize("ids", [np.array([1, 2, 3]), np.array([2**62 + 5, 3, 2**61])], ids=["crsp", "ohlcv-hashes"])
def test_trading_day_assignment_is_standard(ids):
    cal_p = np.repeat(np.sort(ids), 50).astype(np.int64)
    cal_d = np.tile(np.arange(0, 100, 2), 3).astype(np.int64)
    s = np.sort(ids)
    post_p = np.array([s[0], s[0], s[1], s[2], s[2], 999], np.int64)
    post_d = np.array([3, 99, 0, 50, 200, 10], np.int64)
    want_row, want_hit = next_trading_row(cal_p, cal_d, post_p, post_d)
    row, hit = next_trading_row(*(xps.asarray(a) for a in (cal_p, cal_d, post_p, post_d)))
    np.testing.assert_array_equal(host(row), want_row)
    np.testing.assert_array_equal(host(hit), want_hit)
    assert want_hit.tolist() == [True, False, True, True, False, False]
    # Independent reference: the first calendar day >= the post day of the same stock.
    for i in np.flatnonzero(want_hit):
        assert cal_p[want_row[i]] == post_p[i] and cal_d[want_row[i]] == 2 * -(-post_d[i] // 2)


def test_ridge_moments_and_solves_are_standard():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(500, 6)) + 40.0
    keys = rng.integers(0, 12, 500).astype(np.int64)
    want = array_moments(values.copy(), keys)
    got = array_moments(xps.asarray(values), xps.asarray(keys))
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].n == want[k].n
        np.testing.assert_allclose(got[k].mean, want[k].mean, rtol=1e-15)
        np.testing.assert_allclose(got[k].m2, want[k].m2, rtol=1e-12)
    whole = Moments.from_array(xps.asarray(values))
    np.testing.assert_allclose(whole.m2, Moments.from_array(values).m2, rtol=1e-12)
    lambdas = np.logspace(-2, 4, _CHOLESKY_MAX_LAMBDAS + 3)  # the eigendecomposition path
    coef_np = solve_ridge_path(whole, lambdas)[0]
    coef_strict = solve_ridge_path(whole, lambdas, xp=xps)[0]
    np.testing.assert_allclose(coef_strict, coef_np, rtol=1e-10)
    free_np = solve_ridge_path(whole, lambdas, free=2)[0]  # HAR-like leading block unpenalised
    np.testing.assert_allclose(solve_ridge_path(whole, lambdas, xp=xps, free=2)[0], free_np, rtol=1e-10)
    G = values.T @ values
    np.testing.assert_allclose(
        _eigen_path(G, values[0], np.array([1.0]), xps), _eigen_path(G, values[0], np.array([1.0]), np), rtol=1e-10
    )


@pytest.mark.gpu
def test_the_same_kernels_on_cupy():
    import cupy

    permno, day, ret = panel(5)
    want = panel_volatility(permno, ret)
    got = panel_volatility(cupy.asarray(permno), cupy.asarray(ret))
    for name in want:
        np.testing.assert_allclose(cupy.asnumpy(got[name]), want[name], rtol=1e-12, equal_nan=True)
    order = sort_order(cupy.asarray(permno[::-1].copy()), cupy.asarray(day[::-1].copy()))
    np.testing.assert_array_equal(cupy.asnumpy(order), sort_order(permno[::-1].copy(), day[::-1].copy()))
    values = np.random.default_rng(6).normal(size=(300, 5))
    keys = np.arange(300, dtype=np.int64) % 7
    want_m = array_moments(values.copy(), keys)
    got_m = array_moments(cupy.asarray(values), cupy.asarray(keys))
    for k in want_m:
        np.testing.assert_allclose(got_m[k].m2, want_m[k].m2, rtol=1e-10)
