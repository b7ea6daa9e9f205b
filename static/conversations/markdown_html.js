// Markdown to safe HTML, for model answers that may contain anything.
//
// Layer 1, marked: raw HTML in the Markdown is shown as literal text (the `html` renderer
// returns the escaped source) and images become plain links, never <img>.
// Layer 2, DOMPurify: an allow-list of tags and attributes; links only to http:, https: and
// mailto:, and they open in a new tab without a referrer.
// Layer 3 is the page's Content-Security-Policy. Code blocks are then highlighted and given
// a Copy button by codeblocks.js.

import { Lexer, Marked } from "marked";
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

function escapeHtml(text) {
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
// The same rules, returning the sanitized nodes themselves: no serialising and re-parsing.
const PURIFY_FRAGMENT_CONFIG = { ...PURIFY_CONFIG, RETURN_DOM_FRAGMENT: true };

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

/** Lex Markdown with link definitions already known (from the blocks before it). */
export function lexMarkdown(src, links) {
  const lexer = new Lexer({ ...marked.defaults });
  Object.assign(lexer.tokens.links, links);
  const tokens = lexer.lex(src);
  return { tokens, links: lexer.tokens.links };
}

/** Top-level tokens to sanitized, decorated DOM nodes (a fragment, not yet in the page). */
export function tokensToFragment(tokens, { highlight }) {
  let html;
  try {
    html = marked.parser(tokens);
  } catch {
    html = `<p>${escapeHtml(tokens.map((token) => token.raw).join(""))}</p>`;
  }
  const fragment = purifier.sanitize(html, PURIFY_FRAGMENT_CONFIG);
  decorateCodeBlocks(fragment, { highlight });
  return fragment;
}
