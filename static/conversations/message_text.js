// A message's text: what the user typed, or the Markdown of an answer and its reasoning,
// each rendered by a Markdown view (markdown.js) that streaming and page load share. The
// views are kept per article here, so that the raw text can be read back (Copy, Retry).

import { createMarkdownView } from "./markdown.js";

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

/** The Markdown view of an answer's reasoning, rendered into `element` (made on first use). */
export function reasoningView(article, element, onRender) {
  const state = stateOf(article);
  if (!state.reasoning) {
    state.reasoning = createMarkdownView(element, { onRender });
  } else if (onRender) {
    state.reasoning.onRender = onRender;
  }
  return state.reasoning;
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

/** Take over the text the server put in the page: rendered as a stream's text would be. */
export function hydrateText(article) {
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
  }
}
