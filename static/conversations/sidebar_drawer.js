// On phones the sidebar is a drawer over the chat, behind a toggle button: the close button,
// the backdrop and Escape close it, and so does the window growing wide.

const NARROW_QUERY = "(max-width: 760px)";
const SLIDE_MS = 300;

/** Wire the drawer's `toggle`, `closeButton` and `backdrop`. */
export function handleDrawer(sidebar, { toggle, closeButton, backdrop }) {
  const { layout } = sidebar;
  const narrow = window.matchMedia(NARROW_QUERY);
  let slideTimer = 0;

  const isOpen = () => layout.classList.contains("sidebar-open");

  function setOpen(open, { restoreFocus = true } = {}) {
    if (narrow.matches) {
      layout.classList.add("is-sliding");
      clearTimeout(slideTimer);
      slideTimer = setTimeout(() => layout.classList.remove("is-sliding"), SLIDE_MS);
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
      const stop = sidebar.view.container.querySelector(".conversation-link[tabindex='0']");
      (stop || sidebar.element.querySelector("#new-chat")).focus();
    } else if (restoreFocus && sidebar.element.contains(document.activeElement)) {
      toggle.focus();
    }
  }

  toggle.addEventListener("click", () => setOpen(!isOpen()));
  closeButton.addEventListener("click", () => setOpen(false));
  backdrop.addEventListener("click", () => setOpen(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && isOpen() && !event.defaultPrevented && !sidebar.dialog.open) {
      setOpen(false);
    }
  });
  narrow.addEventListener("change", () => {
    if (!narrow.matches && isOpen()) {
      setOpen(false, { restoreFocus: false });
    }
  });
}
