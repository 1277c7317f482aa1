// @ts-check
/**
 * dom.js: the two DOM helpers every part of the built-in page uses (served at
 * /_luabroker/dom.js). No framework: elements are made with `el` and reordered with
 * `placeInOrder`, which moves only what is out of place so focus survives a re-layout.
 */

/** @typedef {string | number | boolean | null | undefined} AttrValue */

/**
 * Makes an element. `class` sets the class name, `text` the text content; any other attribute
 * is set as a string (`true` as an empty attribute); `false`, `null` and `undefined` are left out.
 * @param {string} tag
 * @param {Record<string, AttrValue>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = String(v);
    else if (k === "text") e.textContent = String(v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

/**
 * Makes `items` the children of `parent` in this order, moving only what is out of place
 * (moving an element that holds the focus would blur it). Children not in `items` stay after them.
 * @param {Element} parent
 * @param {Element[]} items
 */
export function placeInOrder(parent, items) {
  let at = parent.firstElementChild;
  for (const item of items) {
    if (item === at) {
      at = at.nextElementSibling;
    } else {
      parent.insertBefore(item, at);
    }
  }
}
