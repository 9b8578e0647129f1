"""The watchdog's verdicts from invented timestamps and CPU figures: no process, no clock."""

from __future__ import annotations

import pytest

from supervisor.engine.watchdog import STALL_CPU_FRACTION, Watchdog, tick_interval
from supervisor.reasons import Reason

T0 = 1000.0  # the attempt's start on an invented monotonic clock


def watchdog(timeout: float = 60.0, stall_timeout: float = 2.0) -> Watchdog:
    return Watchdog(timeout=timeout, stall_timeout=stall_timeout, started=T0)


def test_a_fresh_attempt_has_no_verdict() -> None:
    """Right after the start nothing is wrong, whatever the limits."""
    assert watchdog().verdict(T0) is None


def test_silent_idle_attempt_is_stalled_exactly_at_stall_timeout() -> None:
    """No output and no CPU figures at all: stalled once stall_timeout has passed, not before."""
    dog = watchdog(stall_timeout=2.0)
    assert dog.verdict(T0 + 1.99) is None
    assert dog.verdict(T0 + 2.0) == Reason.STALLED


def test_timeout_is_wall_clock_and_wins_over_activity_and_stall() -> None:
    """The timeout counts from the start, however busy the attempt is, and is reported first."""
    dog = watchdog(timeout=10.0, stall_timeout=2.0)
    for second in range(1, 10):
        dog.output(T0 + second)
    assert dog.verdict(T0 + 9.99) is None
    assert dog.verdict(T0 + 10.0) == Reason.TIMEOUT
    assert watchdog(timeout=10.0, stall_timeout=2.0).verdict(T0 + 30.0) == Reason.TIMEOUT


def test_output_keeps_an_attempt_alive_for_another_stall_timeout() -> None:
    """Each output restarts the stall countdown; silence after the last one still stalls."""
    dog = watchdog(stall_timeout=2.0)
    dog.output(T0 + 1.5)
    dog.output(T0 + 3.0)
    assert dog.verdict(T0 + 4.99) is None
    assert dog.verdict(T0 + 5.0) == Reason.STALLED


def test_output_reported_out_of_order_never_moves_activity_back() -> None:
    """A late report of older output (or output "before" the start) cannot shorten the countdown."""
    dog = watchdog(stall_timeout=2.0)
    dog.output(T0 + 1.0)
    dog.output(T0 + 0.5)
    dog.output(T0 - 5.0)
    assert dog.verdict(T0 + 2.9) is None
    assert dog.verdict(T0 + 3.0) == Reason.STALLED


def test_cpu_above_the_threshold_counts_as_alive() -> None:
    """A silent attempt using more than STALL_CPU_FRACTION of a core between samples is alive."""
    dog = watchdog(stall_timeout=2.0)
    cpu = 5.0
    for tick in range(1, 9):  # samples every 0.5 s for 4 s, each at 1.5 x the threshold
        cpu += 0.5 * STALL_CPU_FRACTION * 1.5
        dog.sampled(T0 + tick * 0.5, cpu)
        assert dog.verdict(T0 + tick * 0.5) is None
    assert dog.verdict(T0 + 4.0 + 1.99) is None
    assert dog.verdict(T0 + 4.0 + 2.0) == Reason.STALLED


def test_cpu_below_the_threshold_is_not_alive() -> None:
    """A dead connection's trickle of CPU (below STALL_CPU_FRACTION) does not stop the countdown."""
    dog = watchdog(stall_timeout=2.0)
    cpu = 5.0
    for tick in range(1, 4):
        cpu += 0.5 * STALL_CPU_FRACTION * 0.5
        dog.sampled(T0 + tick * 0.5, cpu)
        assert dog.verdict(T0 + tick * 0.5) is None
    cpu += 0.5 * STALL_CPU_FRACTION * 0.5
    dog.sampled(T0 + 2.0, cpu)
    assert dog.verdict(T0 + 2.0) == Reason.STALLED


def test_the_threshold_sits_between_an_idle_claude_and_real_work() -> None:
    """The documented figures: the stuck Claude CLI (~0.4% of a core) is idle, 10% is work."""
    assert 0.004 < STALL_CPU_FRACTION < 0.1


def test_the_first_sample_is_only_a_baseline() -> None:
    """CPU time used before the first sample (however much) is not activity: nothing to compare."""
    dog = watchdog(stall_timeout=2.0)
    dog.sampled(T0 + 0.5, 1000.0)
    assert dog.verdict(T0 + 2.0) == Reason.STALLED


def test_a_drop_in_cpu_time_is_not_activity_and_becomes_the_new_baseline() -> None:
    """When a busy child exits the tree's total falls: no activity, no error, and later use counts."""
    dog = watchdog(stall_timeout=2.0)
    dog.sampled(T0 + 0.5, 50.0)
    dog.sampled(T0 + 1.0, 20.0)  # a child with 30 s of CPU left the tree
    assert dog.verdict(T0 + 2.0) == Reason.STALLED
    dog.sampled(T0 + 2.5, 20.0 + 1.5 * 0.5)  # 50% of a core since the drop
    assert dog.verdict(T0 + 4.49) is None
    assert dog.verdict(T0 + 4.5) == Reason.STALLED


def test_a_drop_hides_no_usage_measured_from_the_lower_total() -> None:
    """Usage is measured from the last sample, so activity right after a drop still counts."""
    dog = watchdog(stall_timeout=2.0)
    dog.sampled(T0 + 0.5, 50.0)
    dog.sampled(T0 + 1.0, 20.0)
    dog.sampled(T0 + 1.5, 20.25)
    assert dog.verdict(T0 + 3.49) is None


def test_two_samples_at_the_same_instant_decide_nothing() -> None:
    """A zero interval between samples is neither activity nor a division by zero."""
    dog = watchdog(stall_timeout=2.0)
    dog.sampled(T0 + 1.0, 1.0)
    dog.sampled(T0 + 1.0, 9.0)
    assert dog.verdict(T0 + 2.0) == Reason.STALLED


@pytest.mark.parametrize(
    ("timeout", "stall_timeout", "expected"),
    [
        (45 * 60.0, 10 * 60.0, 5.0),  # the defaults: capped at 5 s
        (3.0, 2.0, 0.5),  # the settings: a quarter of the tighter limit
        (3.0, 600.0, 0.75),  # the timeout can be the tighter limit
        (0.4, 0.4, 0.2),  # never busier than every 0.2 s
        (19.9, 20.0, 4.975),
    ],
)
def test_tick_interval_is_a_quarter_of_the_tighter_limit_within_bounds(
    timeout: float, stall_timeout: float, expected: float
) -> None:
    """Checks come often enough to act within a quarter of a limit, between 0.2 s and 5 s."""
    assert tick_interval(timeout, stall_timeout) == pytest.approx(expected)


def test_a_verdict_comes_within_one_tick_of_the_limit() -> None:
    """Checked at every tick, a stalled attempt is caught less than one tick after stall_timeout."""
    timeout, stall_timeout = 3.0, 2.0
    tick = tick_interval(timeout, stall_timeout)
    dog = Watchdog(timeout=timeout, stall_timeout=stall_timeout, started=T0)
    now = T0
    while dog.verdict(now) is None:
        now += tick
    assert dog.verdict(now) == Reason.STALLED
    assert stall_timeout <= now - T0 < stall_timeout + tick


def feed(dog: Watchdog, fractions: list[float], every: float, start: float = T0, cpu: float = 3.0) -> float:
    """Samples every ``every`` seconds from ``start``, the tree using ``fractions`` of a core
    between consecutive ones (the first sample is the baseline); returns the last sample's time."""
    now = start
    dog.sampled(now, cpu)
    for fraction in fractions:
        now += every
        cpu += fraction * every
        dog.sampled(now, cpu)
    return now


# A Claude CLI idling on a dead connection, sampled every second (measured with 2.1.328): single
# samples reach 2.4-8.9 %, the ten-second average stays far below 2 %.
IDLE_CLI = [0.089, 0.001, 0.001, 0.024, 0.001, 0.001, 0.001, 0.03, 0.001, 0.001]


def test_an_idle_cli_with_cpu_bursts_in_single_samples_is_stalled_at_stall_timeout() -> None:
    """Bursts above the threshold in single samples do not restart the stall clock: what counts
    is the CPU over the whole window (1.5 % here), so the verdict comes at stall_timeout, 10 s
    (the old rule, any sample above 2 % is activity, waited until 10 s after the last burst;
    measured with the real CLI: 28 s)."""
    assert max(IDLE_CLI) > STALL_CPU_FRACTION > sum(IDLE_CLI) / len(IDLE_CLI)
    dog = watchdog(timeout=600.0, stall_timeout=10.0)
    cpu = 1.0
    dog.sampled(T0, cpu)
    verdicts = []
    for second, fraction in enumerate(IDLE_CLI * 3, start=1):
        cpu += fraction
        dog.sampled(T0 + second, cpu)
        verdicts.append(dog.verdict(T0 + second))
    assert verdicts.index(Reason.STALLED) + 1 == 10
    assert set(verdicts[:9]) == {None}


def test_bursty_work_above_the_average_threshold_is_alive() -> None:
    """One second in four at 10 % of a core (2.5 % on average): alive for as long as it lasts."""
    dog = watchdog(stall_timeout=4.0)
    last = feed(dog, [0.1, 0.0, 0.0, 0.0] * 5, 1.0)
    assert dog.verdict(last) is None


def test_after_computing_silently_the_attempt_stalls_once_the_window_holds_no_work() -> None:
    """A full core for 5 s, then nothing: alive while the window still averages 2 % or more."""
    dog = watchdog(timeout=600.0, stall_timeout=10.0)
    last = feed(dog, [1.0] * 5 + [0.0] * 9, 1.0)  # samples up to T0 + 14
    assert last == T0 + 14
    assert dog.verdict(T0 + 14) is None  # 1 s of work in the last 10 s: 10 %
    feed(dog, [0.0], 1.0, start=T0 + 14, cpu=3.0 + 5.0)
    assert dog.verdict(T0 + 15) == Reason.STALLED


def test_an_announced_wait_is_not_a_stall_and_the_clock_starts_after_it() -> None:
    """The agent says it waits 30 s (an API retry): silent and idle for all of it, it is stalled
    only stall_timeout after the wait's end."""
    dog = watchdog(timeout=600.0, stall_timeout=2.0)
    dog.output(T0 + 1.0)
    dog.quiet(T0 + 1.0, 30.0)
    feed(dog, [0.0] * 40, 1.0)
    assert dog.verdict(T0 + 31.0) is None
    assert dog.verdict(T0 + 32.99) is None
    assert dog.verdict(T0 + 33.0) == Reason.STALLED


def test_a_wait_that_ended_gives_no_further_allowance() -> None:
    """Once the wait is over (the agent spoke again), silence counts from its last output."""
    dog = watchdog(timeout=600.0, stall_timeout=2.0)
    dog.quiet(T0, 30.0)
    dog.output(T0 + 5.0)
    dog.quiet(T0 + 5.0, None)
    assert dog.verdict(T0 + 6.99) is None
    assert dog.verdict(T0 + 7.0) == Reason.STALLED


def test_the_timeout_holds_during_an_announced_wait() -> None:
    """A wait announced past the attempt's timeout does not extend it."""
    dog = watchdog(timeout=10.0, stall_timeout=2.0)
    dog.quiet(T0, 3600.0)
    assert dog.verdict(T0 + 10.0) == Reason.TIMEOUT
