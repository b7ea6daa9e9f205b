// The conversation list: newest first under date headings, the open one marked. The page
// renders the first page; the next ones load from the site API as the list is scrolled (or
// "Show more" is pressed). A search box swaps in the matching conversations, paged too;
// Escape or clearing it brings the list back. The list is one Tab stop (a roving tabindex):
// Up/Down, Home/End move, Enter opens, F2 renames inline (Enter saves, Escape cancels),
// Delete asks to delete. On phones the sidebar is a drawer behind a toggle button.

import { deleteConversation, listConversations, renameConversation } from "./api.js";

const NARROW_QUERY = "(max-width: 760px)";
const SEARCH_DELAY_MS = 250;
const DAY_MS = 86_400_000;
const MONTH_YEAR = new Intl.DateTimeFormat("en", { month: "long", year: "numeric" });

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate());
}

/**
 * The heading a conversation last active at `when` is listed under, in the browser's time
 * zone: the rules of conversations/history.py's date_group.
 */
export function dateGroup(when, now = new Date()) {
  if (Number.isNaN(when.getTime())) {
    return "Today";
  }
  // Rounded: a day with a daylight-saving change is not 24 hours long.
  const age = Math.round((startOfDay(now) - startOfDay(when)) / DAY_MS);
  if (age <= 0) {
    return "Today";
  }
  if (age === 1) {
    return "Yesterday";
  }
  if (age <= 7) {
    return "Previous 7 days";
  }
  if (age <= 30) {
    return "Previous 30 days";
  }
  return MONTH_YEAR.format(when);
}

export function createSidebar({
  layout,
  sidebar,
  list,
  toggle,
  closeButton,
  backdrop,
  dialog,
  itemTemplate,
  statusBox,
  apiUrl,
  newChatUrl,
  currentConversationId,
  onRenamed,
  onDeleted,
}) {
  const narrow = window.matchMedia(NARROW_QUERY);
  const scroller = list.closest(".sidebar-scroll");
  const heading = sidebar.querySelector("#sidebar-heading");
  const searchBox = sidebar.querySelector("#conversation-search");
  const searchStatus = sidebar.querySelector("#conversation-search-status");
  const moreButton = sidebar.querySelector("#conversation-more");
  const helpId = "conversation-list-help";
  const pageSize = Number.parseInt(list.dataset.pageSize, 10) || 50;

  // The two lists: the history, and search results (which replace it while searching).
  // `cursor` is where the next page starts (null: none); `controller` aborts a running load;
  // `focusFirstNew`: the keyboard asked for more, so the next page to land takes the focus.
  const browse = {
    container: list,
    query: "",
    cursor: list.dataset.nextCursor || null,
    loading: false,
    controller: null,
    focusFirstNew: false,
  };
  const results = {
    container: sidebar.querySelector("#conversation-results"),
    query: "",
    cursor: null,
    loading: false,
    controller: null,
    focusFirstNew: false,
  };
  let view = browse;

  function conversationUrl(id) {
    const base = newChatUrl.endsWith("/") ? newChatUrl : `${newChatUrl}/`;
    return `${base}${encodeURIComponent(id)}/`;
  }

  function showStatus(message) {
    statusBox.textContent = message;
    statusBox.hidden = !message;
  }

  function itemId(item) {
    return Number.parseInt(item.dataset.conversationId, 10);
  }

  function itemTitle(item) {
    return item.querySelector(".conversation-link").textContent;
  }

  function itemSelector(id) {
    return `li[data-conversation-id="${CSS.escape(String(id))}"]`;
  }

  /** The conversation's item in the history (not in search results). */
  function findItem(id) {
    return list.querySelector(itemSelector(id));
  }

  /** Its items in both lists. */
  function findItems(id) {
    return [...sidebar.querySelectorAll(`.conversation-list ${itemSelector(id)}`)];
  }

  function setItemTitle(item, title) {
    item.querySelector(".conversation-link").textContent = title;
    item.querySelector("[data-sidebar-action='rename']").setAttribute("aria-label", `Rename “${title}”`);
    item.querySelector("[data-sidebar-action='delete']").setAttribute("aria-label", `Delete “${title}”`);
  }

  function buildItem({ id, title, updatedAt }) {
    const item = itemTemplate.content.firstElementChild.cloneNode(true);
    item.dataset.conversationId = String(id);
    item.dataset.updatedAt = updatedAt;
    item.querySelector(".conversation-link").href = conversationUrl(id);
    setItemTitle(item, title);
    if (id === currentConversationId()) {
      item.querySelector(".conversation-link").setAttribute("aria-current", "page");
    }
    return item;
  }

  // --- date groups ---------------------------------------------------------

  function itemGroup(item) {
    return dateGroup(new Date(item.dataset.updatedAt || Date.now()));
  }

  function newGroup(label) {
    const group = document.createElement("div");
    group.className = "conversation-group";
    group.dataset.group = label;
    const title = document.createElement("h3");
    title.className = "conversation-group-heading";
    title.textContent = label;
    const items = document.createElement("ul");
    items.className = "conversation-group-items";
    group.append(title, items);
    return group;
  }

  /** Put the item last (or first) in the container, under its date's heading. */
  function place(container, item, { first = false } = {}) {
    const label = itemGroup(item);
    let group = first ? container.firstElementChild : container.lastElementChild;
    if (group?.dataset.group !== label) {
      group = newGroup(label);
      if (first) {
        container.prepend(group);
      } else {
        container.append(group);
      }
    }
    const items = group.querySelector("ul");
    if (first) {
      items.prepend(item);
    } else {
      items.append(item);
    }
  }

  function pruneGroups(container) {
    for (const group of container.querySelectorAll(".conversation-group")) {
      if (!group.querySelector("li")) {
        group.remove();
      }
    }
  }

  function moveToTop(item) {
    const container = item.closest(".conversation-list");
    item.dataset.updatedAt = new Date().toISOString();
    item.remove();
    place(container, item, { first: true });
    pruneGroups(container);
  }

  /** Regroup the server-rendered page in the browser's time zone, if it differs. */
  function regroup(container) {
    const items = [...container.querySelectorAll("li.conversation")];
    const grouped = (item) => item.closest(".conversation-group")?.dataset.group === itemGroup(item);
    if (items.every(grouped)) {
      return;
    }
    container.replaceChildren();
    for (const item of items) {
      place(container, item);
    }
  }

  // --- one Tab stop: the roving tabindex -----------------------------------

  function links(container) {
    return [...container.querySelectorAll(".conversation-link")];
  }

  function setTabStop(link) {
    const container = link.closest(".conversation-list");
    for (const other of container.querySelectorAll(".conversation-link[tabindex='0']")) {
      if (other !== link) {
        other.tabIndex = -1;
      }
    }
    link.tabIndex = 0;
  }

  /** Keep one link of the list in the tab order: the open conversation's if it is listed. */
  function ensureTabStop(container) {
    const current = container.querySelector(".conversation-link[aria-current]");
    const stop = container.querySelector(".conversation-link[tabindex='0']");
    const link = current || stop || container.querySelector(".conversation-link");
    if (link) {
      setTabStop(link);
    }
  }

  function focusLink(link) {
    setTabStop(link);
    link.focus();
    link.scrollIntoView({ block: "nearest" });
  }

  function onListKeydown(event) {
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
        if (!target && view.cursor) {
          loadMore(view, { focusFirstNew: true });
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
        startRename(item);
        break;
      case "Delete":
        confirmDelete(item);
        break;
      default:
        return;
    }
    event.preventDefault();
    if (target) {
      focusLink(target);
    }
  }

  function onListFocusin(event) {
    const link = event.target.closest?.(".conversation-link");
    if (!link) {
      return;
    }
    setTabStop(link);
    // Say how the list works when it is entered, not on every move inside it.
    const container = link.closest(".conversation-list");
    for (const described of container.querySelectorAll("[aria-describedby]")) {
      described.removeAttribute("aria-describedby");
    }
    if (!container.contains(event.relatedTarget)) {
      link.setAttribute("aria-describedby", helpId);
    }
  }

  for (const container of [browse.container, results.container]) {
    container.addEventListener("keydown", onListKeydown);
    container.addEventListener("focusin", onListFocusin);
  }

  // --- pages ---------------------------------------------------------------

  function pageParams(state, cursor) {
    const params = { source: "web", limit: String(pageSize) };
    if (state.query) {
      params.q = state.query;
    }
    if (cursor) {
      params.cursor = cursor;
    }
    return params;
  }

  function updateMoreButton() {
    if (!view.cursor && document.activeElement === moreButton) {
      // The last page came while "Show more" had the focus: keep it in the list, at its end.
      const all = links(view.container);
      if (all.length) {
        focusLink(all[all.length - 1]);
      }
    }
    moreButton.hidden = !view.cursor;
    // Observing again reports the button's position now: a short page leaves it in
    // sight, and the next page should load without another scroll.
    observer?.unobserve(moreButton);
    if (view.cursor) {
      observer?.observe(moreButton);
    }
  }

  /** Add the page's conversations the list does not have yet; return the first added. */
  function appendPage(container, conversations) {
    let firstNew = null;
    for (const conversation of conversations) {
      if (container.querySelector(itemSelector(conversation.id))) {
        continue; // already listed: moved to the top since the page before was read
      }
      const item = buildItem({
        id: conversation.id,
        title: conversation.title || "Untitled",
        updatedAt: conversation.updated_at,
      });
      place(container, item);
      firstNew ||= item;
    }
    ensureTabStop(container);
    return firstNew;
  }

  /** Load the next page of a list (the history's, or the search's first when `fresh`). */
  async function loadMore(state, { focusFirstNew = false, fresh = false } = {}) {
    // Asked for by keyboard: the page that lands (this one, or one already on its way, say
    // from scrolling) takes the focus to its first new conversation.
    state.focusFirstNew = (state.focusFirstNew && !fresh) || focusFirstNew;
    if (state.loading && !fresh) {
      return;
    }
    state.controller?.abort();
    const controller = new AbortController();
    state.controller = controller;
    state.loading = true;
    state.container.setAttribute("aria-busy", "true");
    let page;
    try {
      const params = pageParams(state, fresh ? null : state.cursor);
      page = await listConversations(apiUrl, params, controller.signal);
    } catch (error) {
      if (error?.name !== "AbortError") {
        showStatus(error.message);
        state.loading = false;
        state.focusFirstNew = false;
        state.container.removeAttribute("aria-busy");
      }
      return;
    }
    state.loading = false;
    state.container.removeAttribute("aria-busy");
    showStatus("");
    if (fresh) {
      state.container.replaceChildren();
    }
    state.cursor = page.has_more ? page.next_cursor : null;
    const firstNew = appendPage(state.container, page.data);
    if (fresh) {
      showResults(page.data.length);
    }
    if (state === view) {
      updateMoreButton();
    }
    if (state.focusFirstNew && firstNew) {
      focusLink(firstNew.querySelector(".conversation-link"));
    }
    state.focusFirstNew = false;
  }

  const observer =
    "IntersectionObserver" in window
      ? new IntersectionObserver(
          (entries) => {
            if (entries.some((entry) => entry.isIntersecting) && view.cursor && !view.loading) {
              loadMore(view);
            }
          },
          { root: scroller, rootMargin: "0px 0px 240px 0px" },
        )
      : null;

  moreButton.addEventListener("click", () => {
    if (view.cursor) {
      loadMore(view, { focusFirstNew: true });
    }
  });

  // --- search --------------------------------------------------------------

  let searchTimer = 0;

  function showResults(count) {
    view = results;
    sidebar.classList.add("is-searching");
    list.hidden = true;
    results.container.hidden = false;
    heading.textContent = "Search results";
    searchStatus.textContent = count ? "" : `No conversations match “${results.query}”.`;
    scroller.scrollTo({ top: 0 });
  }

  function search(query) {
    clearTimeout(searchTimer);
    results.query = query;
    results.cursor = null;
    loadMore(results, { fresh: true });
  }

  function endSearch() {
    clearTimeout(searchTimer);
    results.controller?.abort();
    results.loading = false;
    results.query = "";
    results.cursor = null;
    results.container.replaceChildren();
    results.container.hidden = true;
    list.hidden = false;
    sidebar.classList.remove("is-searching");
    heading.textContent = "Chats";
    searchStatus.textContent = "";
    view = browse;
    updateMoreButton();
  }

  searchBox.addEventListener("input", () => {
    const query = searchBox.value.trim();
    clearTimeout(searchTimer);
    if (!query) {
      endSearch();
    } else if (query !== results.query || view !== results) {
      searchTimer = setTimeout(() => search(query), SEARCH_DELAY_MS);
    }
  });

  searchBox.addEventListener("keydown", (event) => {
    if (event.isComposing || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) {
      return;
    }
    if (event.key === "Escape" && searchBox.value) {
      event.preventDefault();
      searchBox.value = "";
      endSearch();
    } else if (event.key === "Enter") {
      event.preventDefault();
      const query = searchBox.value.trim();
      if (query) {
        search(query);
      }
    } else if (event.key === "ArrowDown") {
      const link = view.container.querySelector(".conversation-link[tabindex='0']");
      if (link) {
        event.preventDefault();
        focusLink(link);
      }
    }
  });

  // --- the open conversation -----------------------------------------------

  function markCurrent(id) {
    for (const current of sidebar.querySelectorAll(".conversation-list [aria-current]")) {
      current.removeAttribute("aria-current");
    }
    for (const item of id === null ? [] : findItems(id)) {
      const link = item.querySelector(".conversation-link");
      link.setAttribute("aria-current", "page");
      setTabStop(link);
    }
  }

  /** Add the conversation (or move it) to the top of the history, marked as the open one. */
  function upsert(id, title) {
    let item = findItem(id);
    if (!item) {
      item = buildItem({ id, title: title || "New chat", updatedAt: new Date().toISOString() });
    }
    for (const each of findItems(id)) {
      if (title && !each.classList.contains("is-renaming")) {
        setItemTitle(each, title);
      }
    }
    if (!item.isConnected) {
      place(list, item, { first: true });
    } else {
      moveToTop(item);
    }
    markCurrent(id);
    if (view === browse) {
      scroller.scrollTo({ top: 0 });
    }
  }

  // --- rename --------------------------------------------------------------

  function startRename(item) {
    if (item.classList.contains("is-renaming")) {
      return;
    }
    showStatus("");
    const id = itemId(item);
    const link = item.querySelector(".conversation-link");
    const before = link.textContent;
    const input = document.createElement("input");
    input.type = "text";
    input.className = "rename-input";
    input.value = before;
    input.maxLength = 200;
    input.setAttribute("aria-label", "New title (Enter saves, Escape cancels)");
    item.classList.add("is-renaming");
    link.hidden = true;
    link.after(input);
    input.focus();
    input.select();

    let settled = false;
    const close = () => {
      input.remove();
      link.hidden = false;
      item.classList.remove("is-renaming");
    };
    const finish = async (save) => {
      if (settled) {
        return;
      }
      settled = true;
      const hadFocus = document.activeElement === input;
      const title = input.value.split(/\s+/).filter(Boolean).join(" ");
      if (!save || !title || title === before) {
        close();
        if (hadFocus) {
          focusLink(link);
        }
        return;
      }
      input.readOnly = true;
      try {
        const saved = await renameConversation(apiUrl, id, title);
        close();
        // A rename counts as activity: the server lists it first now, in both lists.
        for (const each of findItems(id)) {
          setItemTitle(each, saved.title || title);
          moveToTop(each);
        }
        onRenamed(id, saved.title || title);
        if (hadFocus) {
          focusLink(link);
        }
      } catch (error) {
        settled = false;
        input.readOnly = false;
        showStatus(error.message || "The conversation could not be renamed.");
        input.focus();
      }
    };

    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => {
      if (!input.readOnly) {
        finish(true);
      }
    });
  }

  // --- delete --------------------------------------------------------------

  function confirmDelete(item) {
    showStatus("");
    dialog.querySelector(".delete-dialog-name").textContent = itemTitle(item);
    dialog.returnValue = "";
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue === "delete") {
          remove(item);
        }
      },
      { once: true },
    );
    dialog.showModal();
  }

  async function remove(item) {
    const id = itemId(item);
    try {
      await deleteConversation(apiUrl, id);
    } catch (error) {
      showStatus(error.message || "The conversation could not be deleted.");
      return;
    }
    const container = item.closest(".conversation-list");
    const all = container ? links(container) : [];
    const index = all.indexOf(item.querySelector(".conversation-link"));
    const next = all[index + 1] || all[index - 1] || null;
    for (const each of findItems(id)) {
      const from = each.closest(".conversation-list");
      each.remove();
      pruneGroups(from);
      ensureTabStop(from);
    }
    if (id === currentConversationId()) {
      onDeleted(id, true);
      return;
    }
    onDeleted(id, false);
    if (next) {
      focusLink(next);
    } else {
      sidebar.querySelector("#new-chat").focus();
    }
  }

  sidebar.addEventListener("click", (event) => {
    const button = event.target.closest(".conversation-list [data-sidebar-action]");
    if (!button) {
      return;
    }
    const item = button.closest("li[data-conversation-id]");
    if (button.dataset.sidebarAction === "rename") {
      startRename(item);
    } else if (button.dataset.sidebarAction === "delete") {
      confirmDelete(item);
    }
  });

  // --- the drawer on phones ------------------------------------------------

  function isOpen() {
    return layout.classList.contains("sidebar-open");
  }

  let slideTimer = 0;

  function setOpen(open, { restoreFocus = true } = {}) {
    if (narrow.matches) {
      layout.classList.add("is-sliding");
      clearTimeout(slideTimer);
      slideTimer = setTimeout(() => layout.classList.remove("is-sliding"), 300);
    }
    layout.classList.toggle("sidebar-open", open);
    // While the drawer covers the chat, keyboard focus stays in the drawer.
    const main = layout.querySelector(".chat-main");
    if (main) {
      main.inert = open && narrow.matches;
    }
    toggle.setAttribute("aria-expanded", String(open));
    backdrop.hidden = !open;
    if (open) {
      const stop = view.container.querySelector(".conversation-link[tabindex='0']");
      (stop || sidebar.querySelector("#new-chat")).focus();
    } else if (restoreFocus && sidebar.contains(document.activeElement)) {
      toggle.focus();
    }
  }

  toggle.addEventListener("click", () => setOpen(!isOpen()));
  closeButton.addEventListener("click", () => setOpen(false));
  backdrop.addEventListener("click", () => setOpen(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && isOpen() && !event.defaultPrevented && !dialog.open) {
      setOpen(false);
    }
  });
  narrow.addEventListener("change", () => {
    if (!narrow.matches && isOpen()) {
      setOpen(false, { restoreFocus: false });
    }
  });

  regroup(list);
  ensureTabStop(list);
  updateMoreButton();

  return { upsert };
}
