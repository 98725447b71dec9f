import numpy as np
import pytest

from learningchain.errors import InvalidMessage
from learningchain.protocol.quantize import check_unit, max_exact_messages, squared_norm, unit_norm_bounds


def test_bounds_are_the_stated_relative_tolerance():
    lo, hi = unit_norm_bounds(20, 10)
    assert lo == (1023 * 2**10) ** 2 and hi == (1025 * 2**10) ** 2


def test_vectors_outside_the_tolerance_are_refused():
    q = np.full(4, int(2**20 * 1.01 / 2), dtype=np.int32)  # norm 1.01, every component small
    with pytest.raises(InvalidMessage, match="norm 1.01"):
        check_unit(q, 20, 10)
    with pytest.raises(InvalidMessage):
        check_unit(np.zeros(3, dtype=np.int32), 20, 10)


def test_huge_components_are_refused_before_they_can_overflow():
    q = np.array([2**31 - 1, 2**31 - 1, 0], dtype=np.int32)
    with pytest.raises(InvalidMessage, match="component"):
        check_unit(q, 20, 10)


@pytest.mark.parametrize("dtype", [np.int32, np.int16])
def test_the_most_negative_entry_is_refused_without_wrapping(dtype):
    low = np.iinfo(dtype).min  # -low does not fit the dtype: the bound is checked on Python ints
    q = np.zeros(8, dtype=dtype)
    q[3] = low
    with pytest.raises(InvalidMessage, match="component"):
        check_unit(q, 14 if dtype == np.int16 else 20, 10)


def test_squared_norm_is_exact():
    q = np.array([2**20, -3, 5], dtype=np.int32)
    assert squared_norm(q) == 2**40 + 9 + 25


def test_exactness_bound_keeps_sum_dot_products_below_2_53():
    n = max_exact_messages(20, 10)
    _, hi = unit_norm_bounds(20, 10)
    assert n * hi < 2**53 <= (n + 1) * hi
