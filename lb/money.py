"""Money: integer micro-dollars inside, so sums are exact; dollars outside, rounded half up in this one place."""
from decimal import ROUND_HALF_UP, Decimal

MICROS = 1_000_000  # micro-USD per USD; prices are USD per million tokens, so tokens x price is micro-USD


def rounded(numerator, denominator, places):
    """``numerator / denominator`` rounded half up to ``places`` decimals, as a float.

    Decimal, not float ``round``: 150 micro-USD is 0.00015 exactly, which is 0.0002, not 0.0001.
    """
    exact = Decimal(numerator) / Decimal(denominator)
    return float(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def percent(part, whole):
    """``part`` per hundred of ``whole``, rounded half up to 2 decimals, as a float; 0.0 when ``whole`` is 0."""
    return rounded(part * 100, whole, 2) if whole else 0.0


def dollars(micros, places=6):
    """Micro-USD as USD rounded half up to ``places`` decimals (6: exact)."""
    return rounded(micros, MICROS, places)


def cost(prices, input_tokens, cached_input_tokens, output_tokens):
    """The cost in micro-USD of the tokens at ``prices`` (USD per million: input, cached input, output);
    0 for a model without prices. The cached tokens are part of the input, at their own price."""
    if prices is None:
        return 0
    p_in, p_cached, p_out = prices
    total = (input_tokens - cached_input_tokens) * p_in + cached_input_tokens * p_cached + output_tokens * p_out
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))
