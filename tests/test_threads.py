"""Recognising an API client's growing history as one thread."""

from conversations import threads

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


def test_a_failed_or_stopped_answer_leaves_the_thread_at_its_prompt():
    prompt_hash = threads.prefix_hashes(TURN_1)[-1]
    for status in ("failed", "stopped"):
        assert (
            threads.hash_after_answer(prompt_hash=prompt_hash, status=status, content="Par")
            == prompt_hash
        )


def test_role_and_content_both_count():
    a = threads.prefix_hashes([{"role": "user", "content": "x"}])
    b = threads.prefix_hashes([{"role": "system", "content": "x"}])
    c = threads.prefix_hashes([{"role": "user", "content": "y"}])
    assert len({a[0], b[0], c[0]}) == 3
