// @ts-check
/**
 * bindings.js: the `ui-*` attributes of a rendered viewdef, element by element (served at
 * /_luabroker/bindings.js). The language is ui-engine's (its specs/viewdefs.md), so templates
 * written for it work here:
 *
 *   ui-value="path"           text content (one-way) on ordinary elements; two-way on input,
 *                             textarea, select, [contenteditable] and web components (through
 *                             their `value` property, or `checked` for a boolean; their own
 *                             `<prefix>-input`/`<prefix>-change` events as well as input/change)
 *   ui-action="m()"           a click calls the method (`m(_)`: with the element's value)
 *   ui-event-<name>="m()"     any DOM event calls it; `ui-event-keypress-[ctrl-|shift-|alt-|meta-]<key>`
 *                             only that key with exactly those modifiers (`m(_)` or a plain path
 *                             receives the key's name)
 *   ui-attr-<name>            the attribute follows the value (absent for nil/false)
 *   ui-class-<name>           the class is on while the value is truthy
 *   ui-style-<prop>           the style property follows the value
 *   ui-html                   innerHTML (`?replace`: the element is replaced by the HTML)
 *
 * Each binding is a child variable of the view's variable whose `path` is the attribute's
 * path; the path's `?k=v&…` properties go to the server (`access`, `wrapper`, `create`,
 * `itemWrapper`, `priority`, …) except the ones the page acts on itself (`keypress`,
 * `scrollOnOutput`, `replace`). A property without a value means "true". Bindings on
 * ordinary elements default to `access=r`, method paths (`name()`) too; actions and events to
 * `access=action`. A binding's error (`path-failure`, `bad-access`, …) marks its element with
 * the class `ui-error` and the attributes `ui-error-code`/`ui-error-description` until a later
 * value clears it.
 *
 * Edits typed into a two-way field are sent on `change` (on each keystroke with `?keypress`);
 * before any action or event is sent, every field with an unsent edit is sent first, so a
 * click on "Add" (or Enter in a form) acts on what was typed.
 */

/** @typedef {import("./variables.js").Variables} Variables */
/** @typedef {import("./variables.js").Variable} Variable */
/** @typedef {import("./variables.js").VarError} VarError */

/** Path properties the page handles itself; the rest are sent as the variable's properties. */
const LOCAL_PROPERTIES = new Set(["keypress", "scrollOnOutput", "replace"]);

/** Web components with a value that the user cannot edit (ui-engine's list). */
const READ_ONLY_COMPONENTS = new Set(["SL-COPY-BUTTON", "SL-OPTION", "SL-PROGRESS-BAR", "SL-PROGRESS-RING", "SL-QR-CODE"]);

/** Key names a `ui-event-keypress-*` attribute may use, as KeyboardEvent.key spells them. */
const KEY_NAMES = /** @type {Record<string, string>} */ ({
  enter: "Enter", escape: "Escape", esc: "Escape", left: "ArrowLeft", right: "ArrowRight",
  up: "ArrowUp", down: "ArrowDown", tab: "Tab", space: " ", backspace: "Backspace",
  delete: "Delete", home: "Home", end: "End", pageup: "PageUp", pagedown: "PageDown",
});
const MODIFIERS = ["ctrl", "shift", "alt", "meta"];

/**
 * A binding's path split from its properties.
 * @typedef {{path: string, server: Record<string, string>, local: Record<string, string>}} ParsedPath
 */

/**
 * `a.b?access=rw&keypress` → path "a.b", server {access: "rw"}, local {keypress: "true"}.
 * @param {string} text
 * @returns {ParsedPath}
 */
export function parsePath(text) {
  const q = text.indexOf("?");
  const path = (q < 0 ? text : text.slice(0, q)).trim();
  /** @type {Record<string, string>} */
  const server = {};
  /** @type {Record<string, string>} */
  const local = {};
  if (q >= 0) {
    for (const [k, v] of new URLSearchParams(text.slice(q + 1))) {
      (LOCAL_PROPERTIES.has(k) ? local : server)[k] = v === "" ? "true" : v;
    }
  }
  return { path, server, local };
}

/** @param {any} v */
function text(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/**
 * How `ui-value` treats an element.
 * @param {Element} el
 * @returns {"input" | "checkbox" | "radio" | "select" | "textarea" | "editable" | "component" | "gauge" | "text"}
 */
function valueKind(el) {
  if (el instanceof HTMLInputElement) {
    if (el.type === "checkbox") return "checkbox";
    if (el.type === "radio") return "radio";
    return "input";
  }
  if (el instanceof HTMLSelectElement) return "select";
  if (el instanceof HTMLTextAreaElement) return "textarea";
  if (el instanceof HTMLProgressElement || el instanceof HTMLMeterElement) return "gauge";
  if (el.localName.includes("-")) return "component";
  if (el instanceof HTMLElement && el.isContentEditable) return "editable";
  if (el.getAttribute("contenteditable") !== null && el.getAttribute("contenteditable") !== "false") return "editable";
  return "text";
}

/**
 * Things a binding needs from the view that renders it: the variables, and where to report.
 * @typedef {object} BindingScope
 * @property {(id: number) => void} own a binding variable belongs to the scope (destroyed with it)
 */

export class Binder {
  /**
   * @param {Variables} vars
   * @param {(code: string, description: string, where: string) => void} report
   */
  constructor(vars, report) {
    this.vars = vars;
    this.report = report;
    /** Edits typed but not sent yet: each sends its field's value. @type {Set<() => void>} */
    this.unsent = new Set();
    /** Element → sends a value through its `ui-value` (window.uiApp.updateValue). @type {WeakMap<Element, (value?: any) => void>} */
    this.valueSenders = new WeakMap();
  }

  /** Sends every edit typed but not sent yet (before an action, so it acts on what was typed). */
  sendUnsent() {
    for (const send of [...this.unsent]) send();
    this.unsent.clear();
  }

  /**
   * Creates the variable of one binding, owned by `scope`.
   * @param {BindingScope} scope
   * @param {number} ctx the view's variable
   * @param {string} path
   * @param {Record<string, string>} props
   * @param {boolean} [nowatch]
   */
  variable(scope, ctx, path, props, nowatch) {
    const v = this.vars.create(ctx, { ...props, path }, { nowatch });
    scope.own(v.id);
    return v;
  }

  /**
   * Binds every `ui-*` attribute of `el` except `ui-view`, `ui-viewlist` and `ui-namespace`
   * (the view owns those), in the context of variable `ctx`.
   * @param {Element} el
   * @param {number} ctx
   * @param {BindingScope} scope
   */
  bindElement(el, ctx, scope) {
    const value = el.getAttribute("ui-value");
    if (value !== null) this.bindValue(el, ctx, value, scope);
    for (const attr of [...el.attributes]) {
      const name = attr.name;
      if (name.startsWith("ui-attr-")) this.bindAttr(el, ctx, attr.value, name.slice(8), scope);
      else if (name.startsWith("ui-class-")) this.bindClass(el, ctx, attr.value, name.slice(9), scope);
      else if (name.startsWith("ui-style-")) this.bindStyle(el, ctx, attr.value, name.slice(9), scope);
      else if (name.startsWith("ui-event-")) this.bindEvent(el, ctx, attr.value, name.slice(9), scope);
    }
    const action = el.getAttribute("ui-action");
    if (action !== null) this.bindAction(el, ctx, action, scope);
    const html = el.getAttribute("ui-html");
    if (html !== null) this.bindHtml(el, ctx, html, scope);
  }

  /**
   * Marks `el` while its binding's variable has an error.
   * @param {Element} el
   * @param {Variable} v
   */
  showErrors(el, v) {
    this.vars.listenErrors(v.id, (error) => {
      if (error) {
        el.classList.add("ui-error");
        el.setAttribute("ui-error-code", error.code);
        el.setAttribute("ui-error-description", error.description);
      } else {
        el.classList.remove("ui-error");
        el.removeAttribute("ui-error-code");
        el.removeAttribute("ui-error-description");
      }
    });
  }

  /**
   * A one-way binding: `show` gets every value the server sends.
   * @param {Element} el
   * @param {number} ctx
   * @param {string} attr
   * @param {BindingScope} scope
   * @param {(value: any) => void} show
   */
  bindReadOnly(el, ctx, attr, scope, show) {
    const p = parsePath(attr);
    const v = this.variable(scope, ctx, p.path, { access: "r", ...p.server });
    this.vars.listen(v.id, (v, change) => { if (change.value) show(v.value); });
    this.showErrors(el, v);
    return p;
  }

  /**
   * @param {Element} el
   * @param {number} ctx
   * @param {string} attr
   * @param {string} name
   * @param {BindingScope} scope
   */
  bindAttr(el, ctx, attr, name, scope) {
    this.bindReadOnly(el, ctx, attr, scope, (value) => {
      if (value === null || value === undefined || value === false) el.removeAttribute(name);
      else el.setAttribute(name, text(value));
    });
  }

  /**
   * @param {Element} el
   * @param {number} ctx
   * @param {string} attr
   * @param {string} name
   * @param {BindingScope} scope
   */
  bindClass(el, ctx, attr, name, scope) {
    this.bindReadOnly(el, ctx, attr, scope, (value) => el.classList.toggle(name, !!value));
  }

  /**
   * @param {Element} el
   * @param {number} ctx
   * @param {string} attr
   * @param {string} prop
   * @param {BindingScope} scope
   */
  bindStyle(el, ctx, attr, prop, scope) {
    if (!(el instanceof HTMLElement || el instanceof SVGElement)) return;
    this.bindReadOnly(el, ctx, attr, scope, (value) => {
      if (value === null || value === undefined || value === false) el.style.removeProperty(prop);
      else el.style.setProperty(prop, text(value));
    });
  }

  /**
   * `ui-html`: the element's content is the value as HTML; `?replace`: the element itself is
   * replaced by it (an empty value leaves a hidden placeholder to come back to).
   * @param {Element} el
   * @param {number} ctx
   * @param {string} attr
   * @param {BindingScope} scope
   */
  bindHtml(el, ctx, attr, scope) {
    const replace = parsePath(attr).local.replace === "true";
    /** @type {ChildNode[]} */
    let shown = [el];
    this.bindReadOnly(el, ctx, attr, scope, (value) => {
      if (!replace) {
        el.innerHTML = text(value);
        return;
      }
      const first = shown[0];
      const parent = first.parentNode;
      if (!parent) return;
      const scratch = document.createElement("template");
      scratch.innerHTML = text(value);
      /** @type {ChildNode[]} */
      let nodes = [...scratch.content.childNodes];
      if (nodes.length === 0) {
        const placeholder = document.createElement("span");
        placeholder.hidden = true;
        nodes = [placeholder];
      }
      for (const n of nodes) parent.insertBefore(n, first);
      for (const n of shown) n.remove();
      shown = nodes;
    });
  }

  /**
   * `ui-value`: one-way on ordinary elements, two-way on fields and web components.
   * @param {Element} el
   * @param {number} ctx
   * @param {string} attr
   * @param {BindingScope} scope
   */
  bindValue(el, ctx, attr, scope) {
    const p = parsePath(attr);
    const kind = valueKind(el);
    const method = p.path.endsWith(")");
    const editable = kind !== "text" && kind !== "gauge" && !READ_ONLY_COMPONENTS.has(el.tagName);
    const props = { ...p.server };
    if (!props.access && (method || !editable)) props.access = "r";
    const v = this.variable(scope, ctx, p.path, props);
    const any = /** @type {any} */ (el);
    let dirty = false;
    /**
     * Values sent while the field has had the focus. The server echoes a write back after its
     * next change detection; while someone types (`?keypress`), an echo of an older value must
     * not overwrite what they have typed since. A value Lua set itself still shows.
     * @type {Set<string>}
     */
    const sentWhileFocused = new Set();
    el.addEventListener("blur", () => sentWhileFocused.clear());
    /** @param {any} value */
    const staleEcho = (value) =>
      document.activeElement === el && sentWhileFocused.has(text(value)) && text(value) !== currentText();
    const currentText = () => (kind === "editable" ? el.textContent || "" : String(any.value ?? ""));

    /** @param {any} value */
    const show = (value) => {
      switch (kind) {
        case "text":
          el.textContent = text(value);
          return;
        case "gauge":
          any.value = Number(value) || 0;
          return;
        case "checkbox":
          any.checked = !!value;
          return;
        case "radio":
          any.checked = value !== null && value !== undefined && any.value === String(value);
          return;
        case "editable":
          if ((dirty && document.activeElement === el) || staleEcho(value)) return;
          el.textContent = text(value);
          return;
        case "component": {
          // A component not defined yet would shadow its own `value` setter: wait for it.
          const defined = customElements.get(el.localName);
          if (!defined && el.localName.includes("-")) {
            customElements.whenDefined(el.localName).then(() => show(v.value));
            return;
          }
          if (typeof value === "boolean" && "checked" in el) any.checked = value;
          else any.value = value === null || value === undefined ? "" : typeof value === "number" ? value : text(value);
          return;
        }
        default:
          // Never overwrite what someone is typing; their edit is sent on change.
          if ((dirty && document.activeElement === el) || staleEcho(value)) return;
          any.value = text(value);
          dirty = false;
      }
    };
    this.vars.listen(v.id, (v, change) => { if (change.value) show(v.value); });
    this.showErrors(el, v);
    if (kind === "select") {
      // Options may come later (a ui-viewlist inside the select): choose the value again then.
      new MutationObserver(() => { if (v.hasValue) show(v.value); }).observe(el, { childList: true, subtree: true });
    }
    if (!editable || props.access === "r") return;

    /** What the element holds now, as the value to send (undefined: nothing valid to send). */
    const read = () => {
      const current = v.value;
      switch (kind) {
        case "checkbox": return any.checked;
        case "radio": return any.checked ? any.value : undefined;
        case "editable": return el.textContent || "";
        case "component":
          if (typeof current === "boolean" && "checked" in el) return !!any.checked;
          return any.value;
        default: {
          const s = String(any.value);
          if (el instanceof HTMLInputElement && (el.type === "number" || el.type === "range")) {
            if (s.trim() === "") return null;
            const n = Number(s);
            return Number.isFinite(n) ? n : undefined;
          }
          // A field showing a Lua number stays a number while it holds one.
          if (typeof current === "number" && s.trim() !== "" && Number.isFinite(Number(s))) return Number(s);
          return s;
        }
      }
    };
    /** @param {any} [value] */
    const send = (value) => {
      this.unsent.delete(send);
      dirty = false;
      const out = value === undefined ? read() : value;
      if (out === undefined) return;
      if (document.activeElement === el) sentWhileFocused.add(text(out));
      this.vars.update(v.id, out);
    };
    const edited = () => {
      dirty = true;
      this.unsent.add(send);
    };
    this.valueSenders.set(el, send);

    const keypress = p.local.keypress === "true";
    /** @type {string[]} */
    let sendOn;
    if (kind === "component") {
      const prefix = el.localName.split("-")[0];
      sendOn = keypress ? ["input", prefix + "-input"] : ["change", prefix + "-change"];
      el.addEventListener("ui-value-change", (e) => send(/** @type {CustomEvent} */ (e).detail?.value));
    } else if (kind === "editable") {
      sendOn = keypress ? ["input"] : ["blur"];
    } else if (kind === "checkbox" || kind === "radio" || kind === "select") {
      sendOn = ["change"];
    } else {
      sendOn = keypress ? ["input"] : ["change"];
    }
    for (const name of sendOn) el.addEventListener(name, () => send());
    if (!keypress) el.addEventListener("input", edited);
  }

  /**
   * An action variable for `path` (created once, written on every trigger; the server does not
   * watch it).
   * @param {number} ctx
   * @param {ParsedPath} p
   * @param {BindingScope} scope
   * @param {Record<string, string>} defaults
   */
  actionVariable(ctx, p, scope, defaults) {
    return this.variable(scope, ctx, p.path, { ...defaults, ...p.server }, true);
  }

  /**
   * `ui-action`: a click calls the method (with the element's value for `m(_)`).
   * @param {Element} el
   * @param {number} ctx
   * @param {string} attr
   * @param {BindingScope} scope
   */
  bindAction(el, ctx, attr, scope) {
    const p = parsePath(attr);
    const v = this.actionVariable(ctx, p, scope, { access: "action" });
    this.showErrors(el, v);
    const withValue = p.path.endsWith("(_)");
    el.addEventListener("click", (e) => {
      e.preventDefault();
      this.sendUnsent();
      const any = /** @type {any} */ (el);
      this.vars.update(v.id, withValue ? any.value ?? null : null, true);
    });
  }

  /**
   * `ui-event-<name>` and `ui-event-keypress-<modifiers>-<key>`.
   * @param {Element} el
   * @param {number} ctx
   * @param {string} attr
   * @param {string} event
   * @param {BindingScope} scope
   */
  bindEvent(el, ctx, attr, event, scope) {
    const p = parsePath(attr);
    const noArg = p.path.endsWith("()");
    const oneArg = p.path.endsWith("(_)");
    if (event.startsWith("keypress-")) {
      const parts = event.slice(9).toLowerCase().split("-").filter(Boolean);
      const modifiers = new Set(parts.filter((k) => MODIFIERS.includes(k)));
      const key = parts.filter((k) => !MODIFIERS.includes(k)).pop();
      if (!key) {
        this.report("bad-binding", "ui-event-" + event + " names no key", p.path);
        return;
      }
      const wanted = KEY_NAMES[key] ?? key;
      const defaults = noArg || oneArg ? { access: "action" } : /** @type {Record<string, string>} */ ({});
      const v = noArg || oneArg ? this.actionVariable(ctx, p, scope, defaults) : this.variable(scope, ctx, p.path, { ...defaults, ...p.server }, true);
      this.showErrors(el, v);
      el.addEventListener("keydown", (e) => {
        const k = /** @type {KeyboardEvent} */ (e);
        const matches = wanted.length === 1 ? k.key.toLowerCase() === wanted : k.key === wanted;
        if (!matches) return;
        const held = [k.ctrlKey && "ctrl", k.shiftKey && "shift", k.altKey && "alt", k.metaKey && "meta"].filter(Boolean);
        if (held.length !== modifiers.size || !held.every((m) => modifiers.has(/** @type {string} */ (m)))) return;
        if (key === "enter") e.preventDefault(); // not a form submission as well
        this.sendUnsent();
        this.vars.update(v.id, noArg ? null : key, true);
      });
      return;
    }
    const v = this.actionVariable(ctx, p, scope, { access: "action", priority: "low" });
    this.showErrors(el, v);
    el.addEventListener(event, () => {
      this.sendUnsent();
      this.vars.update(v.id, null, true);
    });
  }
}
