// Message articles in the thread: building them, rendering their text, their outcome
// (stopped, failed, cut off), the Thinking section, the action buttons, the versions
// switcher (‹ 2 / 3 ›), the model label, and the inline editor of a user message. DOM only;
// chat.js decides when.

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

function messageBody(article) {
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
  } else if (onRender) {
    // Made when the page loaded (an answer still being written): now it follows a stream.
    state.body.onRender = onRender;
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

/** The raw text of an answer's reasoning (empty without it). */
export function reasoningText(article) {
  const state = stateOf(article);
  return state.reasoning ? state.reasoning.text : "";
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

// --- waiting and thinking --------------------------------------------------

export function showWaitingIndicator(article) {
  if (messageBody(article).textContent.trim()) {
    return; // an answer resumed after a reload keeps what it shows until its events come
  }
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

/**
 * How long the model thought, for the Thinking section's summary: "Thought for 12 s". The
 * same wording as the server's (the thought_for filter in conversations/templatetags).
 */
function thoughtFor(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) {
    return "Thinking";
  }
  const seconds = Math.round(ms / 1000);
  if (seconds < 1) {
    return "Thought for less than a second";
  }
  if (seconds < 60) {
    return `Thought for ${seconds} s`;
  }
  const rest = seconds % 60;
  const minutes = (seconds - rest) / 60;
  return rest ? `Thought for ${minutes} min ${rest} s` : `Thought for ${minutes} min`;
}

// When each streaming answer's thinking began here (performance.now()), to say how long it
// took once the answer starts; the saved figure replaces it after a reload.
const thinkingSince = new WeakMap();

/** Show streamed reasoning in the Thinking section, open while it streams. */
export function setReasoningText(article, text, onRender) {
  const details = ensureReasoning(article);
  details.classList.add("is-thinking");
  if (!thinkingSince.has(article)) {
    thinkingSince.set(article, performance.now());
  }
  const state = stateOf(article);
  if (!state.reasoning) {
    state.reasoning = createMarkdownView(details.querySelector(".reasoning-body"), { onRender });
  } else if (onRender) {
    state.reasoning.onRender = onRender;
  }
  state.reasoning.set(text);
}

/** Fold the Thinking section (when the answer starts, or the stream ends). */
export function foldReasoning(article) {
  const details = article.querySelector("details.reasoning");
  if (details && details.classList.contains("is-thinking")) {
    details.classList.remove("is-thinking");
    details.open = false;
    if (thinkingSince.has(article)) {
      const summary = details.querySelector("summary");
      summary.textContent = thoughtFor(performance.now() - thinkingSince.get(article));
      thinkingSince.delete(article);
    }
  }
}

// --- outcome ---------------------------------------------------------------

/** Rephrase a failure from the server where plainer words exist; otherwise keep it. */
function describeFailure(message) {
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
function ensureActions(article) {
  let row = article.querySelector(".message-actions");
  if (!row) {
    row = document.createElement("div");
    row.className = "message-actions";
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", "Message actions");
    row.append(copyButton(article.dataset.role === "user" ? "Copy message" : "Copy answer"));
    article.append(row);
    renderVersions(article);
  }
  return row;
}

// --- versions ----------------------------------------------------------------

/**
 * Record where a message stands among its versions (`{number, count, previous_id,
 * next_id}` from the server, or null for none) and show ‹ number / count › for it.
 */
export function setVersions(article, versions) {
  const data = article.dataset;
  if (versions && versions.count > 1) {
    data.versionNumber = String(versions.number);
    data.versionCount = String(versions.count);
    data.versionPrevious = versions.previous_id ? String(versions.previous_id) : "";
    data.versionNext = versions.next_id ? String(versions.next_id) : "";
  } else {
    delete data.versionNumber;
    delete data.versionCount;
    delete data.versionPrevious;
    delete data.versionNext;
  }
  renderVersions(article);
}

function versionButton(label, iconText, target) {
  const button = makeButton({ label, className: "action-button version-button" });
  button.querySelector(".button-label").className = "visually-hidden";
  const arrow = document.createElement("span");
  arrow.setAttribute("aria-hidden", "true");
  arrow.textContent = iconText;
  button.prepend(arrow);
  button.title = label;
  button.dataset.action = "version";
  button.dataset.target = target;
  button.disabled = !target;
  return button;
}

function renderVersions(article) {
  const row = article.querySelector(".message-actions");
  if (!row) {
    return;
  }
  row.querySelector(".message-versions")?.remove();
  const count = Number(article.dataset.versionCount || 0);
  if (count < 2) {
    return;
  }
  const number = Number(article.dataset.versionNumber);
  const nav = document.createElement("div");
  nav.className = "message-versions";
  const status = document.createElement("span");
  status.className = "version-status";
  status.textContent = `${number} / ${count}`;
  status.setAttribute("aria-label", `Version ${number} of ${count}`);
  nav.append(
    versionButton("Previous version", "‹", article.dataset.versionPrevious || ""),
    status,
    versionButton("Next version", "›", article.dataset.versionNext || ""),
  );
  row.prepend(nav);
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
 * Put Edit on every user message and Regenerate on every answer (Retry on one that failed),
 * each a new version branching from there; none while a stream runs, nor a version switch.
 */
export function updateTurnActions(thread, { busy, streaming = null }) {
  const articles = [...thread.querySelectorAll("article.message:not([hidden])")];
  for (const article of articles) {
    const row = ensureActions(article);
    const canAct = !busy && article.dataset.messageId !== undefined;
    const canEdit =
      canAct && article.dataset.role === "user" && !article.classList.contains("is-editing");
    const canRegenerate = canAct && article.dataset.role === "assistant";
    // A failed or interrupted answer is retried; a completed or stopped one regenerated.
    const failed = [STATUS.FAILED, STATUS.INTERRUPTED].includes(article.dataset.status);
    setButton(row, "edit", canEdit, () =>
      makeButton({ label: "Edit message", className: "action-button", iconName: "edit" }),
    );
    setButton(row, "regenerate", canRegenerate && !failed, () =>
      makeButton({ label: "Regenerate", className: "action-button", iconName: "regenerate" }),
    );
    setButton(row, "retry", canRegenerate && failed, () =>
      makeButton({
        label: "Retry",
        className: "action-button retry-button",
        iconName: "regenerate",
        showLabel: true,
      }),
    );
    row.hidden = article === streaming || article.classList.contains("is-editing");
    for (const button of row.querySelectorAll('[data-action="version"]')) {
      button.disabled = busy || !button.dataset.target;
    }
    row.querySelector('[data-action="copy"]').hidden = !messageText(article).trim();
  }
}

// --- editing a user message ----------------------------------------------------

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
