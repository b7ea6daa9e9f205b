// The inline editor of a user message: its text in a textarea, with Save & send and Cancel,
// in place of the message until it is saved or cancelled.

import { makeButton } from "./dom.js";
import { messageBody, messageText } from "./message_text.js";

let editorCount = 0;

/** The editor's form (not yet in the page): a labelled textarea holding `text`, and its buttons. */
function buildEditor(text) {
  editorCount += 1;
  const form = document.createElement("form");
  form.className = "message-editor";
  const label = document.createElement("label");
  label.className = "visually-hidden";
  label.htmlFor = `message-editor-${editorCount}`;
  label.textContent = "Edit your message";
  const input = document.createElement("textarea");
  input.id = label.htmlFor;
  input.className = "message-editor-input";
  input.rows = 3;
  input.value = text;
  const buttons = document.createElement("div");
  buttons.className = "message-editor-buttons";
  const cancel = makeButton({ label: "Cancel", className: "secondary-button" });
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "primary-button";
  save.textContent = "Save & send";
  buttons.append(cancel, save);
  form.append(label, input, buttons);
  return { form, input, cancel };
}

/**
 * Turn a user message into an editor: a textarea with Save & send / Cancel. Enter saves,
 * Shift+Enter adds a line, Escape cancels. onSave(text) is called with the new text.
 */
export function openEditor(article, { text = null, onSave, onCancel }) {
  if (article.classList.contains("is-editing")) {
    return;
  }
  article.classList.add("is-editing");
  const body = messageBody(article);
  const actions = article.querySelector(".message-actions");
  body.hidden = true;
  if (actions) {
    actions.hidden = true;
  }
  const { form, input, cancel } = buildEditor(text ?? messageText(article));
  body.after(form);

  const grow = () => {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight + 2, window.innerHeight * 0.5)}px`;
  };
  const close = () => {
    form.remove();
    body.hidden = false;
    if (actions) {
      actions.hidden = false;
    }
    article.classList.remove("is-editing");
  };
  const submit = () => {
    const newText = input.value;
    if (!newText.trim()) {
      input.focus();
      return;
    }
    close();
    onSave(newText);
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  cancel.addEventListener("click", () => {
    close();
    onCancel();
  });
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      close();
      onCancel();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  grow();
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}
