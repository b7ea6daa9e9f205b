"""One check for text from outside: what PostgreSQL cannot store is refused, and every length
is bounded, with a 400 that names the field and the limit.

NUL is the one character a text column refuses (psycopg raises on it), so a message, a title
or a key name holding it must be refused before anything is counted or written, and never
silently stripped: what a user sent is what is saved, or nothing is.
"""

from conversations.exceptions import InvalidChatRequest

UNSTORABLE = "\x00"


def clean_text(value: object, *, field: str, max_length: int, label: str) -> str:
    """Return `value` when it is non-blank text PostgreSQL can store within `max_length`
    characters; raise InvalidChatRequest naming `field` otherwise. `label` names the field
    for people ("The message", "The title")."""
    if not isinstance(value, str):
        raise InvalidChatRequest(f"{label} must be text.", field=field)
    if not value.strip():
        raise InvalidChatRequest(f"{label} is empty.", field=field)
    check_storable(value, field=field, label=label)
    if len(value) > max_length:
        raise InvalidChatRequest(
            f"{label} is too long: {len(value)} characters, at most {max_length}.", field=field
        )
    return value


def check_storable(value: str, *, field: str, label: str) -> None:
    """Refuse text holding a character PostgreSQL cannot store."""
    if UNSTORABLE in value:
        raise InvalidChatRequest(
            f"{label} contains a NUL character (\\u0000), which cannot be stored.", field=field
        )
