// One turn at a time: the page's active turn begins (the composer busy, the answer
// waiting), streams its events (turn_stream.js), and ends: new versions and a generated
// title are looked for, and a message queued meanwhile is sent. Stop ends it early, on the
// server too. A turn the server refuses is undone.

import { newRequestId, openChatStream, stopTurn } from "./api.js";
import {
  clearError,
  conversationId,
  removePlaceholder,
  setBusy,
  showError,
} from "./chat_page.js";
import { saveDraft } from "./drafts.js";
import { STATUS } from "./message_outcome.js";
import { showWaitingIndicator } from "./message_thinking.js";
import { updateModelLabels } from "./messages.js";
import { refreshVersions } from "./thread_versions.js";
import { awaitGeneratedTitle } from "./titles.js";
import { finishTurn } from "./turn_events.js";
import { follow } from "./turn_stream.js";

// How long a stale tab shows why it will not act before it reloads the conversation.
const STALE_RELOAD_MS = 2500;
// After a Stop, how long the stream may take to end by itself (with the stopped answer's last
// event, and where the message was saved) before the page closes it.
const STOP_GRACE_MS = 3000;

/** Put a message's text back in the box (a refused or stopped send), and keep it. */
export function putTextBack(page, text) {
  page.composer.restore(text);
  saveDraft(conversationId(page), page.composer.value);
}

/** Make a turn the page's active turn: the composer busy, the answer waiting. */
export function beginTurn(
  page,
  { user, assistant, created = [], hidden = [], onReject = null, restoreText = "" },
) {
  showWaitingIndicator(assistant);
  const turn = {
    user,
    assistant,
    created,
    hidden,
    onReject,
    restoreText,
    controller: new AbortController(),
    // Chosen here, so that Stop can name the answer before the server says anything.
    requestId: newRequestId(),
    lastEventId: 0,
    started: false,
    stopped: false,
    finished: false,
    content: "",
    reasoning: "",
  };
  page.active = turn;
  setBusy(page, true);
  page.follower.toBottom();
  return turn;
}

export function endTurn(page, turn) {
  if (turn?.stopped && !turn.started && turn.restoreText) {
    // Stopped before the server saw the message: keep the text at hand.
    putTextBack(page, turn.restoreText);
  }
  page.active = null;
  setBusy(page, false);
  updateModelLabels(page.thread);
  page.follower.follow();
  if (turn?.branched && turn.started) {
    refreshVersions(page);
  }
  if (turn?.newConversation && turn.started && "generatedTitles" in page.layout.dataset) {
    awaitGeneratedTitle(page, turn.title);
  }
  const queued = page.composer.takeQueued();
  if (queued) {
    page.send(queued);
  } else if (!document.querySelector("dialog[open], .message-editor")) {
    page.composer.focus();
  }
}

/** Undo a turn the server did not accept: remove what we added, show what we hid. */
function reject(page, turn, message) {
  turn.finished = true;
  for (const article of turn.created) {
    article.remove();
  }
  for (const article of turn.hidden) {
    article.hidden = false;
  }
  showError(page, message);
  if (turn.onReject) {
    turn.onReject();
  }
}

/**
 * Stream one turn. `created` are the articles added for it (removed if the server refuses
 * the request), `hidden` the ones it replaces (shown again in that case).
 */
export async function runTurn(
  page,
  { body, user, assistant, created, hidden = [], onReject = null, restoreText = "" },
) {
  clearError(page);
  removePlaceholder(page);
  const turn = beginTurn(page, { user, assistant, created, hidden, onReject, restoreText });
  // A regenerate or an edit makes a new version: the switchers are refreshed at the end.
  turn.branched = body.action !== "send";
  turn.action = body.action; // told to this browser's other tabs once it starts

  assistant.dataset.model = body.model;
  assistant.dataset.modelLabel = page.modelSelect.selectedOptions[0]?.textContent || body.model;

  try {
    let response;
    try {
      response = await openChatStream(
        page.streamUrl,
        body,
        turn.controller.signal,
        turn.requestId,
      );
    } catch (error) {
      if (!turn.stopped) {
        reject(page, turn, error.message || "The request failed.");
        if (error.status === 409 && error.field === "message_id") {
          // Another tab changed this conversation: show it as it is now, not act on it.
          setTimeout(() => window.location.reload(), STALE_RELOAD_MS);
        }
      }
      return;
    }
    await follow(page, turn, response);
  } finally {
    endTurn(page, turn);
  }
}

/** Stop the active turn's answer: here at once, and on the server. */
export function stopAnswer(page) {
  const turn = page.active;
  if (!turn || turn.stopped) {
    return;
  }
  turn.stopped = true;
  page.composer.unqueue(); // stopping is not a cue to send what was typed meanwhile
  if (!turn.finished) {
    finishTurn(page, turn, STATUS.STOPPED);
  }
  if (!turn.requestId || !page.stopUrlTemplate) {
    turn.controller.abort();
    return;
  }
  // Ask the server to stop the answer wherever it runs, even before it has started (the
  // page chose its request ID: a Stop that overtakes its own request still stops it). The
  // stream then ends by itself, saying where the message was saved; it is closed here only
  // if it has not ended soon after (closing it alone would stop the answer too, but only
  // from this connection).
  stopTurn(page.stopUrlTemplate, turn.requestId)
    .catch(() => {})
    .finally(() => setTimeout(() => turn.controller.abort(), STOP_GRACE_MS));
}

/**
 * Escape stops the answer, wherever the focus is, unless something nearer uses Escape (an
 * editor, a rename, a dialog, the drawer on phones): those handle it first.
 */
export function stopOnEscape(page) {
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.shiftKey || event.defaultPrevented || !page.active) {
      return;
    }
    const drawerOpen = page.layout.classList.contains("sidebar-open");
    if (document.querySelector("dialog[open]") || drawerOpen) {
      return;
    }
    event.preventDefault();
    stopAnswer(page);
  });
}
