// @ts-check
/**
 * view.js: views and view lists, the two bindings that render objects with viewdefs (served
 * at /_luabroker/view.js), following ui-engine's specs/viewdefs.md:
 *
 *   - A `View` shows one variable whose value is an object: it looks up the viewdef for the
 *     variable's `type` property (`Type.<namespace>`, `Type.<fallbackNamespace>`,
 *     `Type.DEFAULT`), clones the template and puts its elements *in place of* its element
 *     (the `ui-view` element, or a list's item), carrying over that element's class and style.
 *     The first element gets `ui-viewdef="Type.NAMESPACE"`. A view renders again when the
 *     variable's type or namespace changes or its viewdef is replaced (hot reload); until its
 *     variable has a type with a viewdef it waits (store.wait).
 *   - `ui-view="path"` inside a template makes a child view on a child variable; its namespace
 *     is its own `ui-namespace`, else the nearest `ui-namespace` around it inside the same
 *     template, else the parent variable's; `fallbackNamespace` is inherited.
 *   - `ui-viewlist="path"` makes a `ViewList`: the variable for `path` is created with
 *     `wrapper=lua.ViewList` (unless the path names a wrapper, or the list sits in a
 *     `lua.ViewList`'s own template, whose `items` already are ViewListItems), so its value is the
 *     ViewList object; the list watches its `items` (the array of `lua.ViewListItem`s) and keeps
 *     one item view per element, a clone of the list's first child element (default `<div>`),
 *     appended in order and removed from the end. Items render in the `list-item` namespace
 *     (the ViewList sets `fallbackNamespace`), so `lua.ViewListItem.list-item` shows each item's
 *     `item` by its own type's `list-item` viewdef (e.g. `Task.list-item.html`), or its DEFAULT.
 *     A plain array (another wrapper, or none) is listed the same way, element by element, with
 *     `?itemWrapper=Type` applied to each.
 *
 * Going away is explicit: a view that re-renders destroys the variables of its old bindings;
 * a view or list that is removed destroys its own variable, and the server destroys everything
 * below it.
 */

import { parsePath } from "./bindings.js";

/** @typedef {import("./variables.js").Variables} Variables */
/** @typedef {import("./variables.js").Variable} Variable */
/** @typedef {import("./viewdefs.js").ViewdefStore} ViewdefStore */
/** @typedef {import("./bindings.js").Binder} Binder */

/**
 * What every view shares.
 * @typedef {{vars: Variables, store: ViewdefStore, binder: Binder}} Env
 */

const VIEW_LIST = "lua.ViewList";

/** What one rendering of a template owns: binding variables, child views, lists. */
class Scope {
  /** @param {Env} env */
  constructor(env) {
    this.env = env;
    /** @type {number[]} */
    this.ids = [];
    /** @type {View[]} */
    this.views = [];
    /** @type {ViewList[]} */
    this.lists = [];
  }

  /** @param {number} id */
  own(id) {
    this.ids.push(id);
  }

  /**
   * Lets go of everything. `tellServer`: destroy the variables on the server too (false when
   * an ancestor variable's destroy takes them with it).
   * @param {boolean} tellServer
   */
  dispose(tellServer) {
    for (const id of this.ids) {
      if (tellServer) this.env.vars.destroy(id);
      else this.env.vars.forget(id);
    }
    for (const view of this.views) view.destroy(tellServer);
    for (const list of this.lists) list.destroy(tellServer);
    this.ids = [];
    this.views = [];
    this.lists = [];
  }
}

/**
 * The namespace properties of a child view or list made from `el` in a template whose root
 * elements are `roots`, under variable `parent`.
 * @param {Element} el
 * @param {Element[]} roots
 * @param {Variable | undefined} parent
 * @param {Record<string, string>} props
 */
function namespaceProps(el, roots, parent, props) {
  /** @type {Element | null} */
  let at = el;
  let ns = null;
  while (at) {
    ns = at.getAttribute("ui-namespace");
    if (ns || roots.includes(at)) break;
    at = at.parentElement;
  }
  if (ns) props.namespace = ns;
  else if (parent && parent.properties.namespace) props.namespace = parent.properties.namespace;
  if (!props.fallbackNamespace && parent && parent.properties.fallbackNamespace) {
    props.fallbackNamespace = parent.properties.fallbackNamespace;
  }
  if (!props.access) props.access = "r";
  return props;
}

/**
 * Binds a freshly cloned template's elements to variable `ctx`: `ui-view` and `ui-viewlist`
 * elements become child views and lists (their content is theirs), every other `ui-*`
 * attribute a binding.
 * @param {Env} env
 * @param {Element[]} roots
 * @param {number} ctx
 * @param {Scope} scope
 */
function bindTemplate(env, roots, ctx, scope) {
  const parent = env.vars.get(ctx);
  /** @param {Element} el */
  const walk = (el) => {
    const viewPath = el.getAttribute("ui-view");
    if (viewPath !== null) {
      const p = parsePath(viewPath);
      const props = namespaceProps(el, roots, parent, { ...p.server });
      const v = env.vars.create(ctx, { ...props, path: p.path });
      scope.views.push(new View(env, el, v));
      return;
    }
    const listPath = el.getAttribute("ui-viewlist");
    if (listPath !== null) {
      scope.lists.push(new ViewList(env, el, listPath, roots, parent, ctx));
      env.binder.bindElement(el, ctx, scope);
      return;
    }
    env.binder.bindElement(el, ctx, scope);
    for (const child of [...el.children]) walk(child);
  };
  for (const root of roots) walk(root);
}

export class View {
  /**
   * @param {Env} env
   * @param {Element} anchor the element the view's content replaces (kept to come back to)
   * @param {Variable} variable
   */
  constructor(env, anchor, variable) {
    this.env = env;
    this.anchor = anchor;
    this.variable = variable;
    /** The template's elements now in the page (empty: the anchor is shown). @type {Element[]} */
    this.roots = [];
    /** @type {Scope | null} */
    this.scope = null;
    /** @type {string | null} */
    this.shownKey = null;
    /** @type {string | null} */
    this.shownSource = null;
    this.destroyed = false;
    env.vars.listen(variable.id, (_v, change) => {
      if (change.value || change.properties.some((k) => k === "type" || k === "namespace" || k === "fallbackNamespace")) {
        this.render();
      }
    });
    this.render();
  }

  viewdefKey() {
    return this.shownKey;
  }

  retry() {
    this.render();
  }

  /** The nodes the view occupies now: its rendered elements (or those of child views that replaced one), or its anchor. */
  occupied() {
    if (this.roots.length === 0) return [this.anchor];
    /** @type {Element[]} */
    const out = [];
    for (const root of this.roots) {
      const child = this.scope && this.scope.views.find((v) => v.anchor === root);
      if (child) out.push(...child.occupied());
      else out.push(root);
    }
    return out;
  }

  render() {
    if (this.destroyed) return;
    const v = this.variable;
    const { store } = this.env;
    const viewdef = v.hasValue ? store.lookup(v.type, v.properties.namespace, v.properties.fallbackNamespace) : undefined;
    if (!viewdef) {
      // Nothing to show (no value yet, no object, or no template for its type): wait for one.
      this.clear();
      store.wait(this);
      return;
    }
    if (viewdef.key === this.shownKey && viewdef.source === this.shownSource) return;
    const fragment = /** @type {DocumentFragment} */ (viewdef.template.content.cloneNode(true));
    const roots = [...fragment.children];
    if (roots.length === 0) {
      this.env.binder.report("bad-viewdef", "the template has no elements", viewdef.key);
      store.wait(this);
      return;
    }
    const first = roots[0];
    first.setAttribute("ui-viewdef", viewdef.key);
    first.setAttribute("data-var-id", String(v.id));
    // The ui-view element's own class and style go on with its replacement.
    for (const c of this.anchor.classList) first.classList.add(c);
    const style = this.anchor.getAttribute("style");
    if (style) first.setAttribute("style", (first.getAttribute("style") || "") + ";" + style);

    const scope = new Scope(this.env);
    bindTemplate(this.env, roots, v.id, scope);
    const old = this.occupied();
    const place = old[0];
    const parent = place.parentNode;
    if (parent) {
      for (const root of roots) parent.insertBefore(root, place);
    }
    for (const n of old) n.remove();
    const oldScope = this.scope;
    this.roots = roots;
    this.scope = scope;
    this.shownKey = viewdef.key;
    this.shownSource = viewdef.source;
    // The old bindings' variables are destroyed only now, after the new ones exist.
    if (oldScope) oldScope.dispose(true);
    store.rendered(this);
  }

  /** Takes the rendered content away (the variable no longer holds an object) and shows the anchor again. */
  clear() {
    if (this.roots.length === 0) return;
    const old = this.occupied();
    old[0].parentNode?.insertBefore(this.anchor, old[0]);
    for (const n of old) n.remove();
    this.roots = [];
    this.scope?.dispose(true);
    this.scope = null;
    this.shownKey = null;
    this.shownSource = null;
  }

  /**
   * Removes the view from the page and destroys its variable (`tellServer`; otherwise an
   * ancestor's destroy takes it with it).
   * @param {boolean} tellServer
   */
  destroy(tellServer) {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const n of this.occupied()) n.remove();
    this.anchor.remove();
    this.scope?.dispose(false);
    this.scope = null;
    this.env.store.forget(this);
    if (tellServer) this.env.vars.destroy(this.variable.id);
    else this.env.vars.forget(this.variable.id);
  }
}

export class ViewList {
  /**
   * @param {Env} env
   * @param {Element} el the `ui-viewlist` element: the items are its children
   * @param {string} attr the attribute's path
   * @param {Element[]} roots the template's elements (for namespace lookup)
   * @param {Variable | undefined} parent the variable of the view the list is in
   * @param {number} ctx that variable's id
   */
  constructor(env, el, attr, roots, parent, ctx) {
    this.env = env;
    this.el = el;
    const exemplar = el.firstElementChild;
    /** What each item starts as (replaced by the item's view). @type {Element} */
    this.exemplar = exemplar ? exemplar : document.createElement("div");
    if (exemplar) exemplar.remove();
    const p = parsePath(attr);
    const props = namespaceProps(el, roots, parent, { ...p.server });
    // Inside a lua.ViewList's own template `items` already are ViewListItems.
    if (!props.wrapper && !(parent && parent.type === VIEW_LIST)) props.wrapper = VIEW_LIST;
    this.itemWrapper = props.itemWrapper || props.item || "";
    this.list = env.vars.create(ctx, { ...props, path: p.path });
    /** The variable holding the array: `items` of a ViewList, or the list variable itself. @type {Variable | null} */
    this.source = null;
    /** @type {View[]} */
    this.items = [];
    this.destroyed = false;
    env.vars.listen(this.list.id, (v, change) => { if (change.value || change.properties.includes("type")) this.onList(v); });
  }

  /** @param {Variable} v */
  onList(v) {
    const { vars } = this.env;
    if (v.type === VIEW_LIST && v.value && typeof v.value === "object" && !Array.isArray(v.value)) {
      if (!this.source || this.source === this.list) {
        this.setSource(vars.create(this.list.id, { path: "items", access: "r" }));
      }
      return;
    }
    if (this.source && this.source !== this.list) {
      // It was a ViewList and is not any more.
      this.clearItems();
      vars.destroy(this.source.id);
      this.source = null;
    }
    if (!this.source) this.setSource(this.list);
    else this.sync();
  }

  /** @param {Variable} source */
  setSource(source) {
    this.source = source;
    if (source !== this.list) {
      this.env.vars.listen(source.id, (_v, change) => { if (change.value) this.sync(); });
    }
    this.sync();
  }

  /** One item view per element of the source array, added and removed at the end. */
  sync() {
    const source = this.source;
    if (!source || this.destroyed) return;
    const value = source.value;
    const length = Array.isArray(value) ? value.length : 0;
    const { vars } = this.env;
    while (this.items.length > length) {
      /** @type {View} */ (this.items.pop()).destroy(true);
    }
    const plain = source === this.list;
    while (this.items.length < length) {
      const index = this.items.length;
      const anchor = /** @type {Element} */ (this.exemplar.cloneNode(true));
      this.el.append(anchor);
      /** @type {Record<string, string>} */
      const props = namespaceProps(anchor, [this.el], this.list, { access: "r" });
      if (!props.fallbackNamespace) props.fallbackNamespace = "list-item";
      if (plain && this.itemWrapper) props.wrapper = this.itemWrapper;
      const v = vars.create(source.id, { ...props, path: String(index) });
      this.items.push(new View(this.env, anchor, v));
    }
  }

  clearItems() {
    for (const item of this.items) item.destroy(false);
    this.items = [];
  }

  /** @param {boolean} tellServer */
  destroy(tellServer) {
    if (this.destroyed) return;
    this.destroyed = true;
    this.clearItems();
    if (tellServer) this.env.vars.destroy(this.list.id);
    else this.env.vars.forget(this.list.id);
  }
}

/**
 * The app's own UI: variable 1 rendered by its type's viewdef inside `container`.
 */
export class AppView {
  /**
   * @param {Env} env
   * @param {HTMLElement} container
   * @param {Variable} root variable 1
   */
  constructor(env, container, root) {
    this.env = env;
    const anchor = document.createElement("div");
    container.replaceChildren(anchor);
    this.view = new View(env, anchor, root);
  }
}
