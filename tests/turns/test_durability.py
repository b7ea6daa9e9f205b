"""A finished turn is recorded exactly once: in the database, or spooled until it is back.

These drive the spool, the replay and the checkpoints against the real database; the fault
suite (tests/faults) does the same with a database that really goes away.
"""

import shutil
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from conversations import services
from conversations.accounts.leases import stream_leases
from conversations.models import DailyUsage, Message
from conversations.turns import saving, spool
from tests.test_services import finished, start

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def spool_dir(settings, tmp_path):
    settings.TURN_SPOOL_DIR = tmp_path / "spool"
    return settings.TURN_SPOOL_DIR


def usage(user) -> tuple[int, int]:
    row = DailyUsage.objects.get(user=user)
    return row.tokens, row.answers


def test_a_spooled_turn_is_replayed_once_however_often_the_spool_is_replayed(alice, spool_dir):
    turns = [start(alice, request_id=f"spooled-{n:04d}") for n in range(3)]
    for turn in turns:
        spool.spool_turn(finished(turn, content=f"Answer {turn.request_id}"))
    kept = spool_dir.parent / "copy.jsonl"
    shutil.copy(spool.process_spool_path(), kept)

    first = saving.replay_spooled_turns()
    shutil.copy(kept, spool.process_spool_path())  # the same turns, spooled "again"
    second = saving.replay_spooled_turns()

    assert (first.written, first.already_saved) == (3, 0)
    assert (second.written, second.already_saved) == (0, 3)
    for turn in turns:
        answer = Message.objects.get(pk=turn.assistant_message_id)
        assert (answer.status, answer.content) == ("completed", f"Answer {turn.request_id}")
    assert usage(alice) == (3 * 14, 3)  # 5 + 9 tokens each, charged once
    assert spool.pending_files() == []


def test_a_replay_corrects_an_answer_a_sweep_marked_interrupted_meanwhile(alice):
    """The database came back, and another process's sweep saw a stale heartbeat before this
    process replayed its spool: the spooled turn, which knows better, wins; charged once."""
    turn = start(alice)
    services.turns_checkpoint(
        changed=[services.Checkpoint(turn.assistant_message_id, "A turn is", "", 5, 3)],
        unchanged_ids=[],
    )
    spool.spool_turn(finished(turn))
    assert len(services.turns_close_interrupted(stale_before=timezone.now())) == 1
    assert usage(alice) == (8, 1)

    result = saving.replay_spooled_turns()

    answer = Message.objects.get(pk=turn.assistant_message_id)
    assert result.written == 1
    assert (answer.status, answer.content) == ("completed", "A turn is a question and its answer.")
    assert usage(alice) == (14, 1)


def test_a_line_cut_short_by_a_crash_is_set_aside_and_the_next_turn_stays_whole(alice, spool_dir):
    first, second = start(alice, request_id="cut-000001"), start(alice, request_id="cut-000002")
    path = spool.spool_turn(finished(first))
    with path.open("ab") as file:
        file.write(b'{"request_id": "half a li')  # the process died mid-write
    spool.spool_turn(finished(second))

    result = saving.replay_spooled_turns()

    assert (result.written, result.unreadable) == (2, 1)
    assert b"half a li" in path.with_suffix(".rejected").read_bytes()
    assert Message.objects.get(pk=second.assistant_message_id).status == "completed"


def test_the_replay_command_says_what_it_did(alice):
    spool.spool_turn(finished(start(alice)))
    out = StringIO()
    call_command("replay_spooled_turns", stdout=out)
    call_command("replay_spooled_turns", stdout=out)
    assert "1 turn(s) saved, 0 already saved" in out.getvalue()
    assert "0 turn(s) saved" in out.getvalue()


def test_checkpoints_write_running_answers_and_never_a_saved_one(alice):
    running, saved = start(alice, request_id="ckpt-00001"), start(alice, request_id="ckpt-00002")
    services.save_finished_turn(finished(saved))
    before = Message.objects.get(pk=running.assistant_message_id).heartbeat_at

    services.turns_checkpoint(
        changed=[
            services.Checkpoint(running.assistant_message_id, "Partly", "hm", 5, 1, None, 7),
            services.Checkpoint(saved.assistant_message_id, "stale", "", 5, 1),
        ],
        unchanged_ids=[],
    )

    row = Message.objects.get(pk=running.assistant_message_id)
    assert (row.status, row.content, row.reasoning, row.completion_tokens) == (
        "streaming",
        "Partly",
        "hm",
        1,
    )
    assert row.checkpoint_event == 7  # a page opened now follows on from event 8
    assert row.heartbeat_at > before
    saved_row = Message.objects.get(pk=saved.assistant_message_id)
    assert saved_row.content == "A turn is a question and its answer."


def test_saving_is_exactly_once_even_when_the_spool_also_has_the_turn(alice):
    """A save that timed out in its thread may still land after the turn was spooled."""
    turn = start(alice)
    spool.spool_turn(finished(turn))
    assert services.save_finished_turn(finished(turn)) is True
    assert saving.replay_spooled_turns().already_saved == 1
    assert usage(alice) == (14, 1)


@pytest.mark.django_db(transaction=True)
def test_a_turn_that_fails_to_start_after_its_prompt_is_saved_is_failed_not_left_streaming(
    alice, alice_client
):
    """Fault injection at the one point between the prompt's save and the runner's start."""
    with mock.patch(
        "conversations.turns.start.providers.client_for", side_effect=RuntimeError("no client")
    ):
        response = alice_client.post(
            "/api/conversations/",
            {"message": "Hello?"},
            content_type="application/json",
            headers={"X-Request-ID": "start-fails-01"},
        )

    assert response.status_code == 500
    assert "start-fails-01" in response.json()["error"]["message"]
    answer = Message.objects.get(request_id="start-fails-01", is_answer=True)
    assert (answer.status, answer.error) == ("failed", "The server failed to start this answer.")
    assert stream_leases().held(alice.pk) == 0


def test_check_deploy_reports_a_spool_directory_that_cannot_be_created(settings, tmp_path):
    """Checked with a path under a file, which fails even for root (who ignores modes)."""
    (tmp_path / "a-file").write_text("not a directory")
    settings.TURN_SPOOL_DIR = tmp_path / "a-file" / "spool"
    with pytest.raises(CommandError, match=r"conversations\.E004"):
        call_command("check", "--deploy", "--fail-level", "ERROR", stdout=StringIO())
    settings.TURN_SPOOL_DIR = tmp_path / "fine" / "spool"
    call_command("check", "--tag", "compatibility", "--deploy", stdout=StringIO())
