"""Parameter sweeps: the sweep body (parsed and validated), the sweep's state machine, the names of its
child jobs and what each child job gets of its parameters. Pure.

A sweep lives under an experiment (``.../experiments/{exp}/sweeps/{name}``) and runs its job template
once per sampled parameter set, as ordinary jobs of the same experiment named ``{sweep}-{i:03d}``.
A child gets each parameter twice: as ``--name value`` appended to its command line (the custom
toolkit's ``commandLine``, another toolkit's ``commandLineArgs``) and as the environment variable
``AZ_BATCHAI_PARAM_<NAME>`` (NAME upper-cased, anything not a letter or digit made ``_``).

The parameter space follows Azure ML's HyperDrive: ``choice`` (``values``), ``uniform`` (``min``,
``max``), ``loguniform`` (``exp(uniform(min, max))``: min and max are natural-log exponents, as in
Azure ML), ``quniform`` (``round(uniform(min, max) / q) * q``). Grid sampling takes choices only.
"""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.domain.errors import ApiError, bad_request
from shared.domain.keys import PROVIDER
from shared.domain.metrics import valid_name
from shared.domain.states import IllegalTransition

T_SWEEP = f"{PROVIDER}/workspaces/experiments/sweeps"
PARAM_ENV_PREFIX = "AZ_BATCHAI_PARAM_"
MAX_SWEEP_NAME = 60  # its children add "-{i:03d}" and stay within the 64 characters of a job name
# One sweep document holds every run with its parameters and metric values (Table entity limits):
MAX_TOTAL_RUNS = 300
MAX_REPORTS = 100  # values of the primary metric kept per run: the policy judges intervals 1..MAX_REPORTS
MAX_PARAMETERS = 20
MAX_CHOICES = 100
EARLY_TERMINATED = "EarlyTerminated"

KINDS = ("choice", "uniform", "loguniform", "quniform")
SAMPLINGS = ("grid", "random")
GOALS = ("maximize", "minimize")
POLICIES = ("bandit", "medianStopping", "truncationSelection")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
# Toolkit settings -> the field its parameters are appended to.
ARGUMENT_FIELDS = {"customToolkitSettings": ("commandLine",), "customMpiSettings": ("commandLine",),
                   "pyTorchSettings": ("commandLineArgs",), "chainerSettings": ("commandLineArgs",),
                   "cntkSettings": ("commandLineArgs",), "caffeSettings": ("commandLineArgs",),
                   "caffe2Settings": ("commandLineArgs",), "horovodSettings": ("commandLineArgs",),
                   "tensorFlowSettings": ("masterCommandLineArgs", "workerCommandLineArgs",
                                          "parameterServerCommandLineArgs")}


class SweepState(StrEnum):
    RUNNING = "running"  # child jobs created up to the budget, their metrics judged by the policy
    CANCELING = "canceling"  # cancel asked: every child is being stopped
    SUCCEEDED = "succeeded"  # the budget is spent and every child ended
    FAILED = "failed"  # a child job could not be created
    CANCELED = "canceled"


SWEEP_TRANSITIONS: dict[SweepState, dict[SweepState, str]] = {
    SweepState.RUNNING: {
        SweepState.SUCCEEDED: "the budget is spent and every child job ended",
        SweepState.FAILED: "the job template was refused for a child job",
        SweepState.CANCELING: "cancel (or delete) was asked",
    },
    SweepState.CANCELING: {SweepState.CANCELED: "every child job ended"},
    SweepState.SUCCEEDED: {},
    SweepState.FAILED: {},
    SweepState.CANCELED: {},
}
SWEEP_TERMINAL = frozenset({SweepState.SUCCEEDED, SweepState.FAILED, SweepState.CANCELED})


def sweep_transition(current: str, target: str, reason: str, at: datetime) -> dict[str, Any]:
    """Check a sweep state move and return the history entry to keep."""
    cur, tgt = SweepState(current), SweepState(target)
    if tgt not in SWEEP_TRANSITIONS[cur]:
        raise IllegalTransition(409, "InvalidStateTransition", f"A sweep cannot move from '{cur}' to '{tgt}'.")
    return {"from": str(cur), "to": str(tgt), "at": at.isoformat(), "reason": reason}


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str
    values: tuple[Any, ...] = ()  # choice
    low: float = 0.0
    high: float = 0.0
    q: float = 1.0  # quniform


@dataclass(frozen=True)
class Policy:
    kind: str
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    slack_factor: float | None = None  # bandit: one of the two slacks
    slack_amount: float | None = None
    truncation_percentage: int = 0  # truncationSelection


@dataclass(frozen=True)
class Spec:
    template: dict[str, Any]  # JobCreateParameters "properties"
    parameters: tuple[Parameter, ...]
    sampling: str
    seed: int
    metric: str
    goal: str
    max_total_runs: int
    max_concurrent_runs: int
    policy: Policy | None


def child_name(sweep: str, index: int) -> str:
    return f"{sweep}-{index:03d}"


def env_name(parameter: str) -> str:
    return PARAM_ENV_PREFIX + _NOT_ALNUM.sub("_", parameter).upper()


def text_of(value: Any) -> str:
    """A parameter value as the command line and the environment show it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def child_properties(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The template's job properties for one parameter set: `--name value` appended to the command line
    (or the toolkit's arguments) and AZ_BATCHAI_PARAM_<NAME> added to its environment variables."""
    props = copy.deepcopy(template)
    args = " ".join(f"--{name} {shlex.quote(text_of(value))}" for name, value in parameters.items())
    for toolkit, fields in ARGUMENT_FIELDS.items():
        settings = props.get(toolkit)
        if isinstance(settings, dict):
            for field in fields:
                if field == fields[0] or settings.get(field):
                    settings[field] = f"{settings.get(field) or ''} {args}".strip()
    names = {env_name(n) for n in parameters}
    env = [v for v in props.get("environmentVariables") or [] if v.get("name") not in names]
    env += [{"name": env_name(n), "value": text_of(v)} for n, v in parameters.items()]
    props["environmentVariables"] = env
    return props


# Parsing ------------------------------------------------------------------------------------------------

def _obj(value: Any, target: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"'{target}' must be a JSON object.", target)
    return value


def _number(d: dict[str, Any], key: str, target: str, default: float | None = None) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"'{target}.{key}' must be a number.", f"{target}.{key}")
    return float(value)


def _int(d: dict[str, Any], key: str, target: str, default: int | None, low: int, high: int) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"'{target}.{key}' must be an integer from {low} to {high}.", f"{target}.{key}")
    return value


def _choice(value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str) or \
            (isinstance(value, str) and not 0 < len(value) <= 64):
        raise bad_request(f"'{where}' values must be numbers or non-empty strings.", where)
    return value


def _parameter(name: str, d: Any) -> Parameter:
    target = f"properties.parameterSpace.{name}"
    if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
        raise bad_request(f"'{str(name)[:80]}' is not a valid parameter name (a letter or '_', then up to 63 "
                          "letters, digits, '_', '.' or '-').", "properties.parameterSpace")
    d = _obj(d, target)
    kind = d.get("type")
    if kind not in KINDS:
        raise bad_request(f"'{target}.type' must be one of {', '.join(KINDS)}.", f"{target}.type")
    if kind == "choice":
        values = d.get("values")
        if not isinstance(values, list) or not 0 < len(values) <= MAX_CHOICES:
            raise bad_request(f"'{target}.values' must list 1 to {MAX_CHOICES} values.", f"{target}.values")
        return Parameter(name, kind, tuple(_choice(v, f"{target}.values") for v in values))
    low, high = _number(d, "min", target), _number(d, "max", target)
    if not low < high:
        raise bad_request(f"'{target}.min' must be less than '{target}.max'.", f"{target}.min")
    q = _number(d, "q", target, 1.0) if kind == "quniform" else 1.0
    if q <= 0:
        raise bad_request(f"'{target}.q' must be positive.", f"{target}.q")
    if kind == "loguniform" and high > 700:
        raise bad_request(f"'{target}.max' is an exponent (the value is exp(uniform(min, max))); it is too large.",
                          f"{target}.max")
    return Parameter(name, kind, (), low, high, q)


def _policy(d: Any) -> Policy | None:
    if d is None:
        return None
    target = "properties.earlyTermination"
    d = _obj(d, target)
    kind = d.get("type")
    if kind not in POLICIES:
        raise bad_request(f"'{target}.type' must be one of {', '.join(POLICIES)}.", f"{target}.type")
    interval = _int(d, "evaluationInterval", target, 1, 1, 10_000)
    delay = _int(d, "delayEvaluation", target, 0, 0, 10_000)
    if kind == "bandit":
        factor, amount = d.get("slackFactor"), d.get("slackAmount")
        if (factor is None) == (amount is None):
            raise bad_request(f"'{target}' of a bandit policy needs exactly one of slackFactor and slackAmount.",
                              target)
        slack = _number(d, "slackFactor" if factor is not None else "slackAmount", target)
        if slack < 0:
            raise bad_request(f"'{target}' slack must not be negative.", target)
        return Policy(kind, interval, delay, slack if factor is not None else None,
                      slack if amount is not None else None)
    if kind == "truncationSelection":
        return Policy(kind, interval, delay, truncation_percentage=_int(d, "truncationPercentage", target, None, 1, 99))
    return Policy(kind, interval, delay)


def grid_size(parameters: tuple[Parameter, ...]) -> int:
    size = 1
    for p in parameters:
        size *= len(p.values)
    return size


def parse(body: Any) -> Spec:
    """The sweep of a PUT body; a 400 whose target is the field path otherwise. The job template is
    checked by the caller (it needs the API's job validation and the cluster)."""
    props = _obj(_obj(body, "body").get("properties"), "properties")
    template = _obj(props.get("jobTemplate"), "properties.jobTemplate")
    template = copy.deepcopy(_obj(template.get("properties", template), "properties.jobTemplate.properties"))
    space = _obj(props.get("parameterSpace"), "properties.parameterSpace")
    if not 0 < len(space) <= MAX_PARAMETERS:
        raise bad_request(f"'properties.parameterSpace' must have 1 to {MAX_PARAMETERS} parameters.",
                          "properties.parameterSpace")
    parameters = tuple(_parameter(n, d) for n, d in space.items())
    if len({env_name(p.name) for p in parameters}) != len(parameters):
        raise bad_request("Two parameters have the same environment variable name.", "properties.parameterSpace")
    sampling = _obj(props.get("sampling", {"type": "random"}), "properties.sampling")
    method = sampling.get("type")
    if method not in SAMPLINGS:
        raise bad_request(f"'properties.sampling.type' must be one of {', '.join(SAMPLINGS)} (Bayesian sampling "
                          "is not offered).", "properties.sampling.type")
    seed = _int(sampling, "seed", "properties.sampling", 0, 0, 2**31 - 1)
    if method == "grid" and any(p.kind != "choice" for p in parameters):
        raise bad_request("Grid sampling takes choice parameters only.", "properties.sampling.type")
    metric = _obj(props.get("primaryMetric"), "properties.primaryMetric")
    name, goal = metric.get("name"), metric.get("goal")
    if not isinstance(name, str) or not valid_name(name):
        raise bad_request("'properties.primaryMetric.name' must be a metric name.", "properties.primaryMetric.name")
    if goal not in GOALS:
        raise bad_request("'properties.primaryMetric.goal' must be maximize or minimize.",
                          "properties.primaryMetric.goal")
    budget = _obj(props.get("budget"), "properties.budget")
    total = _int(budget, "maxTotalRuns", "properties.budget", None, 1, MAX_TOTAL_RUNS)
    if method == "grid":
        total = min(total, grid_size(parameters))
    concurrent = _int(budget, "maxConcurrentRuns", "properties.budget", total, 1, MAX_TOTAL_RUNS)
    return Spec(template, parameters, method, seed, name, goal, total, min(concurrent, total),
                _policy(props.get("earlyTermination")))


def spec_document(spec: Spec) -> dict[str, Any]:
    """The sweep's properties as stored and echoed (the normalized body)."""
    space: dict[str, Any] = {}
    for p in spec.parameters:
        if p.kind == "choice":
            space[p.name] = {"type": p.kind, "values": list(p.values)}
        else:
            space[p.name] = {"type": p.kind, "min": p.low, "max": p.high, **({"q": p.q} if p.kind == "quniform"
                                                                             else {})}
    out: dict[str, Any] = {
        "jobTemplate": {"properties": spec.template}, "parameterSpace": space,
        "sampling": {"type": spec.sampling, **({"seed": spec.seed} if spec.sampling == "random" else {})},
        "primaryMetric": {"name": spec.metric, "goal": spec.goal},
        "budget": {"maxTotalRuns": spec.max_total_runs, "maxConcurrentRuns": spec.max_concurrent_runs}}
    if spec.policy is not None:
        pol = spec.policy
        policy: dict[str, Any] = {"type": pol.kind, "evaluationInterval": pol.evaluation_interval,
                                  "delayEvaluation": pol.delay_evaluation}
        if pol.slack_factor is not None:
            policy["slackFactor"] = pol.slack_factor
        if pol.slack_amount is not None:
            policy["slackAmount"] = pol.slack_amount
        if pol.kind == "truncationSelection":
            policy["truncationPercentage"] = pol.truncation_percentage
        out["earlyTermination"] = policy
    return out


def parse_stored(props: dict[str, Any]) -> Spec:
    try:
        return parse({"properties": props})
    except ApiError as e:  # stored documents were valid when written
        raise ValueError(e.message) from e
