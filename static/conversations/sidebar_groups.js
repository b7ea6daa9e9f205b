// The sidebar's date headings ("Today", "Yesterday", "Previous 7 days", ...): each item is
// placed under its own, in the browser's time zone, and empty groups go.

const DAY_MS = 86_400_000;
const MONTH_YEAR = new Intl.DateTimeFormat("en", { month: "long", year: "numeric" });

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate());
}

/**
 * The heading a conversation last active at `when` is listed under, in the browser's time
 * zone: the rules of conversations/history.py's date_group.
 */
export function dateGroup(when, now = new Date()) {
  if (Number.isNaN(when.getTime())) {
    return "Today";
  }
  // Rounded: a day with a daylight-saving change is not 24 hours long.
  const age = Math.round((startOfDay(now) - startOfDay(when)) / DAY_MS);
  if (age <= 0) {
    return "Today";
  }
  if (age === 1) {
    return "Yesterday";
  }
  if (age <= 7) {
    return "Previous 7 days";
  }
  if (age <= 30) {
    return "Previous 30 days";
  }
  return MONTH_YEAR.format(when);
}

function itemGroup(item) {
  return dateGroup(new Date(item.dataset.updatedAt || Date.now()));
}

function newGroup(label) {
  const group = document.createElement("div");
  group.className = "conversation-group";
  group.dataset.group = label;
  const title = document.createElement("h3");
  title.className = "conversation-group-heading";
  title.textContent = label;
  const items = document.createElement("ul");
  items.className = "conversation-group-items";
  group.append(title, items);
  return group;
}

/** Put the item last (or first) in the container, under its date's heading. */
export function place(container, item, { first = false } = {}) {
  const label = itemGroup(item);
  let group = first ? container.firstElementChild : container.lastElementChild;
  if (group?.dataset.group !== label) {
    group = newGroup(label);
    if (first) {
      container.prepend(group);
    } else {
      container.append(group);
    }
  }
  const items = group.querySelector("ul");
  if (first) {
    items.prepend(item);
  } else {
    items.append(item);
  }
}

export function pruneGroups(container) {
  for (const group of container.querySelectorAll(".conversation-group")) {
    if (!group.querySelector("li")) {
      group.remove();
    }
  }
}

/** Move the item to the top of its list, as active just now. */
export function moveToTop(item) {
  const container = item.closest(".conversation-list");
  item.dataset.updatedAt = new Date().toISOString();
  item.remove();
  place(container, item, { first: true });
  pruneGroups(container);
}

/** Regroup the server-rendered page in the browser's time zone, if it differs. */
export function regroup(container) {
  const items = [...container.querySelectorAll("li.conversation")];
  const grouped = (item) => item.closest(".conversation-group")?.dataset.group === itemGroup(item);
  if (items.every(grouped)) {
    return;
  }
  container.replaceChildren();
  for (const item of items) {
    place(container, item);
  }
}
