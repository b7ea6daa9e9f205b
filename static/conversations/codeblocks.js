// Code blocks in rendered Markdown: syntax highlighting (highlight.js) and a header with
// the language and a Copy button. Highlighting results are cached, so re-rendering a
// streaming answer only highlights the block that is still growing.

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

/** Highlight every fenced block under root and wrap it with a header and Copy button. */
export function decorateCodeBlocks(root) {
  for (const code of root.querySelectorAll("pre > code")) {
    const pre = code.parentElement;
    if (pre.parentElement && pre.parentElement.classList.contains("code-block")) {
      continue;
    }
    const language = declaredLanguage(code);
    highlight(code, language);
    const block = document.createElement("div");
    block.className = "code-block";
    pre.replaceWith(block);
    block.append(codeHeader(languageLabel(language, code)), "\n", pre);
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
