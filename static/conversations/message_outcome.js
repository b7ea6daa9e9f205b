// How an answer ended: its status, and the marker line under it ("Stopped", the failure in
// plain words, "cut off"), the same whether it streamed here or was rendered by the server.

import { messageBody } from "./message_text.js";

export const STATUS = Object.freeze({
  STREAMING: "streaming",
  COMPLETED: "completed",
  STOPPED: "stopped",
  FAILED: "failed",
  // The server stopped while answering (a restart): the text so far is kept.
  INTERRUPTED: "interrupted",
});

const LENGTH_LIMIT_TEXT = "The answer was cut off (length limit).";

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
