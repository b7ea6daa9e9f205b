// The chat page: finds its parts and wires them together. Each concern is a module:
//   chat_page.js       the page's elements and state, which every module below is handed
//   turns.js           a turn, from send to end, and Stop
//   turn_stream.js     following a turn's events to its end, re-attaching a dropped stream
//   turn_events.js     each event applied to the page
//   turn_resume.js     answers followed after a reload, from another tab, or by Retry
//   thread_actions.js  sending, and the buttons under each message
//   thread_versions.js versions of a message (‹ ›)
//   titles.js, other_tabs.js
// and below them messages.js (message articles), markdown.js (rendering), composer.js,
// sidebar.js, scroll.js, drafts.js, unsaved.js, shortcuts.js, api.js and sse.js.

import { createChatPage, conversationId, refreshActions } from "./chat_page.js";
import { handleCodeCopy } from "./codeblocks.js";
import { createComposer } from "./composer.js";
import { loadDraft, pruneDrafts, saveDraft } from "./drafts.js";
import { messageText } from "./message_text.js";
import { hydrateMessage, updateModelLabels } from "./messages.js";
import { createOtherTabs } from "./other_tabs.js";
import { createScrollFollower } from "./scroll.js";
import { initShortcuts } from "./shortcuts.js";
import { createSidebar } from "./sidebar.js";
import { handleMessageActions, send } from "./thread_actions.js";
import { setTitle } from "./titles.js";
import { followOtherTabsTurn, resumeStreamingAnswer } from "./turn_resume.js";
import { stopAnswer, stopOnEscape } from "./turns.js";
import { pruneUnsaved, restoreUnsaved } from "./unsaved.js";

function createPageComposer(page) {
  const composer = createComposer({
    form: page.form,
    textarea: document.getElementById("message-input"),
    sendButton: document.getElementById("send-button"),
    stopButton: document.getElementById("stop-button"),
    hint: document.getElementById("composer-hint"),
    modelSelect: page.modelSelect,
    onSend: (text) => send(page, text),
    onStop: () => stopAnswer(page),
  });
  // What is typed is kept as the conversation's draft, in this browser (drafts.js).
  page.form.querySelector("#message-input").addEventListener("input", () => {
    saveDraft(conversationId(page), composer.value);
  });
  return composer;
}

function createPageSidebar(page) {
  return createSidebar({
    layout: page.layout,
    sidebar: document.getElementById("sidebar"),
    list: document.getElementById("conversation-list"),
    toggle: document.getElementById("sidebar-toggle"),
    closeButton: document.getElementById("sidebar-close"),
    backdrop: document.getElementById("sidebar-backdrop"),
    dialog: document.getElementById("delete-dialog"),
    itemTemplate: document.getElementById("conversation-item-template"),
    statusBox: document.getElementById("sidebar-status"),
    apiUrl: page.apiUrl,
    newChatUrl: page.newChatUrl,
    currentConversationId: () => conversationId(page),
    onRenamed(id, title) {
      if (id === conversationId(page)) {
        setTitle(page, title);
      }
    },
    onDeleted(id, wasOpen) {
      if (wasOpen) {
        page.active?.controller.abort();
        window.location.assign(page.newChatUrl);
      }
    },
  });
}

/** Take over the thread as the server rendered it, with what this browser kept for it. */
function showRenderedThread(page) {
  pruneUnsaved();
  pruneDrafts();
  if (!page.composer.value) {
    page.composer.value = loadDraft(conversationId(page));
  }
  for (const article of page.thread.querySelectorAll("article.message")) {
    hydrateMessage(article);
    restoreUnsaved(article, messageText(article));
  }
  updateModelLabels(page.thread);
  refreshActions(page);
  page.follower.toBottom();
  page.thread.setAttribute("aria-busy", "false");
  document.documentElement.classList.add("chat-ready");
}

function initChat() {
  const page = createChatPage();
  if (!page) {
    return;
  }
  page.follower = createScrollFollower(page.thread, document.getElementById("jump-to-latest"));
  page.composer = createPageComposer(page);
  page.sidebar = createPageSidebar(page);
  page.send = (text) => send(page, text);
  page.otherTabs = createOtherTabs(page, (requestId, text) =>
    followOtherTabsTurn(page, requestId, text),
  );
  handleMessageActions(page);
  handleCodeCopy(page.thread);
  stopOnEscape(page);
  showRenderedThread(page);
  resumeStreamingAnswer(page);
  initShortcuts({ newChatUrl: page.newChatUrl });
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", initChat);
} else {
  initChat();
}
