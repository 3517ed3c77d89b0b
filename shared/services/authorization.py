"""Who the caller is and whether they may act: bearer tokens in, principals and verdicts out.

`authenticate` validates an `Authorization: Bearer <JWT>` header as Azure Resource Manager does
(issuer `Settings.token_issuer`, audience one of `Settings.api_audiences`, RS256 signature against the
issuer's keys, `exp`/`nbf` with leeway: `shared.adapters.tokens`) and answers ARM's 401 codes with a
`WWW-Authenticate: Bearer` challenge; an unreachable issuer is a 503 (transient), never a 401.

`Access` decides for one principal: the configured owners (`Settings.owner_object_ids`) may do
everything; anyone else what their role assignments (and their groups') grant at a scope containing
the target (`shared.domain.rbac`). A refusal is ARM's 403 AuthorizationFailed naming the action and
scope. Assignments are read once per subscription per `Access`, i.e. per request.

Long-running operations are bound to whoever started them (table `operationcallers`, written only
here): only that principal may read their results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared import ports
from shared.adapters import auth, storage, tokens
from shared.config import Settings
from shared.domain import principals, rbac
from shared.domain.errors import ApiError
from shared.domain.principals import Principal
from shared.ports.contract import Table
from shared.ports.rows import Insert, StaleEtag
from shared.services import role_assignments

RETRY_AFTER_S = "5"


@dataclass
class AuthError(ApiError):
    """An ARM error that carries response headers (the 401 challenge, the 503 Retry-After)."""
    headers: dict[str, str] = field(default_factory=dict)


def _authority(settings: Settings) -> str:
    return settings.token_issuer.removesuffix("/").removesuffix("/v2.0")


def _unauthenticated(settings: Settings, code: str, message: str) -> AuthError:
    description = message.replace('"', "'")  # a quoted-string of RFC 7235
    challenge = (f'Bearer authorization_uri="{_authority(settings)}", error="invalid_token", '
                 f'error_description="{description}"')
    return AuthError(401, code, message, headers={"WWW-Authenticate": challenge})


def _refusal(settings: Settings, reason: str) -> AuthError:
    """ARM's 401 for what `tokens.InvalidToken` found wrong (its message starts with the failed check)."""
    if reason.startswith("expired"):
        return _unauthenticated(settings, "ExpiredAuthenticationToken", "The access token has expired.")
    if reason.startswith("audience"):
        allowed = ";".join(settings.api_audiences)
        return _unauthenticated(settings, "InvalidAuthenticationTokenAudience",
                                "The access token has been obtained for wrong audience or resource. It should "
                                f"exactly match with one of the allowed audiences '{allowed}'.")
    if reason.startswith("issuer"):
        return _unauthenticated(settings, "InvalidAuthenticationTokenTenant",
                                f"The access token is from the wrong issuer. It must match '{settings.token_issuer}'.")
    return _unauthenticated(settings, "InvalidAuthenticationToken", f"The access token is invalid: {reason}.")


def authenticate(settings: Settings, authorization: str | None) -> Principal:
    """The principal a request's Authorization header proves; raises AuthError 401 (or 503). Never echoes the token."""
    if not authorization:
        raise _unauthenticated(settings, "AuthenticationFailed",
                               "Authentication failed. The 'Authorization' header is missing.")
    token = auth.bearer_token(authorization)
    if token is None:
        raise _unauthenticated(settings, "AuthenticationFailed",
                               "Authentication failed. The 'Authorization' header is provided in an invalid format.")
    if not settings.token_issuer or not settings.api_audiences:
        raise _unauthenticated(settings, "InvalidAuthenticationToken",
                               "The service trusts no token issuer or audience (BATCHAI_TOKEN_ISSUER, "
                               "BATCHAI_API_AUDIENCE): every token is refused.")
    validator = tokens.validator(settings.token_issuer, settings.api_audiences, settings.token_issuer_ca_file)
    try:
        claims = validator.validate(token)
    except tokens.InvalidToken as error:
        raise _refusal(settings, str(error)) from None
    except tokens.IssuerUnreachable as error:
        raise AuthError(503, "ServiceUnavailable", "The token issuer cannot be reached to validate the access "
                        "token; retry later.", headers={"Retry-After": RETRY_AFTER_S}) from error
    try:
        return principals.from_claims(claims)
    except principals.NotAPrincipal as error:
        raise _refusal(settings, str(error)) from None


def forbidden(principal: Principal, action: str, scope: str) -> ApiError:
    return ApiError(403, "AuthorizationFailed",
                    f"The client '{principal.name}' with object id '{principal.object_id}' does not have "
                    f"authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. "
                    "If access was recently granted, please refresh your credentials.")


class Access:
    """What one principal may do, with its role assignments read once per subscription."""

    def __init__(self, settings: Settings, principal: Principal) -> None:
        self.settings = settings
        self.principal = principal
        self._grants: dict[str, list[rbac.Grant]] = {}

    @property
    def is_owner(self) -> bool:
        return self.principal.object_id.lower() in self.settings.owner_object_ids

    def grants(self, subscription: str) -> list[rbac.Grant]:
        key = subscription.lower()
        if key not in self._grants:
            ids = self.principal.ids
            self._grants[key] = [a.grant() for a in role_assignments.in_subscription(self.settings, key)
                                 if a.principal_id in ids]
        return self._grants[key]

    def allowed(self, action: str, scope: str) -> bool:
        if self.is_owner:
            return True
        subscription = rbac.subscription_of(scope)
        return subscription is not None and rbac.granted(self.grants(subscription), self.principal.ids, action, scope)

    def require(self, action: str, scope: str) -> None:
        if not self.allowed(action, scope):
            raise forbidden(self.principal, action, scope)


def allowed(settings: Settings, principal: Principal, action: str, scope: str) -> bool:
    return Access(settings, principal).allowed(action, scope)


def require(settings: Settings, principal: Principal, action: str, scope: str) -> None:
    """Raises ApiError 403 AuthorizationFailed (naming the action and scope) unless the principal may act."""
    Access(settings, principal).require(action, scope)


# Operations bound to their callers ---------------------------------------------------------------------

OP_PARTITION = "op"


def bind_operation(settings: Settings, op_id: str, principal: Principal) -> None:
    """Record who started an operation (idempotent for the same principal; StaleEtag for another)."""
    try:
        _callers(settings).write(Insert(OP_PARTITION, op_id, {"objectId": principal.object_id}))
    except StaleEtag:  # recorded already: fine when by the same principal
        if operation_caller(settings, op_id) != principal.object_id:
            raise


def operation_caller(settings: Settings, op_id: str) -> str | None:
    row = _callers(settings).get(OP_PARTITION, op_id)
    return None if row is None else str(row["objectId"])


def _callers(settings: Settings) -> Table:
    return ports.of(settings.storage_connection_string).table(storage.T_OPERATION_CALLERS)


def require_operation(settings: Settings, principal: Principal, op_id: str) -> None:
    """404 OperationNotFound unless `principal` started the operation: others cannot tell it exists."""
    if not principals.is_guid(op_id) or operation_caller(settings, op_id) != principal.object_id:
        raise ApiError(404, "OperationNotFound", f"The specified operation {op_id} is not found", op_id)
