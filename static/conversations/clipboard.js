// Copy text to the clipboard and confirm it on the button that did it.

const CONFIRM_MS = 2000;

/** Copy text; resolves true on success. Falls back to execCommand outside secure contexts. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the legacy way (e.g. permission refused)
    }
  }
  const helper = document.createElement("textarea");
  helper.className = "clipboard-helper";
  helper.value = text;
  helper.setAttribute("readonly", "");
  helper.setAttribute("aria-hidden", "true");
  document.body.append(helper);
  helper.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  helper.remove();
  return copied;
}

const pending = new WeakMap(); // button -> {label, ariaLabel, timer}

/**
 * Show "Copied" on a button for a moment: its `.button-label` text changes (visible or
 * visually hidden) and it gets the `is-copied` class (CSS swaps a copy icon for a check).
 */
export function showCopied(button) {
  const label = button.querySelector(".button-label");
  if (!label) {
    return;
  }
  let state = pending.get(button);
  if (state) {
    clearTimeout(state.timer);
  } else {
    state = { label: label.textContent, ariaLabel: button.getAttribute("aria-label") };
    pending.set(button, state);
  }
  label.textContent = "Copied";
  if (state.ariaLabel !== null) {
    button.setAttribute("aria-label", "Copied");
  }
  button.classList.add("is-copied");
  state.timer = setTimeout(() => {
    pending.delete(button);
    label.textContent = state.label;
    if (state.ariaLabel !== null) {
      button.setAttribute("aria-label", state.ariaLabel);
    }
    button.classList.remove("is-copied");
  }, CONFIRM_MS);
}
