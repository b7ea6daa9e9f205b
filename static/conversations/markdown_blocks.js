// Incremental rendering of a growing Markdown text (BlockRenderer): each top-level block is
// rendered (lexed, parsed, sanitized, highlighted) once when it is finished, and only the
// growing tail is rendered again on each animation frame, so a frame costs the same at the
// end of a long answer as at its start. markdown_html.js does the lexing and sanitizing.

import { lexMarkdown, tokensToFragment } from "./markdown_html.js";

/** Whether the first `lines` lines of src from `start` on are complete (end with \n). */
function linesComplete(src, start, lines) {
  let at = start;
  for (let i = 0; i < lines; i += 1) {
    at = src.indexOf("\n", at);
    if (at === -1) {
      return false;
    }
    at += 1;
  }
  return true;
}

/**
 * How many of the top-level tokens are finished: everything before the last non-space
 * token, provided that token's start is settled. Where a block ends is decided by the first
 * line of the next one (two for a table, whose delimiter row decides it), so that line must
 * be complete: "para\n#" may still become "para\n#hashtag", one paragraph. A text that is
 * final has only its last block unfinished (kept as the tail, so more text could follow).
 */
function finishedCount(tokens, src, final) {
  const starts = [];
  let start = 0;
  for (const token of tokens) {
    starts.push(start);
    start += token.raw.length;
  }
  for (let index = tokens.length - 1; index >= 0; index -= 1) {
    const token = tokens[index];
    if (token.type === "space") {
      continue;
    }
    if (final || linesComplete(src, starts[index], token.type === "table" ? 2 : 1)) {
      return index;
    }
  }
  return 0;
}

/** The length in the original text of the first `length` characters of marked's view of
 * it (marked turns \r\n and \r into \n). */
function originalLength(original, length) {
  if (!original.includes("\r")) {
    return length;
  }
  let at = 0;
  for (let seen = 0; seen < length && at < original.length; seen += 1) {
    at += original.startsWith("\r\n", at) ? 2 : 1;
  }
  return at;
}

function linksKey(links) {
  return JSON.stringify(links);
}

/** Render a group of tokens into a fragment, for a block record or the tail. */
function groupNodes(tokens, highlight) {
  const fragment = tokensToFragment(tokens, { highlight });
  return { fragment, nodes: [...fragment.childNodes] };
}

function removeNodes(nodes) {
  for (const node of nodes) {
    node.remove();
  }
}

/** Remember the link definitions among tokens (the first definition of a label wins). */
function addDefinitions(links, tokens) {
  for (const token of tokens) {
    if (token.type === "def" && !(token.tag in links)) {
      links[token.tag] = { href: token.href, title: token.title };
    }
  }
}

/**
 * The rendered blocks of one element's Markdown. Finished top-level blocks are rendered once
 * and their nodes kept; a render lexes the text from the start of the first unfinished block
 * and replaces only the nodes of that tail, whose code is shown plain until it is finished.
 * A final render checks the kept blocks against a lexing of the whole text (a link defined
 * later, say, changes an earlier block) and renders again only what differs.
 */
export class BlockRenderer {
  constructor(element) {
    this.element = element;
    this.mounted = false;
  }

  reset() {
    this.mounted = true;
    this.element.replaceChildren();
    this.element.classList.add("markdown");
    this.blocks = []; // finished: {raw (marked's normalised source), links, nodes}
    this.stableEnd = 0; // where the finished blocks end in the text
    this.stablePrefix = ""; // the text up to there, to notice a text that was replaced
    this.stableLinks = {}; // link definitions in the finished blocks
    this.linksKey = "{}"; // the link definitions of the last render
    this.tail = { src: null, nodes: [], highlighted: false };
  }

  /** Whether the element holds exactly our nodes (nothing replaced them: a waiting
   * indicator, or the server's raw text before the first render). */
  owned() {
    return (
      this.mounted &&
      this.element.firstChild === this.firstNode() &&
      this.element.lastChild === this.lastNode()
    );
  }

  firstNode() {
    const block = this.blocks.find((candidate) => candidate.nodes.length);
    return block ? block.nodes[0] : (this.tail.nodes[0] ?? null);
  }

  lastNode() {
    if (this.tail.nodes.length) {
      return this.tail.nodes.at(-1);
    }
    return this.blocks.findLast((candidate) => candidate.nodes.length)?.nodes.at(-1) ?? null;
  }

  /** Render `text` (final: it is complete) and say what it cost: characters lexed, blocks
   * rendered, blocks kept. */
  render(text, final) {
    if (!this.owned() || !text.startsWith(this.stablePrefix)) {
      this.reset();
    }
    const lexed = final && this.blocks.length ? this.lexChecked(text) : this.lexTail(text);
    const { tokens, links, original } = lexed;
    // marked's view of the text (its raws cover it, but the last token's may differ a bit).
    const src = original.replace(/\r\n?/g, "\n");
    const finished = finishedCount(tokens, src, final);
    let rendered = lexed.rendered;
    if (finished > 0) {
      rendered += this.appendBlocks(tokens.slice(0, finished), text, original, links);
    }
    const finishedLength = tokens.slice(0, finished).reduce((n, t) => n + t.raw.length, 0);
    const tailSrc = src.slice(finishedLength);
    const tail = this.tail;
    if (finished > 0 || tailSrc !== tail.src || (final && !tail.highlighted)) {
      const { fragment, nodes } = groupNodes(tokens.slice(finished), final);
      removeNodes(tail.nodes);
      this.element.append(fragment);
      this.tail = { src: tailSrc, nodes, highlighted: final };
      rendered += finished < tokens.length ? 1 : 0;
    }
    return { chars: lexed.chars, blocks: rendered, kept: this.blocks.length };
  }

  /** Lex the text after the finished blocks (what a frame does). */
  lexTail(text) {
    const original = text.slice(this.stableEnd);
    const { tokens, links } = lexMarkdown(original, this.stableLinks);
    let rendered = 0;
    if (linksKey(links) !== this.linksKey) {
      // A link definition came (or changed, while it streams): it applies to the blocks
      // before it too.
      rendered = this.refreshLinkedBlocks(links);
    }
    return { tokens, links, original, chars: original.length, rendered };
  }

  /** Lex the whole text, keep the finished blocks that agree with it, and return the
   * tokens after them (what the final render does, once). */
  lexChecked(text) {
    const { tokens, links } = lexMarkdown(text, {});
    const { used, rendered } = this.keepAgreeingBlocks(tokens, links, text);
    const original = text.slice(this.stableEnd);
    return { tokens: tokens.slice(used), links, original, chars: text.length, rendered };
  }

  /** Render a kept block again in place, with other link definitions. */
  rerenderBlock(index, tokens, key) {
    const block = this.blocks[index];
    const { fragment, nodes } = groupNodes(tokens, true);
    const later = this.blocks.slice(index + 1).find((other) => other.nodes.length);
    const next = later ? later.nodes[0] : (this.tail.nodes[0] ?? null);
    removeNodes(block.nodes);
    this.element.insertBefore(fragment, next);
    block.nodes = nodes;
    block.links = key;
  }

  /** Render again the kept blocks that may use a link defined differently since. */
  refreshLinkedBlocks(links) {
    const key = linksKey(links);
    this.linksKey = key;
    let rendered = 0;
    this.blocks.forEach((block, index) => {
      if (block.links !== key && block.raw.includes("[")) {
        this.rerenderBlock(index, lexMarkdown(block.raw, links).tokens, key);
        rendered += 1;
      }
    });
    return rendered;
  }

  /** Keep the finished blocks whose source the whole text's tokens agree with, rendered
   * again if the link definitions changed; drop the rest. */
  keepAgreeingBlocks(tokens, links, text) {
    const key = linksKey(links);
    this.linksKey = key;
    let used = 0;
    let kept = 0;
    let rendered = 0;
    for (; kept < this.blocks.length; kept += 1) {
      const block = this.blocks[kept];
      let raw = "";
      let count = 0;
      while (used + count < tokens.length && raw.length < block.raw.length) {
        raw += tokens[used + count].raw;
        count += 1;
      }
      if (raw !== block.raw) {
        break;
      }
      if (block.links !== key && block.raw.includes("[")) {
        this.rerenderBlock(kept, tokens.slice(used, used + count), key);
        rendered += 1;
      }
      used += count;
    }
    for (const block of this.blocks.slice(kept)) {
      removeNodes(block.nodes);
    }
    this.blocks = this.blocks.slice(0, kept);
    this.stableLinks = {};
    addDefinitions(this.stableLinks, tokens.slice(0, used));
    const length = tokens.slice(0, used).reduce((n, t) => n + t.raw.length, 0);
    this.stableEnd = originalLength(text, length);
    this.stablePrefix = text.slice(0, this.stableEnd);
    return { used, rendered };
  }

  /** Render newly finished tokens as blocks (each a non-space token and the space after
   * it), before the tail. Returns how many blocks. */
  appendBlocks(tokens, text, original, links) {
    const key = linksKey(links);
    const before = this.tail.nodes[0] ?? null;
    let length = 0;
    let count = 0;
    for (let index = 0; index < tokens.length; count += 1) {
      const group = [tokens[index]];
      for (index += 1; index < tokens.length && tokens[index].type === "space"; index += 1) {
        group.push(tokens[index]);
      }
      const { fragment, nodes } = groupNodes(group, true);
      this.element.insertBefore(fragment, before);
      const raw = group.map((token) => token.raw).join("");
      this.blocks.push({ raw, links: key, nodes });
      length += raw.length;
      addDefinitions(this.stableLinks, group);
    }
    this.stableEnd += originalLength(original, length);
    this.stablePrefix = text.slice(0, this.stableEnd);
    return count;
  }
}
