// The conversation's title in the page's heading and the browser's tab, and the title a
// new chat's model writes after its first answer (CHAT_GENERATED_TITLES).

import { getConversation } from "./api.js";
import { conversationId } from "./chat_page.js";

// A generated title comes a moment after the first answer: checked this many times, so far
// apart.
const TITLE_CHECKS = 5;
const TITLE_CHECK_PAUSE_MS = 1500;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function setTitle(page, title) {
  if (page.titleHeading) {
    page.titleHeading.textContent = title;
  }
  document.title = `${title} · chatsite`;
}

/**
 * A new chat's model writes its title after the first answer (CHAT_GENERATED_TITLES):
 * look for it a few times, and show it in the heading and the sidebar when it comes.
 */
export async function awaitGeneratedTitle(page, firstTitle) {
  const id = conversationId(page);
  for (let attempt = 0; id !== null && attempt < TITLE_CHECKS; attempt += 1) {
    await sleep(TITLE_CHECK_PAUSE_MS);
    if (conversationId(page) !== id) {
      return;
    }
    let conversation;
    try {
      conversation = await getConversation(page.apiUrl, id);
    } catch {
      return;
    }
    if (conversation.title && conversation.title !== firstTitle) {
      setTitle(page, conversation.title);
      page.sidebar.upsert(id, conversation.title);
      return;
    }
  }
}
