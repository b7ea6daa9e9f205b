// The chat page's shared state: its elements, the turn being streamed, and the parts chat.js
// makes (the composer, the scroll follower, the sidebar). Each module that runs the page is
// handed this one object, rather than finding elements or keeping page state of its own.

import { updateTurnActions } from "./message_actions.js";

/** The page's state, or null on a page without a composer and a thread. */
export function createChatPage() {
  const form = document.getElementById("composer");
  const thread = document.getElementById("thread");
  if (!form || !thread) {
    return null;
  }
  const layout = document.querySelector(".chat-layout");
  const newChatLink = document.getElementById("new-chat");
  return {
    form,
    thread,
    layout,
    modelSelect: document.getElementById("model-select"),
    errorBox: document.getElementById("composer-error"),
    titleHeading: document.getElementById("chat-title"),
    newChatUrl: (newChatLink && newChatLink.getAttribute("href")) || "/chat/",
    apiUrl: layout.dataset.apiUrl,
    streamUrl: form.dataset.streamUrl,
    stopUrlTemplate: form.dataset.stopUrl,
    eventsUrlTemplate: form.dataset.eventsUrl,
    active: null, // the turn being streamed, if any (turns.js)
    // Made by chat.js, once the page is found:
    follower: null, // keeps the newest text in sight (scroll.js)
    composer: null, // the message box (composer.js)
    sidebar: null, // the conversation list (sidebar.js)
    otherTabs: null, // this browser's other tabs (other_tabs.js)
    send: null, // sends a message (thread_actions.js): what was queued, when a turn ends
  };
}

/** The open conversation's ID, or null for a new chat not yet sent. */
export function conversationId(page) {
  const id = Number.parseInt(page.form.dataset.conversationId || "", 10);
  return Number.isInteger(id) && id > 0 ? id : null;
}

export function conversationUrl(page, id) {
  const base = page.newChatUrl.endsWith("/") ? page.newChatUrl : `${page.newChatUrl}/`;
  return `${base}${encodeURIComponent(id)}/`;
}

export function showError(page, message) {
  page.errorBox.textContent = message;
}

export function clearError(page) {
  page.errorBox.textContent = "";
}

/** Show each message's buttons as the page's state allows (none while a turn streams). */
export function refreshActions(page) {
  updateTurnActions(page.thread, {
    busy: page.active !== null,
    streaming: page.active?.assistant ?? null,
  });
}

export function setBusy(page, busy) {
  page.composer.setBusy(busy);
  page.thread.setAttribute("aria-busy", busy ? "true" : "false");
  refreshActions(page);
}

/** Remove the empty thread's placeholder, once it has a message. */
export function removePlaceholder(page) {
  page.thread.querySelector(".thread-empty")?.remove();
}
