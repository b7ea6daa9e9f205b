// The composer: a textarea that grows with its text, Enter to send, Shift+Enter for a new
// line, Send while idle and Stop while an answer streams.

const MAX_HEIGHT_RATIO = 0.4; // of the window's height

export function createComposer({ form, textarea, sendButton, stopButton, onSend, onStop }) {
  let busy = false;

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
  }

  function submit() {
    if (busy || !hasText()) {
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
      textarea.disabled = value;
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
  };
  grow();
  updateSendButton();
  return composer;
}
