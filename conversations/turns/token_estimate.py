"""Count the tokens of a prompt the model did not report, so that every answer is charged.

A stopped stream, a failed one, or an upstream without usage reports no prompt tokens. No
tokenizer ships for every model we proxy, so this follows OpenAI's rule of thumb: about four
characters of text a token, and a few tokens of framing for each message. Saved counts made
this way are marked `usage_reported = False`.
"""

import math
from collections.abc import Iterable, Mapping

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # the role and the separators around each message
TOKENS_PER_PROMPT = 3  # the priming of the answer


def estimate_prompt_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    """Return an estimate of the tokens these messages cost as a prompt."""
    return TOKENS_PER_PROMPT + sum(
        TOKENS_PER_MESSAGE + math.ceil(len(m.get("content") or "") / CHARS_PER_TOKEN)
        for m in messages
    )
