"""Dashboard sessions: the browser holds only a random id; the table holds its hash and the sealed token;
a session ends with its token; a sign-in in progress is used once, by the browser that started it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters import secret_box, storage
from shared.config import Settings
from shared.dashboard import sessions

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture()
def settings(storage_conn: str) -> Settings:
    return dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn)


def test_a_session_keeps_no_token_in_plain_text_and_ends_with_the_token(settings: Settings) -> None:
    session_id, session = sessions.create(settings, "the-token", "ada", (NOW + timedelta(hours=1)).timestamp(), NOW)
    assert sessions.load(settings, session_id, NOW) == session and session.token == "the-token"
    rows = storage.table(settings.storage_connection_string, sessions.T_SESSIONS).query_entities(
        "PartitionKey eq 'session'")
    stored = [dict(r) for r in rows if r["name"] == "ada"]
    assert stored and all("the-token" not in str(r.values()) and session_id not in str(r.values()) for r in stored)
    assert sessions.load(settings, session_id, NOW + timedelta(hours=1)) is None
    assert sessions.load(settings, session_id + "x", NOW) is None and sessions.load(settings, None, NOW) is None
    sessions.end(settings, session_id)
    assert sessions.load(settings, session_id, NOW) is None
    sessions.end(settings, session_id)  # again: nothing to end


def test_a_sign_in_in_progress_is_held_by_its_browser_alone(settings: Settings) -> None:
    cookie = sessions.begin_login(settings, "state-1", "verifier-1", "nonce-1", "/dashboard/x", NOW)
    assert "verifier-1" not in cookie and "nonce-1" not in cookie
    assert sessions.take_login(settings, "state-1", cookie, NOW) == sessions.PendingLogin(
        "verifier-1", "nonce-1", "/dashboard/x")
    assert sessions.take_login(settings, "state-2", cookie, NOW) is None  # another sign-in's state
    assert sessions.take_login(settings, "state-1", None, NOW) is None  # another browser
    late = NOW + timedelta(seconds=sessions.LOGIN_LIFETIME_S)
    assert sessions.take_login(settings, "state-1", cookie, late) is None
    flipped = cookie[:20] + ("A" if cookie[20] != "A" else "B") + cookie[21:]
    assert sessions.take_login(settings, "state-1", flipped, NOW) is None
    other_key = dataclasses.replace(settings, secrets_key=secret_box.new_key())
    assert sessions.take_login(other_key, "state-1", cookie, NOW) is None


def test_csrf_tokens_must_match_exactly() -> None:
    session = sessions.Session("t", "csrf-value", "ada", NOW)
    assert sessions.check_csrf(session, "csrf-value")
    assert not sessions.check_csrf(session, "csrf-valuE") and not sessions.check_csrf(session, None)
    assert not sessions.check_csrf(session, "")
