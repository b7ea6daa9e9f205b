// Drafts: what the user is typing, kept per conversation in this browser (localStorage), so
// that a reload, a tab that reloads itself (a stale one), a closed tab or a crash does not
// lose it. A draft goes when its message is sent, and after a week.

const PREFIX = "chatsite:draft:";
const KEEP_MS = 7 * 24 * 3600 * 1000;

function key(conversationId) {
  return PREFIX + (conversationId ?? "new");
}

/** Keep `text` as the conversation's draft (null: a new chat); empty text drops it. */
export function saveDraft(conversationId, text) {
  try {
    if (text.trim()) {
      localStorage.setItem(key(conversationId), JSON.stringify({ text, at: Date.now() }));
    } else {
      localStorage.removeItem(key(conversationId));
    }
  } catch {
    // No room, or no storage (private mode): the box still holds the text on this page.
  }
}

/** The conversation's draft, or "". */
export function loadDraft(conversationId) {
  try {
    const kept = JSON.parse(localStorage.getItem(key(conversationId)) || "null");
    return kept && typeof kept.text === "string" ? kept.text : "";
  } catch {
    return "";
  }
}

/** Forget drafts older than a week. */
export function pruneDrafts() {
  try {
    for (let i = localStorage.length - 1; i >= 0; i -= 1) {
      const name = localStorage.key(i);
      if (!name?.startsWith(PREFIX)) {
        continue;
      }
      const kept = JSON.parse(localStorage.getItem(name) || "null");
      if (!kept || !(Date.now() - kept.at < KEEP_MS)) {
        localStorage.removeItem(name);
      }
    }
  } catch {
    // Storage refused: nothing kept, nothing to forget.
  }
}
