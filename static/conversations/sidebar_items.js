// A conversation's item in the sidebar's lists: built from the page's template, found by
// conversation, and titled (its link and its buttons' names).

function conversationUrl(sidebar, id) {
  const base = sidebar.newChatUrl.endsWith("/") ? sidebar.newChatUrl : `${sidebar.newChatUrl}/`;
  return `${base}${encodeURIComponent(id)}/`;
}

export function itemId(item) {
  return Number.parseInt(item.dataset.conversationId, 10);
}

export function itemTitle(item) {
  return item.querySelector(".conversation-link").textContent;
}

export function itemSelector(id) {
  return `li[data-conversation-id="${CSS.escape(String(id))}"]`;
}

/** The conversation's item in the history (not in search results). */
export function findItem(sidebar, id) {
  return sidebar.list.querySelector(itemSelector(id));
}

/** Its items in both lists. */
export function findItems(sidebar, id) {
  return [...sidebar.element.querySelectorAll(`.conversation-list ${itemSelector(id)}`)];
}

export function setItemTitle(item, title) {
  item.querySelector(".conversation-link").textContent = title;
  item.querySelector("[data-sidebar-action='rename']").setAttribute("aria-label", `Rename “${title}”`);
  item.querySelector("[data-sidebar-action='delete']").setAttribute("aria-label", `Delete “${title}”`);
}

export function buildItem(sidebar, { id, title, updatedAt }) {
  const item = sidebar.itemTemplate.content.firstElementChild.cloneNode(true);
  item.dataset.conversationId = String(id);
  item.dataset.updatedAt = updatedAt;
  item.querySelector(".conversation-link").href = conversationUrl(sidebar, id);
  setItemTitle(item, title);
  if (id === sidebar.currentConversationId()) {
    item.querySelector(".conversation-link").setAttribute("aria-current", "page");
  }
  return item;
}
