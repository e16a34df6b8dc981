"""The statistics behind pass rates over seeds.

A case passes on some of its seeds, and the share that passed is an estimate, not a fact: 8 of 10 is
compatible with a true rate anywhere from about 49% to 94%. This module gives the intervals that say so
(Wilson's for a pass rate, Student's t for a mean score), the exact test a baseline comparison uses to
call a drop in the pass rate real (one-sided Fisher), and how many seeds a run takes before that test
sees a given drop most of the time (its exact power, and the guidance table the README shows).

Only the standard library: the harness must not pull in scipy for a handful of formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist, fmean, stdev

DEFAULT_CONFIDENCE = 0.95
Z_95 = NormalDist().inv_cdf(1 - (1 - DEFAULT_CONFIDENCE) / 2)
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8

_DEFAULT_DROPS: tuple[tuple[float, float], ...] = ((0.95, 0.8), (0.9, 0.7), (0.9, 0.5), (0.8, 0.5), (0.7, 0.4))

# The continued fraction converges in about sqrt(df) terms; this bound only stops a runaway loop.
_BETA_MAX_TERMS = 100_000
_BETA_EPS = 1e-16
# From here on t_quantile uses the normal expansion instead of the incomplete beta function.
_EXPANSION_DF = 100_000
# Lentz's method replaces a zero denominator by this tiny number instead of dividing by zero.
_BETA_TINY = 1e-300


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence!r}")
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson_interval(passed: int, run: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval (no continuity correction) for ``passed`` successes out of ``run``.

    Wilson's rather than the textbook p ± z·se: that one collapses to [0, 0] at 0 of 5 and strays
    outside [0, 1], exactly at the small seed counts a case runs with.
    """
    if run < 0 or passed < 0 or passed > run:
        raise ValueError(f"need 0 <= passed <= run, got passed={passed}, run={run}")
    z = _z(confidence)
    if run == 0:
        return (0.0, 1.0)  # no seed run: every rate is still possible
    p = passed / run
    z2 = z * z
    denominator = 1 + z2 / run
    center = (p + z2 / (2 * run)) / denominator
    half = z * math.sqrt(p * (1 - p) / run + z2 / (4 * run * run)) / denominator
    # At 0 of n (and n of n) the two terms cancel exactly in theory, not always in floating point:
    # the bound is set, so a report never shows a lower bound of 1e-17.
    low = 0.0 if passed == 0 else max(0.0, center - half)
    high = 1.0 if passed == run else min(1.0, center + half)
    return (low, high)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function, by the modified Lentz method.

    Converges quickly for x < (a + 1) / (a + b + 2); the caller swaps a and b otherwise.
    """
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > _BETA_TINY else _BETA_TINY)
    result = d
    for m in range(1, _BETA_MAX_TERMS + 1):
        m2 = 2 * m
        # The even step, then the odd step, of the fraction's coefficients.
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _BETA_TINY else _BETA_TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _BETA_TINY else _BETA_TINY
            delta = c * d
            result *= delta
        if abs(delta - 1.0) < _BETA_EPS:
            return result
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _stirling_remainder(x: float) -> float:
    """lgamma(x) - ((x - 1/2) ln x - x + ln(2 pi) / 2), by its asymptotic series (x >= 10: error < 1e-15)."""
    inverse = 1.0 / x
    inverse2 = inverse * inverse
    return inverse * (1 / 12 - inverse2 * (1 / 360 - inverse2 * (1 / 1260 - inverse2 * (1 / 1680 - inverse2 / 1188))))


def _log_beta(a: float, b: float) -> float:
    """ln B(a, b), accurate for large arguments too.

    lgamma(a) + lgamma(b) - lgamma(a + b) subtracts two numbers of size a ln a, so at a = 5·10^5 it
    loses 1e-9 to cancellation. For large a, Stirling's formula gives the difference lgamma(a) -
    lgamma(a + b) in terms that never grow with a.
    """
    big, small = max(a, b), min(a, b)
    if big < 10:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    big_minus_sum = (
        -small * math.log(big)
        - (big + small - 0.5) * math.log1p(small / big)
        + small
        + _stirling_remainder(big)
        - _stirling_remainder(big + small)
    )
    return math.lgamma(small) + big_minus_sum


def _regularized_beta(a: float, b: float, x: float, y: float, log_x: float, log_y: float) -> float:
    """I_x(a, b), with y = 1 - x and both logarithms passed in.

    The caller knows x and 1 - x in forms that lose no digits when x is close to 0 or 1 (for the t
    distribution, df / (df + t²) and t² / (df + t²)), and the logarithms likewise: with a = 50000,
    a · ln x would magnify the rounding of x itself.
    """
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    front = math.exp(a * log_x + b * log_y - _log_beta(a, b))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_continued_fraction(a, b, x) / a
    # Past the mean the fraction converges slowly; I_x(a, b) = 1 - I_{1-x}(b, a) converges fast there.
    return 1.0 - front * _beta_continued_fraction(b, a, y) / b


def _t_upper_tail(t: float, df: int) -> float:
    """P(T > t) for t >= 0: half the regularized beta I_{df/(df+t²)}(df/2, 1/2)."""
    if t == 0.0:
        return 0.5
    t2 = t * t
    ratio = t2 / df
    x = 1.0 / (1.0 + ratio)
    y = ratio / (1.0 + ratio)
    log_x = -math.log1p(ratio)
    log_y = math.log(ratio) + log_x
    return 0.5 * _regularized_beta(df / 2, 0.5, x, y, log_x, log_y)


def _t_quantile_expansion(p: float, df: int) -> float:
    """The t quantile for large df from the normal one (Abramowitz & Stegun 26.7.5, four terms).

    For large df the continued fraction works with x = df / (df + t²) close to 1, and the rounding of x
    costs relative accuracy in proportion to df (2e-10 at 10^8). The expansion's first omitted term is
    of order z¹¹ / df⁵, far below 1e-15 from 10^5 on at any z a float p allows.
    """
    z = NormalDist().inv_cdf(p)
    z2 = z * z
    g1 = z * (z2 + 1) / 4
    g2 = z * ((5 * z2 + 16) * z2 + 3) / 96
    g3 = z * (((3 * z2 + 19) * z2 + 17) * z2 - 15) / 384
    g4 = z * ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) / 92160
    return z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile: the t with P(T <= t) = p for ``df`` degrees of freedom.

    The CDF comes from the regularized incomplete beta function; the quantile is found by bisection on
    the upper tail, which is monotone and needs no derivative. Bisection runs until the bracket is
    narrower than 1e-15 of its end, far inside the 1e-9 relative accuracy promised. From 10^5 degrees
    of freedom on, the normal quantile's expansion in 1/df is both exact enough and more accurate.
    """
    if df < 1:
        raise ValueError(f"df must be at least 1, not {df!r}")
    if not 0 < p < 1:
        raise ValueError(f"p must lie strictly between 0 and 1, not {p!r}")
    if p == 0.5:
        return 0.0
    if df >= _EXPANSION_DF:
        return _t_quantile_expansion(p, df)
    # Work on the smaller tail: q near 0 keeps its relative precision, 1 - q near 1 would not.
    q = min(p, 1 - p)
    low, high = 0.0, 1.0
    while _t_upper_tail(high, df) > q:
        low, high = high, high * 2
        if high > 1e300:
            raise ValueError(f"the t quantile for p={p!r}, df={df} is beyond floating point")
    while high - low > 1e-15 * high:
        middle = (low + high) / 2
        if middle in (low, high):
            break  # adjacent floats: the bracket cannot shrink further
        if _t_upper_tail(middle, df) > q:
            low = middle
        else:
            high = middle
    t = (low + high) / 2
    return t if p > 0.5 else -t


def mean_interval(
    values: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    bounds: tuple[float, float] | None = None,
) -> tuple[float, float | None, float | None]:
    """(mean, low, high): the Student t interval mean ± t·s/sqrt(n), s the sample standard deviation.

    With fewer than 2 values the interval is not defined (no spread to estimate), so low and high are
    None rather than a made-up width. ``bounds`` clamps the interval: a mean of probabilities stays in
    [0, 1] even when the t interval would not.
    """
    if not values:
        raise ValueError("mean_interval needs at least one value")
    _z(confidence)  # the same range check as the other intervals
    mean = fmean(values)
    n = len(values)
    if n < 2:
        return (mean, None, None)
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * stdev(values) / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        floor, ceiling = bounds
        if floor > ceiling:
            raise ValueError(f"bounds must be (low, high) with low <= high, not {bounds!r}")
        low = min(max(low, floor), ceiling)
        high = min(max(high, floor), ceiling)
    return (mean, low, high)


def _check_counts(passed: int, run: int, name: str) -> None:
    if run < 0 or passed < 0 or passed > run:
        raise ValueError(f"need 0 <= {name}_passed <= {name}_run, got {passed} of {run}")


def rate_drop_p_value(before_passed: int, before_run: int, now_passed: int, now_run: int) -> float:
    """One-sided Fisher's exact test p-value for "the pass rate now is lower than before".

    With both runs' seeds pooled (before_run + now_run seeds, before_passed + now_passed passes), it is
    the hypergeometric probability that ``now_run`` of them drawn at random hold ``now_passed`` passes
    or fewer. Exact rather than a z-test: at a few dozen seeds and rates near 100% the normal
    approximation is badly off. Computed in integers and divided once, so the only rounding is the
    final (correctly rounded) division.
    """
    _check_counts(before_passed, before_run, "before")
    _check_counts(now_passed, now_run, "now")
    if before_run == 0 or now_run == 0:
        return 1.0  # one side has no seeds: there is nothing to compare
    favorable, total = _lower_tail_counts(before_passed + now_passed, before_run + now_run, now_run, now_passed)
    return favorable / total


def _lower_tail_counts(passes: int, seeds: int, draws: int, at_most: int) -> tuple[int, int]:
    """(ways to draw ``draws`` of ``seeds`` holding at most ``at_most`` of the ``passes``, all ways)."""
    fails = seeds - passes
    lowest = max(0, draws - fails)
    if at_most < lowest:
        return (0, math.comb(seeds, draws))
    highest = min(at_most, passes, draws)
    # comb(passes, x) * comb(fails, draws - x), stepped from one x to the next by the exact integer
    # ratio instead of two fresh math.comb calls per term: the division is always exact.
    term = math.comb(passes, lowest) * math.comb(fails, draws - lowest)
    favorable = term
    for x in range(lowest, highest):
        term = term * (passes - x) * (draws - x) // ((x + 1) * (fails - draws + x + 1))
        favorable += term
    return (favorable, math.comb(seeds, draws))


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a pass rate must lie in [0, 1], not {rate!r}")


def _binomial_pmf(n: int, rate: float) -> list[float]:
    """P(k of n) for k = 0..n, in log space so that large n neither overflows nor underflows early."""
    _check_rate(rate)
    if rate in (0.0, 1.0):
        certain = 0 if rate == 0.0 else n
        return [1.0 if k == certain else 0.0 for k in range(n + 1)]
    log_p, log_q = math.log(rate), math.log1p(-rate)
    log_n_factorial = math.lgamma(n + 1)
    return [
        math.exp(log_n_factorial - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q)
        for k in range(n + 1)
    ]


def detection_power(before_rate: float, after_rate: float, seeds: int, alpha: float = DEFAULT_ALPHA) -> float:
    """The chance that a drop from ``before_rate`` to ``after_rate`` is called significant.

    That is, P(rate_drop_p_value(a, seeds, b, seeds) < alpha) with a ~ Binomial(seeds, before_rate) for
    the baseline and b ~ Binomial(seeds, after_rate) for the new run, both on ``seeds`` seeds: summed
    over every outcome, not simulated, with each outcome's significance decided in exact integers.

    The test is monotone: for a fixed a the p-value grows with b, and a larger a only makes a given b
    more significant. So the significant outcomes for each a are b = 0..last(a) with last(a)
    non-decreasing in a, and one walk of a pointer finds every last(a) with O(seeds) p-values of
    O(seeds) terms each: O(seeds²) in all, where testing every (a, b) would be O(seeds³).
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, not {seeds!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, not {alpha!r}")
    before = _binomial_pmf(seeds, before_rate)
    after = _binomial_pmf(seeds, after_rate)
    # after_cdf[j] = P(b < j), so the probability of b = 0..last is after_cdf[last + 1].
    after_cdf = [0.0]
    for probability in after:
        after_cdf.append(after_cdf[-1] + probability)
    total_seeds = 2 * seeds
    power = 0.0
    last = -1  # the largest b found significant so far; -1 while none is
    for a in range(seeds + 1):
        while last < seeds:
            b = last + 1
            favorable, total = _lower_tail_counts(a + b, total_seeds, seeds, b)
            # The same division rate_drop_p_value does, so the two agree on every boundary case.
            if not favorable / total < alpha:
                break
            last = b
        power += before[a] * after_cdf[last + 1]
    return min(power, 1.0)  # summed floats may overshoot 1 by an ulp


def seeds_to_detect(
    before_rate: float,
    after_rate: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    max_seeds: int = 500,
) -> int | None:
    """The fewest seeds per run (baseline and new run alike) at which the drop is seen with ``power``.

    An exact test's power is not monotone in the seed count: it rises in a saw-tooth, because the
    attainable p-values jump as n grows, so a count just above the one returned can fall short again.
    This returns the first n whose power reaches ``power``, scanning up from 1; None if no n up to
    ``max_seeds`` does.
    """
    if not 0 < power <= 1:
        raise ValueError(f"power must lie in (0, 1], not {power!r}")
    _check_rate(before_rate)
    _check_rate(after_rate)
    if after_rate >= before_rate and power > alpha:
        # No drop to see: a monotone test that holds its level rejects at most alpha of the time when the
        # rate stays, and less when it rises, so no seed count reaches the power. Skips a futile scan.
        return None
    for seeds in range(1, max_seeds + 1):
        if detection_power(before_rate, after_rate, seeds, alpha) >= power:
            return seeds
    return None


def guidance_table(
    drops: Sequence[tuple[float, float]] = _DEFAULT_DROPS,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> list[tuple[float, float, int | None]]:
    """Rows (before, after, seeds) for the README: the seeds per run each drop takes to be seen."""
    return [(before, after, seeds_to_detect(before, after, alpha, power)) for before, after in drops]


def percent(share: float) -> str:
    """0.625 -> '62.5%', 0.75 -> '75%': one decimal where it matters, so a rate never reads as its neighbour's."""
    return f"{share * 100:.1f}".removesuffix(".0") + "%"


def format_guidance_table(
    rows: Sequence[tuple[float, float, int | None]],
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> str:
    """guidance_table's rows as a Markdown table; — where no seed count up to the maximum suffices."""
    lines = [
        f"| pass rate before | after | seeds per run to see the drop (p < {alpha:g}, {percent(power)} of the time) |",
        "|---|---|---|",
    ]
    for before, after, seeds in rows:
        lines.append(f"| {percent(before)} | {percent(after)} | {'—' if seeds is None else seeds} |")
    return "\n".join(lines) + "\n"


def interval_table(
    seeds: Sequence[int] = (4, 8, 16, 32, 64), shares: Sequence[float] = (1.0, 0.75)
) -> list[tuple[int, list[tuple[int, float, float]]]]:
    """For each seed count: (passed, low, high) of the 95% Wilson interval at each observed share."""
    return [(n, [(round(share * n), *wilson_interval(round(share * n), n)) for share in shares]) for n in seeds]


def format_interval_table(rows: Sequence[tuple[int, list[tuple[int, float, float]]]]) -> str:
    """A Markdown table: seeds per run, then 'passed of N: [low, high]' per observed share."""
    header = " | ".join(f"{percent(passed / rows[0][0])} passed: 95% interval" for passed, _, _ in rows[0][1])
    lines = [f"| seeds per run | {header} |", "|---" * (1 + len(rows[0][1])) + "|"]
    for n, cells in rows:
        shown = [f"{passed} of {n}: {low:.0%}-{high:.0%}" for passed, low, high in cells]
        lines.append(f"| {n} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"
