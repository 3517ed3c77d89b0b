"""`batchai dashboard` prints the link that starts a sign-in at the identity provider the API trusts."""

from __future__ import annotations

import httpx

from tests.cli.conftest import Run, batchai, state_dir  # noqa: F401 - the CLI tests' fixtures
from tests.dashboard.conftest import trust


def test_the_printed_link_starts_a_sign_in(batchai: Run, api_endpoint: dict[str, str]) -> None:  # noqa: F811
    shown = batchai("dashboard")
    link = shown.stdout.strip()
    assert link == f"{api_endpoint['url']}/dashboard/signin"
    assert api_endpoint["ca_file"] in shown.stderr
    r = httpx.get(link, verify=trust(api_endpoint), timeout=30)
    assert r.status_code == 303 and r.headers["location"].startswith(f"{api_endpoint['issuer'].removesuffix('/v2.0')}"
                                                                     "/oauth2/v2.0/authorize?")
    assert "code_challenge_method=S256" in r.headers["location"]
