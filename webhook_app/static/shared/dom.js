// @ts-check
/**
 * DOM helpers shared by the agent console's record panel and the admin page (the Flex plugin draws with React).
 * Plain ES module, no build step.
 */

/** @typedef {Node | string | number | null | undefined | false} Child */
/**
 * An attribute value: left out when null, undefined or false; an empty attribute when true. `text` sets the
 * text, `class` the class name, `dataset` data-* values, `on<event>` adds that event's listener.
 * @typedef {string | number | boolean | null | undefined | ((event: Event) => void) | Record<string, string>} Attr
 */

/**
 * el("p", {class: "x", text: "hi"}, child, ...): an element, its attributes (see Attr), then its children (nodes
 * or text; arrays are spread one level; null, undefined and false are left out).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, Attr>} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === "function") {
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    } else if (typeof value === "object") {
      if (name === "dataset") Object.assign(node.dataset, value);
    } else if (name === "text") {
      node.textContent = String(value);
    } else if (name === "class") {
      node.className = String(value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/**
 * The element with this id, of the type the caller expects (a form, a button…); throws when the page has none.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new (...args: never[]) => T} type
 * @returns {T}
 */
export function byId(id, type) {
  const node = document.getElementById(id);
  if (!(node instanceof type)) throw new TypeError(`#${id}: no ${type.name} with this id on the page`);
  return node;
}

let idCounter = 0;

/**
 * An id no other element made here has: prefix-1, prefix-2…
 * @param {string} prefix
 */
export function uniqueId(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}
