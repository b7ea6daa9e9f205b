// The sidebar's search box: typing (after a pause) or Enter swaps in the conversations that
// match, paged like the history; Escape or clearing the box brings the history back, and
// Down goes from the box into the list.

import { focusLink } from "./sidebar_focus.js";
import { loadMore, showHistory } from "./sidebar_list.js";

const SEARCH_DELAY_MS = 250;

function search(sidebar, query) {
  clearTimeout(sidebar.searchTimer);
  sidebar.results.query = query;
  sidebar.results.cursor = null;
  loadMore(sidebar, sidebar.results, { fresh: true });
}

function endSearch(sidebar) {
  const { results } = sidebar;
  clearTimeout(sidebar.searchTimer);
  results.controller?.abort();
  results.loading = false;
  results.query = "";
  results.cursor = null;
  results.container.replaceChildren();
  showHistory(sidebar);
}

function onSearchKeydown(sidebar, event) {
  const { searchBox } = sidebar;
  if (event.isComposing || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) {
    return;
  }
  if (event.key === "Escape" && searchBox.value) {
    event.preventDefault();
    searchBox.value = "";
    endSearch(sidebar);
  } else if (event.key === "Enter") {
    event.preventDefault();
    const query = searchBox.value.trim();
    if (query) {
      search(sidebar, query);
    }
  } else if (event.key === "ArrowDown") {
    const link = sidebar.view.container.querySelector(".conversation-link[tabindex='0']");
    if (link) {
      event.preventDefault();
      focusLink(link);
    }
  }
}

export function handleSearchBox(sidebar) {
  const { searchBox, results } = sidebar;
  searchBox.addEventListener("input", () => {
    const query = searchBox.value.trim();
    clearTimeout(sidebar.searchTimer);
    if (!query) {
      endSearch(sidebar);
    } else if (query !== results.query || sidebar.view !== results) {
      sidebar.searchTimer = setTimeout(() => search(sidebar, query), SEARCH_DELAY_MS);
    }
  });
  searchBox.addEventListener("keydown", (event) => onSearchKeydown(sidebar, event));
}
