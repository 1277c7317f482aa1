//! Property tests of the tracker's parsers and conversions: variable paths (any text parses or
//! is refused with a message; every path the grammar allows parses back to its segments and
//! its `?k=v` properties) and value conversion between browser values and Lua (any value
//! converts or fails typed; every value Lua can hold comes back as it went in).

use mlua::{Lua, Value as LuaValue};
use proptest::prelude::*;
use protocol::Value;

use super::objects::ObjectRegistry;
use super::path::{expand_properties, Path, Segment};
use super::value_json::{object_fields, same, to_json, to_lua};

fn config() -> ProptestConfig {
    // No regression files: a failure prints its minimal input, which becomes a unit test.
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- paths -----------------------------------------------------------------------------

/// A field or method name: anything without the path's own punctuation, not all digits.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        "[^.?()]{1,6}".prop_filter("digits are an index", |s| !s
            .bytes()
            .all(|b| b.is_ascii_digit())),
    ]
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        name().prop_map(Segment::Field),
        (0..i64::MAX).prop_map(|i| Segment::Index(i + 1)),
        name().prop_map(Segment::Call),
    ]
}

/// A path as the grammar allows it: any segments, a setter only at the end.
fn segments() -> impl Strategy<Value = Vec<Segment>> {
    (
        prop::collection::vec(segment(), 1..6),
        prop::option::of(name()),
    )
        .prop_map(|(mut segs, setter)| {
            if let Some(s) = setter {
                segs.push(Segment::Setter(s));
            }
            segs
        })
}

fn query() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[^&=?]{1,6}", "[^&]{0,6}"), 0..4)
}

fn render(segments: &[Segment], query: &[(String, String)]) -> String {
    let mut text = segments
        .iter()
        .map(|s| match s {
            Segment::Field(n) => n.clone(),
            Segment::Index(i) => (i - 1).to_string(),
            Segment::Call(n) => format!("{n}()"),
            Segment::Setter(n) => format!("{n}(_)"),
        })
        .collect::<Vec<_>>()
        .join(".");
    if !query.is_empty() {
        text.push('?');
        let kvs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(&kvs.join("&"));
    }
    text
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_a_path_or_a_refusal(text in ".{0,40}") {
        if let Err(e) = Path::parse(&text) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn path_like_text_is_a_path_or_a_refusal(text in "[a-z0-9_.()?&=]{0,30}") {
        match Path::parse(&text) {
            Ok((path, _)) => prop_assert!(!path.segments().is_empty()),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn every_path_round_trips(segs in segments(), q in query()) {
        let text = render(&segs, &q);
        let (path, props) = Path::parse(&text).unwrap();
        prop_assert_eq!(path.segments(), &segs[..]);
        prop_assert_eq!(props, q);
    }

    /// A setter anywhere but last is refused, whatever surrounds it.
    #[test]
    fn a_setter_before_the_end_is_refused(mut segs in segments(), at in any::<usize>(), n in name()) {
        let at = at % segs.len();
        segs.insert(at, Segment::Setter(n));
        if at + 1 < segs.len() {
            prop_assert!(Path::parse(&render(&segs, &[])).is_err());
        }
    }

    /// Any `path` property, bound or not: expanded, or refused as a bad request.
    #[test]
    fn any_path_property_expands_or_is_refused(
        text in ".{0,30}",
        other in prop::collection::vec((".{0,6}", ".{0,6}"), 0..3),
        bound in any::<bool>(),
    ) {
        let mut props = other;
        props.push(("path".into(), text));
        if let Err(f) = expand_properties(&props, bound) {
            prop_assert_eq!(f.code, protocol::ErrorCode::BadRequest);
        }
    }
}

// ---- value conversion --------------------------------------------------------------------

/// Any browser value, references included (most of them to no object).
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".{0,8}".prop_map(Value::String),
        (0..4i64).prop_map(Value::ObjRef),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((".{0,4}", inner), 0..5).prop_map(Value::Object),
        ]
    })
}

/// Values a Lua table holds exactly as the browser wrote them: no nulls inside arrays (a nil
/// is a hole, so the table is no longer a sequence) and no empty arrays (an empty table is an
/// object). NaN is included: it comes back as NaN.
fn lua_shaped() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop::collection::vec(inner, 1..5).prop_map(Value::Array)
    })
}

proptest! {
    #![proptest_config(config())]

    /// Any value becomes a Lua value or a typed failure (an unknown reference is `not-found`),
    /// and whatever Lua value it became converts back without failing.
    #[test]
    fn any_value_converts_or_fails_typed(v in any_value()) {
        let lua = Lua::new();
        let reg = ObjectRegistry::new(&lua).unwrap();
        match to_lua(&lua, &reg, &v) {
            Ok(lua_value) => { to_json(&reg, &lua_value).unwrap(); }
            Err(f) => prop_assert_eq!(f.code, protocol::ErrorCode::NotFound),
        }
    }

    #[test]
    fn lua_shaped_values_round_trip(v in prop_oneof![Just(Value::Null), lua_shaped()]) {
        let lua = Lua::new();
        let reg = ObjectRegistry::new(&lua).unwrap();
        let back = to_json(&reg, &to_lua(&lua, &reg, &v).unwrap()).unwrap();
        prop_assert!(same(&back, &v), "{v:?} came back as {back:?}");
    }

    /// An object becomes a new table, seen as a reference whose fields are the object's
    /// (sorted; a null field is no field); a reference to a live table is that table.
    #[test]
    fn objects_become_tables_with_their_fields(
        fields in prop::collection::vec(("[a-z]{1,4}", prop::option::of(lua_shaped())), 0..5),
    ) {
        let lua = Lua::new();
        let reg = ObjectRegistry::new(&lua).unwrap();
        let mut unique = std::collections::BTreeMap::new();
        for (k, v) in &fields {
            unique.insert(k.clone(), v.clone());
        }
        let object: Vec<(String, Value)> = unique
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or(Value::Null)))
            .collect();
        let table = to_lua(&lua, &reg, &Value::Object(object)).unwrap();
        let Value::ObjRef(id) = to_json(&reg, &table).unwrap() else {
            return Err(TestCaseError::fail("an object did not become a reference"));
        };
        let LuaValue::Table(t) = &table else { unreachable!("objects become tables") };
        let expected: Vec<(String, Value)> = unique
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let Value::Object(got) = object_fields(&reg, t) else { unreachable!() };
        prop_assert_eq!(got.len(), expected.len());
        for ((gk, gv), (ek, ev)) in got.iter().zip(&expected) {
            prop_assert_eq!(gk, ek);
            prop_assert!(same(gv, ev), "{gk}: {gv:?} vs {ev:?}");
        }
        let again = to_lua(&lua, &reg, &Value::ObjRef(id)).unwrap();
        prop_assert_eq!(again, table);
    }
}
