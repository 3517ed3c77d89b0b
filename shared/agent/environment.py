"""The environment a task (or the node setup task) runs with, built from an allow-list and never the
agent's own: of the node's environment only the search path, the locale, the time zone and the CA
settings (`base_env`); then the user's variables and secrets, the AZ_BATCHAI_* variables, the job's
HOME and TMPDIR (its own directories), and the toolkit's. A task whose assignment names its GPU
indices sees exactly those: CUDA_VISIBLE_DEVICES lists them, AZ_BATCHAI_NUM_GPUS counts them (one
whose assignment names none gets every GPU of the node). Whatever else the agent was started
with (its storage connection string, its service settings) never reaches a task.

Secrets given as Key Vault references are read before the task starts (`resolve_secrets`, with the
node's reader: its managed identity on a machine; a process node gets them resolved by the service).
Secret values are put in the environment and nowhere else: never logged, never reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shared.agent.layout import TaskDirs
from shared.agent.retry import GaveUp
from shared.agent.runtime import TaskStartError
from shared.decisions.gpu_slots import visible_devices
from shared.domain.messages import AssignedTask
from shared.domain.metrics import task_pythonpath
from shared.domain.secret_refs import SecretUnresolved, Slot, resolve
from shared.domain.sweeps import PARAM_ENV_PREFIX

#: Reads a Key Vault secret's value from its secret URL (https://<vault>/secrets/<name>[/<version>]).
SecretReader = Callable[[str], str]

#: What of the node's own environment a task gets.
PASSED = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "TERM", "SSL_CERT_FILE", "SSL_CERT_DIR"})
PASSED_PREFIXES = ("LC_",)


#: A sweep's child job gets each of its parameters as AZ_BATCHAI_PARAM_<NAME> among its environment
#: variables (`shared.domain.sweeps.child_properties`): its tasks get them as they get every job variable.
SWEEP_PARAM_PREFIX = PARAM_ENV_PREFIX


def base_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k in PASSED or k.startswith(PASSED_PREFIXES)}


def user_env(variables: list[dict[str, Any]] | None, secrets: list[dict[str, Any]] | None) -> dict[str, str]:
    env = {v["name"]: str(v.get("value", "")) for v in variables or []}
    for secret in secrets or []:
        if secret.get("value") is None:
            raise TaskStartError("SecretUnavailable", f"secret {secret.get('name')!r} has no value and no "
                                 "Key Vault reference")
        env[secret["name"]] = str(secret["value"])
    return env


def resolve_secrets(doc: dict[str, Any], read_secret: SecretReader | None) -> dict[str, Any]:
    """A copy of `doc` (a job's properties, a cluster's node view) with its Key Vault references read.
    Raises TaskStartError naming the secret that cannot be read, and why."""
    def read(slot: Slot) -> str:
        if read_secret is None:
            raise SecretUnresolved(slot, "this node has no identity to read Key Vault with")
        try:
            return read_secret(slot.secret_url)
        except GaveUp:
            raise
        except Exception as error:  # whatever the vault or the identity said: the task's start error
            raise SecretUnresolved(slot, f"{type(error).__name__}: {error}") from error
    try:
        return resolve(doc, read)
    except SecretUnresolved as error:
        code = "RegistryCredentialsUnavailable" if error.slot.value_key == "password" else "SecretUnavailable"
        raise TaskStartError(code, str(error)) from error


def task_env(base: Mapping[str, str], dirs: TaskDirs, a: AssignedTask, gpus: int,
             plan_env: Mapping[str, str], user_name: str | None = None) -> dict[str, str]:
    env = dict(base)
    env.update({"HOME": str(dirs.home), "TMPDIR": str(dirs.job_temp)})
    if user_name:
        env.update({"USER": user_name, "LOGNAME": user_name})
    env.update(user_env(a.job.get("environmentVariables"), a.job.get("secrets")))
    env.update({
        "AZ_BATCHAI_MOUNT_ROOT": str(dirs.mount_root),
        "AZ_BATCHAI_JOB_MOUNT_ROOT": str(dirs.job_mount_root),
        "AZ_BATCHAI_JOB_TEMP": str(dirs.job_temp),
        "AZ_BATCHAI_SHARED_JOB_TEMP": str(dirs.shared_job_temp),
        "AZ_BATCHAI_STDOUTERR_DIR": str(dirs.stdouterr),
        "AZ_BATCHAI_TASK_INDEX": str(a.task_index),
        "AZ_BATCHAI_NUM_GPUS": str(gpus if a.gpus is None else len(a.gpus)),
        "AZ_BATCHAI_JOB_ID": a.job_arm_id,
    })
    if a.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible_devices(a.gpus)
    if a.job.get("arrayIndex") is not None:  # a task of an array job
        env.update({"AZ_BATCHAI_ARRAY_INDEX": str(a.job["arrayIndex"]),
                    "AZ_BATCHAI_ARRAY_COUNT": str(a.job.get("arrayCount") or "")})
    env.update({f"AZ_BATCHAI_INPUT_{i}": path for i, path in dirs.inputs.items()})
    env.update({f"AZ_BATCHAI_OUTPUT_{i}": str(path) for i, path in dirs.outputs.items()})
    env.update(plan_env)
    env["PYTHONPATH"] = task_pythonpath(env.get("PYTHONPATH"))  # batchai_metrics, importable by every task
    return env


def setup_env(base: Mapping[str, str], setup_task: Mapping[str, Any], mount_root: str,
              stdouterr_dir: str) -> dict[str, str]:
    env = dict(base)
    env.update(user_env(setup_task.get("environmentVariables"), setup_task.get("secrets")))
    env.update({"AZ_BATCHAI_MOUNT_ROOT": mount_root, "AZ_BATCHAI_STDOUTERR_DIR": stdouterr_dir})
    return env
