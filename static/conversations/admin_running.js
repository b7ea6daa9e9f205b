// The admin's live view of running answers. The list comes from one EventSource fed by the
// server's channel layer (`hello` starts afresh, `turn` adds or updates a row, `ended`
// removes it); watching an answer opens a second EventSource on that answer's own events
// (start, reasoning, delta, then done or error), the same events its owner gets. The answer
// is rendered as its owner sees it, through the chat's Markdown renderer and sanitizer
// (nothing in it can run); everything else is shown as text.
import { createMarkdownView } from "./markdown.js";

const root = document.querySelector(".running");
const tbody = root.querySelector("#running-turns tbody");
const empty = root.querySelector(".running-empty");
const state = root.querySelector(".running-state");
const panel = root.querySelector("#running-watch");
const csrfToken = root.querySelector("[name=csrfmiddlewaretoken]").value;

const rows = new Map(); // key -> { turn, tr, elapsed, seenAt }
let watching = null; // { key, source }

function cell(tr, text, className = "") {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  tr.append(td);
  return td;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function button(label, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `button ${className}`;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function formatElapsed(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(whole / 60);
  return minutes ? `${minutes} min ${String(whole % 60).padStart(2, "0")} s` : `${whole} s`;
}

function buildRow(turn) {
  const tr = document.createElement("tr");
  tr.dataset.key = turn.key;
  tr.dataset.requestId = turn.request_id;
  cell(tr, turn.user, "running-user");
  cell(tr, turn.model, "running-model");
  cell(tr, "", "running-conversation").append(link(turn.conversation_url, turn.conversation));
  cell(tr, turn.source === "api" ? "API" : "Web", "running-source");
  cell(tr, "", "running-figure running-tokens");
  cell(tr, "", "running-figure running-elapsed");
  cell(tr, turn.process, "running-process");
  const actions = cell(tr, "", "running-actions");
  actions.append(button("Watch", "running-watch-button", () => watch(turn.key)));
  if (turn.stop_url) {
    actions.append(button("Stop", "running-stop", (event) => stop(turn, event.currentTarget)));
  }
  return tr;
}

function upsert(turn) {
  let entry = rows.get(turn.key);
  if (!entry) {
    entry = { tr: buildRow(turn) };
    rows.set(turn.key, entry);
    tbody.append(entry.tr);
  }
  Object.assign(entry, { turn, elapsed: turn.elapsed, seenAt: performance.now() });
  entry.tr.querySelector(".running-tokens").textContent = String(turn.tokens);
  showElapsed(entry);
  empty.hidden = rows.size > 0;
}

function remove(key) {
  const entry = rows.get(key);
  if (entry) {
    entry.tr.remove();
    rows.delete(key);
  }
  empty.hidden = rows.size > 0;
}

function clear() {
  for (const key of [...rows.keys()]) {
    remove(key);
  }
}

function showElapsed(entry) {
  const seconds = entry.elapsed + (performance.now() - entry.seenAt) / 1000;
  entry.tr.querySelector(".running-elapsed").textContent = formatElapsed(seconds);
}

function setState(text, offline = false) {
  state.textContent = text;
  state.classList.toggle("running-offline", offline);
}

// --- watching one answer -------------------------------------------------------------

function watch(key) {
  const entry = rows.get(key);
  if (!entry) {
    return;
  }
  closeWatch();
  const { turn } = entry;
  panel.hidden = false;
  panel.classList.remove("running-watch-ended");
  panel.dataset.key = key;
  panel.querySelector(".running-watch-about").textContent =
    `${turn.user} · ${turn.model} · ${turn.conversation} · request ${turn.request_id}`;
  panel.querySelector(".running-watch-record").href = turn.answer_url;
  const answer = panel.querySelector(".running-watch-answer");
  const reasoning = panel.querySelector(".running-watch-reasoning");
  answer.textContent = "";
  // As its owner sees it: the chat's own renderer and sanitizer, one frame at a time.
  const view = createMarkdownView(answer);
  let text = "";
  reasoning.hidden = true;
  reasoning.querySelector(".running-watch-text").textContent = "";
  const watchState = panel.querySelector(".running-watch-state");
  watchState.textContent = "Watching…";
  entry.tr.classList.add("running-watched");

  const source = new EventSource(turn.watch_url);
  watching = { key, source };
  const ended = (state) => {
    view.flush();
    watchState.textContent = state;
    panel.classList.add("running-watch-ended");
    source.close();
  };
  source.addEventListener("delta", (event) => {
    text += JSON.parse(event.data).content;
    view.set(text);
  });
  source.addEventListener("reasoning", (event) => {
    reasoning.hidden = false;
    reasoning.querySelector(".running-watch-text").append(JSON.parse(event.data).content);
  });
  source.addEventListener("done", (event) => {
    ended(`Ended: ${JSON.parse(event.data).status}`);
  });
  source.addEventListener("error", (event) => {
    if (event instanceof MessageEvent) {
      // The turn's own `error` event: it failed or was interrupted.
      const data = JSON.parse(event.data);
      ended(`Ended: ${data.status} (${data.message})`);
    } else if (source.readyState === EventSource.CLOSED) {
      ended("Its events are no longer available; read the answer in its conversation.");
    } else {
      watchState.textContent = "Reconnecting…";
    }
  });
  source.addEventListener("open", () => {
    if (!panel.classList.contains("running-watch-ended")) {
      watchState.textContent = "Watching…";
    }
  });
  panel.scrollIntoView({ block: "nearest" });
}

function closeWatch() {
  if (watching) {
    watching.source.close();
    rows.get(watching.key)?.tr.classList.remove("running-watched");
    watching = null;
  }
}

panel.querySelector(".running-watch-close").addEventListener("click", () => {
  closeWatch();
  panel.hidden = true;
});

// --- stopping one --------------------------------------------------------------------

async function stop(turn, stopButton) {
  // Someone else's answer, cut short for good: ask first.
  const about = `${turn.user}'s answer (request ${turn.request_id})`;
  if (!window.confirm(`Stop ${about}? The user sees it end as stopped.`)) {
    return;
  }
  stopButton.disabled = true;
  try {
    const response = await fetch(turn.stop_url, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken },
      credentials: "same-origin",
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error?.message || `HTTP ${response.status}`);
    }
    stopButton.textContent = "Stopping…";
  } catch (error) {
    stopButton.disabled = false;
    setState(`Could not stop ${turn.request_id}: ${error.message}`, true);
  }
}

// --- the live list ---------------------------------------------------------------------

const list = new EventSource(root.dataset.eventsUrl);
list.addEventListener("hello", () => {
  clear();
  setState("Live: updates as answers start, grow and end.");
});
list.addEventListener("turn", (event) => upsert(JSON.parse(event.data)));
list.addEventListener("ended", (event) => remove(JSON.parse(event.data).key));
list.addEventListener("error", () => {
  if (list.readyState === EventSource.CLOSED) {
    setState("The live list stopped; reload the page.", true);
  } else {
    setState("Reconnecting…", true);
  }
});

setInterval(() => {
  for (const entry of rows.values()) {
    showElapsed(entry);
  }
}, 1000);
