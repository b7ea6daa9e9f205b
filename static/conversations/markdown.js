// Markdown rendered into the page: whole (renderMarkdown: the admin's transcripts) or as a
// view of a growing text (createMarkdownView: a streaming answer, and the page's own answers
// on load). markdown_html.js makes the HTML safe; markdown_blocks.js renders a growing text
// block by block, so a frame costs the same at the end of a long answer as at its start.

import { decorateCodeBlocks } from "./codeblocks.js";
import { BlockRenderer } from "./markdown_blocks.js";
import { markdownToSafeHtml } from "./markdown_html.js";

/** Render Markdown into an element, whole: sanitized HTML, highlighted code, Copy buttons. */
export function renderMarkdown(element, text) {
  element.innerHTML = markdownToSafeHtml(text);
  element.classList.add("markdown");
  decorateCodeBlocks(element);
}

// The browser keeps every measure: a tab open for days must not keep them all.
const MEASURES_KEPT = 20_000;
let measures = 0;

/** One performance entry per render, so the cost can be read in the browser (and tested). */
function measureRender(start, detail) {
  try {
    if (measures >= MEASURES_KEPT) {
      performance.clearMeasures("chat:render");
      measures = 0;
    }
    performance.measure("chat:render", { start, detail });
    measures += 1;
  } catch {
    // A browser without User Timing Level 3: nothing to record.
  }
}

/**
 * A view of a growing Markdown text. set() schedules one render per animation frame with
 * the latest text; flush() renders now and leaves exactly what renderMarkdown() would.
 * Streaming and page load use the same render. Finished blocks are rendered once, so a
 * frame costs the same at the end of a long answer as at its start (see BlockRenderer).
 */
export function createMarkdownView(element, { onRender } = {}) {
  const blocks = new BlockRenderer(element);
  let text = "";
  let frame = 0;
  let afterRender = onRender;

  function render(final) {
    const start = performance.now();
    frame = 0;
    const cost = blocks.render(text, final);
    if (afterRender) {
      afterRender();
    }
    // After onRender: following the answer reads its height, so the layout is counted too.
    measureRender(start, { ...cost, length: text.length, final });
  }

  return {
    get text() {
      return text;
    },
    /** What to call after each render (following the answer); a view made when the page
     * loaded has none until a stream it shows begins. */
    set onRender(callback) {
      afterRender = callback;
    },
    set(next) {
      text = next || "";
      if (!frame) {
        frame = requestAnimationFrame(() => render(false));
      }
    },
    flush() {
      if (frame) {
        cancelAnimationFrame(frame);
      }
      render(true);
    },
  };
}
