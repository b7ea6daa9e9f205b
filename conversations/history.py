"""The chat page's history: page cursors, search terms and date groups.

Pure helpers, no queries (those are in conversations.selectors):

* A cursor names the last conversation of a page by its (updated_at, pk), the order the list
  is sorted in, so the next page starts right after it however many rows were added since
  (keyset pagination: no offset to count through, no row shown twice when one is added).
* Search terms become a PostgreSQL prefix query, so a word being typed already matches.
* Date groups label conversations Today, Yesterday, Previous 7 days, Previous 30 days, then
  by month; static/conversations/sidebar.js applies the same rules in the browser.
"""

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from django.contrib.postgres.search import SearchVector
from django.utils import timezone
from django.utils.dateformat import format as date_format

from conversations.exceptions import InvalidChatRequest
from conversations.search import TEXT_SEARCH_CONFIG

# At most this many words of a search are used; more only slow the query down.
MAX_SEARCH_TERMS = 8
MAX_QUERY_CHARS = 200

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last conversation shown, in (updated_at, pk) order."""

    updated_at: datetime
    pk: int

    def encode(self) -> str:
        raw = f"{self.updated_at.isoformat()}|{self.pk}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> "Cursor":
        """Read a cursor this API gave out; anything else is a 400 naming the field."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            when, pk = raw.split("|")
            cursor = cls(datetime.fromisoformat(when), int(pk))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            cursor = None
        # A cursor without a time zone, or naming no row, was not made here.
        if cursor is None or cursor.updated_at.tzinfo is None or cursor.pk < 1:
            raise InvalidChatRequest(
                "cursor must be the next_cursor of an earlier page.", field="cursor"
            )
        return cursor


def conversation_title_vector() -> SearchVector:
    """The expression of the titles' GIN index (migration 0010); queries use exactly this."""
    return SearchVector("title", config=TEXT_SEARCH_CONFIG)


def search_terms(query: str) -> list[str]:
    """Return the words of a search, lower-cased, at most MAX_SEARCH_TERMS of them."""
    return [word.lower() for word in _WORD.findall(query)][:MAX_SEARCH_TERMS]


def prefix_tsquery(terms: Iterable[str]) -> str:
    """Return a raw tsquery where every term must match the start of a word.

    Terms are \\w+ runs, so nothing in them is tsquery syntax."""
    return " & ".join(f"{term}:*" for term in terms)


def date_group(when: datetime, *, today: date) -> str:
    """Return the heading a conversation last active at `when` is listed under."""
    day = timezone.localtime(when).date()
    age = (today - day).days
    if age <= 0:
        return "Today"
    if age == 1:
        return "Yesterday"
    if age <= 7:
        return "Previous 7 days"
    if age <= 30:
        return "Previous 30 days"
    return date_format(day, "F Y")


def group_by_date[T](
    items: Iterable[T], *, now: datetime | None = None
) -> list[tuple[str, list[T]]]:
    """Split items (with `updated_at`, newest first) into (heading, items) groups, in the
    current time zone."""
    today = timezone.localdate(now)
    groups: list[tuple[str, list[T]]] = []
    for item in items:
        label = date_group(item.updated_at, today=today)
        if not groups or groups[-1][0] != label:
            groups.append((label, []))
        groups[-1][1].append(item)
    return groups
