// The sidebar's shared state: its elements, what the page told it, and its two lists (the
// history, and search results, which replace it while searching). Each sidebar module is
// handed this one object.

/** A list's paging state. `cursor` is where the next page starts (null: none); `controller`
 * aborts a running load; `focusFirstNew`: the keyboard asked for more, so the next page to
 * land takes the focus. */
function listState(container, cursor) {
  return {
    container,
    query: "",
    cursor,
    loading: false,
    controller: null,
    focusFirstNew: false,
  };
}

/** The state, from createSidebar's options (sidebar.js says what each is). */
export function createSidebarState({
  layout,
  sidebar,
  list,
  dialog,
  itemTemplate,
  statusBox,
  apiUrl,
  newChatUrl,
  currentConversationId,
  onRenamed,
  onDeleted,
}) {
  const browse = listState(list, list.dataset.nextCursor || null);
  return {
    element: sidebar,
    layout,
    list,
    dialog,
    itemTemplate,
    statusBox,
    apiUrl,
    newChatUrl,
    currentConversationId,
    onRenamed,
    onDeleted,
    scroller: list.closest(".sidebar-scroll"),
    heading: sidebar.querySelector("#sidebar-heading"),
    searchBox: sidebar.querySelector("#conversation-search"),
    searchStatus: sidebar.querySelector("#conversation-search-status"),
    moreButton: sidebar.querySelector("#conversation-more"),
    helpId: "conversation-list-help",
    pageSize: Number.parseInt(list.dataset.pageSize, 10) || 50,
    browse,
    results: listState(sidebar.querySelector("#conversation-results"), null),
    view: browse, // the list shown: `browse` or `results`
    observer: null, // loads the next page as "Show more" scrolls into sight (sidebar_list.js)
    searchTimer: 0,
  };
}

/** Say something under the list (a failed load, rename or delete); empty hides it. */
export function showStatus(sidebar, message) {
  sidebar.statusBox.textContent = message;
  sidebar.statusBox.hidden = !message;
}
