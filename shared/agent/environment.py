"""The environment a task (or the node setup task) runs with: the node's own environment minus the
agent's secrets, the user's variables and secrets, the AZ_BATCHAI_* variables, and the toolkit's.

Secret values are put in the environment and nowhere else: never logged, never reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.agent.layout import TaskDirs
from shared.agent.runtime import TaskStartError
from shared.domain.messages import Assignment

#: The agent's own settings (storage keys among them) never reach a task.
HIDDEN_PREFIXES = ("BATCHAI_",)
HIDDEN_NAMES = {"AzureWebJobsStorage"}


def base_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.startswith(HIDDEN_PREFIXES) and k not in HIDDEN_NAMES}


def user_env(variables: list[dict[str, Any]] | None, secrets: list[dict[str, Any]] | None) -> dict[str, str]:
    env = {v["name"]: str(v.get("value", "")) for v in variables or []}
    for secret in secrets or []:
        if secret.get("value") is None:
            raise TaskStartError("SecretUnavailable", f"secret {secret.get('name')!r} has no value on this node "
                                 "(Key Vault secret references are not supported)")
        env[secret["name"]] = str(secret["value"])
    return env


def task_env(base: Mapping[str, str], dirs: TaskDirs, a: Assignment, gpus: int,
             plan_env: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(user_env(a.job.get("environmentVariables"), a.job.get("secrets")))
    env.update({
        "AZ_BATCHAI_MOUNT_ROOT": str(dirs.mount_root),
        "AZ_BATCHAI_JOB_MOUNT_ROOT": str(dirs.job_mount_root),
        "AZ_BATCHAI_JOB_TEMP": str(dirs.job_temp),
        "AZ_BATCHAI_SHARED_JOB_TEMP": str(dirs.shared_job_temp),
        "AZ_BATCHAI_STDOUTERR_DIR": str(dirs.stdouterr),
        "AZ_BATCHAI_TASK_INDEX": str(a.task_index),
        "AZ_BATCHAI_NUM_GPUS": str(gpus),
        "AZ_BATCHAI_JOB_ID": a.job_arm_id,
    })
    env.update({f"AZ_BATCHAI_INPUT_{i}": path for i, path in dirs.inputs.items()})
    env.update({f"AZ_BATCHAI_OUTPUT_{i}": str(path) for i, path in dirs.outputs.items()})
    env.update(plan_env)
    return env


def setup_env(base: Mapping[str, str], setup_task: Mapping[str, Any], mount_root: str,
              stdouterr_dir: str) -> dict[str, str]:
    env = dict(base)
    env.update(user_env(setup_task.get("environmentVariables"), setup_task.get("secrets")))
    env.update({"AZ_BATCHAI_MOUNT_ROOT": mount_root, "AZ_BATCHAI_STDOUTERR_DIR": stdouterr_dir})
    return env
