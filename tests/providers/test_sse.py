"""Splitting an upstream's event stream into event data, as the SSE spec says."""

import pytest

from conversations.providers.sse import SSEDecoder


def decode(*chunks: bytes) -> list[bytes]:
    decoder = SSEDecoder()
    events = [data for chunk in chunks for data in decoder.feed(chunk)]
    return events + decoder.end()


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_every_line_ending_the_spec_allows_ends_lines(eol):
    stream = b"data: one" + eol + eol + b": comment" + eol + b"data: two" + eol + eol
    assert decode(stream) == [b"one", b"two"]


def test_several_data_lines_of_one_event_are_joined_with_line_feeds():
    assert decode(b'data: {"a":\ndata: 1}\n\n') == [b'{"a":\n1}']


def test_a_crlf_split_between_two_chunks_is_one_line_end():
    assert decode(b"data: one\r", b"\n\r\ndata: two\r\n\r\n") == [b"one", b"two"]


def test_events_split_anywhere_across_chunks_arrive_whole():
    stream = b'data: {"content": "caf\xc3\xa9"}\r\n\r\ndata: [DONE]\r\n\r\n'
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == [
        b'{"content": "caf\xc3\xa9"}',
        b"[DONE]",
    ]


def test_unicode_line_separators_inside_json_do_not_end_a_line():
    line_separator = "\u2028".encode()
    assert decode(b'data: {"c": "a' + line_separator + b'b"}\n\n') == [
        b'{"c": "a' + line_separator + b'b"}'
    ]


def test_other_fields_are_ignored_and_data_without_a_space_is_read():
    assert decode(b"event: message\nid: 7\nretry: 10\ndata:[DONE]\n\n") == [b"[DONE]"]


def test_an_event_the_stream_ends_without_closing_is_kept():
    assert decode(b"data: last") == [b"last"]
