"""Every %SETTING% a timer schedule names is set in the Azure deployment and in the local stack."""

from __future__ import annotations

import re
from pathlib import Path

from shared.localhost.loader import load_functions
from shared.localstack.stack import LOCAL_SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def _schedule_settings() -> set[str]:
    names = set()
    for f in load_functions():
        schedule = f.get_trigger().get_dict_repr().get("schedule") or ""
        names.update(re.findall(r"%(\w+)%", schedule))
    return names


def test_timer_schedule_settings_are_deployed_and_local() -> None:
    settings = _schedule_settings()
    assert settings, "the app has timers that read their schedule from settings"
    bicep = (ROOT / "infra" / "main.bicep").read_text()
    for name in settings:
        assert re.search(rf"^\s*{name}: '[^']+'", bicep, re.M), f"{name} missing from infra/main.bicep appSettings"
        assert name in LOCAL_SETTINGS, f"{name} missing from the local stack's settings"
