"""Produce deterministic answer text and split it into streamable tokens.

The answers are canned but realistic: paragraphs, lists, fenced code and
multi-byte text (accents, CJK, emoji), so the chat UI's Markdown rendering and
the streaming pipeline's UTF-8 handling are exercised on every demo message.
"""

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Each token is a run of leading whitespace plus one non-space run, so that
# "".join(tokenize(text)) == text exactly (trailing whitespace becomes its own token).
_TOKEN_RE = re.compile(r"\s*\S+|\s+")

ANSWERS: tuple[str, ...] = (
    """Good question! Here is a short overview of how Python lists behave.

A list is an ordered, mutable sequence. The most useful operations are:

- `append(x)` adds one item at the end;
- `extend(iterable)` adds many items;
- `pop()` removes and returns the last item.

```python
fruits = ["pomme", "poire"]
fruits.append("pêche")
print(len(fruits))  # 3
```

In French one would say « c'est très pratique » — it really is. 🐍""",
    """Let me explain the difference between a process and a thread.

1. A **process** has its own memory space and is isolated from others.
2. A **thread** shares memory with the other threads of its process.
3. Switching threads is usually cheaper than switching processes.

```bash
ps -eLf | head -n 5
```

In Japanese, a thread is called スレッド and a process is プロセス. Café-style \
multitasking, if you like ☕.""",
    """Sure — here is a tiny HTTP server written in Go.

It listens on port 8080 and answers every request with a greeting:

```go
package main

import "net/http"

func main() {
\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
\t\tw.Write([]byte("héllo wörld"))
\t})
\thttp.ListenAndServe(":8080", nil)
}
```

Things to try next:

- add a second route;
- return JSON instead of plain text;
- say 你好 to your users. 🚀""",
    """The short answer: use an index when a query filters on a column often.

A few rules of thumb for relational databases:

1. Index foreign keys that you join on.
2. Avoid indexing columns with very few distinct values.
3. Measure with `EXPLAIN ANALYZE` before and after.

```sql
CREATE INDEX idx_messages_created ON messages (created_at);
```

Über-indexing slows down writes, so keep it balanced — バランス is key. 📈""",
    """Here is a friendly summary of what regular expressions are good for.

Regular expressions describe text patterns. They shine when you need to:

- validate simple formats such as dates;
- extract numbers from log lines;
- replace repeated whitespace.

```javascript
const date = /^\\d{4}-\\d{2}-\\d{2}$/;
console.log(date.test("2024-05-17")); // true
```

A naïve pattern can be slow, so test it on realistic input. 正規表現 means \
"regular expression" in Japanese. ✨""",
)

REASONING: tuple[str, ...] = (
    "The user is asking a question. I should recall the key facts first. "
    "Then I will organise them into a short list and add an example.",
    "Let me think about what matters most here. A concrete code sample will help. "
    "I should keep the answer brief and friendly.",
    "First, identify the core concept. Second, compare it with the alternatives. "
    "Finally, give one practical tip the user can try right away.",
)


def stable_index(text: str, modulo: int) -> int:
    """Return a stable bucket for text; hash() is salted per process, sha256 is not."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % modulo


def choose_answer(prompt: str) -> str:
    """Pick the canned answer for a prompt (same prompt, same answer)."""
    return ANSWERS[stable_index(prompt, len(ANSWERS))]


def choose_reasoning(prompt: str) -> str:
    """Pick the canned reasoning text that the reasoner model streams first."""
    return REASONING[stable_index("reasoning:" + prompt, len(REASONING))]


def tokenize(text: str) -> list[str]:
    """Split text into word-ish tokens that keep their whitespace and rejoin exactly."""
    return _TOKEN_RE.findall(text)


def content_text(content: Any) -> str:
    """Flatten an OpenAI message content (string or list of parts) into plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        ]
        return "".join(parts)
    return ""


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Estimate prompt tokens: content tokens plus a small per-message overhead like OpenAI's."""
    total = 0
    for message in messages:
        total += 4 + len(tokenize(content_text(message.get("content"))))
    return total
