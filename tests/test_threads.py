"""Recognising an API client's growing history as one thread."""

import importlib

from django.apps import apps as django_apps

from conversations import threads
from conversations.models import Conversation, Message

TURN_1 = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]


def test_each_prefix_hash_chains_the_one_before():
    hashes = threads.prefix_hashes(TURN_1)
    assert len(hashes) == 2 and len(set(hashes)) == 2
    assert hashes[1] == threads.extend_hash(hashes[0], role="user", content="Hi")
    assert threads.prefix_hashes(TURN_1[:1]) == hashes[:1]


def test_a_completed_answer_extends_the_thread_to_what_the_client_sends_next():
    prompt_hash = threads.prefix_hashes(TURN_1)[-1]
    after = threads.hash_after_answer(prompt_hash=prompt_hash, status="completed", content="Hey")
    next_call = [*TURN_1, {"role": "assistant", "content": "Hey"}, {"role": "user", "content": "?"}]
    assert threads.prefix_hashes(next_call)[2] == after


def test_a_failed_or_stopped_answer_does_not_join_the_thread():
    prompt_hash = threads.prefix_hashes(TURN_1)[-1]
    for status in ("failed", "stopped"):
        assert threads.hash_after_answer(prompt_hash=prompt_hash, status=status, content="P") == ""


def test_a_prefilled_answer_is_also_found_as_one_assistant_message_with_its_prefill():
    prompt = [{"role": "user", "content": "Haiku?"}, {"role": "assistant", "content": "Autumn"}]
    before_prefill, _ = threads.prefix_hashes(prompt)
    merged = threads.hash_after_prefilled_answer(
        before_prefill=before_prefill, prefill="Autumn", status="completed", content=" moon"
    )
    sent_back = [prompt[0], {"role": "assistant", "content": "Autumn moon"}]
    assert threads.prefix_hashes(sent_back)[1] == merged
    kwargs = {"before_prefill": before_prefill, "prefill": "Autumn", "content": " m"}
    assert threads.hash_after_prefilled_answer(status="stopped", **kwargs) == ""


def test_role_and_content_both_count():
    a = threads.prefix_hashes([{"role": "user", "content": "x"}])
    b = threads.prefix_hashes([{"role": "system", "content": "x"}])
    c = threads.prefix_hashes([{"role": "user", "content": "y"}])
    assert len({a[0], b[0], c[0]}) == 3


def test_the_migration_gives_old_api_threads_their_parents_and_hashes(alice):
    """An API thread saved before trees: a failed answer, its retry, then a prefill."""
    conversation = Conversation.objects.create(owner=alice, model="dev/dev-chat", source="api")
    rows = [
        ("r1", "user", False, "completed", "Hi"),
        ("r1", "assistant", True, "failed", ""),
        ("r2", "assistant", True, "completed", "Hello!"),  # the retry of the same prompt
        ("r3", "user", False, "completed", "A haiku?"),
        ("r3", "assistant", False, "completed", "Autumn "),  # a prefill
        ("r3", "assistant", True, "completed", "moon"),
    ]
    made = [
        Message.objects.create(
            conversation=conversation,
            user=alice,
            request_id=request_id,
            role=role,
            is_answer=is_answer,
            status=status,
            content=content,
        )
        for request_id, role, is_answer, status, content in rows
    ]

    migration = importlib.import_module("conversations.migrations.0013_api_threads_as_trees")
    migration.link_api_threads(django_apps, None)

    saved = {m.pk: m for m in conversation.messages.all()}
    hi, failed, hello, haiku, prefill, moon = (saved[m.pk] for m in made)
    assert [m.parent_id for m in (hi, failed, hello, haiku, prefill, moon)] == [
        None,
        hi.pk,
        hi.pk,
        hello.pk,
        haiku.pk,
        prefill.pk,
    ]
    assert failed.thread_hash == ""
    # What a client sends next matches, whether it splits the prefill or merges it.
    split = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "A haiku?"},
        {"role": "assistant", "content": "Autumn "},
        {"role": "assistant", "content": "moon"},
    ]
    assert [m.thread_hash for m in (hi, hello, haiku, prefill, moon)] == threads.prefix_hashes(
        split
    )
    merged = [*split[:3], {"role": "assistant", "content": "Autumn moon"}]
    assert moon.merged_thread_hash == threads.prefix_hashes(merged)[-1]
