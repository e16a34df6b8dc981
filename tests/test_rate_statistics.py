"""Pass-rate statistics, each checked against a value computed another way.

The references are the textbook formulas, published tables, closed forms of the t distribution and
brute-force enumerations written out here, never the module's own functions called differently.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from harness.common.rate_statistics import (
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE,
    DEFAULT_POWER,
    Z_95,
    detection_power,
    format_guidance_table,
    guidance_table,
    mean_interval,
    rate_drop_p_value,
    seeds_to_detect,
    t_quantile,
    wilson_interval,
)

# The 97.5% point of the standard normal, from the tables (not from NormalDist).
Z_975 = 1.959963984540054
# The 99.5% point, for the 99% interval.
Z_995 = 2.5758293035489004


def _textbook_wilson(passed: int, run: int, z: float) -> tuple[float, float]:
    p = passed / run
    center = p + z * z / (2 * run)
    spread = z * math.sqrt(p * (1 - p) / run + z * z / (4 * run * run))
    denominator = 1 + z * z / run
    return ((center - spread) / denominator, (center + spread) / denominator)


# --- Wilson ------------------------------------------------------------------------------------------


def test_the_constants() -> None:
    assert DEFAULT_CONFIDENCE == 0.95 and DEFAULT_ALPHA == 0.05 and DEFAULT_POWER == 0.8
    assert Z_95 == pytest.approx(Z_975, rel=1e-15)


@pytest.mark.parametrize(("passed", "run"), [(8, 10), (0, 5), (5, 5), (7, 8), (1, 3), (29, 30)])
def test_wilson_matches_the_textbook_formula(passed: int, run: int) -> None:
    low, high = wilson_interval(passed, run)
    expected_low, expected_high = _textbook_wilson(passed, run, Z_975)
    assert low == pytest.approx(max(0.0, expected_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, expected_high), abs=1e-12)


def test_wilson_at_99_percent_uses_the_wider_z() -> None:
    low, high = wilson_interval(7, 8, confidence=0.99)
    expected_low, expected_high = _textbook_wilson(7, 8, Z_995)
    assert (low, high) == pytest.approx((expected_low, expected_high), abs=1e-12)
    assert low < wilson_interval(7, 8)[0]


def test_wilson_published_values() -> None:
    # Wilson intervals as printed in tables and online calculators, to 4 decimals.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-5)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=5e-5)


def test_wilson_ends_are_exact_at_none_and_all() -> None:
    # Not 1e-17 and not 0.9999999999999999: a report prints these.
    for run in (1, 2, 5, 7, 10, 33, 100, 1000):
        assert wilson_interval(0, run)[0] == 0.0
        assert wilson_interval(run, run)[1] == 1.0
        low, high = wilson_interval(run // 2, run)
        assert 0.0 <= low < high <= 1.0


def test_wilson_with_no_seeds_allows_every_rate() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("passed", "run"), [(-1, 5), (6, 5), (1, 0)])
def test_wilson_rejects_impossible_counts(passed: int, run: int) -> None:
    with pytest.raises(ValueError):
        wilson_interval(passed, run)


# --- Student's t ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "table"),
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (7, 2.3646), (10, 2.2281), (30, 2.0423), (1000, 1.9623)],
)
def test_t_quantile_matches_the_printed_table(df: int, table: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(table, abs=5e-5)


@pytest.mark.parametrize("p", [0.001, 0.01, 0.1, 0.3, 0.6, 0.9, 0.975, 0.995, 0.999])
def test_t_quantile_matches_the_closed_forms(p: float) -> None:
    # df = 1 is the Cauchy distribution; df = 2 and df = 4 have closed-form quantiles too.
    cauchy = math.tan(math.pi * (p - 0.5))
    two = (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    a = 4 * p * (1 - p)
    four = math.copysign(2 * math.sqrt(math.cos(math.acos(math.sqrt(a)) / 3) / math.sqrt(a) - 1), p - 0.5)
    assert t_quantile(p, 1) == pytest.approx(cauchy, rel=1e-9)
    assert t_quantile(p, 2) == pytest.approx(two, rel=1e-9)
    assert t_quantile(p, 4) == pytest.approx(four, rel=1e-9)


@pytest.mark.parametrize("p", [0.001, 0.975])
@pytest.mark.parametrize(("df", "rel"), [(10**4, 3e-11), (10**5 - 1, 1e-11), (10**6, 1e-14), (10**9, 1e-15)])
def test_t_quantile_for_large_df_follows_the_normal_expansion(p: float, df: int, rel: float) -> None:
    # Cornish-Fisher: t = z + (z³ + z) / (4 df) + (5z⁵ + 16z³ + 3z) / (96 df²) + O(1/df³), the rest
    # up to 1.2e-11 of t at df = 10^4 (z = 3.09) and below 1e-16 from 10^6 on.
    z = -3.090232306167813 if p == 0.001 else Z_975  # the normal's 0.1% and 97.5% points
    expected = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    assert t_quantile(p, df) == pytest.approx(expected, rel=rel)


def test_t_quantile_is_symmetric() -> None:
    for df in (1, 3, 9, 50):
        assert t_quantile(0.025, df) == pytest.approx(-t_quantile(0.975, df), rel=1e-12)
        assert t_quantile(0.5, df) == 0.0


@pytest.mark.parametrize(("p", "df"), [(0.975, 0), (0.0, 5), (1.0, 5), (-0.1, 5)])
def test_t_quantile_rejects_bad_arguments(p: float, df: int) -> None:
    with pytest.raises(ValueError):
        t_quantile(p, df)


# --- mean interval -------------------------------------------------------------------------------------


def test_mean_interval_by_hand() -> None:
    # [1, 2, 3]: mean 2, s = 1, df = 2 so t = 0.95 / sqrt(2 * 0.975 * 0.025) = 4.3027; half = t / sqrt(3).
    t2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert (low, high) == pytest.approx((2 - t2 / math.sqrt(3), 2 + t2 / math.sqrt(3)), rel=1e-9)
    assert (low, high) == pytest.approx((-0.4841, 4.4841), abs=5e-5)


def test_mean_interval_from_two_values_uses_the_cauchy_t() -> None:
    # [0, 1]: mean 0.5, s = sqrt(1/2), t(0.975, 1) = tan(0.475 pi) = 12.7062, half = t * s / sqrt(2) = t / 2.
    t1 = math.tan(0.475 * math.pi)
    assert mean_interval([0.0, 1.0]) == pytest.approx((0.5, 0.5 - t1 / 2, 0.5 + t1 / 2), rel=1e-9)
    assert mean_interval([0.0, 1.0], bounds=(0.0, 1.0)) == (0.5, 0.0, 1.0)


def test_mean_interval_clamps_to_bounds() -> None:
    # [0.9, 1, 1]: mean 29/30, s² = ((1/15)² + 2 (1/30)²) / 2 = 1/300, half = t · sqrt(1/300) / sqrt(3) = t / 30.
    t2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    mean, low, high = mean_interval([0.9, 1.0, 1.0], bounds=(0.0, 1.0))
    assert mean == pytest.approx(29 / 30, rel=1e-12)
    assert low == pytest.approx(29 / 30 - t2 / 30, rel=1e-9)
    assert high == 1.0
    assert mean_interval([0.9, 1.0, 1.0])[2] == pytest.approx(29 / 30 + t2 / 30, rel=1e-9)


def test_mean_interval_of_identical_values_has_no_width() -> None:
    assert mean_interval([0.25, 0.25, 0.25]) == (0.25, 0.25, 0.25)


def test_mean_interval_of_one_value_is_undefined() -> None:
    assert mean_interval([0.7]) == (0.7, None, None)
    assert mean_interval([0.7], bounds=(0.0, 1.0)) == (0.7, None, None)


def test_mean_interval_rejects_no_values_and_backwards_bounds() -> None:
    with pytest.raises(ValueError):
        mean_interval([])
    with pytest.raises(ValueError):
        mean_interval([0.1, 0.2], bounds=(1.0, 0.0))


# --- Fisher's exact test -------------------------------------------------------------------------------


def _brute_fisher(before_passed: int, before_run: int, now_passed: int, now_run: int) -> Fraction:
    # Every way to deal now_run of the pooled seeds, counted by the hypergeometric terms written out.
    seeds = before_run + now_run
    passes = before_passed + now_passed
    ways = sum(
        math.comb(passes, x) * math.comb(seeds - passes, now_run - x)
        for x in range(now_passed + 1)
        if x <= passes and now_run - x <= seeds - passes
    )
    return Fraction(ways, math.comb(seeds, now_run))


def test_fisher_known_value() -> None:
    # Before 9 of 10, now 3 of 10: 12 passes in 20 seeds, 10 drawn with at most 3 passes. Only x = 2
    # (all 8 failures drawn) and x = 3 are possible: (C(12,2)·C(8,8) + C(12,3)·C(8,7)) / C(20,10)
    # = (66 + 1760) / 184756 = 1826 / 184756 ≈ 0.0099.
    assert _brute_fisher(9, 10, 3, 10) == Fraction(1826, 184756)
    assert rate_drop_p_value(9, 10, 3, 10) == pytest.approx(0.009883305548940223, rel=1e-15)
    assert round(rate_drop_p_value(9, 10, 3, 10), 4) == 0.0099


@pytest.mark.parametrize(
    "table",
    [
        (9, 10, 3, 10),
        (5, 5, 0, 5),
        (3, 4, 1, 6),
        (10, 12, 10, 12),
        (2, 10, 8, 10),
        (0, 7, 0, 3),
        (95, 100, 80, 100),
        (290, 300, 250, 300),
        (40, 50, 7, 9),
        (1, 1, 0, 1),
    ],
)
def test_fisher_matches_brute_force(table: tuple[int, int, int, int]) -> None:
    assert rate_drop_p_value(*table) == pytest.approx(float(_brute_fisher(*table)), rel=1e-14)


def test_fisher_without_a_drop_is_not_significant() -> None:
    assert rate_drop_p_value(5, 10, 10, 10) == 1.0  # every possible draw holds at most 10 passes
    assert rate_drop_p_value(5, 10, 5, 10) > 0.5
    assert rate_drop_p_value(0, 10, 0, 10) == 1.0


def test_fisher_with_an_empty_side_is_one() -> None:
    assert rate_drop_p_value(0, 0, 0, 10) == 1.0
    assert rate_drop_p_value(10, 10, 0, 0) == 1.0


@pytest.mark.parametrize("table", [(-1, 5, 0, 5), (6, 5, 0, 5), (5, 5, 6, 5), (5, 5, -1, 5)])
def test_fisher_rejects_impossible_counts(table: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        rate_drop_p_value(*table)


# --- power ---------------------------------------------------------------------------------------------


def _brute_power(before_rate: float, after_rate: float, seeds: int, alpha: float = 0.05) -> float:
    # Every (a, b) outcome, each with its own brute-force p-value: O(seeds³).
    def pmf(k: int, rate: float) -> float:
        return math.comb(seeds, k) * rate**k * (1 - rate) ** (seeds - k)

    return sum(
        pmf(a, before_rate) * pmf(b, after_rate)
        for a in range(seeds + 1)
        for b in range(seeds + 1)
        # float(): the definition compares the p-value as a float with alpha, and 1/20 is below the
        # float 0.05 as an exact fraction but equal to it as a float.
        if float(_brute_fisher(a, seeds, b, seeds)) < alpha
    )


@pytest.mark.parametrize("seeds", [1, 2, 5, 12])
@pytest.mark.parametrize(("before", "after"), [(0.9, 0.7), (0.95, 0.5), (0.5, 0.5), (0.3, 0.6), (0.6, 0.05)])
def test_detection_power_matches_brute_force(seeds: int, before: float, after: float) -> None:
    assert detection_power(before, after, seeds) == pytest.approx(_brute_power(before, after, seeds), abs=1e-13)
    assert detection_power(before, after, seeds, alpha=0.2) == pytest.approx(
        _brute_power(before, after, seeds, alpha=0.2), abs=1e-13
    )


def test_detection_power_is_strict_about_alpha() -> None:
    # From always passing to never: the only outcome is all of one run and none of the other, with
    # p = 1 / C(2n, n). At n = 3 that is 1/20, which as a float is alpha itself and so not below it;
    # at n = 4 it is 1/70.
    assert detection_power(1.0, 0.0, 3) == 0.0
    assert detection_power(1.0, 0.0, 4) == 1.0


def test_detection_power_handles_many_seeds() -> None:
    # 300 seeds: big enough to overflow a naive float binomial, and still one call, not a sweep.
    power = detection_power(0.9, 0.8, 300)
    assert 0.9 < power < 1.0
    assert detection_power(0.9, 0.9, 300) <= 0.05  # the test holds its level


def test_detection_power_rejects_bad_arguments() -> None:
    for arguments in [(0.9, 0.7, 0), (1.1, 0.7, 10), (0.9, -0.1, 10)]:
        with pytest.raises(ValueError):
            detection_power(*arguments)
    with pytest.raises(ValueError):
        detection_power(0.9, 0.7, 10, alpha=0.0)


def _first_brute(before: float, after: float, power: float, up_to: int) -> int | None:
    return next((n for n in range(1, up_to + 1) if _brute_power(before, after, n) >= power), None)


def test_seeds_to_detect_is_the_first_count_reaching_the_power() -> None:
    assert _first_brute(0.9, 0.5, 0.8, 20) == 19
    assert seeds_to_detect(0.9, 0.5) == 19
    assert _first_brute(1.0, 0.0, 0.8, 5) == 4
    assert seeds_to_detect(1.0, 0.0) == 4


def test_seeds_to_detect_returns_the_first_count_even_where_power_dips_after() -> None:
    # The saw-tooth: from 0.9 to 0.5, 13 seeds have a power of 0.640 and 14 seeds only 0.632.
    at_13, at_14 = _brute_power(0.9, 0.5, 13), _brute_power(0.9, 0.5, 14)
    assert at_14 < 0.635 <= at_13
    first = _first_brute(0.9, 0.5, 0.635, 13)
    assert first is not None and first <= 13
    assert seeds_to_detect(0.9, 0.5, power=0.635) == first


def test_seeds_to_detect_gives_none_when_unreachable() -> None:
    assert seeds_to_detect(0.9, 0.5, max_seeds=18) is None
    assert seeds_to_detect(0.8, 0.8) is None  # no drop at all
    assert seeds_to_detect(0.5, 0.9) is None  # a rise


def test_guidance_table_rows() -> None:
    # Both counts checked against brute force in test_seeds_to_detect_is_the_first_count_reaching_the_power.
    assert guidance_table(drops=((0.9, 0.5), (1.0, 0.0), (0.8, 0.8))) == [
        (0.9, 0.5, 19),
        (1.0, 0.0, 4),
        (0.8, 0.8, None),
    ]


def test_format_guidance_table() -> None:
    rows = [(0.95, 0.8, 67), (0.9, 0.7, 56), (0.925, 0.5, None)]
    assert format_guidance_table(rows) == (
        "| pass rate before | after | seeds per run to see the drop (p < 0.05, 80% of the time) |\n"
        "|---|---|---|\n"
        "| 95% | 80% | 67 |\n"
        "| 90% | 70% | 56 |\n"
        "| 92.5% | 50% | — |\n"
    )
    header = format_guidance_table([], alpha=0.01, power=0.9).splitlines()[0]
    assert header.endswith("(p < 0.01, 90% of the time) |")
