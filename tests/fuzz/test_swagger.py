"""Property-based requests generated from the 2018-05-01 swagger against the in-process API: no
request may get a 5xx, and every answer must match the swagger's schema for its status.

Deterministic in the suite (derandomized: a fixed seed per operation, a fixed number of examples
per operation, no example database), so it cannot make a run flaky. A longer random run is
`make fuzz` (BATCHAI_FUZZ_EXAMPLES examples per operation, BATCHAI_FUZZ_RANDOM=1: a new seed each run).
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.generation import GenerationMode
from schemathesis.schemas import BaseSchema

from shared.domain import contract

EXAMPLES = int(os.environ.get("BATCHAI_FUZZ_EXAMPLES", "20"))
RANDOM = os.environ.get("BATCHAI_FUZZ_RANDOM") == "1"

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"  # the in-process API's subscription (`api_endpoint`)
HYPOTHESIS = settings(max_examples=EXAMPLES, derandomize=not RANDOM, database=None, deadline=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def load() -> BaseSchema:
    schema = schemathesis.openapi.from_path(contract.CONTRACT_DIR / "BatchAI.json")
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    return schema


#: Everything generated: subscription ids, api-versions, names, bodies.
anything = load()
#: A valid subscription and api-version, so that the generated names and bodies reach the services.
in_scope = load()
in_scope.config.update(parameters={"subscriptionId": SUBSCRIPTION, "api-version": contract.API_VERSION})


def check(case: schemathesis.Case, endpoint: dict[str, str]) -> None:
    response = case.call(base_url=endpoint["url"], headers={"Authorization": f"Bearer {endpoint['token']}"},
                         verify=endpoint["ca_file"], timeout=30)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


@anything.parametrize()
@HYPOTHESIS
def test_any_generated_request_gets_no_server_error(case: schemathesis.Case, api_endpoint: dict[str, str]) -> None:
    check(case, api_endpoint)


@in_scope.parametrize()
@HYPOTHESIS
def test_generated_names_and_bodies_get_no_server_error(case: schemathesis.Case,
                                                        api_endpoint: dict[str, str]) -> None:
    check(case, api_endpoint)
