// This browser's other tabs. A turn started here is told to them: one showing the same
// conversation shows it growing, without a reload (it was stale until its next send was
// refused, and reloaded); the others' sidebars list a new chat.

import { conversationId } from "./chat_page.js";
import { messageText } from "./message_text.js";

/**
 * Listen to the other tabs, and return what tells them of a turn started here. `onTurn`
 * (requestId, text) follows a message another tab sent in this tab's conversation.
 */
export function createOtherTabs(page, onTurn) {
  const channel = "BroadcastChannel" in window ? new BroadcastChannel("chatsite:turns") : null;

  channel?.addEventListener("message", ({ data }) => {
    if (!data || typeof data.conversation !== "number") {
      return;
    }
    if (data.isNew) {
      page.sidebar.upsert(data.conversation, data.title);
    }
    if (data.conversation !== conversationId(page) || page.active) {
      return; // busy here: this page's next send is refused as stale, and it reloads
    }
    if (data.action !== "send") {
      // A regenerate or an edit changed the thread: show it as it is now (the draft stays).
      window.location.reload();
      return;
    }
    onTurn(data.requestId, data.text);
  });

  return {
    /** Tell the other tabs that `turn` started, in conversation `id` (once). */
    announce(turn, id, title) {
      const text = turn.action === "send" ? messageText(turn.user) : "";
      channel?.postMessage({
        conversation: id,
        isNew: conversationId(page) === null,
        title,
        requestId: turn.requestId,
        action: turn.action,
        text,
      });
      turn.action = null; // once
    },
  };
}
