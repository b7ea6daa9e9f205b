// The conversation list: newest first under date headings, the open one marked. The page
// renders the first page; the next ones load from the site API as the list is scrolled (or
// "Show more" is pressed). A search box swaps in the matching conversations, paged too;
// Escape or clearing it brings the list back. The list is one Tab stop (a roving tabindex):
// Up/Down, Home/End move, Enter opens, F2 renames inline (Enter saves, Escape cancels),
// Delete asks to delete. On phones the sidebar is a drawer behind a toggle button.
//
// This module wires the sidebar together and keeps its keys; each concern is a module:
// sidebar_state.js (the shared state), sidebar_items.js, sidebar_groups.js (date headings),
// sidebar_focus.js (the Tab stop), sidebar_list.js (pages, and which list is shown),
// sidebar_search.js, sidebar_edit.js (rename and delete) and sidebar_drawer.js.

import { handleDrawer } from "./sidebar_drawer.js";
import { confirmDelete, handleItemButtons, startRename } from "./sidebar_edit.js";
import { ensureTabStop, focusLink, links, onListFocusin, setTabStop } from "./sidebar_focus.js";
import { moveToTop, place, regroup } from "./sidebar_groups.js";
import { buildItem, findItem, findItems, setItemTitle } from "./sidebar_items.js";
import { loadMore, loadPagesOnDemand, updateMoreButton } from "./sidebar_list.js";
import { handleSearchBox } from "./sidebar_search.js";
import { createSidebarState } from "./sidebar_state.js";

// The date rules, which tests/web/test_history_browser.py checks in the browser from here.
export { dateGroup } from "./sidebar_groups.js";

function onListKeydown(sidebar, event) {
  const link = event.target.closest?.(".conversation-link");
  if (!link || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) {
    return;
  }
  const item = link.closest("li.conversation");
  const all = links(link.closest(".conversation-list"));
  const index = all.indexOf(link);
  let target = null;
  switch (event.key) {
    case "ArrowDown":
      target = all[index + 1] || null;
      if (!target && sidebar.view.cursor) {
        loadMore(sidebar, sidebar.view, { focusFirstNew: true });
      }
      break;
    case "ArrowUp":
      target = all[index - 1] || null;
      break;
    case "Home":
      target = all[0];
      break;
    case "End":
      target = all.at(-1);
      break;
    case "F2":
      startRename(sidebar, item);
      break;
    case "Delete":
      confirmDelete(sidebar, item);
      break;
    default:
      return;
  }
  event.preventDefault();
  if (target) {
    focusLink(target);
  }
}

function markCurrent(sidebar, id) {
  for (const current of sidebar.element.querySelectorAll(".conversation-list [aria-current]")) {
    current.removeAttribute("aria-current");
  }
  for (const item of id === null ? [] : findItems(sidebar, id)) {
    const link = item.querySelector(".conversation-link");
    link.setAttribute("aria-current", "page");
    setTabStop(link);
  }
}

/** Add the conversation (or move it) to the top of the history, marked as the open one. */
function upsert(sidebar, id, title) {
  let item = findItem(sidebar, id);
  if (!item) {
    item = buildItem(sidebar, {
      id,
      title: title || "New chat",
      updatedAt: new Date().toISOString(),
    });
  }
  for (const each of findItems(sidebar, id)) {
    if (title && !each.classList.contains("is-renaming")) {
      setItemTitle(each, title);
    }
  }
  if (!item.isConnected) {
    place(sidebar.list, item, { first: true });
  } else {
    moveToTop(item);
  }
  markCurrent(sidebar, id);
  if (sidebar.view === sidebar.browse) {
    sidebar.scroller.scrollTo({ top: 0 });
  }
}

/**
 * The sidebar, from its elements (`layout`, `sidebar`, `list`, `toggle`, `closeButton`,
 * `backdrop`, the delete `dialog`, the item template, `statusBox`), the site API's
 * conversations URL, the new chat's URL, and the page's: `currentConversationId()`,
 * `onRenamed(id, title)` and `onDeleted(id, wasOpen)`. Returns what the page calls:
 * `upsert(id, title)`, when a turn starts in a conversation.
 */
export function createSidebar(options) {
  const sidebar = createSidebarState(options);
  for (const container of [sidebar.browse.container, sidebar.results.container]) {
    container.addEventListener("keydown", (event) => onListKeydown(sidebar, event));
    container.addEventListener("focusin", (event) => onListFocusin(sidebar, event));
  }
  loadPagesOnDemand(sidebar);
  handleSearchBox(sidebar);
  handleItemButtons(sidebar);
  handleDrawer(sidebar, options);

  regroup(sidebar.list);
  ensureTabStop(sidebar.list);
  updateMoreButton(sidebar);

  return { upsert: (id, title) => upsert(sidebar, id, title) };
}
