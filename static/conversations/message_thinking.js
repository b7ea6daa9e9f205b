// While an answer is awaited and while the model thinks: the waiting dots, and the Thinking
// section above the answer, open while reasoning streams and folded (with how long it took)
// once the answer starts.

import { messageBody, reasoningView } from "./message_text.js";

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

/** The Thinking section of an answer (made on first use, open). */
export function ensureReasoning(article) {
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
export function thoughtFor(ms) {
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
  reasoningView(article, details.querySelector(".reasoning-body"), onRender).set(text);
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
