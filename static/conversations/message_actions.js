// The row of buttons under a message: Copy on every one, Edit on a question, Regenerate (or
// Retry) on an answer, and the versions switcher (‹ 2 / 3 ›) of a message with versions.
// Which show depends on the thread's state, which chat.js passes in.

import { icon, makeButton } from "./dom.js";
import { STATUS } from "./message_outcome.js";
import { messageText } from "./message_text.js";

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

// --- edit, regenerate, retry ---------------------------------------------------

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
