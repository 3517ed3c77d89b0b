"""The timer that advances every live parameter sweep (`shared.services.sweeps.reconcile_all`).

Triggers only: call one service. A transient error propagates (the next tick tries again).

- BATCHAI_SWEEPS_SCHEDULE: Azure "*/10 * * * * *" (every 10 s); local "*/2 * * * * *".
"""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared.config import Settings
from shared.services import sweeps

bp = func.Blueprint()


@bp.function_name("sweeps_tick")
@bp.timer_trigger(arg_name="timer", schedule="%BATCHAI_SWEEPS_SCHEDULE%", run_on_startup=False, use_monitor=False)
def sweeps_tick(timer: func.TimerRequest) -> None:
    sweeps.reconcile_all(Settings.from_env(), datetime.now(UTC))
