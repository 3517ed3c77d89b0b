"""Service errors with their ARM codes and HTTP statuses. Raised by services, rendered by the API.

`ApiError` subclasses are permanent (the caller's fault or a recorded state); anything else that
escapes a service is transient and is retried by the trigger that called it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    target: str | None = None
    details: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        return {"error": error}


def bad_request(message: str, target: str | None = None, code: str = "InvalidRequestContent") -> ApiError:
    return ApiError(400, code, message, target)


SHOWN_CHARS = 100  # of a refused value, in the error message


def shown(value: str) -> str:
    """A refused value as an error message quotes it: cut at SHOWN_CHARS."""
    return value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "..."


def invalid(path: str, message: str) -> ApiError:
    """A 400 on one field of the body: its path is the error's target."""
    return bad_request(f"Invalid value for '{path}': {message}", path, code="InvalidRequestContent")


# The real service's own codes and wording for its resources ("The specified workspace first is not found",
# WorkspaceNotFound and ExperimentNotFound were recorded; the others follow the same pattern).
NOT_FOUND_CODES = {
    "workspace": "WorkspaceNotFound",
    "experiment": "ExperimentNotFound",
    "job": "JobNotFound",
    "cluster": "ClusterNotFound",
    "file server": "FileServerNotFound",
    "operation": "OperationNotFound",
}


def not_found(kind: str, name: str) -> ApiError:
    """404 with the resource's own code; resources beyond the 2018-05-01 API answer ARM's ResourceNotFound."""
    code = NOT_FOUND_CODES.get(kind)
    if code is None:
        return ApiError(404, "ResourceNotFound", f"The {kind} '{name}' was not found.", name)
    return ApiError(404, code, f"The specified {kind} {name} is not found", name)


def conflict(message: str, code: str = "Conflict") -> ApiError:
    return ApiError(409, code, message)


def precondition_failed(message: str = "The resource was changed by another request.") -> ApiError:
    return ApiError(412, "PreconditionFailed", message)


def unauthorized(message: str = "A valid bearer token is required.") -> ApiError:
    return ApiError(401, "AuthenticationFailed", message)
