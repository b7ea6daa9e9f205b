// Following a streaming answer: keep the thread scrolled to the bottom while the reader is
// there; once they scroll up, leave the view alone and offer a "Jump to latest" button.

const NEAR_BOTTOM_PX = 48;

export function createScrollFollower(container, jumpButton) {
  let following = true;

  function distanceFromBottom() {
    return container.scrollHeight - container.scrollTop - container.clientHeight;
  }

  function updateJumpButton() {
    if (jumpButton) {
      jumpButton.hidden = distanceFromBottom() <= NEAR_BOTTOM_PX;
    }
  }

  function toBottom() {
    following = true;
    container.scrollTop = container.scrollHeight;
    updateJumpButton();
  }

  container.addEventListener("scroll", () => {
    following = distanceFromBottom() <= NEAR_BOTTOM_PX;
    updateJumpButton();
  }, { passive: true });

  // A wheel or swipe towards older messages stops following at once, even if the content
  // grows in the same frame and the scroll position still looks close to the bottom.
  container.addEventListener("wheel", (event) => {
    if (event.deltaY < 0) {
      following = false;
    }
  }, { passive: true });
  container.addEventListener("keydown", (event) => {
    if (["ArrowUp", "PageUp", "Home"].includes(event.key)) {
      following = false;
    }
  });

  if (jumpButton) {
    jumpButton.addEventListener("click", () => {
      toBottom();
    });
  }

  return {
    /** Call after the content changed: scrolls to the bottom if the reader is following. */
    follow() {
      if (following) {
        container.scrollTop = container.scrollHeight;
      }
      updateJumpButton();
    },
    /** Scroll to the bottom and follow from now on (a new message was sent). */
    toBottom,
  };
}
