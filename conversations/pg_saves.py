"""PostgreSQL's one-statement writes on every turn's path: the save of a finished turn (its
common case), and the checkpoint of a process's running answers.

The answer row (only while still streaming), its conversation's `updated_at` and thread hash,
and the user's daily ledger are written by one statement of data-modifying CTEs: one round
trip instead of a transaction of five or six, and atomic as a statement is. The ledger row is
an upsert, so the first answer of a day creates it. Everything else, a replay of an answer
already saved or one a sweep marked interrupted, takes services.save_finished_turn's general
path, as does every other database.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from conversations.models import Conversation, DailyUsage, Message


def save_streaming_answer(
    *,
    answer_id: int,
    fields: dict[str, Any],
    conversation_id: int,
    conversation_changes: dict[str, Any],
    user_id: int,
    tokens: int,
) -> bool:
    """Write the answer's `fields` if it is still streaming, and with it the conversation's
    changes and one answer of `tokens` to the user's ledger for today; return whether the
    answer was streaming (if not, nothing was written)."""
    answer_sql, answer_params = _update_sql(
        Message, fields, Q(pk=answer_id, status=Message.Status.STREAMING)
    )
    conversation_sql, conversation_params = _update_sql(
        Conversation, conversation_changes, Q(pk=conversation_id)
    )
    usage = DailyUsage._meta.db_table
    sql = f"""
        WITH answer AS ({answer_sql} RETURNING 1),
        conversation AS ({conversation_sql} AND EXISTS (SELECT 1 FROM answer)),
        ledger AS (
            INSERT INTO {usage} (user_id, day, tokens, answers)
            SELECT %s, %s, %s, 1 FROM answer
            ON CONFLICT (user_id, day) DO UPDATE
            SET tokens = {usage}.tokens + EXCLUDED.tokens,
                answers = {usage}.answers + EXCLUDED.answers
        )
        SELECT count(*) FROM answer
    """
    params = (*answer_params, *conversation_params, user_id, timezone.localdate(), tokens)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (written,) = cursor.fetchone()
    return bool(written)


def _update_sql(model, values: dict[str, Any], where: Q) -> tuple[str, tuple]:
    """The UPDATE that `model.objects.filter(where).update(**values)` runs, as SQL and
    parameters, with Django's own conversion of each value."""
    query = UpdateQuery(model)
    query.add_update_values(values)
    query.add_q(where)
    return query.get_compiler(connection.alias).as_sql()


def checkpoint_streaming_answers(rows: Sequence[tuple], now: datetime) -> None:
    """Write each running answer's (id, content, reasoning, prompt_tokens,
    completion_tokens, reasoning_ms, checkpoint_event) and the heartbeat `now`, in one UPDATE … FROM
    (VALUES …), to the rows still streaming. Django's bulk_update builds a CASE of one WHEN
    per row and field, which costs more to build than the write itself at fifty answers a
    checkpoint."""
    table = Message._meta.db_table
    row = "(%s::bigint, %s::text, %s::text, %s::integer, %s::integer, %s::integer, %s::integer)"
    values = ", ".join([row] * len(rows))
    sql = f"""
        UPDATE {table} AS answer
        SET content = v.content, reasoning = v.reasoning, prompt_tokens = v.prompt_tokens,
            completion_tokens = v.completion_tokens, reasoning_ms = v.reasoning_ms,
            checkpoint_event = v.checkpoint_event, heartbeat_at = %s
        FROM (VALUES {values}) AS v (
            id, content, reasoning, prompt_tokens, completion_tokens, reasoning_ms,
            checkpoint_event
        )
        WHERE answer.id = v.id AND answer.status = %s
    """
    params = [now, *(value for row in rows for value in row), Message.Status.STREAMING]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
