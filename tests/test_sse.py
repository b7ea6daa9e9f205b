from conversations import sse


def test_event_is_named_and_carries_one_line_of_json():
    encoded = sse.encode_event("delta", {"content": "two\nlines — ✓"})
    assert encoded == 'event: delta\ndata: {"content":"two\\nlines — ✓"}\n\n'.encode()


def test_comment_is_ignored_by_clients_and_stays_on_one_line():
    assert sse.encode_comment("hello\nworld") == b": hello world\n\n"
    assert sse.KEEPALIVE.startswith(b":")
