//! The debug variable browser (`--debug-pages`), after ui-engine's `specs/variable-browser.md`
//! and `change-count.md`: `/<id>/variables.json` is every variable of a session as JSON (with
//! the tracker's change count in the `X-Change-Count` header, and `?diag=N` to set the
//! diagnostic level first), `/<id>/variables` the page that shows it: a flat, sortable table or
//! a tree, columns to pick, diagnostics per row, refresh and polling (`page/variable_browser.js`,
//! served with the page's other assets by `page.rs`; no build step). The page carries the
//! listing it was served with, so it shows the variables before its script has fetched anything.
//!
//! Ids are per tab (every tab numbers its variables from 2), so each variable also gets a
//! `key` unique in the session (`"5"` for a shared one, `"3:5"` for tab 3's variable 5) and
//! its parent's `parentKey`: the tree is built from those.

use protocol::ipc::{DebugListing, DebugVariable, TabId};
use serde_json::{json, Value as Json};

use crate::page::escape;

/// The highest `?diag=` level (level 2 already records every step of every path).
pub const MAX_DIAG_LEVEL: u8 = 9;

/// `?diag=N` from a query string: `Ok(None)` without it, `Err` with a reason for a bad one.
pub fn diag_level(query: Option<&str>) -> Result<Option<u8>, String> {
    let Some(query) = query else { return Ok(None) };
    let mut level = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "diag" {
            let n: u8 = value
                .parse()
                .ok()
                .filter(|n| *n <= MAX_DIAG_LEVEL)
                .ok_or_else(|| format!("diag must be a number from 0 to {MAX_DIAG_LEVEL}"))?;
            level = Some(n);
        }
    }
    Ok(level)
}

/// The listing as the JSON array `variables.json` answers (ui-engine's `DebugVariable`
/// fields, plus what is ours: `tab`, `key`/`parentKey`, `luaType`, `watchers`, times in ns).
pub fn to_json(listing: &DebugListing) -> Json {
    Json::Array(
        listing
            .variables
            .iter()
            .map(|v| variable_json(v, listing.diag_level > 0))
            .collect(),
    )
}

fn variable_json(v: &DebugVariable, with_diags: bool) -> Json {
    let properties: serde_json::Map<String, Json> = v
        .properties
        .iter()
        .map(|(k, p)| (k.clone(), Json::from(p.as_str())))
        .collect();
    let type_name = v
        .properties
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    let mut out = json!({
        "id": v.id,
        "tab": v.tab,
        "key": key(v.tab, v.id),
        "parentId": v.parent_id,
        "parentKey": v.parent_id.map(|p| key(parent_tab(v.tab, p), p)),
        "depth": v.depth,
        "path": v.path,
        "type": type_name,
        "luaType": v.lua_type,
        "value": v.value.as_ref().map(|v| v.to_json()),
        "baseValue": v.base_value.as_ref().map(|v| v.to_json()),
        "properties": properties,
        "childIds": v.child_ids,
        "error": v.error,
        "access": v.access,
        "active": v.active,
        "changeCount": v.change_count,
        "computeTime": v.compute_time_ns.map(format_nanos),
        "maxComputeTime": v.max_compute_time_ns.map(format_nanos),
        "computeTimeNs": v.compute_time_ns,
        "maxComputeTimeNs": v.max_compute_time_ns,
        "watchers": v.watchers,
    });
    if with_diags {
        out["diags"] = json!(v.diags);
    }
    out
}

/// A tab's variables (ids ≥ 2) are its own; ids below 2 are shared by every tab.
fn key(tab: Option<TabId>, id: i64) -> String {
    match tab {
        Some(tab) if id >= 2 => format!("{tab}:{id}"),
        _ => id.to_string(),
    }
}

/// The tab that owns a variable's parent `parent_id`: the child's own tab for an id ≥ 2.
fn parent_tab(tab: Option<TabId>, parent_id: i64) -> Option<TabId> {
    tab.filter(|_| parent_id >= 2)
}

/// Nanoseconds as ui-engine shows durations: `610ns`, `12.3µs`, `0.12ms`, `1.5s`.
pub fn format_nanos(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

fn passes_text(listing: &DebugListing) -> String {
    match pass_times(listing) {
        Some((median, max)) => format!(
            "Passes: {}; the last {}: median {}, longest {}.",
            listing.passes,
            listing.recent_pass_ns.len(),
            format_nanos(median),
            format_nanos(max)
        ),
        None => format!("Passes: {}.", listing.passes),
    }
}

/// The median and the longest of the recent change-detection passes, in nanoseconds.
pub fn pass_times(listing: &DebugListing) -> Option<(u64, u64)> {
    let mut times = listing.recent_pass_ns.clone();
    times.sort_unstable();
    Some((*times.get(times.len() / 2)?, *times.last()?))
}

/// `/<id>/variables`: the browser page, with the listing it starts from.
pub fn page(session_id: &str, listing: &DebugListing) -> String {
    // Inside <script type="application/json"> only `</` could end the element early.
    let data = to_json(listing).to_string().replace("</", "<\\/");
    PAGE.replace("{{SESSION}}", &escape(session_id))
        .replace("{{CHANGE_COUNT}}", &listing.change_count.to_string())
        .replace("{{PASSES}}", &passes_text(listing))
        .replace("{{DATA}}", &data)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Variables of {{SESSION}}</title>
<style>
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; padding: 16px; background: #fafafa; color: #222; }
h1 { font-size: 1.15rem; margin: 0 0 12px; }
h1 code { font-size: 0.9em; color: #555; }
.toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; padding: 8px 12px; margin-bottom: 12px;
  background: #fff; border: 1px solid #ddd; border-radius: 6px; }
.toolbar label { display: flex; align-items: center; gap: 4px; cursor: pointer; }
.toolbar .spacer { flex: 1; }
.columns { position: relative; }
.columns-menu { display: none; position: absolute; right: 0; top: 100%; z-index: 10; min-width: 10rem; padding: 8px;
  background: #fff; border: 1px solid #ddd; border-radius: 4px; box-shadow: 0 2px 8px rgba(0,0,0,.12); }
.columns-menu.open { display: block; }
.columns-menu label { display: block; padding: 2px 0; }
.wrap { overflow: auto; background: #fff; border: 1px solid #ddd; border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
thead { position: sticky; top: 0; background: #f3f3f3; }
th { text-align: left; padding: 6px 10px; border-bottom: 2px solid #ddd; white-space: nowrap; user-select: none; }
th.sortable { cursor: pointer; }
td { padding: 4px 10px; border-bottom: 1px solid #eee; white-space: nowrap; vertical-align: top; }
td.col-value, td.col-base { font-family: ui-monospace, monospace; color: #1d7a1d; max-width: 28rem; overflow: hidden; text-overflow: ellipsis; }
td.col-type { color: #0b5fcc; font-weight: 600; }
td.col-key { color: #888; text-align: right; }
td.col-error.has-error { color: #b00; background: #fff0f0; font-family: ui-monospace, monospace; }
td.col-time, td.col-maxTime, td.col-changes { font-family: ui-monospace, monospace; text-align: right; }
td.col-props { color: #777; max-width: 20rem; overflow: hidden; text-overflow: ellipsis; }
td.col-spacer, th.col-spacer { width: 100%; }
.toggle { display: inline-block; width: 1.2em; cursor: pointer; color: #888; }
.diag-btn { font-size: 0.75em; padding: 0 4px; cursor: pointer; }
tr.diag-row td { padding: 2px 10px 6px 3rem; background: #f8f8f2; }
tr.diag-row ul { margin: 0; padding-left: 1rem; font-family: ui-monospace, monospace; font-size: 0.9em; color: #555; }
.status { margin-top: 8px; color: #777; font-size: 0.9em; }
</style>
</head>
<body>
<h1>Variables of <code>{{SESSION}}</code></h1>
<div class="toolbar">
  <label><input type="radio" name="view" value="flat" checked> Flat</label>
  <label><input type="radio" name="view" value="tree"> Tree</label>
  <span class="spacer"></span>
  <button id="refresh">Refresh</button>
  <label><input type="checkbox" id="poll"> Poll</label>
  <select id="poll-interval"><option value="1000">1s</option><option value="2000" selected>2s</option><option value="5000">5s</option></select>
  <label>Diagnostics <select id="diag"><option value="0">off</option><option value="1">1: outcomes</option><option value="2">2: every path step</option></select></label>
  <span class="spacer"></span>
  <div class="columns"><button id="columns-btn">Columns ▾</button><div class="columns-menu" id="columns-menu"></div></div>
</div>
<div class="wrap"><table><thead><tr id="head"></tr></thead><tbody id="body"></tbody></table></div>
<p class="status"><span id="status"></span> Change count: <span id="change-count">{{CHANGE_COUNT}}</span>. {{PASSES}}</p>
<script type="application/json" id="lb-variables">{{DATA}}</script>
<script type="module" src="/_luabroker/variable_browser.js"></script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn var(id: i64, tab: Option<TabId>, parent: Option<i64>) -> DebugVariable {
        DebugVariable {
            id,
            tab,
            parent_id: parent,
            path: "name".into(),
            value: None,
            properties: vec![("type".to_string(), "Contact".to_string())],
            child_ids: vec![],
            error: None,
            access: "rw".into(),
            change_count: 3,
            compute_time_ns: Some(1_500),
            max_compute_time_ns: Some(2_500_000),
            active: true,
            depth: 1,
            lua_type: "table".into(),
            base_value: None,
            watchers: vec![4],
            diags: vec!["value: table".into()],
        }
    }

    #[test]
    fn json_has_type_change_count_times_and_tab_scoped_keys() {
        let listing = DebugListing {
            change_count: 7,
            diag_level: 0,
            passes: 0,
            recent_pass_ns: vec![],
            variables: vec![
                var(1, None, None),
                var(5, Some(3), Some(4)),
                var(2, Some(3), Some(1)),
            ],
        };
        let json = to_json(&listing);
        assert_eq!(json[0]["key"], "1");
        assert_eq!(json[1]["key"], "3:5");
        assert_eq!(json[1]["parentKey"], "3:4");
        assert_eq!(json[2]["parentKey"], "1");
        assert_eq!(json[1]["type"], "Contact");
        assert_eq!(json[1]["changeCount"], 3);
        assert_eq!(json[1]["computeTime"], "1.5µs");
        assert_eq!(json[1]["maxComputeTime"], "2.50ms");
        assert!(
            json[1].get("diags").is_none(),
            "diags only with diagnostics on"
        );
        let on = DebugListing {
            diag_level: 1,
            ..listing
        };
        assert_eq!(to_json(&on)[1]["diags"], json!(["value: table"]));
    }

    #[test]
    fn pass_times_are_the_median_and_the_longest_of_the_recent_ones() {
        let mut listing = DebugListing {
            passes: 7,
            recent_pass_ns: vec![900, 40_000, 1_200, 2_500_000, 1_100],
            ..DebugListing::default()
        };
        assert_eq!(pass_times(&listing), Some((1_200, 2_500_000)));
        assert!(
            page("abc", &listing).contains("Passes: 7; the last 5: median 1.2µs, longest 2.50ms.")
        );
        listing.recent_pass_ns.clear();
        assert_eq!(pass_times(&listing), None);
        assert!(page("abc", &listing).contains("Passes: 7."));
    }

    #[test]
    fn diag_levels_are_bounded() {
        assert_eq!(diag_level(None), Ok(None));
        assert_eq!(diag_level(Some("x=1&diag=2")), Ok(Some(2)));
        assert!(diag_level(Some("diag=99")).is_err());
        assert!(diag_level(Some("diag=")).is_err());
    }

    #[test]
    fn the_page_cannot_be_closed_early_by_a_value() {
        let mut v = var(1, None, None);
        v.value = Some(protocol::Value::String("</script><b>".into()));
        let listing = DebugListing {
            variables: vec![v],
            ..DebugListing::default()
        };
        let html = page("abc", &listing);
        assert!(!html.contains("</script><b>"));
        assert!(html.contains("<\\/script><b>"));
    }
}
