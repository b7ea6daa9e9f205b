// Each list is one Tab stop (a roving tabindex): one link of it is in the tab order, the
// open conversation's if it is listed, and the arrow keys move it (sidebar.js).

/** The list's conversation links, in order. */
export function links(container) {
  return [...container.querySelectorAll(".conversation-link")];
}

export function setTabStop(link) {
  const container = link.closest(".conversation-list");
  for (const other of container.querySelectorAll(".conversation-link[tabindex='0']")) {
    if (other !== link) {
      other.tabIndex = -1;
    }
  }
  link.tabIndex = 0;
}

/** Keep one link of the list in the tab order: the open conversation's if it is listed. */
export function ensureTabStop(container) {
  const current = container.querySelector(".conversation-link[aria-current]");
  const stop = container.querySelector(".conversation-link[tabindex='0']");
  const link = current || stop || container.querySelector(".conversation-link");
  if (link) {
    setTabStop(link);
  }
}

export function focusLink(link) {
  setTabStop(link);
  link.focus();
  link.scrollIntoView({ block: "nearest" });
}

/** Focus came to a link: it becomes the tab stop, described when the list is entered. */
export function onListFocusin(sidebar, event) {
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
    link.setAttribute("aria-describedby", sidebar.helpId);
  }
}
