"""Sweep decisions, table-driven: sampling, the three early-termination policies, the best run; and the
sweep body's validation and what a child job gets of its parameters."""

from __future__ import annotations

import math

import pytest

from shared.decisions import sweeps as d
from shared.domain import sweeps as sw
from shared.domain.errors import ApiError

LR = sw.Parameter("lr", "loguniform", low=math.log(1e-3), high=math.log(10.0))
BATCH = sw.Parameter("batch", "choice", values=(16, 32, 64))
MOMENTUM = sw.Parameter("momentum", "uniform", low=0.5, high=0.99)
UNITS = sw.Parameter("units", "quniform", low=8, high=128, q=8)


def test_grid_walks_the_product_of_choices_in_name_order() -> None:
    act = sw.Parameter("act", "choice", values=("relu", "tanh"))
    points = [d.grid_point([BATCH, act], i) for i in range(6)]
    assert points == [{"act": a, "batch": b} for a in ("relu", "tanh") for b in (16, 32, 64)]


def test_random_sampling_is_a_function_of_seed_and_index() -> None:
    space = [LR, BATCH, MOMENTUM, UNITS]
    first = [d.random_point(space, 7, i) for i in range(50)]
    assert first == [d.random_point(space, 7, i) for i in range(50)]  # a repeated tick samples the same
    assert first != [d.random_point(space, 8, i) for i in range(50)]
    for p in first:
        assert 1e-3 <= p["lr"] <= 10.0
        assert p["batch"] in (16, 32, 64)
        assert 0.5 <= p["momentum"] <= 0.99
        assert isinstance(p["units"], int) and p["units"] % 8 == 0 and 8 <= p["units"] <= 128
    assert len({p["lr"] for p in first}) == 50
    assert {p["batch"] for p in first} == {16, 32, 64}


BANDIT_F = sw.Policy("bandit", slack_factor=0.1)
BANDIT_A = sw.Policy("bandit", slack_amount=0.2)
DELAYED = sw.Policy("bandit", evaluation_interval=2, delay_evaluation=4, slack_factor=0.1)
MEDIAN = sw.Policy("medianStopping")
TRUNC = sw.Policy("truncationSelection", truncation_percentage=25)


def run(index: int, *values: float, live: bool = True) -> d.RunMetrics:
    return d.RunMetrics(index, tuple(values), live)


# (policy, goal, runs, stopped indices, a phrase of the first reason)
CASES = [
    # bandit, slack factor: best 0.9 at interval 2 -> bar 0.9 / 1.1 = 0.818
    (BANDIT_F, "maximize", [run(0, 0.5, 0.9, live=False), run(1, 0.4, 0.82), run(2, 0.3, 0.81)], [2],
     "bandit policy: acc 0.81 at interval 2 is below 0.818182 (best 0.9 / (1 + slack factor 0.1))"),
    # judged at its own latest interval (1), against the values of interval 1
    (BANDIT_F, "maximize", [run(0, 0.5, 0.9, live=False), run(1, 0.44)], [1], "at interval 1 is below 0.454545"),
    (BANDIT_F, "maximize", [run(0, 0.5, 0.9, live=False), run(1, 0.46)], [], ""),
    # slack amount, and minimizing: best 1.0 -> bar 1.2
    (BANDIT_A, "minimize", [run(0, 1.0, live=False), run(1, 1.25), run(2, 1.19)], [1],
     "acc 1.25 at interval 1 is above 1.2 (best 1 + slack amount 0.2)"),
    (sw.Policy("bandit", slack_factor=0.5), "minimize", [run(0, 2.0, live=False), run(1, 3.1)], [1], "above 3"),
    # reports count, not time: nothing before interval 4, then only even intervals
    (DELAYED, "maximize", [run(0, 0.9, 0.9, 0.9, live=False), run(1, 0.1, 0.1, 0.1)], [], ""),
    (DELAYED, "maximize", [run(0, 0.9, 0.9, 0.9, 0.9, live=False), run(1, 0.1, 0.1, 0.1, 0.1)], [1], "interval 4"),
    (DELAYED, "maximize", [run(0, *[0.9] * 5, live=False), run(1, *[0.1] * 5)], [1], "interval 4"),
    # ended runs are never stopped; a run alone has nothing to lose against
    (BANDIT_F, "maximize", [run(0, 0.9, live=False), run(1, 0.1, live=False)], [], ""),
    (BANDIT_F, "maximize", [run(0, 0.1)], [], ""),
    # median stopping: run 2's best (0.3) is below the median (0.6) of the others' running averages
    (MEDIAN, "maximize", [run(0, 0.5, 0.7, live=False), run(1, 0.6, 0.6), run(2, 0.2, 0.3)], [2],
     "medianStopping policy: best acc 0.3 over intervals 1..2 is worse than 0.6"),
    (MEDIAN, "minimize", [run(0, 1.0, live=False), run(1, 3.0)], [1], "worse than 1"),
    (MEDIAN, "maximize", [run(0, 0.5, live=False), run(1, 0.5)], [], ""),
    # truncation: 25% of 4 runs is 1: the worst at interval 1 stops (only if it still runs)
    (TRUNC, "maximize", [run(0, 0.9), run(1, 0.8), run(2, 0.1), run(3, 0.7)], [2],
     "truncationSelection policy: acc 0.1 at interval 1 is among the worst 25% (1 of 4 runs)"),
    (TRUNC, "minimize", [run(0, 0.9), run(1, 0.8), run(2, 0.1), run(3, 0.7)], [0], "0.9"),
    (TRUNC, "maximize", [run(0, 0.9), run(1, 0.8), run(2, 0.1, live=False)], [], ""),  # 25% of 3 is 0
    (None, "maximize", [run(0, 0.9, live=False), run(1, 0.0)], [], ""),
]


@pytest.mark.parametrize(("policy", "goal", "runs", "stopped", "phrase"), CASES)
def test_policies(policy: sw.Policy | None, goal: str, runs: list[d.RunMetrics], stopped: list[int],
                  phrase: str) -> None:
    stops = d.judge(policy, goal, "acc", runs)
    assert [s.index for s in stops] == stopped
    if stopped:
        assert phrase in stops[0].reason


@pytest.mark.parametrize(("reports", "interval", "delay", "due"), [
    (0, 1, 0, None), (1, 1, 0, 1), (5, 1, 0, 5), (3, 2, 0, 2), (4, 2, 0, 4), (3, 1, 5, None), (5, 1, 5, 5),
    (7, 3, 5, 6), (5, 3, 5, None)])
def test_due_interval(reports: int, interval: int, delay: int, due: int | None) -> None:
    assert d.due_interval(sw.Policy("bandit", interval, delay, 0.1), reports) == due


@pytest.mark.parametrize(("goal", "candidates", "best"), [
    ("maximize", [d.Candidate(0, "a", 0.5, True), d.Candidate(1, "b", 0.9, True), d.Candidate(2, "c", 0.99, False)],
     "b"),
    ("minimize", [d.Candidate(0, "a", 0.5, True), d.Candidate(1, "b", 0.9, True)], "a"),
    ("maximize", [d.Candidate(0, "a", 0.9, True), d.Candidate(1, "b", 0.9, True)], "a"),
    ("maximize", [d.Candidate(0, "a", None, True), d.Candidate(1, "b", 0.1, False)], None),
])
def test_best_run(goal: str, candidates: list[d.Candidate], best: str | None) -> None:
    found = d.best_run(goal, candidates)
    assert (found.job if found else None) == best


BODY = {"properties": {
    "jobTemplate": {"properties": {"cluster": {"id": "/c"}, "customToolkitSettings": {"commandLine": "python t.py"},
                                   "environmentVariables": [{"name": "A", "value": "1"}]}},
    "parameterSpace": {"learning-rate": {"type": "loguniform", "min": -7, "max": 2},
                       "batch": {"type": "choice", "values": [16, 32]}},
    "sampling": {"type": "random", "seed": 3},
    "primaryMetric": {"name": "test_accuracy", "goal": "maximize"},
    "budget": {"maxTotalRuns": 12, "maxConcurrentRuns": 3},
    "earlyTermination": {"type": "bandit", "slackFactor": 0.2}}}


def with_props(**changes: object) -> dict:
    return {"properties": {**BODY["properties"], **changes}}


def test_a_sweep_body_round_trips_through_its_stored_document() -> None:
    spec = sw.parse(BODY)
    assert (spec.max_total_runs, spec.max_concurrent_runs, spec.seed, spec.goal) == (12, 3, 3, "maximize")
    assert spec.policy == sw.Policy("bandit", 1, 0, 0.2, None)
    assert sw.parse({"properties": sw.spec_document(spec)}) == spec


@pytest.mark.parametrize(("changes", "target"), [
    ({"parameterSpace": {}}, "properties.parameterSpace"),
    ({"parameterSpace": {"x": {"type": "normal"}}}, "properties.parameterSpace.x.type"),
    ({"parameterSpace": {"x": {"type": "uniform", "min": 2, "max": 1}}}, "properties.parameterSpace.x.min"),
    ({"parameterSpace": {"x": {"type": "choice", "values": []}}}, "properties.parameterSpace.x.values"),
    ({"parameterSpace": {"x": {"type": "quniform", "min": 0, "max": 1, "q": 0}}}, "properties.parameterSpace.x.q"),
    ({"parameterSpace": {"a-b": {"type": "choice", "values": [1]}, "a_b": {"type": "choice", "values": [1]}}},
     "properties.parameterSpace"),
    ({"sampling": {"type": "bayesian"}}, "properties.sampling.type"),
    ({"sampling": {"type": "grid"}}, "properties.sampling.type"),  # grid takes choices only
    ({"primaryMetric": {"name": "acc", "goal": "up"}}, "properties.primaryMetric.goal"),
    ({"budget": {"maxTotalRuns": 0}}, "properties.budget.maxTotalRuns"),
    ({"budget": {"maxTotalRuns": 3, "maxConcurrentRuns": 0}}, "properties.budget.maxConcurrentRuns"),
    ({"earlyTermination": {"type": "bandit"}}, "properties.earlyTermination"),
    ({"earlyTermination": {"type": "bandit", "slackFactor": 0.1, "slackAmount": 1}}, "properties.earlyTermination"),
    ({"earlyTermination": {"type": "truncationSelection", "truncationPercentage": 100}},
     "properties.earlyTermination.truncationPercentage"),
    ({"earlyTermination": {"type": "medianStopping", "delayEvaluation": -1}},
     "properties.earlyTermination.delayEvaluation"),
])
def test_invalid_bodies_are_refused_naming_the_field(changes: dict, target: str) -> None:
    with pytest.raises(ApiError) as e:
        sw.parse(with_props(**changes))
    assert e.value.status == 400 and e.value.target == target


def test_grid_budget_is_capped_by_the_grid() -> None:
    spec = sw.parse(with_props(parameterSpace={"b": {"type": "choice", "values": [1, 2, 3]}},
                               sampling={"type": "grid"}))
    assert (spec.max_total_runs, spec.max_concurrent_runs) == (3, 3)


def test_a_child_gets_its_parameters_as_arguments_and_environment() -> None:
    template = sw.parse(BODY).template
    props = sw.child_properties(template, {"learning-rate": 0.5, "batch": 32, "name": "a b"})
    assert props["customToolkitSettings"]["commandLine"] == \
        "python t.py --learning-rate 0.5 --batch 32 --name 'a b'"
    assert props["environmentVariables"] == [
        {"name": "A", "value": "1"}, {"name": "AZ_BATCHAI_PARAM_LEARNING_RATE", "value": "0.5"},
        {"name": "AZ_BATCHAI_PARAM_BATCH", "value": "32"}, {"name": "AZ_BATCHAI_PARAM_NAME", "value": "a b"}]
    assert template["customToolkitSettings"]["commandLine"] == "python t.py"  # the template is left alone
    torch = sw.child_properties({"pyTorchSettings": {"pythonScriptFilePath": "t.py"}}, {"lr": 0.1})
    assert torch["pyTorchSettings"]["commandLineArgs"] == "--lr 0.1"
    assert sw.child_name("s", 7) == "s-007"


def test_the_example_sweep_file_is_a_valid_sweep() -> None:
    from pathlib import Path

    import yaml

    example = Path(__file__).resolve().parents[2] / "examples" / "sweeps" / "digits.yaml"
    spec = sw.parse({"properties": yaml.safe_load(example.read_text())})
    assert (spec.sampling, spec.max_total_runs, spec.policy and spec.policy.kind) == ("random", 12, "bandit")
