"""Split a Server-Sent Events byte stream into the data of its events, as the spec says.

Lines end at CRLF, LF or CR and nowhere else (a JSON string may hold U+2028, which Python's
splitlines would take for a line end); an event's several `data:` lines are joined with LF;
a blank line ends an event. Comments, `event:`, `id:` and `retry:` lines are not needed here.
No Django, no I/O: feed it bytes as they arrive.
"""

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEDecoder:
    def __init__(self) -> None:
        self._rest = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the data of every event this chunk completes."""
        buffer = self._rest + chunk
        events: list[bytes] = []
        start = 0
        for match in _LINE_END.finditer(buffer):
            if match.end() == len(buffer) and match.group() == b"\r":
                break  # perhaps the first half of a CRLF: wait for the next chunk
            self._line(buffer[start : match.start()], events)
            start = match.end()
        self._rest = buffer[start:]
        return events

    def end(self) -> list[bytes]:
        """Return the data of an event the stream ended without closing (leniently kept)."""
        events: list[bytes] = []
        if self._rest:
            self._line(self._rest.rstrip(b"\r"), events)
            self._rest = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[bytes]) -> None:
        if not line:
            if self._data:
                events.append(b"\n".join(self._data))
                self._data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
