// Talking to the server: the CSRF token, the chat stream request, and the site API's
// rename and delete calls. Every failure becomes a sentence a person can act on.

import { isEventStream } from "./sse.js";

/** Thrown for a request the server refused or could not be reached; `message` is for people. */
class RequestError extends Error {
  constructor(message, { status = 0, field = "" } = {}) {
    super(message);
    this.name = "RequestError";
    this.status = status;
    this.field = field;
  }
}

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

/** Django's CSRF token: the cookie, or the hidden input of the page's form. */
function csrfToken() {
  const fromCookie = readCookie("csrftoken");
  if (fromCookie) {
    return fromCookie;
  }
  const input = document.querySelector("input[name='csrfmiddlewaretoken']");
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
  if (status === 404) {
    return "That conversation no longer exists. Reload the page.";
  }
  if (status === 429) {
    return "Too many requests. Wait a moment and try again.";
  }
  if (status >= 500) {
    return `The server had a problem (error ${status}). Try again later.`;
  }
  return `The request failed (error ${status}).`;
}

/** A RequestError from a failed response's `{"error": {"message", "field"}}` body. */
async function errorFromResponse(response) {
  let body = null;
  try {
    body = parseJson(await response.text());
  } catch {
    body = null;
  }
  const error = body && body.error;
  let message = "";
  let field = "";
  if (error && typeof error === "object") {
    message = typeof error.message === "string" ? error.message : "";
    field = typeof error.field === "string" ? error.field : "";
  } else if (typeof error === "string") {
    message = error;
  }
  return new RequestError(message || fallbackErrorMessage(response.status), {
    status: response.status,
    field,
  });
}

const NETWORK_ERROR = "Could not reach the server. Check your connection and try again.";

async function send(url, { method, body, signal, accept = "application/json", extraHeaders = {} }) {
  const headers = { "X-CSRFToken": csrfToken(), Accept: accept, ...extraHeaders };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  try {
    return await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: "same-origin",
    });
  } catch (error) {
    if (error && error.name === "AbortError") {
      throw error;
    }
    throw new RequestError(NETWORK_ERROR);
  }
}

/**
 * A new request ID, chosen by the page before it sends, so that a Stop pressed at once can
 * name the answer before the server has said anything (32 hex digits, as the server's own).
 * From getRandomValues, which works where randomUUID does not (plain HTTP on a LAN address).
 */
export function newRequestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * POST a chat request under `requestId` and return the event-stream response once the
 * server accepted it. Throws RequestError when it did not (validation, rate limit, expired
 * session ...).
 */
export async function openChatStream(url, body, signal, requestId) {
  const response = await send(url, {
    method: "POST",
    body,
    signal,
    accept: "text/event-stream",
    extraHeaders: { "X-Request-ID": requestId },
  });
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  if (response.redirected && !isEventStream(response)) {
    throw new RequestError("Your session has expired. Reload the page and log in again.");
  }
  if (!isEventStream(response) || !response.body) {
    throw new RequestError("Unexpected response from the server. Reload the page and try again.");
  }
  return response;
}

/**
 * Follow an answer being written, from the event after `lastEventId` (0: from its start),
 * as an event-stream response; null when nothing follows that event (HTTP 204). Throws
 * RequestError when the answer's events are gone (410) or it is not the user's (404).
 * `urlTemplate` holds the placeholder REQUEST_ID.
 */
export async function openTurnEvents(urlTemplate, requestId, lastEventId, signal) {
  const url = urlTemplate.replace("REQUEST_ID", encodeURIComponent(requestId));
  const response = await send(url, {
    method: "GET",
    signal,
    accept: "text/event-stream",
    extraHeaders: { "Last-Event-ID": String(lastEventId || 0) },
  });
  if (response.status === 204) {
    return null;
  }
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  if (!isEventStream(response) || !response.body) {
    throw new RequestError("Unexpected response from the server. Reload the page and try again.");
  }
  return response;
}

/**
 * Stop an answer wherever the server runs it. `urlTemplate` holds the placeholder
 * REQUEST_ID; resolves to the server's `{request_id, status}`.
 */
export async function stopTurn(urlTemplate, requestId) {
  const url = urlTemplate.replace("REQUEST_ID", encodeURIComponent(requestId));
  const response = await send(url, { method: "POST" });
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  return response.json();
}

function conversationApiUrl(baseUrl, conversationId) {
  const base = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
  return `${base}${encodeURIComponent(conversationId)}/`;
}

/**
 * One page of the user's conversations: `params` are the list's query parameters (source,
 * limit, q, cursor); resolves to the server's `{data, has_more, next_cursor}`.
 */
export async function listConversations(baseUrl, params, signal) {
  const url = new URL(baseUrl, window.location.href);
  for (const [name, value] of Object.entries(params)) {
    url.searchParams.set(name, value);
  }
  const response = await send(url, { method: "GET", signal });
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  const body = await response.json().catch(() => null);
  if (!body || !Array.isArray(body.data)) {
    throw new RequestError("Unexpected response from the server. Reload the page and try again.");
  }
  return body;
}

/** Rename a conversation; resolves to the server's `{id, title, ...}`. */
export async function renameConversation(baseUrl, conversationId, title) {
  const response = await send(conversationApiUrl(baseUrl, conversationId), {
    method: "PATCH",
    body: { title },
  });
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  return response.json();
}

/** Delete a conversation and its messages. A conversation already gone counts as deleted. */
export async function deleteConversation(baseUrl, conversationId) {
  const response = await send(conversationApiUrl(baseUrl, conversationId), { method: "DELETE" });
  if (!response.ok && response.status !== 404) {
    throw await errorFromResponse(response);
  }
}

/** One conversation with its thread as shown, each message with its versions. */
export async function getConversation(baseUrl, conversationId) {
  const response = await send(conversationApiUrl(baseUrl, conversationId), { method: "GET" });
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  return response.json();
}

/**
 * Show the branch through another version of a message (‹ › on a message); resolves to the
 * conversation as getConversation returns it, its thread now that branch.
 */
export async function showVersion(baseUrl, conversationId, messageId) {
  const url = `${conversationApiUrl(baseUrl, conversationId)}versions/`;
  const response = await send(url, { method: "POST", body: { message_id: messageId } });
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  return response.json();
}
