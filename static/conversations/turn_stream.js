// Following a turn's events to its end. The answer is written on the server whether or not
// this page reads it, so a stream that breaks off (or a turn opened from a reload, with no
// stream yet) is followed again from the last event received, from the turn's events URL.

import { openTurnEvents } from "./api.js";
import { STATUS } from "./message_outcome.js";
import { readEventStream } from "./sse.js";
import { finishTurn, handleEvent } from "./turn_events.js";

// A dropped stream is re-attached (the answer goes on being written on the server): at once,
// then after pauses that double up to REATTACH_MAX_PAUSE_MS, and at once when the browser is
// back online, for as long as the answer may still be written: the server says when it has
// ended. A page that gave up after a few seconds showed "Failed" while the answer finished,
// and its Retry asked for a second one.
const REATTACH_PAUSE_MS = 500;
const REATTACH_MAX_PAUSE_MS = 10_000;
const REATTACH_GIVE_UP_MS = 15 * 60 * 1000;
const CONNECTION_LOST =
  "The connection was lost. Retry to follow the answer, or reload the page to see it.";

// What reattach() returns when the turn is not to be followed any further.
const DONE_FOLLOWING = Symbol("done following");

/** Wait `ms`, or less: until the browser is back online, when it was offline. */
function pauseUntilOnline(ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener("online", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    window.addEventListener("online", done);
  });
}

/** The connection is lost for good: say so, and let Retry follow the answer again. */
function giveUp(page, turn) {
  finishTurn(page, turn, STATUS.FAILED, { error: CONNECTION_LOST });
  if (turn.requestId) {
    // Its Retry follows the answer again, never asks for another one.
    turn.assistant.dataset.requestId = turn.requestId;
    turn.assistant.dataset.lostConnection = "";
  }
}

/**
 * Open the turn's events again, after the last one received: the response, null when the
 * server could not be reached (try again), or DONE_FOLLOWING. `retry` counts the attempts
 * since events last came, and says since when they have not.
 */
async function reattach(page, turn, retry) {
  retry.lostAt ??= Date.now();
  const tooLong = Date.now() - retry.lostAt > REATTACH_GIVE_UP_MS;
  if (!turn.requestId || !page.eventsUrlTemplate || tooLong) {
    giveUp(page, turn);
    return DONE_FOLLOWING;
  }
  if (retry.attempt > 0) {
    const pause = Math.min(REATTACH_PAUSE_MS * 2 ** (retry.attempt - 1), REATTACH_MAX_PAUSE_MS);
    await pauseUntilOnline(navigator.onLine ? pause : REATTACH_GIVE_UP_MS);
  }
  retry.attempt += 1;
  let response;
  try {
    response = await openTurnEvents(
      page.eventsUrlTemplate,
      turn.requestId,
      turn.lastEventId,
      turn.controller.signal,
    );
  } catch (error) {
    if (turn.stopped || turn.finished || error.name === "AbortError") {
      return DONE_FOLLOWING;
    }
    if (error.status) {
      // The server answered: the events are gone (410) or not ours; retrying won't help.
      finishTurn(page, turn, STATUS.FAILED, { error: error.message });
      return DONE_FOLLOWING;
    }
    return null; // the server could not be reached: try again
  }
  if (response === null) {
    // Nothing follows the last event we have, yet we never saw the end: reload.
    window.location.reload();
    return DONE_FOLLOWING;
  }
  return response;
}

/**
 * Read the turn's events to its end: from `response`, then, if it breaks off, from the
 * turn's events URL (at once when `response` is null: a turn opened from a reload).
 */
export async function follow(page, turn, response) {
  const onEvent = (event) => handleEvent(page, turn, event);
  if (response !== null && turn.stopped && !turn.started) {
    // Stopped before the server said anything: read on only to learn where the message
    // was saved (its `start`); the stream ends by itself with the stopped answer.
    try {
      await readEventStream(response, onEvent);
    } catch {
      // Closed after STOP_GRACE_MS (turns.js), or the connection broke: the text is restored.
    }
    return;
  }
  const retry = { attempt: 0, lostAt: null };
  let stream = response;
  while (!turn.stopped && !turn.finished) {
    if (stream === null) {
      stream = await reattach(page, turn, retry);
      if (stream === DONE_FOLLOWING) {
        return;
      }
      if (stream === null) {
        continue;
      }
    }
    const before = turn.lastEventId;
    try {
      await readEventStream(stream, onEvent);
    } catch {
      // The stream broke off: re-attach below, unless the turn ended or was stopped.
    }
    stream = null;
    if (turn.lastEventId > before) {
      retry.attempt = 0;
      retry.lostAt = null;
    }
  }
}
