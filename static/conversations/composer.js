// The composer: a textarea that grows with its text, Enter to send, Shift+Enter for a new
// line, Send while idle and Stop while an answer streams. The box stays usable while an
// answer streams (type-ahead): Enter then queues the message, sent when the answer ends,
// and the hint under the box says so.

const MAX_HEIGHT_RATIO = 0.4; // of the window's height

const HINTS = {
  idle: "Enter to send · Shift+Enter for a new line",
  busy: "Esc stops the answer · Enter queues your next message",
  queued: "Queued: your message is sent when this answer ends · Esc stops the answer",
};

function grow(textarea) {
  textarea.style.height = "auto";
  const max = Math.max(120, Math.round(window.innerHeight * MAX_HEIGHT_RATIO));
  const border = textarea.offsetHeight - textarea.clientHeight;
  const wanted = textarea.scrollHeight + border;
  textarea.style.height = `${Math.min(wanted, max)}px`;
  textarea.classList.toggle("is-scrolling", wanted > max);
}

function hasText(box) {
  return box.textarea.value.trim() !== "";
}

function updateSendButton(box) {
  box.sendButton.disabled = box.busy || !hasText(box);
  if (box.queued && !hasText(box)) {
    box.queued = false; // emptied the box: nothing left to send
  }
  box.form.classList.toggle("is-queued", box.queued);
  if (box.hint) {
    box.hint.textContent = HINTS[box.queued ? "queued" : box.busy ? "busy" : "idle"];
  }
}

/** What the page does with the composer. */
function composerControls(box, { stopButton, modelSelect }) {
  const { form, textarea, sendButton } = box;
  const composer = {
    setBusy(value) {
      box.busy = value;
      // The model applies from the next message; locked meanwhile, which also puts Stop
      // one Tab away from the box.
      if (modelSelect) {
        modelSelect.disabled = value;
      }
      sendButton.hidden = value;
      stopButton.hidden = !value;
      form.classList.toggle("is-busy", value);
      updateSendButton(box);
    },
    get value() {
      return textarea.value;
    },
    set value(text) {
      textarea.value = text;
      grow(textarea);
      updateSendButton(box);
    },
    /** Put text back after a request the server refused, unless the user typed since. */
    restore(text) {
      if (!textarea.value) {
        composer.value = text;
      }
    },
    focus() {
      textarea.focus();
    },
    /** The queued message's text, if one waits (and no longer queued), else "". */
    takeQueued() {
      if (!box.queued) {
        return "";
      }
      box.queued = false;
      updateSendButton(box);
      return hasText(box) ? textarea.value : "";
    },
    /** Forget a queued message (its text stays in the box). */
    unqueue() {
      box.queued = false;
      updateSendButton(box);
    },
  };
  return composer;
}

export function createComposer({
  form,
  textarea,
  sendButton,
  stopButton,
  hint,
  modelSelect,
  onSend,
  onStop,
}) {
  // `busy` while an answer streams; `queued` when Enter was pressed meanwhile.
  const box = { form, textarea, sendButton, hint, busy: false, queued: false };

  function submit() {
    if (!hasText(box)) {
      return;
    }
    if (box.busy) {
      box.queued = true;
      updateSendButton(box);
      return;
    }
    onSend(textarea.value);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  textarea.addEventListener("input", () => {
    grow(textarea);
    updateSendButton(box);
  });

  textarea.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
      return;
    }
    event.preventDefault();
    submit();
  });

  stopButton.addEventListener("click", () => onStop());
  window.addEventListener("resize", () => grow(textarea));

  const composer = composerControls(box, { stopButton, modelSelect });
  grow(textarea);
  updateSendButton(box);
  return composer;
}
