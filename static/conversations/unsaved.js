// Answers the server could not record (`record: "unsaved"`: its database and its spool on
// disk both failed). What the user saw is kept in this browser, for a week, and offered for
// copying under the answer, after a reload too: the server may later keep only the part of
// it it had checkpointed.

import { icon, makeButton } from "./dom.js";

const PREFIX = "chatsite:unsaved-answer:";
const KEEP_MS = 7 * 24 * 3600 * 1000;
const UNSAVED_TEXT =
  "This answer could not be saved: the server reached neither its database nor its disk. " +
  "This browser keeps it for you; copy it to keep it elsewhere.";

function storageKey(article) {
  const id = article.dataset.messageId;
  return id ? PREFIX + id : null;
}

function read(key) {
  try {
    const kept = JSON.parse(localStorage.getItem(key) || "null");
    return kept && typeof kept.text === "string" ? kept : null;
  } catch {
    return null; // storage refused (private mode) or a value that is not ours
  }
}

/** Keep the answer's text in this browser and say so under it. */
export function keepUnsaved(article, text) {
  const key = storageKey(article);
  if (key) {
    try {
      localStorage.setItem(key, JSON.stringify({ text, at: Date.now() }));
    } catch {
      // No room, or no storage: the notice still offers the text on this page.
    }
  }
  showUnsaved(article, text);
}

/** The text kept for this answer, or null. */
export function keptText(article) {
  const key = storageKey(article);
  const kept = key ? read(key) : null;
  return kept ? kept.text : (article.dataset.unsavedText ?? null);
}

/** Show the notice and its Copy button (once). */
function showUnsaved(article, text) {
  article.dataset.record = "unsaved";
  article.dataset.unsavedText = text;
  if (article.querySelector(".message-unsaved")) {
    return;
  }
  const notice = document.createElement("div");
  notice.className = "message-unsaved";
  notice.setAttribute("role", "alert");
  const words = document.createElement("p");
  words.textContent = UNSAVED_TEXT;
  const button = makeButton({
    label: "Copy the answer",
    className: "action-button",
    iconName: "copy",
    showLabel: true,
  });
  button.insertBefore(icon("check"), button.querySelector(".button-label"));
  button.dataset.action = "copy-kept";
  notice.append(words, button);
  const actions = article.querySelector(".message-actions");
  if (actions) {
    actions.before(notice);
  } else {
    article.append(notice);
  }
}

/**
 * On page load: offer again an answer this browser kept, where the page shows less. One the
 * server recorded whole after all (a save that got through late) is forgotten here.
 */
export function restoreUnsaved(article, shownText) {
  if (article.dataset.role !== "assistant") {
    return;
  }
  const key = storageKey(article);
  const kept = key ? read(key) : null;
  if (!kept) {
    return;
  }
  if (kept.text === shownText) {
    localStorage.removeItem(key);
    return;
  }
  showUnsaved(article, kept.text);
}

/** Forget kept answers older than a week. */
export function pruneUnsaved() {
  try {
    for (const key of Object.keys(localStorage)) {
      if (key.startsWith(PREFIX) && Date.now() - (read(key)?.at ?? 0) > KEEP_MS) {
        localStorage.removeItem(key);
      }
    }
  } catch {
    // no storage: nothing kept
  }
}
