//! What the debug variable browser learns of a session (`LuaSession::debug_listing`): per
//! variable its change count, compute times, type, whether change detection computes it, and
//! the diagnostics of its last computation; the tracker's own change count.

use protocol::ipc::DebugVariable;
use protocol::Value;

use crate::tabs::*;

const APP: &str = r#"
Contact = session:prototype("Contact", {name = ""})
Row = session:prototype("Row", {contact = EMPTY})
function Row:new(variable) return session:create(Row, {contact = variable:getValue()}) end
function Row:label() return "<" .. self.contact.name .. ">" end
app = {count = 0, contact = session:create(Contact, {name = "ann"}), broken = false}
function app:total()
    if self.broken then error("total is broken") end
    return self.count * 2
end
session:createAppVariable(app)
"#;

fn var(listing: &[DebugVariable], tab: Option<u32>, id: i64) -> DebugVariable {
    listing
        .iter()
        .find(|v| v.id == id && v.tab == tab)
        .unwrap_or_else(|| panic!("no variable {id} of tab {tab:?} in {listing:#?}"))
        .clone()
}

#[test]
fn change_counts_grow_with_each_change_detection_finds() {
    let mut s = Session::new(&[("main.lua", APP)]);
    s.send(
        1,
        vec![
            bind(2, 1, "count", &[]),
            bind(3, 1, "total()", &[("access", "r")]),
        ],
    );
    let (_, before) = s.session.debug_listing(None);
    let count = var(&before.variables, Some(1), 2);
    assert_eq!(count.change_count, 0, "creating a variable is not a change");
    assert_eq!(count.depth, 1);
    assert!(count.active);
    assert_eq!(count.lua_type, "number");

    for n in 1..=3 {
        s.run(&format!("app.count = {n}"));
    }
    s.run("local unrelated = 1"); // a pass that finds nothing
    let (_, after) = s.session.debug_listing(None);
    assert_eq!(var(&after.variables, Some(1), 2).change_count, 3);
    assert_eq!(var(&after.variables, Some(1), 3).change_count, 3);
    assert_eq!(
        var(&after.variables, None, 1).change_count,
        0,
        "the app object is the same"
    );
    assert_eq!(
        after.change_count,
        before.change_count + 3,
        "only passes that found a change count"
    );
}

#[test]
fn the_first_listing_turns_timing_on_and_a_pass_fills_the_times() {
    let mut s = Session::new(&[("main.lua", APP)]);
    s.send(1, vec![bind(2, 1, "total()", &[("access", "r")])]);
    let (batches, listing) = s.session.debug_listing(None);
    assert!(
        batches.is_empty(),
        "nothing changed, so that pass sends nothing"
    );
    let total = var(&listing.variables, Some(1), 2);
    let (time, max) = (total.compute_time_ns, total.max_compute_time_ns);
    assert!(time.is_some() && max >= time, "{total:?}");
    // Later passes keep measuring; the maximum never falls below the latest.
    s.run("app.count = 4");
    let (_, listing) = s.session.debug_listing(None);
    let total = var(&listing.variables, Some(1), 2);
    assert!(total.max_compute_time_ns >= total.compute_time_ns);
}

#[test]
fn types_wrappers_and_inactive_subtrees_show_in_the_listing() {
    let mut s = Session::new(&[("main.lua", APP)]);
    s.send(
        1,
        vec![
            bind(2, 1, "contact", &[("wrapper", "Row")]),
            bind(3, 2, "label()", &[("access", "r")]),
            bind(4, 1, "contact", &[("inactive", "true")]),
            bind(5, 4, "name", &[]),
        ],
    );
    let (_, listing) = s.session.debug_listing(None);
    let row = var(&listing.variables, Some(1), 2);
    let props: Vec<_> = row.properties.iter().filter(|(k, _)| k == "type").collect();
    assert_eq!(props, [&("type".to_string(), "Row".to_string())]);
    assert_eq!(row.lua_type, "table");
    assert!(
        matches!(&row.base_value, Some(Value::ObjRef(_))) && row.base_value != row.value,
        "the wrapped contact is shown beside the wrapper: {row:?}"
    );
    assert_eq!(var(&listing.variables, Some(1), 3).value, Some(s_("<ann>")));
    assert!(
        !var(&listing.variables, Some(1), 4).active,
        "inactive itself"
    );
    assert!(
        !var(&listing.variables, Some(1), 5).active,
        "below an inactive variable"
    );
    assert_eq!(var(&listing.variables, Some(1), 5).depth, 2);
    assert_eq!(var(&listing.variables, Some(1), 2).watchers, [1]);
}

fn s_(text: &str) -> Value {
    Value::String(text.into())
}

#[test]
fn diagnostics_record_the_last_computation_at_the_level_asked_for() {
    let mut s = Session::new(&[("main.lua", APP)]);
    s.send(
        1,
        vec![
            bind(2, 1, "contact", &[("wrapper", "Row")]),
            bind(3, 1, "total()", &[("access", "r")]),
        ],
    );
    let (_, off) = s.session.debug_listing(None);
    assert_eq!(off.diag_level, 0);
    assert!(off.variables.iter().all(|v| v.diags.is_empty()));

    // Level 1: the outcome and the wrapper's fate; the pass that setting the level runs
    // already records them.
    let (_, one) = s.session.debug_listing(Some(1));
    assert_eq!(one.diag_level, 1);
    let row = var(&one.variables, Some(1), 2).diags;
    assert!(
        row.iter()
            .any(|d| d.contains("wrapper Row: value unchanged, kept")),
        "{row:?}"
    );
    assert!(
        row.iter().any(|d| d.contains("value: table Row")),
        "{row:?}"
    );
    let total = var(&one.variables, Some(1), 3).diags;
    assert_eq!(total, ["value: number"]);

    // Level 2 adds each step of the path; a failure says where.
    s.run("app.broken = true");
    let (_, two) = s.session.debug_listing(Some(2));
    let total = var(&two.variables, Some(1), 3);
    assert!(total
        .error
        .as_deref()
        .unwrap_or("")
        .contains("total is broken"));
    assert!(
        total
            .diags
            .iter()
            .any(|d| d.starts_with("total(): failed:") && d.contains("total is broken")),
        "{:?}",
        total.diags
    );

    // Level 0 again: diagnostics go.
    let (_, again) = s.session.debug_listing(Some(0));
    assert!(again.variables.iter().all(|v| v.diags.is_empty()));
}
