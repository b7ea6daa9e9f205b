from conversations import sse


def test_event_is_named_and_carries_one_line_of_json():
    encoded = sse.encode_event("delta", {"content": "two\nlines — ✓"})
    assert encoded == 'event: delta\ndata: {"content":"two\\nlines — ✓"}\n\n'.encode()


def test_keepalive_is_one_comment_line_that_ends_no_block():
    # A blank line after it would make readers that keep the last id (httpx-sse) yield an
    # empty event; a lone comment line is ignored by every reader.
    assert sse.KEEPALIVE == b": keep-alive\n"


def test_retry_hint_is_a_line_of_the_first_events_block():
    assert sse.encode_retry(2000) + sse.encode_event("start", {}, id=1) == (
        b"retry: 2000\nid: 1\nevent: start\ndata: {}\n\n"
    )
