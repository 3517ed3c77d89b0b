"""What the agent reports from its ledger rather than from a running task: the end of every task an
earlier run of the agent accepted but never reported (it died with that run), and the recorded end of
an assignment that ended and is delivered again. The service sends an assignment again when it still
holds it and the node's heartbeats no longer list it (`shared.decisions.handovers`): storage may have
lost the first report.
"""

from __future__ import annotations

import logging

from shared.agent.ledger import Ledger
from shared.agent.transport import AgentChannel

log = logging.getLogger(__name__)


def report_orphans(ledger: Ledger, channel: AgentChannel) -> None:
    for assignment_id, record in ledger.unfinished().items():
        event = channel.send("task-exited", assignment_id=assignment_id, job_key=record.get("jobKey"),
                             task_index=record.get("taskIndex"), error={
                                 "code": "NodeAgentRestarted",
                                 "message": "the node agent restarted while the task was running"})
        ledger.finish(assignment_id, event.to_json())


def answer_repeat(ledger: Ledger, channel: AgentChannel, assignment_id: str) -> bool:
    """True when the assignment was seen before (it never runs again); its end is sent again if it ended."""
    state = ledger.state(assignment_id)
    if state is None:
        return False
    report = ledger.report(assignment_id) if state == "done" else None
    if report:
        log.info("assignment %s ended before; reporting its end again", assignment_id)
        channel.resend(report, "task-exited")
    else:
        log.info("assignment %s was handled before; ignoring the repeat", assignment_id)
    return True
