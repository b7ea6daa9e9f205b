// A turn's events, as the chat stream and the turn's events URL send them, applied to the
// page: `start` names the messages and the conversation, `reasoning` and `delta` grow the
// answer, and `done` or `error` show how it ended.

import { conversationId, conversationUrl } from "./chat_page.js";
import { STATUS, setOutcome } from "./message_outcome.js";
import { flushMessage, setAnswerText } from "./message_text.js";
import { foldReasoning, removeWaitingIndicator, setReasoningText } from "./message_thinking.js";
import { updateModelLabels } from "./messages.js";
import { setTitle } from "./titles.js";
import { keepUnsaved } from "./unsaved.js";

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** End the turn's answer as `status`: its text rendered, its outcome shown. */
export function finishTurn(page, turn, status, { error = "", finishReason = "" } = {}) {
  turn.finished = true;
  flushMessage(turn.assistant);
  removeWaitingIndicator(turn.assistant);
  foldReasoning(turn.assistant);
  setOutcome(turn.assistant, { status, error, finishReason });
  page.follower.follow();
}

/** Remove the messages the turn replaces (the answer regenerated, the message edited). */
function removeReplaced(page, turn, replaces) {
  const replaced = new Set((Array.isArray(replaces) ? replaces : []).map(String));
  for (const article of page.thread.querySelectorAll("article.message")) {
    const mine = article === turn.user || article === turn.assistant;
    if (!mine && (turn.hidden.includes(article) || replaced.has(article.dataset.messageId))) {
      article.remove();
    }
  }
  turn.hidden = [];
}

/** The server named the turn's conversation: a new one gets its URL, heading and sidebar item. */
function enterConversation(page, turn, id, title) {
  if (turn.action) {
    page.otherTabs.announce(turn, id, title);
  }
  const wasNew = conversationId(page) === null;
  turn.newConversation = wasNew;
  turn.title = title;
  page.form.dataset.conversationId = String(id);
  if (wasNew) {
    history.replaceState(history.state, "", conversationUrl(page, id));
  }
  if (title) {
    setTitle(page, title);
  }
  page.sidebar.upsert(id, title);
}

function onStart(page, turn, data) {
  turn.started = true;
  if (typeof data.request_id === "string") {
    turn.requestId = data.request_id;
  }
  if (data.user_message !== undefined && data.user_message !== null) {
    turn.user.dataset.messageId = String(data.user_message);
  }
  if (data.assistant_message !== undefined && data.assistant_message !== null) {
    turn.assistant.dataset.messageId = String(data.assistant_message);
  }
  removeReplaced(page, turn, data.replaces);
  if (data.conversation !== undefined && data.conversation !== null) {
    enterConversation(page, turn, data.conversation, data.title || "");
  }
  updateModelLabels(page.thread);
}

function onReasoning(page, turn, data) {
  const content = typeof data.content === "string" ? data.content : "";
  if (!content) {
    return;
  }
  turn.reasoning += content;
  removeWaitingIndicator(turn.assistant);
  setReasoningText(turn.assistant, turn.reasoning, page.follower.follow);
}

function onDelta(page, turn, data) {
  const content = typeof data.content === "string" ? data.content : "";
  if (!content) {
    return;
  }
  turn.content += content;
  foldReasoning(turn.assistant);
  setAnswerText(turn.assistant, turn.content, page.follower.follow);
}

function onDone(page, turn, data) {
  const status = Object.values(STATUS).includes(data.status) ? data.status : STATUS.COMPLETED;
  const message = typeof data.message === "string" ? data.message : "";
  finishTurn(page, turn, status === STATUS.STREAMING ? STATUS.COMPLETED : status, {
    error: message,
    finishReason: typeof data.finish_reason === "string" ? data.finish_reason : "",
  });
  keepIfUnsaved(page, turn, data);
}

function onError(page, turn, data) {
  const message = typeof data.message === "string" ? data.message : "";
  // A server restart ends a turn "interrupted" (its text is kept); the rest "failed".
  const status = data.status === STATUS.INTERRUPTED ? STATUS.INTERRUPTED : STATUS.FAILED;
  finishTurn(page, turn, status, { error: message });
  keepIfUnsaved(page, turn, data);
}

// The server could record the answer nowhere: this browser keeps what the user saw.
function keepIfUnsaved(page, turn, data) {
  if (data.record === "unsaved" && turn.content) {
    keepUnsaved(turn.assistant, turn.content);
    page.follower.follow();
  }
}

const handlers = {
  start: onStart,
  reasoning: onReasoning,
  delta: onDelta,
  done: onDone,
  error: onError,
};

/** Apply one event ({event, data, id} from sse.js) of the turn to the page. */
export function handleEvent(page, turn, { event, data, id }) {
  const eventId = Number.parseInt(id, 10);
  if (eventId > turn.lastEventId) {
    turn.lastEventId = eventId;
  }
  const handler = handlers[event];
  // After a Stop only `start` counts: it says where the message was saved, when the Stop
  // came before the server had said anything.
  if (!handler || ((turn.stopped || turn.finished) && event !== "start")) {
    return;
  }
  const payload = parseJson(data);
  if (payload === null || typeof payload !== "object") {
    console.warn(`chat: ignoring malformed "${event}" event`, data);
    return;
  }
  handler(page, turn, payload);
}
