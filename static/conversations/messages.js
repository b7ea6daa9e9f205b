// Message articles in the thread: building them, rendering their text, their outcome
// (stopped, failed, cut off), the Thinking section, the action buttons, and the inline
// editor of the last user message. DOM only; chat.js decides when.

import { createMarkdownView } from "./markdown.js";
import { icon, makeButton } from "./dom.js";

export const STATUS = Object.freeze({
  STREAMING: "streaming",
  COMPLETED: "completed",
  STOPPED: "stopped",
  FAILED: "failed",
  // The server stopped while answering (a restart): the text so far is kept.
  INTERRUPTED: "interrupted",
});

const LENGTH_LIMIT_TEXT = "The answer was cut off (length limit).";

// article -> {body: MarkdownView, reasoning: MarkdownView | null, text: raw user text}
const views = new WeakMap();

function stateOf(article) {
  let state = views.get(article);
  if (!state) {
    state = { body: null, reasoning: null, text: "" };
    views.set(article, state);
  }
  return state;
}

export function messageBody(article) {
  return article.querySelector(".message-body");
}

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

// --- text ------------------------------------------------------------------

/** The Markdown view of an assistant's answer (created on first use). */
function bodyView(article, onRender) {
  const state = stateOf(article);
  if (!state.body) {
    state.body = createMarkdownView(messageBody(article), { onRender });
  }
  return state.body;
}

/** Show streamed answer text; rendered at most once per frame. */
export function setAnswerText(article, text, onRender) {
  bodyView(article, onRender).set(text);
}

/** The raw text of a message: the Markdown of an answer, or what the user typed. */
export function messageText(article) {
  const state = stateOf(article);
  if (article.dataset.role === "assistant") {
    return state.body ? state.body.text : messageBody(article).textContent;
  }
  return state.text || messageBody(article).textContent;
}

export function setUserText(article, text) {
  stateOf(article).text = text;
  messageBody(article).textContent = text;
}

/** Render pending text now (at the end of a stream, before judging the final markup). */
export function flushMessage(article) {
  const state = stateOf(article);
  if (state.body) {
    state.body.flush();
  }
  if (state.reasoning) {
    state.reasoning.flush();
  }
}

export function cancelRendering(article) {
  const state = stateOf(article);
  state.body?.cancel();
  state.reasoning?.cancel();
}

// --- waiting and thinking --------------------------------------------------

export function showWaitingIndicator(article) {
  const waiting = document.createElement("span");
  waiting.className = "waiting-indicator";
  waiting.setAttribute("role", "img");
  waiting.setAttribute("aria-label", "Waiting for the answer");
  for (let i = 0; i < 3; i += 1) {
    waiting.append(document.createElement("span"));
  }
  messageBody(article).replaceChildren(waiting);
}

export function removeWaitingIndicator(article) {
  article.querySelector(".waiting-indicator")?.remove();
}

function ensureReasoning(article) {
  let details = article.querySelector("details.reasoning");
  if (!details) {
    details = document.createElement("details");
    details.className = "reasoning";
    details.open = true;
    const summary = document.createElement("summary");
    summary.textContent = "Thinking";
    const body = document.createElement("div");
    body.className = "reasoning-body";
    details.append(summary, body);
    article.insertBefore(details, messageBody(article));
  }
  return details;
}

/** Show streamed reasoning in the Thinking section, open while it streams. */
export function setReasoningText(article, text, onRender) {
  const details = ensureReasoning(article);
  details.classList.add("is-thinking");
  const state = stateOf(article);
  if (!state.reasoning) {
    state.reasoning = createMarkdownView(details.querySelector(".reasoning-body"), { onRender });
  }
  state.reasoning.set(text);
}

/** Fold the Thinking section (when the answer starts, or the stream ends). */
export function foldReasoning(article) {
  const details = article.querySelector("details.reasoning");
  if (details && details.classList.contains("is-thinking")) {
    details.classList.remove("is-thinking");
    details.open = false;
  }
}

// --- outcome ---------------------------------------------------------------

/** Rephrase a failure from the server where plainer words exist; otherwise keep it. */
export function describeFailure(message) {
  const text = (message || "").trim();
  if (!text) {
    return "Something went wrong while answering.";
  }
  if (/rate.?limit/i.test(text)) {
    const wait = text.match(/try again in (\d+) seconds?/i);
    if (wait) {
      const seconds = Number(wait[1]);
      return `Rate limit reached — try again in ${seconds} second${seconds === 1 ? "" : "s"}.`;
    }
    return "Rate limit reached — try again in a moment.";
  }
  return text;
}

function outcomeText({ status, error, finishReason }) {
  if (status === STATUS.STOPPED) {
    return "Stopped";
  }
  if (status === STATUS.FAILED) {
    return describeFailure(error);
  }
  if (status === STATUS.INTERRUPTED) {
    return `Interrupted: ${error || "the server stopped while answering."}`;
  }
  if (finishReason === "length") {
    return LENGTH_LIMIT_TEXT;
  }
  return "";
}

/** Set an answer's status and its marker line ("Stopped", the failure, "cut off"). */
export function setOutcome(article, { status, error = "", finishReason = "" }) {
  article.dataset.status = status;
  if (finishReason) {
    article.dataset.finishReason = finishReason;
  }
  if (status === STATUS.FAILED || status === STATUS.INTERRUPTED) {
    article.dataset.error = error;
  }
  const text = outcomeText({ status, error, finishReason });
  let marker = article.querySelector(".message-status");
  if (!text) {
    marker?.remove();
    return;
  }
  if (!marker) {
    marker = document.createElement("p");
    marker.className = "message-status";
    messageBody(article).after(marker);
  }
  marker.textContent = text;
}

/** Render a message the server put in the page, through the same code as a stream. */
export function hydrateMessage(article) {
  const role = article.dataset.role;
  const body = messageBody(article);
  if (role === "user") {
    stateOf(article).text = body.textContent;
  } else if (role === "assistant") {
    const reasoning = article.querySelector(".reasoning-body");
    if (reasoning) {
      const state = stateOf(article);
      state.reasoning = createMarkdownView(reasoning);
      state.reasoning.set(reasoning.textContent);
      state.reasoning.flush();
    }
    const view = bodyView(article);
    view.set(body.textContent);
    view.flush();
    setOutcome(article, {
      status: article.dataset.status,
      error: article.dataset.error || "",
      finishReason: article.dataset.finishReason || "",
    });
  }
  ensureActions(article);
}

// --- actions ---------------------------------------------------------------

function copyButton(label) {
  const button = makeButton({ label, className: "action-button", iconName: "copy" });
  button.dataset.action = "copy";
  button.insertBefore(icon("check"), button.querySelector(".button-label"));
  return button;
}

/** The row of buttons under a message (Copy for every message). */
export function ensureActions(article) {
  let row = article.querySelector(".message-actions");
  if (!row) {
    row = document.createElement("div");
    row.className = "message-actions";
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", "Message actions");
    row.append(copyButton(article.dataset.role === "user" ? "Copy message" : "Copy answer"));
    article.append(row);
  }
  return row;
}

function setButton(row, action, wanted, build) {
  const existing = row.querySelector(`[data-action="${action}"]`);
  if (wanted && !existing) {
    const button = build();
    button.dataset.action = action;
    row.append(button);
  } else if (!wanted && existing) {
    existing.remove();
  }
}

/**
 * Put Edit on the last user message, Regenerate on the last answer and Retry on it if it
 * failed; nothing of the kind anywhere else, nor while a stream runs.
 */
export function updateTurnActions(thread, { busy, streaming = null }) {
  const articles = [...thread.querySelectorAll("article.message:not([hidden])")];
  const lastUser = articles.findLast((a) => a.dataset.role === "user");
  const last = articles.at(-1);
  const lastAnswer = last && last.dataset.role === "assistant" ? last : null;
  for (const article of articles) {
    const row = ensureActions(article);
    const canAct = !busy && article.dataset.messageId !== undefined;
    const isLastUser = canAct && article === lastUser && !article.classList.contains("is-editing");
    const isLastAnswer = canAct && article === lastAnswer;
    // A failed or interrupted answer is retried; a completed or stopped one regenerated.
    const failed = [STATUS.FAILED, STATUS.INTERRUPTED].includes(article.dataset.status);
    setButton(row, "edit", isLastUser, () =>
      makeButton({ label: "Edit message", className: "action-button", iconName: "edit" }),
    );
    setButton(row, "regenerate", isLastAnswer && !failed, () =>
      makeButton({ label: "Regenerate", className: "action-button", iconName: "regenerate" }),
    );
    setButton(row, "retry", isLastAnswer && failed, () =>
      makeButton({
        label: "Retry",
        className: "action-button retry-button",
        iconName: "regenerate",
        showLabel: true,
      }),
    );
    row.hidden = article === streaming || article.classList.contains("is-editing");
    row.querySelector('[data-action="copy"]').hidden = !messageText(article).trim();
  }
}

// --- editing the last user message -----------------------------------------

let editorCount = 0;

/**
 * Turn a user message into an editor: a textarea with Save & send / Cancel. Enter saves,
 * Shift+Enter adds a line, Escape cancels. onSave(text) is called with the new text.
 */
export function openEditor(article, { text = null, onSave, onCancel }) {
  if (article.classList.contains("is-editing")) {
    return;
  }
  article.classList.add("is-editing");
  const body = messageBody(article);
  const actions = article.querySelector(".message-actions");
  body.hidden = true;
  if (actions) {
    actions.hidden = true;
  }

  editorCount += 1;
  const form = document.createElement("form");
  form.className = "message-editor";
  const label = document.createElement("label");
  label.className = "visually-hidden";
  label.htmlFor = `message-editor-${editorCount}`;
  label.textContent = "Edit your message";
  const input = document.createElement("textarea");
  input.id = label.htmlFor;
  input.className = "message-editor-input";
  input.rows = 3;
  input.value = text ?? messageText(article);
  const buttons = document.createElement("div");
  buttons.className = "message-editor-buttons";
  const cancel = makeButton({ label: "Cancel", className: "secondary-button" });
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "primary-button";
  save.textContent = "Save & send";
  buttons.append(cancel, save);
  form.append(label, input, buttons);
  body.after(form);

  const grow = () => {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight + 2, window.innerHeight * 0.5)}px`;
  };
  const close = () => {
    form.remove();
    body.hidden = false;
    if (actions) {
      actions.hidden = false;
    }
    article.classList.remove("is-editing");
  };
  const submit = () => {
    const newText = input.value;
    if (!newText.trim()) {
      input.focus();
      return;
    }
    close();
    onSave(newText);
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  cancel.addEventListener("click", () => {
    close();
    onCancel();
  });
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      close();
      onCancel();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  grow();
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}
