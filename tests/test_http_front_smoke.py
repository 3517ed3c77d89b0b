"""The HTTP function of function_app.py answers over https through the local HTTP front."""

import ssl

import httpx


def test_healthz_over_https(api_endpoint: dict[str, str]) -> None:
    r = httpx.get(f"{api_endpoint['url']}/healthz", verify=ssl.create_default_context(cafile=api_endpoint["ca_file"]))
    assert r.status_code == 200 and r.json() == {"status": "ok"}
