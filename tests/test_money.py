"""lb.money: micro-dollars inside, dollars outside, rounded half up in one place. Every figure worked out by hand."""
from decimal import Decimal

import pytest

from lb import money

PRICES = (Decimal("1.75"), Decimal("0.175"), Decimal("14"))  # USD per million: input, cached input, output


@pytest.mark.parametrize("micros, places, dollars", [
    (150, 4, 0.0002),  # 0.00015 exactly: half up, where a float round() gives 0.0001
    (149, 4, 0.0001),
    (50, 4, 0.0001),
    (49, 4, 0.0),
    (615_683, 4, 0.6157),
    (615_683, 6, 0.615683),  # six places: exact
    (1, 6, 0.000001),
    (0, 6, 0.0),
    (12_345_678_901, 2, 12345.68),
])
def test_dollars_are_rounded_half_up(micros, places, dollars):
    assert money.dollars(micros, places) == dollars
    assert type(money.dollars(micros, places)) is float


def test_six_places_is_the_default():
    assert money.dollars(1_234_567) == 1.234567


@pytest.mark.parametrize("numerator, denominator, places, expected", [
    (1, 3, 2, 0.33), (2, 3, 2, 0.67), (1, 8, 2, 0.13), (100, 1, 2, 100.0),
])
def test_a_ratio_is_rounded_half_up(numerator, denominator, places, expected):
    assert money.rounded(numerator, denominator, places) == expected


def test_a_cost_prices_fresh_input_cached_input_and_output_each_at_its_own_price():
    # 900 fresh x 1.75 + 100 cached x 0.175 + 200 x 14 = 1575 + 17.5 + 2800 = 4392.5 micro-USD: half up, 4393.
    assert money.cost(PRICES, 1000, 100, 200) == 4393
    assert money.cost(PRICES, 0, 0, 0) == 0
    assert money.cost(None, 1000, 100, 200) == 0  # a model without prices costs nothing
    assert type(money.cost(PRICES, 1, 0, 0)) is int
