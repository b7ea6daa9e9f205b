// What the user does to the thread: send a message, and the buttons under each message:
// Copy, Edit (ask edited text instead: a new version of the question), Regenerate (a new
// version of the answer), Retry, and ‹ › between versions.

import { copyText, showCopied } from "./clipboard.js";
import { conversationId, refreshActions, removePlaceholder } from "./chat_page.js";
import { saveDraft } from "./drafts.js";
import { openEditor } from "./message_editor.js";
import { STATUS } from "./message_outcome.js";
import { messageText, setUserText } from "./message_text.js";
import { createMessageArticle, messageId } from "./messages.js";
import { switchVersion } from "./thread_versions.js";
import { refollow } from "./turn_resume.js";
import { putTextBack, runTurn } from "./turns.js";
import { keptText } from "./unsaved.js";

function lastShownId(page) {
  const articles = page.thread.querySelectorAll("article.message:not([hidden])");
  const last = articles[articles.length - 1];
  return last ? messageId(last) : null;
}

/** The articles from this one to the end of the thread, as shown. */
function fromHereOn(article) {
  const articles = [];
  for (let next = article; next; next = next.nextElementSibling) {
    if (next.matches("article.message:not([hidden])")) {
      articles.push(next);
    }
  }
  return articles;
}

/** Hide the articles a new version replaces (shown again if the server refuses it). */
function hideAll(articles) {
  for (const article of articles) {
    article.hidden = true;
  }
  return articles;
}

/** The articles of a question (`text`) and of its answer to come, not yet in the thread. */
function newQuestion(text) {
  const user = createMessageArticle("user", STATUS.COMPLETED);
  setUserText(user, text);
  const assistant = createMessageArticle("assistant", STATUS.STREAMING);
  return { user, assistant };
}

export function send(page, text) {
  if (page.active) {
    return;
  }
  // The last message shown: a thread changed meanwhile (another version chosen in another
  // tab) is refused rather than continued on a branch this page does not show.
  const follows = conversationId(page) === null ? null : lastShownId(page);
  const { user, assistant } = newQuestion(text);
  removePlaceholder(page);
  page.thread.append(user, assistant);
  page.composer.value = "";
  saveDraft(conversationId(page), "");
  runTurn(page, {
    body: {
      message: text,
      model: page.modelSelect.value,
      conversation: conversationId(page),
      action: "send",
      message_id: follows,
    },
    user,
    assistant,
    created: [user, assistant],
    onReject: () => putTextBack(page, text),
    restoreText: text,
  });
}

/** Answer a question again: a new version of `answer`; it and what follows it are kept as
 * the earlier version, reachable with ‹ ›. */
function regenerate(page, answer) {
  const conversation = conversationId(page);
  let user = answer.previousElementSibling;
  while (user && !user.matches('article.message[data-role="user"]:not([hidden])')) {
    user = user.previousElementSibling;
  }
  if (page.active || conversation === null || !user) {
    return;
  }
  const hidden = hideAll(fromHereOn(answer));
  const assistant = createMessageArticle("assistant", STATUS.STREAMING);
  page.thread.append(assistant);
  runTurn(page, {
    body: {
      message: messageText(user),
      model: page.modelSelect.value,
      conversation,
      action: "regenerate",
      message_id: messageId(answer),
    },
    user,
    assistant,
    created: [assistant],
    hidden,
  });
}

/** Ask edited text in place of a user message: a new version of it, branching from there
 * (the old one and what followed it are kept, reachable with ‹ ›). */
function resendEdited(page, original, text) {
  const conversation = conversationId(page);
  if (page.active || conversation === null) {
    return;
  }
  const replaced = hideAll(fromHereOn(original));
  const { user, assistant } = newQuestion(text);
  page.thread.append(user, assistant);
  runTurn(page, {
    body: {
      message: text,
      model: page.modelSelect.value,
      conversation,
      action: "edit",
      message_id: messageId(original),
    },
    user,
    assistant,
    created: [user, assistant],
    hidden: replaced,
    onReject: () => startEditing(page, original, text),
  });
}

function startEditing(page, article, text = null) {
  if (page.active) {
    return;
  }
  openEditor(article, {
    text,
    onSave: (newText) => resendEdited(page, article, newText),
    onCancel: () => {
      refreshActions(page);
      article.querySelector('[data-action="edit"]')?.focus();
    },
  });
  refreshActions(page);
}

/** One listener for the buttons under every message, present or future. */
export function handleMessageActions(page) {
  page.thread.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !page.thread.contains(button)) {
      return;
    }
    const article = button.closest("article.message");
    const action = button.dataset.action;
    if (action === "copy" || action === "copy-kept") {
      const text = action === "copy" ? messageText(article) : keptText(article);
      if (text !== null && (await copyText(text))) {
        showCopied(button);
      }
    } else if (action === "edit") {
      startEditing(page, article);
    } else if (action === "retry" && "lostConnection" in article.dataset) {
      refollow(page, article);
    } else if (action === "regenerate" || action === "retry") {
      regenerate(page, article);
    } else if (action === "version" && button.dataset.target) {
      const buttons = [...article.querySelectorAll('[data-action="version"]')];
      const direction = buttons.indexOf(button) ? "next" : "previous";
      switchVersion(page, article, button.dataset.target, direction);
    }
  });
}
