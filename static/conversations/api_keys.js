// The API keys page: a Copy button for the key shown once, and Revoke after a confirmation
// dialog. Without scripts the page still works: the key can be selected by hand and Revoke
// submits at once.

import { copyText, showCopied } from "./clipboard.js";

function initCopyButton() {
  const button = document.getElementById("new-key-copy");
  const input = button && document.getElementById(button.dataset.copyFrom);
  if (!input) {
    return;
  }
  button.hidden = false;
  button.addEventListener("click", async () => {
    if (await copyText(input.value)) {
      showCopied(button);
    } else {
      // The clipboard refused: select the key so that Ctrl+C (or a long press) copies it.
      input.focus();
      input.select();
    }
  });
}

function initRevokeConfirmation() {
  const dialog = document.getElementById("revoke-dialog");
  if (!dialog) {
    return;
  }
  for (const form of document.querySelectorAll("form.key-revoke")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const opener = form.querySelector("button");
      dialog.querySelector(".revoke-dialog-name").textContent = form.dataset.keyName;
      dialog.returnValue = "";
      dialog.addEventListener(
        "close",
        () => {
          if (dialog.returnValue === "revoke") {
            form.submit(); // a plain submit: no second trip through this listener
          } else {
            opener?.focus();
          }
        },
        { once: true },
      );
      dialog.showModal();
    });
  }
}

initCopyButton();
initRevokeConfirmation();
