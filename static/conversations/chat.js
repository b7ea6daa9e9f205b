// Chat page: sends a message to the stream endpoint and renders the
// Server-Sent Events answer as it arrives. Plain ES module, no dependencies.

const STATUS_STREAMING = "streaming";
const STATUS_COMPLETED = "completed";
const STATUS_STOPPED = "stopped";
const STATUS_FAILED = "failed";

const LENGTH_LIMIT_TEXT = "The answer was cut off (length limit).";
const NEAR_BOTTOM_PX = 48;

// ---------------------------------------------------------------------------
// SSE parsing
// ---------------------------------------------------------------------------

/**
 * Incremental Server-Sent Events parser.
 *
 * Feed it decoded text with push(); it calls onEvent({event, data, id}) once
 * per complete event (data lines joined with "\n"). Comment lines (":" ...)
 * are ignored. Lines may end in "\n", "\r\n" or "\r", and chunks may split
 * lines or events anywhere. Call end() when the stream closes: unlike the
 * browser's EventSource, a final event that lacks its trailing blank line is
 * still dispatched.
 */
export function createSseParser(onEvent) {
  let buffer = "";
  let eventType = "";
  let dataLines = [];
  let lastEventId = "";

  function reset() {
    eventType = "";
    dataLines = [];
  }

  function dispatch() {
    if (dataLines.length === 0) {
      reset();
      return;
    }
    const event = {
      event: eventType || "message",
      data: dataLines.join("\n"),
      id: lastEventId,
    };
    reset();
    onEvent(event);
  }

  function processLine(line) {
    if (line === "") {
      dispatch();
      return;
    }
    if (line.startsWith(":")) {
      return; // comment / keep-alive
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) {
      value = value.slice(1);
    }
    if (field === "event") {
      eventType = value;
    } else if (field === "data") {
      dataLines.push(value);
    } else if (field === "id" && !value.includes("\0")) {
      lastEventId = value;
    }
    // "retry" and unknown fields are ignored.
  }

  function push(chunk) {
    buffer += chunk;
    let lineStart = 0;
    let i = 0;
    while (i < buffer.length) {
      const code = buffer.charCodeAt(i);
      if (code === 10) {
        // "\n"
        processLine(buffer.slice(lineStart, i));
        i += 1;
        lineStart = i;
      } else if (code === 13) {
        // "\r": may be the first half of "\r\n" split across chunks.
        if (i + 1 >= buffer.length) {
          break;
        }
        processLine(buffer.slice(lineStart, i));
        i += buffer.charCodeAt(i + 1) === 10 ? 2 : 1;
        lineStart = i;
      } else {
        i += 1;
      }
    }
    buffer = buffer.slice(lineStart);
  }

  function end() {
    let rest = buffer;
    buffer = "";
    if (rest.endsWith("\r")) {
      rest = rest.slice(0, -1);
    }
    if (rest !== "") {
      processLine(rest);
    }
    dispatch();
  }

  return { push, end };
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

function readCookie(name) {
  const prefix = `${name}=`;
  for (const part of document.cookie ? document.cookie.split(";") : []) {
    const item = part.trim();
    if (item.startsWith(prefix)) {
      return decodeURIComponent(item.slice(prefix.length));
    }
  }
  return "";
}

function csrfToken(form) {
  const fromCookie = readCookie("csrftoken");
  if (fromCookie) {
    return fromCookie;
  }
  const input = form.querySelector("input[name='csrfmiddlewaretoken']");
  return input ? input.value : "";
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function fallbackErrorMessage(status) {
  if (status === 403) {
    return "Your session may have expired. Reload the page and try again.";
  }
  if (status === 429) {
    return "Too many requests. Wait a moment and try again.";
  }
  if (status >= 500) {
    return `The server had a problem (error ${status}). Try again later.`;
  }
  return `The request failed (error ${status}).`;
}

/** Reads `{"error": {"message": "..."}}` from a failed response. */
async function readErrorMessage(response) {
  let body = null;
  try {
    body = parseJson(await response.text());
  } catch {
    body = null;
  }
  const error = body && body.error;
  if (error && typeof error === "object" && typeof error.message === "string" && error.message) {
    return error.message;
  }
  if (typeof error === "string" && error) {
    return error;
  }
  return fallbackErrorMessage(response.status);
}

function isEventStream(response) {
  const type = response.headers.get("Content-Type") || "";
  return type.toLowerCase().startsWith("text/event-stream");
}

/** The form's conversation id as a number, or null for a new chat. */
function currentConversationId(form) {
  const id = Number.parseInt(form.dataset.conversationId || "", 10);
  return Number.isInteger(id) && id > 0 ? id : null;
}

function conversationUrl(newChatUrl, conversationId) {
  const base = newChatUrl.endsWith("/") ? newChatUrl : `${newChatUrl}/`;
  return `${base}${encodeURIComponent(conversationId)}/`;
}

// ---------------------------------------------------------------------------
// Message articles
// ---------------------------------------------------------------------------

function createMessageArticle(role, status) {
  const article = document.createElement("article");
  article.className = `message message-${role}`;
  article.dataset.role = role;
  article.dataset.status = status;
  const body = document.createElement("div");
  body.className = "message-body";
  article.append(body);
  return article;
}

function messageBody(article) {
  return article.querySelector(".message-body");
}

function showWaitingIndicator(article) {
  const waiting = document.createElement("span");
  waiting.className = "waiting-indicator";
  waiting.setAttribute("aria-label", "Waiting for the answer");
  waiting.textContent = "…";
  messageBody(article).replaceChildren(waiting);
}

function removeWaitingIndicator(article) {
  const waiting = article.querySelector(".waiting-indicator");
  if (waiting) {
    waiting.remove();
  }
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

function setStatusMarker(article, text) {
  let marker = article.querySelector(".message-status");
  if (!text) {
    if (marker) {
      marker.remove();
    }
    return;
  }
  if (!marker) {
    marker = document.createElement("p");
    marker.className = "message-status";
    article.append(marker);
  }
  marker.textContent = text;
}

function markerFor(status, message) {
  if (status === STATUS_STOPPED) {
    return "Stopped";
  }
  if (status === STATUS_FAILED) {
    return `Failed: ${message || "unknown error"}`;
  }
  return "";
}

// ---------------------------------------------------------------------------
// The chat page
// ---------------------------------------------------------------------------

function initChat() {
  const form = document.getElementById("composer");
  const thread = document.getElementById("thread");
  if (!form || !thread) {
    return;
  }
  const textarea = document.getElementById("message-input");
  const modelSelect = document.getElementById("model-select");
  const sendButton = document.getElementById("send-button");
  const stopButton = document.getElementById("stop-button");
  const errorBox = document.getElementById("composer-error");
  const conversationList = document.getElementById("conversation-list");
  const newChatLink = document.getElementById("new-chat");
  const newChatUrl = (newChatLink && newChatLink.getAttribute("href")) || "/chat/";

  let active = null; // the stream in progress, if any

  // --- scrolling -----------------------------------------------------------

  function isNearBottom() {
    return thread.scrollHeight - thread.scrollTop - thread.clientHeight <= NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    thread.scrollTop = thread.scrollHeight;
  }

  /** Runs a DOM update, then keeps following the stream if we were at the bottom. */
  function followingScroll(update) {
    const follow = isNearBottom();
    update();
    if (follow) {
      scrollToBottom();
    }
  }

  // --- composer state ------------------------------------------------------

  function showError(message) {
    errorBox.textContent = message;
  }

  function clearError() {
    errorBox.textContent = "";
  }

  function setBusy(busy) {
    textarea.disabled = busy;
    sendButton.disabled = busy;
    stopButton.hidden = !busy;
    thread.setAttribute("aria-busy", busy ? "true" : "false");
  }

  function restoreInput(text) {
    if (!textarea.value) {
      textarea.value = text;
    }
  }

  // --- sidebar -------------------------------------------------------------

  function findConversationItem(conversationId, url) {
    for (const item of conversationList.children) {
      const link = item.querySelector("a");
      if (
        item.dataset.conversationId === String(conversationId) ||
        (link && link.getAttribute("href") === url)
      ) {
        return item;
      }
    }
    return null;
  }

  function upsertConversation(conversationId, title) {
    if (!conversationList) {
      return;
    }
    const url = conversationUrl(newChatUrl, conversationId);
    let item = findConversationItem(conversationId, url);
    let link = item && item.querySelector("a");
    if (!item || !link) {
      item = document.createElement("li");
      link = document.createElement("a");
      link.href = url;
      link.textContent = title || "New chat";
      item.append(link);
    } else if (title) {
      link.textContent = title;
    }
    item.dataset.conversationId = String(conversationId);
    for (const current of conversationList.querySelectorAll("[aria-current]")) {
      current.removeAttribute("aria-current");
    }
    link.setAttribute("aria-current", "page");
    conversationList.prepend(item);
  }

  // --- stream events -------------------------------------------------------

  function finishWith(stream, status, marker) {
    stream.finished = true;
    removeWaitingIndicator(stream.assistant);
    followingScroll(() => {
      stream.assistant.dataset.status = status;
      setStatusMarker(stream.assistant, marker);
    });
  }

  function onStart(stream, data) {
    stream.started = true;
    const conversationId = data.conversation;
    if (conversationId === undefined || conversationId === null) {
      return;
    }
    const wasNew = currentConversationId(form) === null;
    form.dataset.conversationId = String(conversationId);
    if (data.user_message !== undefined) {
      stream.user.dataset.messageId = String(data.user_message);
    }
    if (data.assistant_message !== undefined) {
      stream.assistant.dataset.messageId = String(data.assistant_message);
    }
    if (wasNew) {
      history.replaceState(history.state, "", conversationUrl(newChatUrl, conversationId));
    }
    if (data.title) {
      document.title = `${data.title} · chatsite`;
    }
    upsertConversation(conversationId, data.title);
  }

  function onDelta(stream, data) {
    const content = typeof data.content === "string" ? data.content : "";
    if (!content) {
      return;
    }
    followingScroll(() => {
      removeWaitingIndicator(stream.assistant);
      if (stream.sawReasoning && !stream.foldedReasoning) {
        const details = stream.assistant.querySelector("details.reasoning");
        if (details) {
          details.open = false;
        }
        stream.foldedReasoning = true;
      }
      messageBody(stream.assistant).textContent += content;
    });
  }

  function onReasoning(stream, data) {
    const content = typeof data.content === "string" ? data.content : "";
    if (!content) {
      return;
    }
    followingScroll(() => {
      const details = ensureReasoning(stream.assistant);
      stream.sawReasoning = true;
      details.querySelector(".reasoning-body").textContent += content;
    });
  }

  function onDone(stream, data) {
    const status = [STATUS_COMPLETED, STATUS_STOPPED, STATUS_FAILED].includes(data.status)
      ? data.status
      : STATUS_COMPLETED;
    let marker;
    if (data.finish_reason === "length") {
      marker = LENGTH_LIMIT_TEXT;
    } else if (status === STATUS_FAILED && stream.errorMessage) {
      marker = markerFor(status, stream.errorMessage); // keep the error event's text
    } else {
      const message = (data.error && data.error.message) || data.error || data.message;
      marker = markerFor(status, typeof message === "string" ? message : "");
    }
    finishWith(stream, status, marker);
  }

  function onError(stream, data) {
    const message = (data && typeof data.message === "string" && data.message) || "unknown error";
    stream.errorMessage = message;
    finishWith(stream, STATUS_FAILED, markerFor(STATUS_FAILED, message));
  }

  const handlers = {
    start: onStart,
    delta: onDelta,
    reasoning: onReasoning,
    done: onDone,
    error: onError,
  };

  function handleEvent(stream, { event, data }) {
    const handler = handlers[event];
    if (!handler || stream.stopped) {
      return;
    }
    const payload = parseJson(data);
    if (payload === null || typeof payload !== "object") {
      console.warn(`chat: ignoring malformed "${event}" event`, data);
      return;
    }
    handler(stream, payload);
  }

  // --- sending -------------------------------------------------------------

  /** Undo the optimistic articles after a request the server did not accept. */
  function rejectRequest(stream, message) {
    stream.finished = true;
    stream.user.remove();
    stream.assistant.remove();
    restoreInput(stream.text);
    showError(message);
  }

  async function readStream(stream, response) {
    const parser = createSseParser((event) => handleEvent(stream, event));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        break;
      }
      parser.push(decoder.decode(value, { stream: true }));
    }
    parser.push(decoder.decode());
    parser.end();
  }

  async function runStream(stream, body) {
    let response;
    try {
      response = await fetch(form.dataset.streamUrl, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "X-CSRFToken": csrfToken(form),
          Accept: "text/event-stream",
        },
        body: JSON.stringify(body),
        signal: stream.controller.signal,
        credentials: "same-origin",
      });
    } catch {
      if (!stream.stopped) {
        rejectRequest(stream, "Could not reach the server. Check your connection and try again.");
      }
      return;
    }

    if (!response.ok) {
      rejectRequest(stream, await readErrorMessage(response));
      return;
    }
    if (response.redirected && !isEventStream(response)) {
      rejectRequest(stream, "Your session has expired. Reload the page and log in again.");
      return;
    }
    if (!isEventStream(response) || !response.body) {
      rejectRequest(stream, "Unexpected response from the server. Reload the page and try again.");
      return;
    }

    try {
      await readStream(stream, response);
    } catch {
      if (!stream.stopped && !stream.finished) {
        finishWith(stream, STATUS_FAILED, markerFor(STATUS_FAILED, "the connection was interrupted."));
      }
      return;
    }
    if (!stream.stopped && !stream.finished) {
      finishWith(
        stream,
        STATUS_FAILED,
        markerFor(STATUS_FAILED, "the connection closed before the answer was complete."),
      );
    }
  }

  async function send(text) {
    clearError();
    const placeholder = thread.querySelector(".thread-empty");
    if (placeholder) {
      placeholder.remove();
    }

    const user = createMessageArticle("user", STATUS_COMPLETED);
    messageBody(user).textContent = text;
    const assistant = createMessageArticle("assistant", STATUS_STREAMING);
    showWaitingIndicator(assistant);
    thread.append(user, assistant);
    scrollToBottom();

    const stream = {
      text,
      user,
      assistant,
      controller: new AbortController(),
      started: false,
      stopped: false,
      finished: false,
      sawReasoning: false,
      foldedReasoning: false,
      errorMessage: "",
    };
    active = stream;
    textarea.value = "";
    setBusy(true);

    try {
      await runStream(stream, {
        message: text,
        model: modelSelect.value,
        conversation: currentConversationId(form),
      });
    } finally {
      active = null;
      setBusy(false);
      textarea.focus();
    }
  }

  function stop() {
    const stream = active;
    if (!stream || stream.stopped) {
      return;
    }
    stream.stopped = true;
    if (!stream.finished) {
      finishWith(stream, STATUS_STOPPED, markerFor(STATUS_STOPPED));
      if (!stream.started) {
        // The server may never have seen the message: keep the text at hand.
        restoreInput(stream.text);
      }
    }
    stream.controller.abort();
  }

  // --- wiring --------------------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (active) {
      return;
    }
    const text = textarea.value;
    if (!text.trim()) {
      return;
    }
    send(text);
  });

  textarea.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
      return;
    }
    event.preventDefault();
    if (!active && textarea.value.trim()) {
      form.requestSubmit();
    }
  });

  stopButton.addEventListener("click", stop);

  scrollToBottom();
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", initChat);
  } else {
    initChat();
  }
}
