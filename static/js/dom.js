// DOM helpers every part of the page uses: an element by its id, and a new
// element whose text goes in through textContent, never as HTML (all text
// from the server or the user reaches the page this way).

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
