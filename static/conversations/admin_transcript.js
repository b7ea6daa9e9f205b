// Render the admin transcript's Markdown through the chat page's own sanitizing renderer,
// so a reviewer sees each answer as the user saw it, and nothing in it can run.
import { handleCodeCopy } from "./codeblocks.js";
import { renderMarkdown } from "./markdown.js";

for (const element of document.querySelectorAll(".transcript-body[data-markdown]")) {
  renderMarkdown(element, element.textContent);
}
const transcript = document.querySelector(".transcript");
if (transcript) {
  handleCodeCopy(transcript);
}
