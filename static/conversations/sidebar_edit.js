// Renaming a conversation inline (F2 or its button: Enter saves, Escape cancels, leaving the
// box saves) and deleting one (Delete or its button, after a confirmation dialog).

import { deleteConversation, renameConversation } from "./api.js";
import { ensureTabStop, focusLink, links } from "./sidebar_focus.js";
import { moveToTop, pruneGroups } from "./sidebar_groups.js";
import { findItems, itemId, itemTitle, setItemTitle } from "./sidebar_items.js";
import { showStatus } from "./sidebar_state.js";

// --- rename --------------------------------------------------------------------

function renameInput(title) {
  const input = document.createElement("input");
  input.type = "text";
  input.className = "rename-input";
  input.value = title;
  input.maxLength = 200;
  input.setAttribute("aria-label", "New title (Enter saves, Escape cancels)");
  return input;
}

function closeRename({ item, link, input }) {
  input.remove();
  link.hidden = false;
  item.classList.remove("is-renaming");
}

/** End a rename: save the title typed (when `save`, and it changed), or keep the old one. */
async function finishRename(sidebar, rename, save) {
  const { item, link, input, before } = rename;
  if (rename.settled) {
    return;
  }
  rename.settled = true;
  const hadFocus = document.activeElement === input;
  const title = input.value.split(/\s+/).filter(Boolean).join(" ");
  if (!save || !title || title === before) {
    closeRename(rename);
    if (hadFocus) {
      focusLink(link);
    }
    return;
  }
  input.readOnly = true;
  const id = itemId(item);
  try {
    const saved = await renameConversation(sidebar.apiUrl, id, title);
    closeRename(rename);
    // A rename counts as activity: the server lists it first now, in both lists.
    for (const each of findItems(sidebar, id)) {
      setItemTitle(each, saved.title || title);
      moveToTop(each);
    }
    sidebar.onRenamed(id, saved.title || title);
    if (hadFocus) {
      focusLink(link);
    }
  } catch (error) {
    rename.settled = false;
    input.readOnly = false;
    showStatus(sidebar, error.message || "The conversation could not be renamed.");
    input.focus();
  }
}

export function startRename(sidebar, item) {
  if (item.classList.contains("is-renaming")) {
    return;
  }
  showStatus(sidebar, "");
  const link = item.querySelector(".conversation-link");
  const before = link.textContent;
  const input = renameInput(before);
  item.classList.add("is-renaming");
  link.hidden = true;
  link.after(input);
  input.focus();
  input.select();

  const rename = { item, link, input, before, settled: false };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      finishRename(sidebar, rename, true);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      finishRename(sidebar, rename, false);
    }
  });
  input.addEventListener("blur", () => {
    if (!input.readOnly) {
      finishRename(sidebar, rename, true);
    }
  });
}

// --- delete --------------------------------------------------------------------

export function confirmDelete(sidebar, item) {
  const { dialog } = sidebar;
  showStatus(sidebar, "");
  dialog.querySelector(".delete-dialog-name").textContent = itemTitle(item);
  dialog.returnValue = "";
  dialog.addEventListener(
    "close",
    () => {
      if (dialog.returnValue === "delete") {
        removeConversation(sidebar, item);
      }
    },
    { once: true },
  );
  dialog.showModal();
}

/** Delete the item's conversation, and its items; the focus goes to the next one. */
async function removeConversation(sidebar, item) {
  const id = itemId(item);
  try {
    await deleteConversation(sidebar.apiUrl, id);
  } catch (error) {
    showStatus(sidebar, error.message || "The conversation could not be deleted.");
    return;
  }
  const container = item.closest(".conversation-list");
  const all = container ? links(container) : [];
  const index = all.indexOf(item.querySelector(".conversation-link"));
  const next = all[index + 1] || all[index - 1] || null;
  for (const each of findItems(sidebar, id)) {
    const from = each.closest(".conversation-list");
    each.remove();
    pruneGroups(from);
    ensureTabStop(from);
  }
  if (id === sidebar.currentConversationId()) {
    sidebar.onDeleted(id, true);
    return;
  }
  sidebar.onDeleted(id, false);
  if (next) {
    focusLink(next);
  } else {
    sidebar.element.querySelector("#new-chat").focus();
  }
}

/** One listener for every item's Rename and Delete buttons, present or future. */
export function handleItemButtons(sidebar) {
  sidebar.element.addEventListener("click", (event) => {
    const button = event.target.closest(".conversation-list [data-sidebar-action]");
    if (!button) {
      return;
    }
    const item = button.closest("li[data-conversation-id]");
    if (button.dataset.sidebarAction === "rename") {
      startRename(sidebar, item);
    } else if (button.dataset.sidebarAction === "delete") {
      confirmDelete(sidebar, item);
    }
  });
}
