"""Tests of the lockstep engine against the reference engine, and of the waiting queue."""

from __future__ import annotations

from conftest import assert_engines_agree, make_requests, small_kv
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import parse_replicas
from optimizer.serving.dispatch import DISPATCHERS
from optimizer.serving.engine import Sequence
from optimizer.serving.waiting import WaitingQueue

instances = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 3000), min_size=n, max_size=n),
        st.lists(st.integers(1, 400), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.0, 0.3, 2.0, 9.0]), min_size=n, max_size=n),
        st.sampled_from(["h100-tp4:2", "h100-tp4:1,a100-tp4:1", "small-kv"]),
        st.sampled_from(["sarathi", "vllm"]),
        st.sampled_from(DISPATCHERS),
        st.booleans(),
    )
)


@settings(max_examples=80, deadline=None)
@given(instances)
def test_lockstep_engine_gives_the_reference_engine_results_bit_for_bit(instance):
    """Tests, on random traces, fleets (one whose KV cache forces preemptions), lockstep
    policies, dispatch rules and deviations (slowdown, failure, jitter): the lockstep engine's
    per-request times and replica counters equal the reference engine's exactly."""
    prompts, outputs, arrivals, fleet, policy, dispatch, deviate = instance
    if fleet == "small-kv":
        cluster = small_kv(2)
        prompts = [min(p, 2500) for p in prompts]
    else:
        cluster = parse_replicas(fleet)
    requests = make_requests(prompts, outputs, [sum(arrivals[: i + 1]) for i in range(len(arrivals))])
    assert_engines_agree(requests, cluster, policy, dispatch, deviate)


operations = st.lists(st.tuples(st.sampled_from(["add", "add", "add", "front", "back", "remove"]), st.integers(0, 4)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_waiting_queue_keeps_the_order_of_a_deque_kept_sorted_by_insertion(ops):
    """Tests the waiting queue against the plain model it replaces: arrivals go after the last
    request of a key at most theirs (a stable sort, once the order was broken), preempted
    requests to the front, evicted ones to the back, whatever their keys."""
    queue, model, row = WaitingQueue(), [], 0
    for op, key in ops:
        if op == "remove":
            if model:
                victim = model[key % len(model)]
                model.remove(victim)
                queue.remove(victim)
            continue
        seq = Sequence(row, 1, 1, 0.0, float(key))
        row += 1
        if op == "add":
            if model and key < model[-1].queue_key:
                model = sorted([*model, seq], key=lambda s: s.queue_key)
            else:
                model.append(seq)
            queue.add(seq)
        elif op == "front":
            model.insert(0, seq)
            queue.put_front(seq)
        else:
            model.append(seq)
            queue.put_back(seq)
        assert [s.row for s in queue] == [s.row for s in model]
    assert [s.row for s in reversed(queue)] == [s.row for s in reversed(model)]
