// Small DOM builders shared by the page's modules: icons from the page's SVG sprite and
// labelled buttons.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An icon from the sprite in chat.html (`<symbol id="icon-NAME">`), hidden from readers. */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", `icon icon-${name}`);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const use = document.createElementNS(SVG_NS, "use");
  use.setAttribute("href", `#icon-${name}`);
  svg.append(use);
  return svg;
}

/**
 * A <button type="button">. `label` is its accessible name; with `iconName` and no
 * `showLabel` the label is visually hidden (and shown as a tooltip).
 */
export function makeButton({ label, className = "", iconName = "", showLabel = false, data = {} }) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  if (iconName) {
    button.append(icon(iconName));
  }
  const text = document.createElement("span");
  text.className = showLabel || !iconName ? "button-label" : "button-label visually-hidden";
  text.textContent = label;
  button.append(text);
  if (iconName && !showLabel) {
    button.title = label;
  }
  Object.assign(button.dataset, data);
  return button;
}
