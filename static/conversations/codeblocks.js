// Code blocks in rendered Markdown: syntax highlighting (highlight.js) and a header with
// the language and a Copy button. A streaming answer's blocks are highlighted once, when
// finished (the growing one is shown plain); results are cached for the same code rendered
// again (a reload, another version of the answer).

import hljs from "highlight.js";
import { copyText, showCopied } from "./clipboard.js";

const CACHE_LIMIT = 200;
const cache = new Map(); // "lang\0code" -> {html, className}

function remember(key, value) {
  cache.set(key, value);
  if (cache.size > CACHE_LIMIT) {
    cache.delete(cache.keys().next().value);
  }
}

function declaredLanguage(code) {
  for (const name of code.classList) {
    if (name.startsWith("language-")) {
      return name.slice("language-".length).toLowerCase();
    }
  }
  return "";
}

/** Highlight a <code> element if its language is known (or, without one, auto-detected). */
function highlight(code, language) {
  if (language && !hljs.getLanguage(language)) {
    code.classList.add("hljs"); // unknown language: plain text, same look
    return;
  }
  const source = code.textContent;
  const key = `${language}\u0000${source}`;
  const cached = cache.get(key);
  if (cached) {
    code.className = cached.className;
    code.innerHTML = cached.html; // highlight.js output for this very text
    return;
  }
  hljs.highlightElement(code);
  delete code.dataset.highlighted; // keep the markup identical whether cached or not
  remember(key, { html: code.innerHTML, className: code.className });
}

function languageLabel(language, code) {
  if (language) {
    return language;
  }
  for (const name of code.classList) {
    if (name.startsWith("language-")) {
      return name.slice("language-".length); // auto-detected
    }
  }
  return "text";
}

function codeHeader(label) {
  const header = document.createElement("div");
  header.className = "code-header";
  const name = document.createElement("span");
  name.className = "code-language";
  name.textContent = label;
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "code-copy";
  copy.setAttribute("aria-label", "Copy code");
  const text = document.createElement("span");
  text.className = "button-label";
  text.textContent = "Copy";
  copy.append(text);
  // Whitespace between the parts keeps the answer's textContent readable ("python Copy").
  header.append(name, " ", copy);
  return header;
}

/**
 * Wrap every fenced block under root (an element or a fragment) with a header and Copy
 * button, and highlight it unless told not to: a block still growing is shown plain, in the
 * same colours, since highlighting it on every frame would cost as much as the block.
 */
export function decorateCodeBlocks(root, { highlight: colour = true } = {}) {
  for (const code of root.querySelectorAll("pre > code")) {
    const pre = code.parentElement;
    if (pre.parentElement && pre.parentElement.classList.contains("code-block")) {
      continue;
    }
    const language = declaredLanguage(code);
    if (colour) {
      highlight(code, language);
    } else {
      code.classList.add("hljs");
    }
    const block = document.createElement("div");
    block.className = "code-block";
    pre.replaceWith(block);
    block.append(codeHeader(languageLabel(language, code)), "\n", pre);
    pre.tabIndex = 0; // a long line scrolls sideways: keyboards must reach it to scroll it
  }
}

/** One listener for every Copy button of every code block under root, present or future. */
export function handleCodeCopy(root) {
  root.addEventListener("click", async (event) => {
    const button = event.target.closest(".code-copy");
    if (!button || !root.contains(button)) {
      return;
    }
    const code = button.closest(".code-block")?.querySelector("pre > code");
    if (!code) {
      return;
    }
    if (await copyText(code.textContent)) {
      showCopied(button);
    }
  });
}
