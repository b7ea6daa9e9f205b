// The sidebar's lists and their pages. The page renders the history's first page; the next
// ones load from the site API as the list is scrolled (or "Show more" is pressed). Search
// results are a second list, shown in the history's place while searching.

import { listConversations } from "./api.js";
import { ensureTabStop, focusLink, links } from "./sidebar_focus.js";
import { place } from "./sidebar_groups.js";
import { buildItem, itemSelector } from "./sidebar_items.js";
import { showStatus } from "./sidebar_state.js";

/** The list API's query for the next page of a list (`state`: the history's or search's). */
function pageParams(sidebar, state, cursor) {
  const params = { source: "web", limit: String(sidebar.pageSize) };
  if (state.query) {
    params.q = state.query;
  }
  if (cursor) {
    params.cursor = cursor;
  }
  return params;
}

/** Show "Show more" while the list shown has more pages, and watch it come into sight. */
export function updateMoreButton(sidebar) {
  const { view, moreButton, observer } = sidebar;
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
function appendPage(sidebar, container, conversations) {
  let firstNew = null;
  for (const conversation of conversations) {
    if (container.querySelector(itemSelector(conversation.id))) {
      continue; // already listed: moved to the top since the page before was read
    }
    const item = buildItem(sidebar, {
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

/** Show the search results in the history's place. */
function showResults(sidebar, count) {
  const { results } = sidebar;
  sidebar.view = results;
  sidebar.element.classList.add("is-searching");
  sidebar.list.hidden = true;
  results.container.hidden = false;
  sidebar.heading.textContent = "Search results";
  sidebar.searchStatus.textContent = count ? "" : `No conversations match “${results.query}”.`;
  sidebar.scroller.scrollTo({ top: 0 });
}

/** Show the history again, in the search results' place. */
export function showHistory(sidebar) {
  sidebar.results.container.hidden = true;
  sidebar.list.hidden = false;
  sidebar.element.classList.remove("is-searching");
  sidebar.heading.textContent = "Chats";
  sidebar.searchStatus.textContent = "";
  sidebar.view = sidebar.browse;
  updateMoreButton(sidebar);
}

/**
 * Load the next page of a list (`state`: the history's, or the search's first when
 * `fresh`).
 */
export async function loadMore(sidebar, state, { focusFirstNew = false, fresh = false } = {}) {
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
    const params = pageParams(sidebar, state, fresh ? null : state.cursor);
    page = await listConversations(sidebar.apiUrl, params, controller.signal);
  } catch (error) {
    if (error?.name !== "AbortError") {
      showStatus(sidebar, error.message);
      state.loading = false;
      state.focusFirstNew = false;
      state.container.removeAttribute("aria-busy");
    }
    return;
  }
  state.loading = false;
  state.container.removeAttribute("aria-busy");
  showStatus(sidebar, "");
  if (fresh) {
    state.container.replaceChildren();
  }
  state.cursor = page.has_more ? page.next_cursor : null;
  const firstNew = appendPage(sidebar, state.container, page.data);
  if (fresh) {
    showResults(sidebar, page.data.length);
  }
  if (state === sidebar.view) {
    updateMoreButton(sidebar);
  }
  if (state.focusFirstNew && firstNew) {
    focusLink(firstNew.querySelector(".conversation-link"));
  }
  state.focusFirstNew = false;
}

/** Load the next page as "Show more" comes into sight, or is pressed. */
export function loadPagesOnDemand(sidebar) {
  sidebar.observer =
    "IntersectionObserver" in window
      ? new IntersectionObserver(
          (entries) => {
            const { view } = sidebar;
            if (entries.some((entry) => entry.isIntersecting) && view.cursor && !view.loading) {
              loadMore(sidebar, view);
            }
          },
          { root: sidebar.scroller, rootMargin: "0px 0px 240px 0px" },
        )
      : null;

  sidebar.moreButton.addEventListener("click", () => {
    if (sidebar.view.cursor) {
      loadMore(sidebar, sidebar.view, { focusFirstNew: true });
    }
  });
}
