"""Scheduler policies, ps share bounds, predictor and admission arithmetic, all on a fake clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from zmqrt.errors import Code, TaskError
from zmqrt.sched import AdmissionControl, ServicePredictor, default_weights, make_scheduler

_seq = itertools.count()


@dataclass
class T:
    name: str
    priority: int = 0
    deadline_ns: int | None = None
    period_us: float | None = None
    kernel: str = "vector_add"
    size_class: int = 0
    seq: int = field(default_factory=lambda: next(_seq))


def names(items: list[T]) -> list[str]:
    return [t.name for t in items]


def test_fp_strict_priority_fifo_within_level() -> None:
    s = make_scheduler("fp", levels=4)
    for t in [T("a", 2), T("b", 0), T("c", 2), T("d", 1), T("e", 0), T("f", 3)]:
        s.push(t)
    assert len(s) == 6
    assert s.peek().name == "b"
    assert names([s.pop() for _ in range(6)]) == ["b", "e", "d", "a", "c", "f"]
    assert s.pop() is None and s.peek() is None and len(s) == 0


def test_edf_deadline_then_priority_then_arrival_no_deadline_last() -> None:
    s = make_scheduler("edf", levels=4)
    items = [
        T("nodl_p1", 1),
        T("d300_p2", 2, 300),
        T("d100_p3", 3, 100),
        T("d300_p1", 1, 300),
        T("nodl_p0", 0),
        T("d300_p1_later", 1, 300),
        T("nodl_p1_later", 1),
        T("d200_p0", 0, 200),
    ]
    for t in items:
        s.push(t)
    assert names(s.drain()) == [
        "d100_p3",
        "d200_p0",
        "d300_p1",
        "d300_p1_later",
        "d300_p2",
        "nodl_p0",
        "nodl_p1",
        "nodl_p1_later",
    ]
    assert len(s) == 0


def test_rm_period_then_priority_then_arrival_aperiodic_last() -> None:
    s = make_scheduler("rm", levels=4)
    items = [
        T("ap_p2", 2, deadline_ns=1),
        T("per1000_p0", 0, period_us=1000.0),
        T("per100_p3", 3, period_us=100.0),
        T("ap_p0", 0),
        T("per1000_p0_later", 0, period_us=1000.0),
        T("per100_p1", 1, period_us=100.0),
        T("per500.5_p2", 2, period_us=500.5),
    ]
    for t in items:
        s.push(t)
    assert names(s.drain()) == [
        "per100_p1",
        "per100_p3",
        "per500.5_p2",
        "per1000_p0",
        "per1000_p0_later",
        "ap_p0",
        "ap_p2",
    ]


def test_ps_exact_stride_sequence_default_weights() -> None:
    # levels=3 -> weights 4, 2, 1 -> strides 1, 2, 4
    s = make_scheduler("ps", levels=3)
    assert s.weights == [4, 2, 1] and s.strides == [1, 2, 4]
    for p in range(3):
        for i in range(10):
            s.push(T(f"{p}.{i}", p))
    got = [s.pop().priority for _ in range(14)]
    # pass values start at 0; the smallest pass wins, ties to the more urgent level.
    assert got == [0, 1, 2, 0, 0, 1, 0, 0, 1, 2, 0, 0, 1, 0]
    assert got.count(0) == 8 and got.count(1) == 4 and got.count(2) == 2


def test_ps_fifo_within_level_and_peek_matches_pop() -> None:
    s = make_scheduler("ps", levels=2, weights=[1, 1])
    for t in [T("a", 1), T("b", 1), T("c", 0), T("d", 0)]:
        s.push(t)
    out = []
    while s:
        nxt = s.peek()
        got = s.pop()
        assert got is nxt
        out.append(got.name)
    assert out == ["c", "a", "d", "b"]


@pytest.mark.parametrize("weights", [None, [1, 1, 1, 1], [5, 3, 2, 1], [1, 2, 3, 7], [100, 1, 1, 1]])
def test_ps_share_within_bound_over_long_run(weights: list[int] | None) -> None:
    levels = 4
    s = make_scheduler("ps", levels=levels, capacity=100_000, weights=weights)
    w = weights or default_weights(levels)
    total_w = sum(w)
    for p in range(levels):
        for _ in range(20_000):
            s.push(T("x", p))
    served = [0] * levels
    last_pop = [-1] * levels
    for n in range(1, 20_001):
        p = s.pop().priority
        assert n - 1 - last_pop[p] - 1 <= s.wait_bound(p)
        last_pop[p] = n - 1
        served[p] += 1
        for q in range(levels):
            fair = n * w[q] / total_w
            # Module docstring: within [fair - k*w/W, fair + 1].
            assert fair - levels * w[q] / total_w - 1e-9 <= served[q] <= fair + 1 + 1e-9, (n, q, served)


def test_ps_late_level_does_not_hoard_credit() -> None:
    s = make_scheduler("ps", levels=2, weights=[1, 1])
    for _ in range(100):
        s.push(T("a", 0))
    for _ in range(50):
        s.pop()
    for _ in range(10):
        s.push(T("b", 1))
    # level 1 was idle for 50 pops; it joins at the virtual time and alternates rather than running 10 in a row.
    assert [s.pop().priority for _ in range(6)] == [1, 0, 1, 0, 1, 0]


def test_queue_full_per_level_and_total() -> None:
    s = make_scheduler("fp", levels=2, capacity=2)
    s.push(T("a", 0))
    s.push(T("b", 0))
    with pytest.raises(TaskError) as e:
        s.push(T("c", 0))
    assert e.value.code is Code.QUEUE_FULL
    assert e.value.message == "queue for priority 0 is full (2 tasks per level)"
    s.push(T("d", 1))
    assert len(s) == 3
    s2 = make_scheduler("edf", levels=2, capacity=[5, 5], total_capacity=3)
    for i in range(3):
        s2.push(T(str(i), i % 2, 10))
    with pytest.raises(TaskError) as e:
        s2.push(T("x", 1, 10))
    assert e.value.code is Code.QUEUE_FULL and "3 tasks in total" in e.value.message
    assert len(s2) == 3
    s2.pop()
    s2.push(T("y", 1, 10))


@pytest.mark.parametrize("policy", ["fp", "edf", "rm", "ps"])
def test_bad_priority_and_counts(policy: str) -> None:
    s = make_scheduler(policy, levels=3)
    for bad in (-1, 3, 1.0):
        with pytest.raises(TaskError) as e:
            s.push(T("x", bad))
        assert e.value.code is Code.BAD_PRIORITY
    s.push(T("a", 0), 100)
    s.push(T("b", 2), 50)
    assert s.count_by_level == [1, 0, 1] and s.queued_ns_by_level == [100, 0, 50] and s.queued_ns == 150
    assert s.pop_entry()[0] in (100, 50)
    assert len(s.drain()) == 1 and s.queued_ns == 0 and s.queued_ns_by_level == [0, 0, 0]


def test_make_scheduler_validation() -> None:
    with pytest.raises(ValueError):
        make_scheduler("lifo")
    with pytest.raises(ValueError):
        make_scheduler("fp", weights=[1] * 8)
    with pytest.raises(ValueError):
        make_scheduler("ps", levels=2, weights=[1, 0])
    with pytest.raises(ValueError):
        make_scheduler("ps", levels=2, weights=[1])


def test_predictor_seed_observe_and_fallback() -> None:
    p = ServicePredictor(alpha=0.5, k=2.0, default_ns=777, initial_dev_frac=0.5)
    assert p.predict_ns("fft", 3) == 777 and not p.known("fft", 3)
    p.seed("fft", 3, 1000)  # mean 1000, dev 500
    assert p.predict_ns("fft", 3) == 2000
    p.observe("fft", 3, 2000)  # n=2 (warm-up, a=1/2): err 1000, mean 1500, dev 500 + (1000-500)/2 = 750
    assert p.predict_ns("fft", 3) == 1500 + 2 * 750
    p.observe("fft", 3, 1500)  # n=3 > warm-up 2, a=0.5: err 0, mean 1500, dev 375
    assert p.predict_ns("fft", 3) == 1500 + 750
    p.seed("fft", 1, 100)
    assert p.predict_ns("fft", 2) == 2250  # unseen smaller class: the nearest known class above
    assert p.predict_ns("fft", 7) == 2250 << 4  # above all known: the largest, scaled linearly in bytes
    assert p.predict_ns("matmul", 0) == 777
    snap = p.snapshot()
    assert snap["fft"]["3"]["n"] == 3 and snap["fft"]["3"]["pred_ns"] == 2250


def test_predictor_new_class_borrows_relative_deviation() -> None:
    p = ServicePredictor(alpha=0.5, k=2.0, initial_dev_frac=0.5)
    p.seed("fft", 12, 1000)
    p.observe("fft", 12, 1000)  # dev 500 -> 250: relative deviation 0.25
    p.observe("fft", 11, 800)  # a new class of a known kernel: dev 0.25 * 800, not 0.5 * 800
    assert p.predict_ns("fft", 11) == 800 + 2 * 200
    p.observe("matmul", 11, 800)  # a kernel never seen: the wide initial guess
    assert p.predict_ns("matmul", 11) == 800 + 2 * 400


def test_probe_samples_only_lower_the_prediction() -> None:
    p = ServicePredictor(alpha=0.5, k=2.0, initial_dev_frac=0.5)
    p.seed("fft", 3, 1000)  # pred 2000
    p.observe("fft", 3, 5000, bound_only=True)  # slower than the prediction: no decision changes, ignored
    assert p.predict_ns("fft", 3) == 2000 and p.snapshot()["fft"]["3"]["n"] == 1
    p.observe("fft", 3, 1000, bound_only=True)  # below it: learned as usual (dev 500 -> 250)
    assert p.predict_ns("fft", 3) == 1000 + 2 * 250


def _flat_predictor(ns: int) -> ServicePredictor:
    p = ServicePredictor(k=0.0, initial_dev_frac=0.0)
    p.seed("vector_add", 0, ns)
    return p


def test_admission_fp_exact_numbers() -> None:
    pred = _flat_predictor(100_000)  # 100 µs per task
    adm = AdmissionControl(pred, lanes=2, mode="reject")
    s = make_scheduler("fp", levels=4)
    now = 1_000_000_000
    for prio in (0, 1, 1, 3):
        adm.submit(T("q", prio, None), now, s, inflight_ns=0)
    assert s.queued_ns_by_level == [100_000, 200_000, 0, 100_000]
    # priority 1: ahead = 300 µs queued at levels 0..1, + 150 µs in flight = 450 µs over 2 lanes = 225 µs,
    # + 100 µs service -> finish 325 µs after receipt.
    t = T("x", 1, now + 325_000)
    assert adm.predicted_finish_ns(t, now, s, 150_000) == now + 325_000
    assert adm.admit(t, now, s, 150_000) is False
    t_late = T("y", 1, now + 324_999)
    with pytest.raises(TaskError) as e:
        adm.admit(t_late, now, s, 150_000)
    assert e.value.code is Code.DEADLINE_INFEASIBLE
    assert "predicted finish 325.0 µs after receipt > deadline 325.0 µs" in e.value.message  # 324.999 rounds
    assert "queued ahead 300.0 µs" in e.value.message and "2 lane(s)" in e.value.message
    flag = AdmissionControl(pred, lanes=2, mode="flag")
    assert flag.admit(t_late, now, s, 150_000) is True
    n = len(s)
    assert flag.submit(t_late, now, s, 150_000) is True and len(s) == n + 1
    # Without a deadline: always admitted, whatever the load.
    assert adm.admit(T("z", 3, None), now, s, 10**12) is False


def test_admission_message_numbers() -> None:
    pred = _flat_predictor(112_000)
    adm = AdmissionControl(pred, lanes=1)
    s = make_scheduler("fp")
    now = 5_000
    with pytest.raises(TaskError) as e:
        adm.admit(T("x", 0, now + 500_000), now, s, inflight_ns=700_000)
    assert e.value.message.startswith("predicted finish 812.0 µs after receipt > deadline 500.0 µs")


def test_admission_edf_bound_and_rm() -> None:
    pred = _flat_predictor(100)
    adm = AdmissionControl(pred, lanes=1)
    s = make_scheduler("edf", levels=2)
    adm.submit(T("a", 1, 1_000), 0, s, 0)
    adm.submit(T("b", 0, 2_000), 0, s, 0)
    adm.submit(T("nodl", 0, None), 0, s, 0)
    assert s.work_ahead_ns(T("early", 1, 999), 100) == 0  # earlier than every queued deadline
    assert s.work_ahead_ns(T("tie", 1, 1_000), 100) == 200  # not earliest: all deadlined work (bound)
    assert s.work_ahead_ns(T("late", 1, 5_000), 100) == 200  # latest: exact
    assert s.work_ahead_ns(T("nodl1", 1, None), 100) == 300
    assert adm.predicted_finish_ns(T("late", 1, 5_000), 10, s, 50) == 10 + 250 + 100
    r = make_scheduler("rm", levels=2)
    adm.submit(T("p10", 1, 10**9, period_us=10.0), 0, r, 0)
    adm.submit(T("ap0", 0, 10**9), 0, r, 0)
    adm.submit(T("ap1", 1, 10**9), 0, r, 0)
    assert r.work_ahead_ns(T("p5", 1, 1, period_us=5.0), 100) == 0
    assert r.work_ahead_ns(T("p20", 1, 1, period_us=20.0), 100) == 100
    assert r.work_ahead_ns(T("ap_p0", 0, 1), 100) == 200  # periodic + aperiodic of level 0
    assert r.work_ahead_ns(T("ap_p1", 1, 1), 100) == 300


def test_admission_ps_estimate() -> None:
    s = make_scheduler("ps", levels=2, weights=[1, 1])
    for _ in range(4):
        s.push(T("a", 0), 100)
    s.push(T("b", 1), 100)
    # level 1 item: m = 2 tasks of level 1; level 0 runs at most ceil(2*1/1)+1 = 3 of its 4 tasks.
    assert s.work_ahead_ns(T("x", 1), 100) == 100 + 300
    # level 0 item: m = 5; level 1 has only 1 task, all of it counts.
    assert s.work_ahead_ns(T("y", 0), 100) == 400 + 100


def test_expired_at_dispatch_modes() -> None:
    pred = _flat_predictor(100)
    t = T("x", 0, 1_000)
    assert AdmissionControl(pred, expiry="off").expired_at_dispatch(t, 5_000) is False
    late = AdmissionControl(pred, expiry="late")
    assert late.expired_at_dispatch(t, 1_000) is False and late.expired_at_dispatch(t, 1_001) is True
    predicted = AdmissionControl(pred, expiry="predicted")
    assert predicted.expired_at_dispatch(t, 900) is False and predicted.expired_at_dispatch(t, 901) is True
    assert predicted.expired_at_dispatch(T("n", 0, None), 10**18) is False
    with pytest.raises(ValueError):
        AdmissionControl(pred, mode="drop")
    with pytest.raises(ValueError):
        AdmissionControl(pred, lanes=0)
