// @ts-check
/**
 * viewdefs.js: the templates the app ships (served at /_luabroker/viewdefs.js).
 *
 * The server sends them as the `viewdefs` property of variable 1: a JSON string of
 * `{"Type.NAMESPACE": "<template>…</template>", …}`, each type's templates once per tab and
 * ahead of the values that need them, and again when a file changes under `--hotload`. A key
 * splits at its *last* dot (`lua.ViewList.DEFAULT` is type `lua.ViewList`), as the server
 * names the files. A viewdef must be exactly one `<template>` element; anything else is
 * reported and not stored.
 *
 * Lookup follows ui-engine: `Type.<namespace>`, then `Type.<fallbackNamespace>`, then
 * `Type.DEFAULT`. A template's own `<style>` elements are taken out of it and put in the
 * document head once per viewdef (replaced when the viewdef changes), not once per rendered copy.
 *
 * Views that could not render yet (no type, or no viewdef for it yet) wait here and are tried
 * again when templates arrive; views whose viewdef changed are re-rendered in place.
 */

/**
 * @typedef {object} Viewdef
 * @property {string} key "Type.NAMESPACE"
 * @property {string} type
 * @property {string} namespace
 * @property {HTMLTemplateElement} template its content without its `<style>` elements
 * @property {string} source the text it was parsed from
 */

/**
 * A view that renders from the store: asked to try again (pending) or to render afresh (its
 * viewdef changed).
 * @typedef {{retry: () => void, viewdefKey: () => string | null}} StoreView
 */

/**
 * Built-in templates used when the app sent none of its own for the key: a ViewListItem shows
 * its item. (The server may send `lua.ViewList*` templates of its own; those win.)
 * @type {Record<string, string>}
 */
const BUILT_IN = {
  "lua.ViewListItem.list-item": '<template><div ui-view="item"></div></template>',
};

/** @param {string} key */
function splitKey(key) {
  const dot = key.lastIndexOf(".");
  if (dot <= 0 || dot === key.length - 1) return null;
  return { type: key.slice(0, dot), namespace: key.slice(dot + 1) };
}

/**
 * Parses one viewdef; null when it is not a single `<template>`.
 * @param {string} key
 * @param {string} html
 * @returns {Viewdef | null}
 */
function parseViewdef(key, html) {
  const parts = splitKey(key);
  if (!parts || typeof html !== "string") return null;
  const scratch = document.createElement("div");
  scratch.innerHTML = html.trim();
  const template = scratch.firstElementChild;
  if (scratch.children.length !== 1 || !(template instanceof HTMLTemplateElement)) return null;
  return { key, type: parts.type, namespace: parts.namespace, template, source: html };
}

export class ViewdefStore {
  /** @param {(key: string, problem: string) => void} report how a bad viewdef is reported */
  constructor(report) {
    this.report = report;
    /** @type {Map<string, Viewdef>} */
    this.viewdefs = new Map();
    /** @type {Set<StoreView>} */
    this.pending = new Set();
    /** Every view rendered from a viewdef, to find those a changed viewdef concerns. @type {Set<StoreView>} */
    this.views = new Set();
    for (const [key, html] of Object.entries(BUILT_IN)) {
      const v = parseViewdef(key, html);
      if (v) this.viewdefs.set(key, v);
    }
  }

  /**
   * The viewdef a variable of `type` renders with.
   * @param {string} type
   * @param {string | undefined} namespace
   * @param {string | undefined} fallbackNamespace
   */
  lookup(type, namespace, fallbackNamespace) {
    if (!type) return undefined;
    for (const ns of [namespace, fallbackNamespace, "DEFAULT"]) {
      if (!ns) continue;
      const v = this.viewdefs.get(type + "." + ns);
      if (v) return v;
    }
    return undefined;
  }

  /** @param {string} key */
  has(key) {
    return this.viewdefs.has(key);
  }

  /**
   * Takes in the `viewdefs` property of variable 1 (a JSON string); re-renders the views whose
   * viewdef changed and retries the pending ones.
   * @param {string} json
   */
  receive(json) {
    /** @type {Record<string, string>} */
    let entries;
    try {
      entries = JSON.parse(json);
    } catch (e) {
      this.report("viewdefs", "the viewdefs property is not JSON");
      return;
    }
    /** @type {Set<string>} */
    const changed = new Set();
    for (const [key, html] of Object.entries(entries || {})) {
      const viewdef = parseViewdef(key, html);
      if (!viewdef) {
        this.report(key, "a viewdef must be a single <template> element");
        continue;
      }
      const old = this.viewdefs.get(key);
      if (old && old.source === viewdef.source) continue;
      adoptStyles(viewdef);
      this.viewdefs.set(key, viewdef);
      if (old) changed.add(key);
    }
    // Hot reload: a view shown with a changed viewdef renders again, in place.
    if (changed.size > 0) {
      for (const view of [...this.views]) {
        const key = view.viewdefKey();
        if (key && changed.has(key) && this.views.has(view)) view.retry();
      }
    }
    for (const view of [...this.pending]) {
      if (this.pending.has(view)) view.retry();
    }
  }

  /** @param {StoreView} view */
  wait(view) {
    this.pending.add(view);
  }

  /** @param {StoreView} view */
  rendered(view) {
    this.pending.delete(view);
    this.views.add(view);
  }

  /** @param {StoreView} view */
  forget(view) {
    this.pending.delete(view);
    this.views.delete(view);
  }
}

/**
 * Moves a viewdef's `<style>` elements into the document head, one set per key.
 * @param {Viewdef} viewdef
 */
function adoptStyles(viewdef) {
  const styles = [...viewdef.template.content.querySelectorAll("style")];
  const id = "lb-viewdef-style-" + viewdef.key.replace(/[^A-Za-z0-9_-]/g, "_");
  document.getElementById(id)?.remove();
  if (styles.length === 0) return;
  const style = document.createElement("style");
  style.id = id;
  style.dataset.viewdef = viewdef.key;
  style.textContent = styles.map((s) => s.textContent).join("\n");
  for (const s of styles) s.remove();
  document.head.append(style);
}
