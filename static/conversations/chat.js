// The chat page: wires the composer, the sidebar and the thread together and runs each
// turn (send, regenerate, edit) as one streamed request. The other modules each do one
// job: sse.js (event streams), api.js (requests), markdown.js + codeblocks.js (rendering),
// messages.js (message articles), composer.js, sidebar.js, scroll.js, clipboard.js.

import {
  getConversation,
  newRequestId,
  openChatStream,
  openTurnEvents,
  showVersion,
  stopTurn,
} from "./api.js";
import { handleCodeCopy } from "./codeblocks.js";
import { copyText, showCopied } from "./clipboard.js";
import { createComposer } from "./composer.js";
import { setVersions, updateTurnActions } from "./message_actions.js";
import { openEditor } from "./message_editor.js";
import { STATUS, setOutcome } from "./message_outcome.js";
import {
  flushMessage,
  messageText,
  reasoningText,
  setAnswerText,
  setUserText,
} from "./message_text.js";
import {
  foldReasoning,
  removeWaitingIndicator,
  setReasoningText,
  showWaitingIndicator,
} from "./message_thinking.js";
import {
  articleFromJson,
  createMessageArticle,
  hydrateMessage,
  messageId,
  updateModelLabels,
} from "./messages.js";
import { createScrollFollower } from "./scroll.js";
import { readEventStream } from "./sse.js";
import { createSidebar } from "./sidebar.js";
import { initShortcuts } from "./shortcuts.js";
import { loadDraft, pruneDrafts, saveDraft } from "./drafts.js";
import { keepUnsaved, keptText, pruneUnsaved, restoreUnsaved } from "./unsaved.js";

// How long a stale tab shows why it will not act before it reloads the conversation.
const STALE_RELOAD_MS = 2500;
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
// After a Stop, how long the stream may take to end by itself (with the stopped answer's last
// event, and where the message was saved) before the page closes it.
const STOP_GRACE_MS = 3000;
// A generated title comes a moment after the first answer: checked this many times, so far
// apart.
const TITLE_CHECKS = 5;
const TITLE_CHECK_PAUSE_MS = 1500;

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

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function initChat() {
  const form = document.getElementById("composer");
  const thread = document.getElementById("thread");
  if (!form || !thread) {
    return;
  }
  const layout = document.querySelector(".chat-layout");
  const modelSelect = document.getElementById("model-select");
  const errorBox = document.getElementById("composer-error");
  const titleHeading = document.getElementById("chat-title");
  const newChatLink = document.getElementById("new-chat");
  const newChatUrl = (newChatLink && newChatLink.getAttribute("href")) || "/chat/";
  const streamUrl = form.dataset.streamUrl;
  const stopUrlTemplate = form.dataset.stopUrl;
  const eventsUrlTemplate = form.dataset.eventsUrl;

  let active = null; // the turn being streamed, if any

  const follower = createScrollFollower(thread, document.getElementById("jump-to-latest"));

  const composer = createComposer({
    form,
    textarea: document.getElementById("message-input"),
    sendButton: document.getElementById("send-button"),
    stopButton: document.getElementById("stop-button"),
    hint: document.getElementById("composer-hint"),
    modelSelect,
    onSend: send,
    onStop: stop,
  });
  // What is typed is kept as the conversation's draft, in this browser (drafts.js).
  form.querySelector("#message-input").addEventListener("input", () => {
    saveDraft(currentConversationId(), composer.value);
  });

  /** Put a message's text back in the box (a refused or stopped send), and keep it. */
  function putTextBack(text) {
    composer.restore(text);
    saveDraft(currentConversationId(), composer.value);
  }

  function currentConversationId() {
    const id = Number.parseInt(form.dataset.conversationId || "", 10);
    return Number.isInteger(id) && id > 0 ? id : null;
  }

  function conversationUrl(id) {
    const base = newChatUrl.endsWith("/") ? newChatUrl : `${newChatUrl}/`;
    return `${base}${encodeURIComponent(id)}/`;
  }

  function setTitle(title) {
    if (titleHeading) {
      titleHeading.textContent = title;
    }
    document.title = `${title} · chatsite`;
  }

  const sidebar = createSidebar({
    layout,
    sidebar: document.getElementById("sidebar"),
    list: document.getElementById("conversation-list"),
    toggle: document.getElementById("sidebar-toggle"),
    closeButton: document.getElementById("sidebar-close"),
    backdrop: document.getElementById("sidebar-backdrop"),
    dialog: document.getElementById("delete-dialog"),
    itemTemplate: document.getElementById("conversation-item-template"),
    statusBox: document.getElementById("sidebar-status"),
    apiUrl: layout.dataset.apiUrl,
    newChatUrl,
    currentConversationId,
    onRenamed(id, title) {
      if (id === currentConversationId()) {
        setTitle(title);
      }
    },
    onDeleted(id, wasOpen) {
      if (wasOpen) {
        active?.controller.abort();
        window.location.assign(newChatUrl);
      }
    },
  });

  // --- page state ----------------------------------------------------------

  function showError(message) {
    errorBox.textContent = message;
  }

  function clearError() {
    errorBox.textContent = "";
  }

  function refreshActions() {
    updateTurnActions(thread, { busy: active !== null, streaming: active?.assistant ?? null });
  }

  function setBusy(busy) {
    composer.setBusy(busy);
    thread.setAttribute("aria-busy", busy ? "true" : "false");
    refreshActions();
  }

  function removePlaceholder() {
    thread.querySelector(".thread-empty")?.remove();
  }

  // --- stream events -------------------------------------------------------

  function finish(turn, status, { error = "", finishReason = "" } = {}) {
    turn.finished = true;
    flushMessage(turn.assistant);
    removeWaitingIndicator(turn.assistant);
    foldReasoning(turn.assistant);
    setOutcome(turn.assistant, { status, error, finishReason });
    follower.follow();
  }

  function onStart(turn, data) {
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
    // The server hid these messages (the answer regenerated, the message edited).
    const replaced = new Set((Array.isArray(data.replaces) ? data.replaces : []).map(String));
    for (const article of thread.querySelectorAll("article.message")) {
      const mine = article === turn.user || article === turn.assistant;
      if (!mine && (turn.hidden.includes(article) || replaced.has(article.dataset.messageId))) {
        article.remove();
      }
    }
    turn.hidden = [];

    const conversationId = data.conversation;
    if (turn.action && conversationId !== undefined && conversationId !== null) {
      announceTurn(turn, conversationId, data.title || "");
    }
    if (conversationId !== undefined && conversationId !== null) {
      const wasNew = currentConversationId() === null;
      turn.newConversation = wasNew;
      turn.title = data.title || "";
      form.dataset.conversationId = String(conversationId);
      if (wasNew) {
        history.replaceState(history.state, "", conversationUrl(conversationId));
      }
      if (data.title) {
        setTitle(data.title);
      }
      sidebar.upsert(conversationId, data.title);
    }
    updateModelLabels(thread);
  }

  function onReasoning(turn, data) {
    const content = typeof data.content === "string" ? data.content : "";
    if (!content) {
      return;
    }
    turn.reasoning += content;
    removeWaitingIndicator(turn.assistant);
    setReasoningText(turn.assistant, turn.reasoning, follower.follow);
  }

  function onDelta(turn, data) {
    const content = typeof data.content === "string" ? data.content : "";
    if (!content) {
      return;
    }
    turn.content += content;
    foldReasoning(turn.assistant);
    setAnswerText(turn.assistant, turn.content, follower.follow);
  }

  function onDone(turn, data) {
    const status = Object.values(STATUS).includes(data.status) ? data.status : STATUS.COMPLETED;
    const message = typeof data.message === "string" ? data.message : "";
    finish(turn, status === STATUS.STREAMING ? STATUS.COMPLETED : status, {
      error: message,
      finishReason: typeof data.finish_reason === "string" ? data.finish_reason : "",
    });
    keepIfUnsaved(turn, data);
  }

  function onError(turn, data) {
    const message = typeof data.message === "string" ? data.message : "";
    // A server restart ends a turn "interrupted" (its text is kept); the rest "failed".
    const status = data.status === STATUS.INTERRUPTED ? STATUS.INTERRUPTED : STATUS.FAILED;
    finish(turn, status, { error: message });
    keepIfUnsaved(turn, data);
  }

  // The server could record the answer nowhere: this browser keeps what the user saw.
  function keepIfUnsaved(turn, data) {
    if (data.record === "unsaved" && turn.content) {
      keepUnsaved(turn.assistant, turn.content);
      follower.follow();
    }
  }

  const handlers = {
    start: onStart,
    reasoning: onReasoning,
    delta: onDelta,
    done: onDone,
    error: onError,
  };

  function handleEvent(turn, { event, data, id }) {
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
    handler(turn, payload);
  }

  // --- turns ---------------------------------------------------------------

  /** Undo a turn the server did not accept: remove what we added, show what we hid. */
  function reject(turn, message) {
    turn.finished = true;
    for (const article of turn.created) {
      article.remove();
    }
    for (const article of turn.hidden) {
      article.hidden = false;
    }
    showError(message);
    if (turn.onReject) {
      turn.onReject();
    }
  }

  /**
   * Stream one turn. `created` are the articles added for it (removed if the server refuses
   * the request), `hidden` the ones it replaces (shown again in that case).
   */
  async function runTurn({
    body,
    user,
    assistant,
    created,
    hidden = [],
    onReject = null,
    restoreText = "",
  }) {
    clearError();
    removePlaceholder();
    const turn = beginTurn({ user, assistant, created, hidden, onReject, restoreText });
    // A regenerate or an edit makes a new version: the switchers are refreshed at the end.
    turn.branched = body.action !== "send";
    turn.action = body.action; // told to this browser's other tabs once it starts

    assistant.dataset.model = body.model;
    assistant.dataset.modelLabel = modelSelect.selectedOptions[0]?.textContent || body.model;

    try {
      let response;
      try {
        response = await openChatStream(streamUrl, body, turn.controller.signal, turn.requestId);
      } catch (error) {
        if (!turn.stopped) {
          reject(turn, error.message || "The request failed.");
          if (error.status === 409 && error.field === "message_id") {
            // Another tab changed this conversation: show it as it is now, not act on it.
            setTimeout(() => window.location.reload(), STALE_RELOAD_MS);
          }
        }
        return;
      }
      await follow(turn, response);
    } finally {
      endTurn(turn);
    }
  }

  /** Make `turn` the page's active turn: the composer busy, the answer waiting. */
  function beginTurn({
    user,
    assistant,
    created = [],
    hidden = [],
    onReject = null,
    restoreText = "",
  }) {
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
    active = turn;
    setBusy(true);
    follower.toBottom();
    return turn;
  }

  function endTurn(turn) {
    if (turn?.stopped && !turn.started && turn.restoreText) {
      // Stopped before the server saw the message: keep the text at hand.
      putTextBack(turn.restoreText);
    }
    active = null;
    setBusy(false);
    updateModelLabels(thread);
    follower.follow();
    if (turn?.branched && turn.started) {
      refreshVersions();
    }
    if (turn?.newConversation && turn.started && "generatedTitles" in layout.dataset) {
      awaitGeneratedTitle(turn.title);
    }
    const queued = composer.takeQueued();
    if (queued) {
      send(queued);
    } else if (!document.querySelector("dialog[open], .message-editor")) {
      composer.focus();
    }
  }

  /**
   * A new chat's model writes its title after the first answer (CHAT_GENERATED_TITLES):
   * look for it a few times, and show it in the heading and the sidebar when it comes.
   */
  async function awaitGeneratedTitle(firstTitle) {
    const id = currentConversationId();
    for (let attempt = 0; id !== null && attempt < TITLE_CHECKS; attempt += 1) {
      await sleep(TITLE_CHECK_PAUSE_MS);
      if (currentConversationId() !== id) {
        return;
      }
      let conversation;
      try {
        conversation = await getConversation(layout.dataset.apiUrl, id);
      } catch {
        return;
      }
      if (conversation.title && conversation.title !== firstTitle) {
        setTitle(conversation.title);
        sidebar.upsert(id, conversation.title);
        return;
      }
    }
  }

  /** Ask the server where each shown message stands among its versions (after a new one). */
  async function refreshVersions() {
    const id = currentConversationId();
    if (id === null) {
      return;
    }
    let conversation;
    try {
      conversation = await getConversation(layout.dataset.apiUrl, id);
    } catch {
      return; // the switcher shows up on the next load
    }
    for (const message of conversation.messages || []) {
      const article = thread.querySelector(
        `article.message[data-message-id="${CSS.escape(String(message.id))}"]`,
      );
      if (article) {
        setVersions(article, message.versions);
      }
    }
    refreshActions();
  }

  /** Show the branch through another version of a message: the thread is rebuilt from it. */
  async function switchVersion(article, targetId, direction) {
    const id = currentConversationId();
    if (active || id === null) {
      return;
    }
    clearError();
    let conversation;
    try {
      conversation = await showVersion(layout.dataset.apiUrl, id, Number(targetId));
    } catch (error) {
      showError(error.message || "That version could not be shown.");
      return;
    }
    const index = [...thread.querySelectorAll("article.message")].indexOf(article);
    for (const old of thread.querySelectorAll("article.message")) {
      old.remove();
    }
    thread.append(...(conversation.messages || []).map(articleFromJson));
    updateModelLabels(thread);
    refreshActions();
    // Keep the keyboard where it was: on the same switcher, now of the version shown.
    const shown = thread.querySelectorAll("article.message")[index];
    if (shown) {
      const buttons = shown.querySelectorAll('[data-action="version"]');
      const same = direction === "previous" ? buttons[0] : buttons[1];
      const focusable = [same, ...buttons].find((b) => b && !b.disabled);
      (focusable || shown.querySelector("button"))?.focus();
    }
  }

  /**
   * Read the turn's events to its end. The answer is written on the server whether or not
   * this page reads it, so a stream that breaks off (or a turn opened from a reload, with no
   * stream yet: `response` null) is followed from the last event received.
   */
  async function follow(turn, response) {
    if (response !== null && turn.stopped && !turn.started) {
      // Stopped before the server said anything: read on only to learn where the message
      // was saved (its `start`); the stream ends by itself with the stopped answer.
      try {
        await readEventStream(response, (event) => handleEvent(turn, event));
      } catch {
        // Closed after STOP_GRACE_MS, or the connection broke: the text is restored.
      }
      return;
    }
    let attempt = 0;
    let lostAt = null;
    while (!turn.stopped && !turn.finished) {
      if (response === null) {
        lostAt ??= Date.now();
        if (!turn.requestId || !eventsUrlTemplate || Date.now() - lostAt > REATTACH_GIVE_UP_MS) {
          finish(turn, STATUS.FAILED, { error: CONNECTION_LOST });
          if (turn.requestId) {
            // Its Retry follows the answer again, never asks for another one.
            turn.assistant.dataset.requestId = turn.requestId;
            turn.assistant.dataset.lostConnection = "";
          }
          return;
        }
        if (attempt > 0) {
          const pause = Math.min(REATTACH_PAUSE_MS * 2 ** (attempt - 1), REATTACH_MAX_PAUSE_MS);
          await pauseUntilOnline(navigator.onLine ? pause : REATTACH_GIVE_UP_MS);
        }
        attempt += 1;
        try {
          response = await openTurnEvents(
            eventsUrlTemplate,
            turn.requestId,
            turn.lastEventId,
            turn.controller.signal,
          );
        } catch (error) {
          if (turn.stopped || turn.finished || error.name === "AbortError") {
            return;
          }
          if (error.status) {
            // The server answered: the events are gone (410) or not ours; retrying won't help.
            finish(turn, STATUS.FAILED, { error: error.message });
            return;
          }
          continue; // the server could not be reached: try again
        }
        if (response === null) {
          // Nothing follows the last event we have, yet we never saw the end: reload.
          window.location.reload();
          return;
        }
      }
      const before = turn.lastEventId;
      try {
        await readEventStream(response, (event) => handleEvent(turn, event));
      } catch {
        // The stream broke off: re-attach below, unless the turn ended or was stopped.
      }
      response = null;
      if (turn.lastEventId > before) {
        attempt = 0;
        lostAt = null;
      }
    }
  }

  // --- this browser's other tabs ------------------------------------------

  // A turn started here is told to the other tabs of this browser: one showing the same
  // conversation shows it growing, without a reload (it was stale until its next send was
  // refused, and reloaded); the others' sidebars list a new chat.
  const otherTabs = "BroadcastChannel" in window ? new BroadcastChannel("chatsite:turns") : null;

  function announceTurn(turn, conversationId, title) {
    const text = turn.action === "send" ? messageText(turn.user) : "";
    otherTabs?.postMessage({
      conversation: conversationId,
      isNew: currentConversationId() === null,
      title,
      requestId: turn.requestId,
      action: turn.action,
      text,
    });
    turn.action = null; // once
  }

  otherTabs?.addEventListener("message", ({ data }) => {
    if (!data || typeof data.conversation !== "number") {
      return;
    }
    if (data.isNew) {
      sidebar.upsert(data.conversation, data.title);
    }
    if (data.conversation !== currentConversationId() || active) {
      return; // busy here: this page's next send is refused as stale, and it reloads
    }
    if (data.action !== "send") {
      // A regenerate or an edit changed the thread: show it as it is now (the draft stays).
      window.location.reload();
      return;
    }
    followOtherTabsTurn(data.requestId, data.text);
  });

  async function followOtherTabsTurn(requestId, text) {
    removePlaceholder();
    const user = createMessageArticle("user", STATUS.COMPLETED);
    setUserText(user, text);
    const assistant = createMessageArticle("assistant", STATUS.STREAMING);
    assistant.dataset.requestId = requestId;
    thread.append(user, assistant);
    const turn = beginTurn({ user, assistant });
    turn.requestId = requestId;
    try {
      await follow(turn, null);
    } finally {
      endTurn(turn);
    }
  }

  /** Follow again an answer whose connection was lost: the server may have finished it. */
  async function refollow(assistant) {
    if (active || !assistant.dataset.requestId) {
      return;
    }
    delete assistant.dataset.lostConnection;
    delete assistant.dataset.error;
    // Followed from its first event, the answer is drawn again as it streams.
    setOutcome(assistant, { status: STATUS.STREAMING });
    await followAnswer(assistant);
  }

  /**
   * Follow the answer in `assistant` (started, with its request ID): from its first event,
   * or, with `afterEvent`, on from the text it shows, which holds the events up to that one.
   */
  async function followAnswer(assistant, afterEvent = 0) {
    const turn = beginTurn({ user: previousUserArticle(assistant), assistant });
    turn.requestId = assistant.dataset.requestId;
    turn.started = true;
    if (afterEvent > 0) {
      turn.lastEventId = afterEvent;
      turn.content = messageText(assistant);
      turn.reasoning = reasoningText(assistant);
    }
    try {
      await follow(turn, null);
    } finally {
      endTurn(turn);
    }
  }

  function previousUserArticle(assistant) {
    let user = assistant.previousElementSibling;
    while (user && !user.matches('article.message[data-role="user"]')) {
      user = user.previousElementSibling;
    }
    return user;
  }

  /**
   * The page was opened (or reloaded, or opened in another tab) while its last answer is
   * still being written: show it growing, never an empty bubble. The server put in the page
   * the text it last checkpointed and the event that text reaches: the answer goes on from
   * the next one (from its first, before any checkpoint).
   */
  async function resumeStreamingAnswer() {
    const assistant = lastArticle("assistant");
    const streaming = assistant && assistant.dataset.status === STATUS.STREAMING;
    if (!streaming || !assistant.dataset.requestId) {
      return;
    }
    const lastEventId = Number.parseInt(assistant.dataset.lastEventId || "", 10);
    await followAnswer(assistant, lastEventId || 0);
  }

  function send(text) {
    if (active) {
      return;
    }
    // The last message shown: a thread changed meanwhile (another version chosen in another
    // tab) is refused rather than continued on a branch this page does not show.
    const follows = currentConversationId() === null ? null : lastShownId();
    const user = createMessageArticle("user", STATUS.COMPLETED);
    setUserText(user, text);
    const assistant = createMessageArticle("assistant", STATUS.STREAMING);
    removePlaceholder();
    thread.append(user, assistant);
    composer.value = "";
    saveDraft(currentConversationId(), "");
    runTurn({
      body: {
        message: text,
        model: modelSelect.value,
        conversation: currentConversationId(),
        action: "send",
        message_id: follows,
      },
      user,
      assistant,
      created: [user, assistant],
      onReject: () => putTextBack(text),
      restoreText: text,
    });
  }

  function lastShownId() {
    const articles = thread.querySelectorAll("article.message:not([hidden])");
    const last = articles[articles.length - 1];
    return last ? messageId(last) : null;
  }

  function lastArticle(role) {
    const articles = thread.querySelectorAll(`article.message[data-role="${role}"]:not([hidden])`);
    return articles.length ? articles[articles.length - 1] : null;
  }

  /** The articles from this one to the end of the thread, as shown. */
  function fromHereOn(article) {
    const articles = [];
    for (let next = article; next; next = next.nextElementSibling) {
      if (next.matches("article.message:not([hidden])")) {
        articles.push(next);
      }
    }
    return articles;
  }

  /** Answer a question again: a new version of `answer`; it and what follows it are kept as
   * the earlier version, reachable with ‹ ›. */
  function regenerate(answer) {
    const conversation = currentConversationId();
    let user = answer.previousElementSibling;
    while (user && !user.matches('article.message[data-role="user"]:not([hidden])')) {
      user = user.previousElementSibling;
    }
    if (active || conversation === null || !user) {
      return;
    }
    const hidden = fromHereOn(answer);
    for (const article of hidden) {
      article.hidden = true;
    }
    const assistant = createMessageArticle("assistant", STATUS.STREAMING);
    thread.append(assistant);
    runTurn({
      body: {
        message: messageText(user),
        model: modelSelect.value,
        conversation,
        action: "regenerate",
        message_id: messageId(answer),
      },
      user,
      assistant,
      created: [assistant],
      hidden,
    });
  }

  /** Ask edited text in place of a user message: a new version of it, branching from there
   * (the old one and what followed it are kept, reachable with ‹ ›). */
  function resendEdited(original, text) {
    const conversation = currentConversationId();
    if (active || conversation === null) {
      return;
    }
    const replaced = fromHereOn(original);
    for (const article of replaced) {
      article.hidden = true;
    }
    const user = createMessageArticle("user", STATUS.COMPLETED);
    setUserText(user, text);
    const assistant = createMessageArticle("assistant", STATUS.STREAMING);
    thread.append(user, assistant);
    runTurn({
      body: {
        message: text,
        model: modelSelect.value,
        conversation,
        action: "edit",
        message_id: messageId(original),
      },
      user,
      assistant,
      created: [user, assistant],
      hidden: replaced,
      onReject: () => startEditing(original, text),
    });
  }

  function startEditing(article, text = null) {
    if (active) {
      return;
    }
    openEditor(article, {
      text,
      onSave: (newText) => resendEdited(article, newText),
      onCancel: () => {
        refreshActions();
        article.querySelector('[data-action="edit"]')?.focus();
      },
    });
    refreshActions();
  }

  function stop() {
    const turn = active;
    if (!turn || turn.stopped) {
      return;
    }
    turn.stopped = true;
    composer.unqueue(); // stopping is not a cue to send what was typed meanwhile
    if (!turn.finished) {
      finish(turn, STATUS.STOPPED);
    }
    if (!turn.requestId || !stopUrlTemplate) {
      turn.controller.abort();
      return;
    }
    // Ask the server to stop the answer wherever it runs, even before it has started (the
    // page chose its request ID: a Stop that overtakes its own request still stops it). The
    // stream then ends by itself, saying where the message was saved; it is closed here only
    // if it has not ended soon after (closing it alone would stop the answer too, but only
    // from this connection).
    stopTurn(stopUrlTemplate, turn.requestId)
      .catch(() => {})
      .finally(() => setTimeout(() => turn.controller.abort(), STOP_GRACE_MS));
  }

  // --- message actions -----------------------------------------------------

  thread.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !thread.contains(button)) {
      return;
    }
    const article = button.closest("article.message");
    const action = button.dataset.action;
    if (action === "copy" || action === "copy-kept") {
      const text = action === "copy" ? messageText(article) : keptText(article);
      if (text !== null && (await copyText(text))) {
        showCopied(button);
      }
    } else if (action === "edit") {
      startEditing(article);
    } else if (action === "retry" && "lostConnection" in article.dataset) {
      refollow(article);
    } else if (action === "regenerate" || action === "retry") {
      regenerate(article);
    } else if (action === "version" && button.dataset.target) {
      const buttons = [...article.querySelectorAll('[data-action="version"]')];
      switchVersion(article, button.dataset.target, buttons.indexOf(button) ? "next" : "previous");
    }
  });

  handleCodeCopy(thread);

  // Escape stops the answer, wherever the focus is, unless something nearer uses Escape (an
  // editor, a rename, a dialog, the drawer on phones): those handle it first.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.shiftKey || event.defaultPrevented || !active) {
      return;
    }
    if (document.querySelector("dialog[open]") || layout.classList.contains("sidebar-open")) {
      return;
    }
    event.preventDefault();
    stop();
  });

  // --- the page as the server rendered it ----------------------------------

  pruneUnsaved();
  pruneDrafts();
  if (!composer.value) {
    composer.value = loadDraft(currentConversationId());
  }
  for (const article of thread.querySelectorAll("article.message")) {
    hydrateMessage(article);
    restoreUnsaved(article, messageText(article));
  }
  updateModelLabels(thread);
  refreshActions();
  follower.toBottom();
  thread.setAttribute("aria-busy", "false");
  document.documentElement.classList.add("chat-ready");
  resumeStreamingAnswer();
  initShortcuts({ newChatUrl });
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", initChat);
  } else {
    initChat();
  }
}
