// Server-Sent Events over fetch(): an incremental parser and a reader that feeds a
// response body through it. One job: turn bytes into {event, data, id} objects.

/** A line's field and value: "data: x" is ["data", "x"] (one space after the colon goes). */
function splitField(line) {
  const colon = line.indexOf(":");
  const field = colon === -1 ? line : line.slice(0, colon);
  const value = colon === -1 ? "" : line.slice(colon + 1);
  return [field, value.startsWith(" ") ? value.slice(1) : value];
}

/**
 * Incremental Server-Sent Events parser.
 *
 * Feed it decoded text with push(); it calls onEvent({event, data, id}) once
 * per complete event (data lines joined with "\n"). Comment lines (":" ...)
 * are ignored. Lines may end in "\n", "\r\n" or "\r", and chunks may split
 * lines or events anywhere. Call end() when the stream closes: unlike the
 * browser's EventSource, a final event that lacks its trailing blank line is
 * still dispatched.
 */
function createSseParser(onEvent) {
  let buffer = "";
  let eventType = "";
  let dataLines = [];
  let lastEventId = "";

  function reset() {
    eventType = "";
    dataLines = [];
  }

  function dispatch() {
    if (dataLines.length === 0) {
      reset();
      return;
    }
    const event = {
      event: eventType || "message",
      data: dataLines.join("\n"),
      id: lastEventId,
    };
    reset();
    onEvent(event);
  }

  function processLine(line) {
    if (line === "") {
      dispatch();
      return;
    }
    if (line.startsWith(":")) {
      return; // comment / keep-alive
    }
    const [field, value] = splitField(line);
    if (field === "event") {
      eventType = value;
    } else if (field === "data") {
      dataLines.push(value);
    } else if (field === "id" && !value.includes("\0")) {
      lastEventId = value;
    }
    // "retry" and unknown fields are ignored.
  }

  function push(chunk) {
    buffer += chunk;
    let lineStart = 0;
    let i = 0;
    while (i < buffer.length) {
      const code = buffer.charCodeAt(i);
      if (code === 10) {
        // "\n"
        processLine(buffer.slice(lineStart, i));
        i += 1;
        lineStart = i;
      } else if (code === 13) {
        // "\r": may be the first half of "\r\n" split across chunks.
        if (i + 1 >= buffer.length) {
          break;
        }
        processLine(buffer.slice(lineStart, i));
        i += buffer.charCodeAt(i + 1) === 10 ? 2 : 1;
        lineStart = i;
      } else {
        i += 1;
      }
    }
    buffer = buffer.slice(lineStart);
  }

  function end() {
    let rest = buffer;
    buffer = "";
    if (rest.endsWith("\r")) {
      rest = rest.slice(0, -1);
    }
    if (rest !== "") {
      processLine(rest);
    }
    dispatch();
  }

  return { push, end };
}

/**
 * Read a fetch() Response body as an event stream, calling onEvent for each event.
 * Resolves when the body ends; rejects if reading fails (network error, abort).
 */
export async function readEventStream(response, onEvent) {
  const parser = createSseParser(onEvent);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      break;
    }
    parser.push(decoder.decode(value, { stream: true }));
  }
  parser.push(decoder.decode());
  parser.end();
}

/** Whether a response carries an event stream. */
export function isEventStream(response) {
  const type = response.headers.get("Content-Type") || "";
  return type.toLowerCase().startsWith("text/event-stream");
}
