// Answers this page follows without having asked for them: the last answer, still being
// written when the page was opened (or reloaded); one another tab of this browser asked for
// in this conversation; and one whose connection was lost, followed again by its Retry.

import { removePlaceholder } from "./chat_page.js";
import { STATUS, setOutcome } from "./message_outcome.js";
import { messageText, reasoningText, setUserText } from "./message_text.js";
import { createMessageArticle } from "./messages.js";
import { beginTurn, endTurn } from "./turns.js";
import { follow } from "./turn_stream.js";

function previousUserArticle(assistant) {
  let user = assistant.previousElementSibling;
  while (user && !user.matches('article.message[data-role="user"]')) {
    user = user.previousElementSibling;
  }
  return user;
}

function lastArticle(page, role) {
  const articles = page.thread.querySelectorAll(
    `article.message[data-role="${role}"]:not([hidden])`,
  );
  return articles.length ? articles[articles.length - 1] : null;
}

/**
 * Follow the answer in `assistant` (started, with its request ID): from its first event,
 * or, with `afterEvent`, on from the text it shows, which holds the events up to that one.
 */
async function followAnswer(page, assistant, afterEvent = 0) {
  const turn = beginTurn(page, { user: previousUserArticle(assistant), assistant });
  turn.requestId = assistant.dataset.requestId;
  turn.started = true;
  if (afterEvent > 0) {
    turn.lastEventId = afterEvent;
    turn.content = messageText(assistant);
    turn.reasoning = reasoningText(assistant);
  }
  try {
    await follow(page, turn, null);
  } finally {
    endTurn(page, turn);
  }
}

/** Follow again an answer whose connection was lost: the server may have finished it. */
export async function refollow(page, assistant) {
  if (page.active || !assistant.dataset.requestId) {
    return;
  }
  delete assistant.dataset.lostConnection;
  delete assistant.dataset.error;
  // Followed from its first event, the answer is drawn again as it streams.
  setOutcome(assistant, { status: STATUS.STREAMING });
  await followAnswer(page, assistant);
}

/**
 * The page was opened (or reloaded, or opened in another tab) while its last answer is
 * still being written: show it growing, never an empty bubble. The server put in the page
 * the text it last checkpointed and the event that text reaches: the answer goes on from
 * the next one (from its first, before any checkpoint).
 */
export async function resumeStreamingAnswer(page) {
  const assistant = lastArticle(page, "assistant");
  const streaming = assistant && assistant.dataset.status === STATUS.STREAMING;
  if (!streaming || !assistant.dataset.requestId) {
    return;
  }
  const lastEventId = Number.parseInt(assistant.dataset.lastEventId || "", 10);
  await followAnswer(page, assistant, lastEventId || 0);
}

/** Show a message another tab sent in this conversation, and its answer growing. */
export async function followOtherTabsTurn(page, requestId, text) {
  removePlaceholder(page);
  const user = createMessageArticle("user", STATUS.COMPLETED);
  setUserText(user, text);
  const assistant = createMessageArticle("assistant", STATUS.STREAMING);
  assistant.dataset.requestId = requestId;
  page.thread.append(user, assistant);
  const turn = beginTurn(page, { user, assistant });
  turn.requestId = requestId;
  try {
    await follow(page, turn, null);
  } finally {
    endTurn(page, turn);
  }
}
