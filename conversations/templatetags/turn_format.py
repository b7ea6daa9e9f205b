"""Template filters for a turn's details, worded as the chat page's script words them."""

from django import template

register = template.Library()


@register.filter
def thought_for(reasoning_ms: int | None) -> str:
    """How long the model thought, for the Thinking section's summary: "Thought for 12 s".

    The same wording as thoughtFor() in static/conversations/messages.js, which says it live.
    """
    if reasoning_ms is None:
        return "Thinking"
    seconds = (reasoning_ms + 500) // 1000  # half up, as Math.round (round() goes to even)
    if seconds < 1:
        return "Thought for less than a second"
    if seconds < 60:
        return f"Thought for {seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"Thought for {minutes} min {seconds} s" if seconds else f"Thought for {minutes} min"
