// Markdown to safe HTML, for model answers that may contain anything.
//
// Layer 1, marked: raw HTML in the Markdown is shown as literal text (the `html` renderer
// returns the escaped source) and images become plain links, never <img>.
// Layer 2, DOMPurify: an allow-list of tags and attributes; links only to http:, https: and
// mailto:, and they open in a new tab without a referrer.
// Layer 3 is the page's Content-Security-Policy. Code blocks are then highlighted and given
// a Copy button by codeblocks.js.

import { Marked } from "marked";
import DOMPurify from "dompurify";
import { decorateCodeBlocks } from "./codeblocks.js";

const ALLOWED_TAGS = [
  "p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a",
  "h1", "h2", "h3", "h4", "h5", "h6",
  "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption",
  "hr", "span", "div",
];
const ALLOWED_ATTR = ["href", "title", "class", "start", "align"];
// Absolute http(s) and mailto links only: no javascript:, data:, or links into this site.
const ALLOWED_URI_REGEXP = /^(?:https?:|mailto:)/i;
const LINK_REL = "noopener noreferrer nofollow";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => ESCAPES[ch]);
}

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    // Raw HTML (block or inline) is shown as the text the model wrote.
    html({ text, block }) {
      const literal = escapeHtml(block ? text.replace(/\n+$/, "") : text);
      return block ? `<p>${literal}</p>\n` : literal;
    },
    // An image is never loaded: it becomes a link to it, labelled with its alt text.
    image({ href, title, text }) {
      const label = escapeHtml(`Image: ${text || href || "untitled"}`);
      if (!href) {
        return label;
      }
      const titleAttr = title ? ` title="${escapeHtml(title)}"` : "";
      return `<a href="${escapeHtml(href)}"${titleAttr}>${label}</a>`;
    },
  },
});

const purifier = DOMPurify(window);
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", LINK_REL);
    } else {
      node.removeAttribute("target");
      node.removeAttribute("rel");
    }
  }
});

const PURIFY_CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR,
  ALLOWED_URI_REGEXP,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  ALLOW_UNKNOWN_PROTOCOLS: false,
};

/** Markdown source to sanitized HTML (a string safe to assign to innerHTML). */
export function markdownToSafeHtml(text) {
  let html;
  try {
    html = marked.parse(text || "", { async: false });
  } catch {
    html = `<p>${escapeHtml(text || "")}</p>`;
  }
  return purifier.sanitize(html, PURIFY_CONFIG);
}

/** Render Markdown into an element: sanitized HTML, highlighted code with Copy buttons. */
export function renderMarkdown(element, text) {
  element.innerHTML = markdownToSafeHtml(text);
  element.classList.add("markdown");
  decorateCodeBlocks(element);
}

/**
 * A view of a growing Markdown text. set() schedules one render per animation frame with
 * the latest text; flush() renders now. Streaming and page load use the same render.
 */
export function createMarkdownView(element, { onRender } = {}) {
  let text = "";
  let frame = 0;

  function render() {
    frame = 0;
    renderMarkdown(element, text);
    if (onRender) {
      onRender();
    }
  }

  return {
    get text() {
      return text;
    },
    set(next) {
      text = next;
      if (!frame) {
        frame = requestAnimationFrame(render);
      }
    },
    flush() {
      if (frame) {
        cancelAnimationFrame(frame);
      }
      render();
    },
    cancel() {
      if (frame) {
        cancelAnimationFrame(frame);
        frame = 0;
      }
    },
  };
}
