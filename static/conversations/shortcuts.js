// Keyboard on the chat page: the message box is focused when a chat opens, the skip link
// goes to it, and a few shortcuts (listed in the help dialog, which the "Keyboard shortcuts"
// button also opens):
//   Ctrl+Shift+O (Cmd on macOS)  new chat
//   Shift+Escape                 focus the message box
//   Ctrl+/ (Cmd+/), or ?         this help
// Enter and Shift+Enter belong to the composer, Escape (stop the answer) to turns.js, and the
// arrow keys, F2 and Delete in the conversation list to the sidebar; the dialog lists them too.

const IS_MAC =
  typeof navigator !== "undefined" &&
  /Mac|iPhone|iPad/.test(navigator.userAgentData?.platform || navigator.platform || "");

// Only where a real keyboard is likely: focusing a textarea on a phone pops up its keyboard.
const HAS_KEYBOARD_QUERY = "(hover: hover) and (pointer: fine)";

function isEditable(element) {
  return (
    element instanceof HTMLElement &&
    (element.isContentEditable || element.matches("input, textarea, select"))
  );
}

function modalIsOpen() {
  return document.querySelector("dialog[open]:modal") !== null;
}

/** Ctrl on most systems, Cmd on macOS; no other modifier but the ones asked for. */
function withModifier(event, { shift = false } = {}) {
  const mod = IS_MAC ? event.metaKey && !event.ctrlKey : event.ctrlKey && !event.metaKey;
  return mod && !event.altKey && event.shiftKey === shift;
}

function showPlatformKeys(dialog) {
  if (!IS_MAC) {
    return;
  }
  for (const key of dialog.querySelectorAll("kbd[data-modifier]")) {
    key.textContent = "Cmd";
  }
}

/**
 * Wire the shortcuts, the help dialog and the skip link; focus the message box.
 * `newChatUrl` is where Ctrl+Shift+O goes.
 */
export function initShortcuts({ newChatUrl }) {
  const textarea = document.getElementById("message-input");
  const dialog = document.getElementById("shortcuts-dialog");
  const openButton = document.getElementById("shortcuts-button");
  if (!textarea) {
    return;
  }
  const modifier = IS_MAC ? "Meta" : "Control";
  textarea.setAttribute("aria-keyshortcuts", "Shift+Escape");
  document.getElementById("new-chat")?.setAttribute("aria-keyshortcuts", `${modifier}+Shift+O`);
  openButton?.setAttribute("aria-keyshortcuts", `${modifier}+/ Shift+?`);
  if (dialog) {
    showPlatformKeys(dialog);
  }

  function focusMessageBox() {
    textarea.focus();
    // Put the caret at the end of whatever is there (a draft, a restored message).
    const end = textarea.value.length;
    textarea.setSelectionRange(end, end);
  }

  function openHelp() {
    if (dialog && !dialog.open) {
      dialog.showModal();
    }
  }

  openButton?.addEventListener("click", openHelp);

  // The skip link's href is #message-input (it works without scripts too); here it also
  // keeps the URL clean and the thread where it was.
  document.querySelector(".skip-link")?.addEventListener("click", (event) => {
    event.preventDefault();
    focusMessageBox();
  });

  // Shift+Escape is caught first (capture), so that the plain-Escape handlers (stop the
  // answer, close the drawer) do not also act on it.
  document.addEventListener(
    "keydown",
    (event) => {
      const plainShift = event.shiftKey && !event.ctrlKey && !event.metaKey && !event.altKey;
      if (event.key === "Escape" && plainShift && !event.isComposing && !modalIsOpen()) {
        event.preventDefault();
        event.stopPropagation();
        focusMessageBox();
      }
    },
    { capture: true },
  );

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.repeat || modalIsOpen()) {
      return;
    }
    const key = event.key;
    if (withModifier(event, { shift: true }) && key.toLowerCase() === "o") {
      event.preventDefault();
      window.location.assign(newChatUrl);
    } else if (
      (withModifier(event) && (key === "/" || event.code === "Slash")) ||
      (key === "?" && !event.ctrlKey && !event.metaKey && !isEditable(event.target))
    ) {
      event.preventDefault();
      openHelp();
    }
  });

  // A chat that opens is ready to type in (unless the user is already somewhere else).
  const nothingFocused = !document.activeElement || document.activeElement === document.body;
  if (nothingFocused && window.matchMedia(HAS_KEYBOARD_QUERY).matches) {
    textarea.focus({ preventScroll: true });
  }
}
