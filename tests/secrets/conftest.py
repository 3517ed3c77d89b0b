"""The secrets tests share the ingress tests' HTTP client and per-test subscription."""

from tests.ingress.conftest import http, sub  # noqa: F401
