"""Azurite starts, and the service's tables, queues and containers are created idempotently."""

from shared.adapters import storage


def test_ensure_all_is_idempotent_and_queues_round_trip(storage_conn: str) -> None:
    storage.ensure_all(storage_conn)
    names = {t.name for t in storage.table_service(storage_conn).list_tables()}
    assert set(storage.TABLES) <= names
    q = storage.ensure_queue(storage_conn, "smoke-round-trip")
    q.send_message('{"cluster": "x"}')
    msg = q.receive_message()
    assert msg is not None and msg.content == '{"cluster": "x"}'
    q.delete_message(msg)
