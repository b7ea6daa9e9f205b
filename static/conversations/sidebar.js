// The conversation list: newest first, the open one marked; inline rename (Enter saves,
// Escape cancels), delete after a confirmation dialog, and on phones a drawer behind a
// toggle button.

import { deleteConversation, renameConversation } from "./api.js";

const NARROW_QUERY = "(max-width: 760px)";

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

  function findItem(id) {
    return list.querySelector(`li[data-conversation-id="${CSS.escape(String(id))}"]`);
  }

  function setItemTitle(item, title) {
    item.querySelector(".conversation-link").textContent = title;
    item.querySelector("[data-sidebar-action='rename']").setAttribute("aria-label", `Rename “${title}”`);
    item.querySelector("[data-sidebar-action='delete']").setAttribute("aria-label", `Delete “${title}”`);
  }

  function markCurrent(id) {
    for (const current of list.querySelectorAll("[aria-current]")) {
      current.removeAttribute("aria-current");
    }
    const item = id === null ? null : findItem(id);
    item?.querySelector(".conversation-link").setAttribute("aria-current", "page");
  }

  /** Add the conversation (or move it) to the top of the list, marked as the open one. */
  function upsert(id, title) {
    let item = findItem(id);
    if (!item) {
      item = itemTemplate.content.firstElementChild.cloneNode(true);
      item.dataset.conversationId = String(id);
      item.querySelector(".conversation-link").href = conversationUrl(id);
      setItemTitle(item, title || "New chat");
    } else if (title && !item.classList.contains("is-renaming")) {
      setItemTitle(item, title);
    }
    list.prepend(item);
    markCurrent(id);
    list.closest(".sidebar-scroll")?.scrollTo({ top: 0 });
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
          link.focus();
        }
        return;
      }
      input.readOnly = true;
      try {
        const saved = await renameConversation(apiUrl, id, title);
        close();
        setItemTitle(item, saved.title || title);
        list.prepend(item); // a rename counts as activity: the server lists it first now
        onRenamed(id, saved.title || title);
        if (hadFocus) {
          link.focus();
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
    const next = item.nextElementSibling || item.previousElementSibling;
    item.remove();
    if (id === currentConversationId()) {
      onDeleted(id, true);
      return;
    }
    onDeleted(id, false);
    (next?.querySelector(".conversation-link") || sidebar.querySelector("#new-chat")).focus();
  }

  list.addEventListener("click", (event) => {
    const button = event.target.closest("[data-sidebar-action]");
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
      const current = list.querySelector("[aria-current]") || sidebar.querySelector("#new-chat");
      current.focus();
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

  return { upsert, markCurrent, findItem, close: () => setOpen(false) };
}
