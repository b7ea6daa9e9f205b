// Message articles in the thread: building them (new, or from the site API's JSON), taking
// over the ones the server rendered, and the model label. The rest of a message has a module
// each: its text (message_text.js), how it ended (message_outcome.js), waiting and the
// Thinking section (message_thinking.js), its buttons and versions (message_actions.js) and
// the editor of a question (message_editor.js). DOM only; chat.js decides when.

import { ensureActions, setVersions } from "./message_actions.js";
import { STATUS, setOutcome } from "./message_outcome.js";
import { hydrateText, messageBody } from "./message_text.js";
import { ensureReasoning, thoughtFor } from "./message_thinking.js";

export function messageId(article) {
  const id = Number.parseInt(article.dataset.messageId || "", 10);
  return Number.isInteger(id) ? id : null;
}

export function createMessageArticle(role, status) {
  const article = document.createElement("article");
  article.className = `message message-${role}`;
  article.dataset.role = role;
  article.dataset.status = status;
  article.setAttribute("aria-label", role === "user" ? "You said" : "The assistant said");
  const body = document.createElement("div");
  body.className = "message-body";
  article.append(body);
  return article;
}

/** Render a message the server put in the page, through the same code as a stream. */
export function hydrateMessage(article) {
  hydrateText(article);
  if (article.dataset.role === "assistant") {
    setOutcome(article, {
      status: article.dataset.status,
      error: article.dataset.error || "",
      finishReason: article.dataset.finishReason || "",
    });
  }
  ensureActions(article);
}

// --- model label -------------------------------------------------------------

/**
 * Name the model on each answer when the thread has answers from more than one (after a
 * switch); no label while it has only one.
 */
export function updateModelLabels(thread) {
  const answers = [...thread.querySelectorAll('article.message[data-role="assistant"]')].filter(
    (a) => !a.hidden,
  );
  const models = new Set(answers.map((a) => a.dataset.model).filter(Boolean));
  for (const answer of answers) {
    let label = answer.querySelector(".message-model");
    if (models.size < 2 || !answer.dataset.model) {
      label?.remove();
      continue;
    }
    if (!label) {
      label = document.createElement("p");
      label.className = "message-model";
      answer.prepend(label);
    }
    label.textContent = answer.dataset.modelLabel || answer.dataset.model;
  }
}

/** Build a message's article from the site API's JSON, as the server renders it. */
export function articleFromJson(message) {
  const article = createMessageArticle(message.role, message.status);
  article.dataset.messageId = String(message.id);
  if (message.finish_reason) {
    article.dataset.finishReason = message.finish_reason;
  }
  if (message.error) {
    article.dataset.error = message.error;
  }
  if (message.model) {
    article.dataset.model = message.model;
    article.dataset.modelLabel = message.model_label || message.model;
  }
  if (message.status === STATUS.STREAMING && message.request_id) {
    article.dataset.requestId = message.request_id;
  }
  const body = messageBody(article);
  body.textContent = message.content || "";
  if (message.role === "assistant" && message.reasoning) {
    const details = ensureReasoning(article);
    details.open = false;
    details.querySelector(".reasoning-body").textContent = message.reasoning;
    if (message.status !== STATUS.STREAMING) {
      details.querySelector("summary").textContent = thoughtFor(message.reasoning_ms);
    }
  }
  hydrateMessage(article);
  setVersions(article, message.versions);
  return article;
}
