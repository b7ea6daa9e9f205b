// POST a chat message with @microsoft/fetch-event-source, as a typical app does: JSON.parse
// each event's data in onmessage and leave errors to the library's default handling, which
// retries (and so POSTs the message again) when onmessage throws.
//
// Reads URL, COOKIE, CSRF_TOKEN and MESSAGE from the environment and prints one line of
// JSON: {"posts", "events": [{"event", "id", "data"}], "parse_errors": [raw data, ...]}.
import { fetchEventSource } from "@microsoft/fetch-event-source";

// The library is written for browsers: it reads window.fetch and window.setTimeout, and
// listens for visibility changes (off with openWhenHidden) on document.
globalThis.window = globalThis;
globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };

const { URL: url, COOKIE: cookie, CSRF_TOKEN: csrfToken, MESSAGE: message } = process.env;
const report = { posts: 0, events: [], parse_errors: [] };
const deadline = new AbortController();
const timer = setTimeout(() => deadline.abort(), 30000);

await fetchEventSource(url, {
  method: "POST",
  headers: { "Content-Type": "application/json", Cookie: cookie, "X-CSRFToken": csrfToken },
  body: JSON.stringify({ message }),
  signal: deadline.signal,
  openWhenHidden: true,
  fetch: (...args) => {
    report.posts += 1;
    return fetch(...args);
  },
  onmessage(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (error) {
      report.parse_errors.push(event.data);
      throw error;
    }
    report.events.push({ event: event.event, id: event.id, data });
  },
});
clearTimeout(timer);
console.log(JSON.stringify(report));
