// The thread's versions: where each shown message stands among its versions (‹ 2 / 3 ›),
// refreshed after a turn made a new one, and the switch to another version's branch.

import { getConversation, showVersion } from "./api.js";
import { clearError, conversationId, refreshActions, showError } from "./chat_page.js";
import { setVersions } from "./message_actions.js";
import { articleFromJson, updateModelLabels } from "./messages.js";

/** Ask the server where each shown message stands among its versions (after a new one). */
export async function refreshVersions(page) {
  const id = conversationId(page);
  if (id === null) {
    return;
  }
  let conversation;
  try {
    conversation = await getConversation(page.apiUrl, id);
  } catch {
    return; // the switcher shows up on the next load
  }
  for (const message of conversation.messages || []) {
    const article = page.thread.querySelector(
      `article.message[data-message-id="${CSS.escape(String(message.id))}"]`,
    );
    if (article) {
      setVersions(article, message.versions);
    }
  }
  refreshActions(page);
}

/** Keep the keyboard where it was: on the same switcher, now of the version shown. */
function focusSwitcher(shown, direction) {
  const buttons = shown.querySelectorAll('[data-action="version"]');
  const same = direction === "previous" ? buttons[0] : buttons[1];
  const focusable = [same, ...buttons].find((b) => b && !b.disabled);
  (focusable || shown.querySelector("button"))?.focus();
}

/** Show the branch through another version of a message: the thread is rebuilt from it. */
export async function switchVersion(page, article, targetId, direction) {
  const id = conversationId(page);
  if (page.active || id === null) {
    return;
  }
  clearError(page);
  let conversation;
  try {
    conversation = await showVersion(page.apiUrl, id, Number(targetId));
  } catch (error) {
    showError(page, error.message || "That version could not be shown.");
    return;
  }
  const { thread } = page;
  const index = [...thread.querySelectorAll("article.message")].indexOf(article);
  for (const old of thread.querySelectorAll("article.message")) {
    old.remove();
  }
  thread.append(...(conversation.messages || []).map(articleFromJson));
  updateModelLabels(thread);
  refreshActions(page);
  const shown = thread.querySelectorAll("article.message")[index];
  if (shown) {
    focusSwitcher(shown, direction);
  }
}
