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
  let busy = false;
  let queued = false;

  function grow() {
    textarea.style.height = "auto";
    const max = Math.max(120, Math.round(window.innerHeight * MAX_HEIGHT_RATIO));
    const border = textarea.offsetHeight - textarea.clientHeight;
    const wanted = textarea.scrollHeight + border;
    textarea.style.height = `${Math.min(wanted, max)}px`;
    textarea.classList.toggle("is-scrolling", wanted > max);
  }

  function hasText() {
    return textarea.value.trim() !== "";
  }

  function updateSendButton() {
    sendButton.disabled = busy || !hasText();
    if (queued && !hasText()) {
      queued = false; // emptied the box: nothing left to send
    }
    form.classList.toggle("is-queued", queued);
    if (hint) {
      hint.textContent = HINTS[queued ? "queued" : busy ? "busy" : "idle"];
    }
  }

  function submit() {
    if (!hasText()) {
      return;
    }
    if (busy) {
      queued = true;
      updateSendButton();
      return;
    }
    onSend(textarea.value);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  textarea.addEventListener("input", () => {
    grow();
    updateSendButton();
  });

  textarea.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
      return;
    }
    event.preventDefault();
    submit();
  });

  stopButton.addEventListener("click", () => onStop());
  window.addEventListener("resize", grow);

  const composer = {
    setBusy(value) {
      busy = value;
      // The model applies from the next message; locked meanwhile, which also puts Stop
      // one Tab away from the box.
      if (modelSelect) {
        modelSelect.disabled = value;
      }
      sendButton.hidden = value;
      stopButton.hidden = !value;
      form.classList.toggle("is-busy", value);
      updateSendButton();
    },
    get value() {
      return textarea.value;
    },
    set value(text) {
      textarea.value = text;
      grow();
      updateSendButton();
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
      if (!queued) {
        return "";
      }
      queued = false;
      updateSendButton();
      return hasText() ? textarea.value : "";
    },
    /** Forget a queued message (its text stays in the box). */
    unqueue() {
      queued = false;
      updateSendButton();
    },
  };
  grow();
  updateSendButton();
  return composer;
}
