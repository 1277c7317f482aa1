// @ts-check
// The debug variable browser (served at /<id>/variables with --debug-pages; see
// broker/src/variable_browser.rs). It renders the listing embedded in the page (#lb-variables),
// then fetches /<id>/variables.json on Refresh, on a poll timer, or when the diagnostic level
// changes (?diag=N). Flat mode sorts by any sortable column; tree mode nests variables by
// their session-unique `key` / `parentKey` (ids are per tab). No framework, no build step.

/** @typedef {{key: string, parentKey: string|null, id: number, tab: number|null, depth: number,
 *   path: string, type: string, luaType: string, value: any, baseValue: any,
 *   properties: Record<string,string>, error: string|null, access: string, active: boolean,
 *   changeCount: number, computeTime: string|null, maxComputeTime: string|null,
 *   computeTimeNs: number|null, maxComputeTimeNs: number|null, watchers: number[],
 *   diags?: string[]}} Variable */

/** @typedef {{key: string, label: string, visible: boolean, sort?: (v: Variable) => any,
 *   numeric?: boolean, always?: boolean}} Column */

/** @type {Column[]} */
const COLUMNS = [
  { key: "diags", label: "", visible: true, always: true },
  { key: "id", label: "ID", visible: true, sort: (v) => v.id, numeric: true },
  { key: "tab", label: "Tab", visible: false, sort: (v) => v.tab ?? -1, numeric: true },
  { key: "path", label: "Path", visible: true, sort: (v) => v.path },
  { key: "type", label: "Type", visible: true, sort: (v) => v.type },
  { key: "luaType", label: "Lua type", visible: false, sort: (v) => v.luaType },
  { key: "value", label: "Value", visible: true },
  { key: "base", label: "Base value", visible: false },
  { key: "changes", label: "Changes", visible: true, sort: (v) => v.changeCount, numeric: true },
  { key: "time", label: "Time", visible: true, sort: (v) => v.computeTimeNs ?? -1, numeric: true },
  { key: "maxTime", label: "Max time", visible: false, sort: (v) => v.maxComputeTimeNs ?? -1, numeric: true },
  { key: "error", label: "Error", visible: true, sort: (v) => v.error ?? "" },
  { key: "access", label: "Access", visible: false, sort: (v) => v.access },
  { key: "active", label: "Active", visible: false, sort: (v) => (v.active ? 1 : 0) },
  { key: "watchers", label: "Watched by", visible: false, sort: (v) => v.watchers.length, numeric: true },
  { key: "props", label: "Props", visible: false },
];

const sessionId = location.pathname.split("/").filter(Boolean)[0] ?? "";
const initial = document.getElementById("lb-variables");
/** @type {Variable[]} */
let variables = initial ? JSON.parse(initial.textContent || "[]") : [];
let mode = "flat";
/** @type {string|null} */
let sortKey = null;
let sortDir = 1;
/** @type {ReturnType<typeof setInterval>|null} */
let timer = null;
const openDiags = new Set();
const collapsed = new Set();

/** @param {string} id */
const el = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @param {any} value */
function show(value) {
  return value === null || value === undefined ? "" : JSON.stringify(value);
}

/** @param {HTMLTableCellElement} td @param {any} value */
function putValue(td, value) {
  const full = show(value);
  td.textContent = full.length > 100 ? full.slice(0, 100) + "…" : full;
  if (full.length > 100) td.title = full;
}

/** @param {string|null} diag */
async function refresh(diag = null) {
  const query = diag === null ? "" : "?diag=" + encodeURIComponent(diag);
  try {
    const resp = await fetch("/" + sessionId + "/variables.json" + query, { cache: "no-store" });
    if (!resp.ok) throw new Error(resp.status + " " + (await resp.text()));
    variables = await resp.json();
    el("change-count").textContent = resp.headers.get("x-change-count") ?? "?";
    render();
    el("status").textContent = variables.length + " variables at " + new Date().toLocaleTimeString() + ".";
  } catch (e) {
    el("status").textContent = "Error: " + (e instanceof Error ? e.message : String(e));
  }
}

/** @returns {{v: Variable, depth: number, parent: boolean}[]} */
function rows() {
  if (mode === "tree") {
    /** @type {Map<string|null, Variable[]>} */
    const kids = new Map();
    const keys = new Set(variables.map((v) => v.key));
    for (const v of variables) {
      const parent = v.parentKey !== null && keys.has(v.parentKey) ? v.parentKey : null;
      if (!kids.has(parent)) kids.set(parent, []);
      kids.get(parent)?.push(v);
    }
    /** @type {{v: Variable, depth: number, parent: boolean}[]} */
    const out = [];
    /** @param {string|null} parent @param {number} depth */
    const walk = (parent, depth) => {
      for (const v of kids.get(parent) ?? []) {
        const has = (kids.get(v.key) ?? []).length > 0;
        out.push({ v, depth, parent: has });
        if (has && !collapsed.has(v.key) && depth < 256) walk(v.key, depth + 1);
      }
    };
    walk(null, 0);
    return out;
  }
  const list = [...variables];
  const col = COLUMNS.find((c) => c.key === sortKey);
  if (col?.sort) {
    const key = col.sort;
    list.sort((a, b) => {
      const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
  }
  return list.map((v) => ({ v, depth: 0, parent: false }));
}

function render() {
  const visible = COLUMNS.filter((c) => c.visible);
  const head = el("head");
  head.replaceChildren();
  for (const col of visible) {
    const th = document.createElement("th");
    th.className = "col-" + col.key;
    th.textContent = col.label;
    if (col.sort && mode === "flat") {
      th.classList.add("sortable");
      if (sortKey === col.key) th.textContent += sortDir > 0 ? " ▲" : " ▼";
      th.onclick = () => {
        if (sortKey === col.key) sortDir = -sortDir;
        else {
          sortKey = col.key;
          sortDir = col.numeric ? -1 : 1; // numbers: largest first
        }
        render();
      };
    }
    head.append(th);
  }
  const spacer = document.createElement("th");
  spacer.className = "col-spacer";
  head.append(spacer);

  const body = el("body");
  body.replaceChildren();
  for (const row of rows()) {
    body.append(dataRow(row, visible));
    const diags = row.v.diags ?? [];
    if (openDiags.has(row.v.key) && diags.length > 0) {
      const tr = document.createElement("tr");
      tr.className = "diag-row";
      const td = document.createElement("td");
      td.colSpan = visible.length + 1;
      const ul = document.createElement("ul");
      for (const d of diags) {
        const li = document.createElement("li");
        li.textContent = d;
        ul.append(li);
      }
      td.append(ul);
      tr.append(td);
      body.append(tr);
    }
  }
}

/** @param {{v: Variable, depth: number, parent: boolean}} row @param {Column[]} visible */
function dataRow({ v, depth, parent }, visible) {
  const tr = document.createElement("tr");
  tr.dataset.key = v.key;
  for (const col of visible) {
    const td = document.createElement("td");
    td.className = "col-" + col.key;
    switch (col.key) {
      case "diags":
        if ((v.diags ?? []).length > 0) {
          const b = document.createElement("button");
          b.className = "diag-btn";
          b.textContent = openDiags.has(v.key) ? "D▼" : "D▶";
          b.title = "diagnostics of its last computation";
          b.onclick = () => {
            openDiags.has(v.key) ? openDiags.delete(v.key) : openDiags.add(v.key);
            render();
          };
          td.append(b);
        }
        break;
      case "id": td.textContent = String(v.id); td.title = "key " + v.key; break;
      case "tab": td.textContent = v.tab === null ? "" : String(v.tab); break;
      case "path": {
        const label = v.path || (v.parentKey === null ? "(root)" : "(own value)");
        if (mode === "tree") {
          td.style.paddingLeft = 10 + depth * 18 + "px";
          const t = document.createElement("span");
          t.className = "toggle";
          t.textContent = parent ? (collapsed.has(v.key) ? "▶" : "▼") : "";
          if (parent) t.onclick = () => {
            collapsed.has(v.key) ? collapsed.delete(v.key) : collapsed.add(v.key);
            render();
          };
          td.append(t);
        }
        td.append(document.createTextNode(label));
        break;
      }
      case "type": td.textContent = v.type; break;
      case "luaType": td.textContent = v.luaType; break;
      case "value": putValue(td, v.value); break;
      case "base": putValue(td, v.baseValue); break;
      case "changes": td.textContent = String(v.changeCount); break;
      case "time": td.textContent = v.computeTime ?? ""; break;
      case "maxTime": td.textContent = v.maxComputeTime ?? ""; break;
      case "error":
        td.textContent = v.error ?? "";
        if (v.error) td.classList.add("has-error");
        break;
      case "access": td.textContent = v.access; break;
      case "active": td.textContent = v.active ? "✓" : "✗"; break;
      case "watchers": td.textContent = v.watchers.join(", "); break;
      case "props": {
        const parts = Object.entries(v.properties)
          .filter(([k]) => k !== "type" && k !== "path" && k !== "access")
          .map(([k, p]) => k + "=" + p);
        td.textContent = parts.join(", ");
        if (parts.length) td.title = parts.join("\n");
        break;
      }
    }
    tr.append(td);
  }
  const spacer = document.createElement("td");
  spacer.className = "col-spacer";
  tr.append(spacer);
  return tr;
}

function columnMenu() {
  const menu = el("columns-menu");
  menu.replaceChildren();
  for (const col of COLUMNS) {
    if (col.always) continue;
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = col.visible;
    box.onchange = () => {
      col.visible = box.checked;
      render();
    };
    label.append(box, " " + col.label);
    menu.append(label);
  }
}

for (const radio of document.querySelectorAll('input[name="view"]')) {
  radio.addEventListener("change", () => {
    mode = /** @type {HTMLInputElement} */ (radio).value;
    sortKey = null;
    render();
  });
}
el("refresh").onclick = () => refresh();
const poll = /** @type {HTMLInputElement} */ (el("poll"));
const interval = /** @type {HTMLSelectElement} */ (el("poll-interval"));
const pollChanged = () => {
  if (timer) clearInterval(timer);
  timer = poll.checked ? setInterval(() => refresh(), Number(interval.value)) : null;
};
poll.onchange = pollChanged;
interval.onchange = pollChanged;
const diag = /** @type {HTMLSelectElement} */ (el("diag"));
if (variables.some((v) => v.diags !== undefined)) diag.value = "1";
diag.onchange = () => refresh(diag.value);
el("columns-btn").onclick = (e) => {
  e.stopPropagation();
  el("columns-menu").classList.toggle("open");
};
el("columns-menu").onclick = (e) => e.stopPropagation();
document.addEventListener("click", () => el("columns-menu").classList.remove("open"));

columnMenu();
render();
