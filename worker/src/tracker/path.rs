//! Variable paths (ARCHITECTURE.md 3): parsing `a.3.total().name(_)?k=v` once into [`Path`], and
//! following a parsed path through live Lua values to read or write.
//!
//! Parsing happens when a variable is created (or its `path` property changes); every change
//! detection pass reuses the parsed segments, so the per-pass cost is only the Lua lookups.

use std::cell::OnceCell;

use mlua::{Function, Table, Value as LuaValue};
use protocol::browser::Properties;

use super::failure::Failure;
use super::properties::split_priority;
use super::variable::Access;

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// `name`: a field.
    Field(String),
    /// `3`: an element, already converted from the path's 0-based to Lua's 1-based index.
    Index(i64),
    /// `name()`: `obj:name()`; allowed anywhere.
    Call(String),
    /// `name(_)`: `obj:name(value)` on write; last segment only.
    Setter(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    segments: Vec<Segment>,
    /// Each field segment's name as a Lua string, made on the first read: a pass then looks
    /// fields up without interning their names again (a large share of a pass's time).
    keys: LuaKeys,
}

/// The cached Lua keys of a path; not part of what a path *is*, so any two compare equal.
#[derive(Debug, Clone, Default)]
struct LuaKeys(OnceCell<Vec<LuaValue>>);

impl PartialEq for LuaKeys {
    fn eq(&self, _: &LuaKeys) -> bool {
        true
    }
}

impl Path {
    /// Parses a path; a `?k=v&k2=v2` suffix is returned as properties (see [`split_query`]).
    pub fn parse(text: &str) -> Result<(Path, Properties), String> {
        let (body, props) = split_query(text);
        if body.is_empty() {
            return Err("the path is empty".into());
        }
        let parts: Vec<&str> = body.split('.').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = parse_segment(part)?;
            if matches!(segment, Segment::Setter(_)) && i + 1 != parts.len() {
                return Err(format!("\"{part}\" may only end a path"));
            }
            segments.push(segment);
        }
        Ok((
            Path {
                segments,
                keys: LuaKeys::default(),
            },
            props,
        ))
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn last(&self) -> &Segment {
        // `parse` never builds an empty path.
        &self.segments[self.segments.len() - 1]
    }

    /// Whether `access` fits the path's last segment: `()` needs `r`, `rw` or `action`,
    /// `(_)` needs `w` or `action`.
    pub fn check_access(&self, access: Access) -> Result<(), String> {
        match (self.last(), access) {
            (Segment::Call(_), Access::W) => {
                Err("a path ending in () needs access r, rw or action".into())
            }
            (Segment::Setter(_), Access::R | Access::RW) => {
                Err("a path ending in (_) needs access w or action".into())
            }
            _ => Ok(()),
        }
    }

    /// Follows the whole path from `base` and returns what it names.
    pub fn read(&self, base: &LuaValue) -> Result<LuaValue, Failure> {
        let Some(keys) = self.keys(base) else {
            return read_segments(base, &self.segments);
        };
        let mut current: Option<LuaValue> = None;
        for (segment, key) in self.segments.iter().zip(keys) {
            let from = current.as_ref().unwrap_or(base);
            let next = match (segment, from) {
                (Segment::Field(_), LuaValue::Table(t)) => lookup(t, key)?,
                (Segment::Index(i), LuaValue::Table(t)) => lookup(t, &LuaValue::Integer(*i))?,
                _ => step(from, segment)?,
            };
            current = Some(next);
        }
        Ok(current.unwrap_or_else(|| base.clone()))
    }

    /// Where the segments and the keys live, for a prefetch.
    pub(super) fn step_addresses(&self) -> (*const Segment, Option<*const LuaValue>) {
        let keys = self.keys.0.get().map(|k| k.as_ptr());
        (self.segments.as_ptr(), keys)
    }

    /// The segments with their Lua keys (a field's name as a Lua string, nil for any other
    /// segment), once [`Path::read`] has made the keys.
    pub(super) fn steps_with_keys(&self) -> Option<impl Iterator<Item = (&Segment, &LuaValue)>> {
        let keys = self.keys.0.get()?;
        Some(self.segments.iter().zip(keys))
    }

    /// [`Path::read`] that tells `trace` what each step produced (diagnostics level 2; the
    /// slower, uncached lookups do not matter there).
    pub fn read_traced(
        &self,
        base: &LuaValue,
        trace: &mut dyn FnMut(String),
    ) -> Result<LuaValue, Failure> {
        let mut current = base.clone();
        for segment in &self.segments {
            match step(&current, segment) {
                Ok(next) => {
                    trace(format!("{}: {}", describe(segment), describe_value(&next)));
                    current = next;
                }
                Err(f) => {
                    trace(format!("{}: failed: {}", describe(segment), f.description));
                    return Err(f);
                }
            }
        }
        Ok(current)
    }

    /// The field names as Lua strings (other segments hold nil), made once from the VM `base`
    /// lives in; `None` when there is no table to learn the VM from yet.
    fn keys(&self, base: &LuaValue) -> Option<&[LuaValue]> {
        if let Some(keys) = self.keys.0.get() {
            return Some(keys);
        }
        let LuaValue::Table(t) = base else {
            return None;
        };
        let lua = t.weak_lua().try_upgrade()?;
        let keys = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Field(name) => lua.create_string(name).map(LuaValue::String),
                _ => Ok(LuaValue::Nil),
            })
            .collect::<mlua::Result<Vec<_>>>()
            .ok()?;
        Some(self.keys.0.get_or_init(|| keys))
    }

    /// Writes `value` through the path from `base`: sets the field or element the path names,
    /// or calls the method it ends with (`name(_)` and a writable `name()` get the value; an
    /// action's `name()` does not; results are ignored).
    pub fn write(&self, base: LuaValue, access: Access, value: LuaValue) -> Result<(), Failure> {
        let (last, init) = self
            .segments
            .split_last()
            .ok_or_else(|| Failure::internal("empty path"))?;
        let target = read_segments(&base, init)?;
        let table = match &target {
            LuaValue::Table(t) => t,
            other => {
                return Err(Failure::path(format!(
                    "cannot write {} of a {}",
                    describe(last),
                    lua_type(other)
                )))
            }
        };
        match (last, access) {
            (Segment::Setter(name), _) => call_method(table, name, Some(value)).map(drop),
            (Segment::Call(name) | Segment::Field(name), Access::Action) => {
                call_method(table, name, None).map(drop)
            }
            (Segment::Index(_), Access::Action) => Err(Failure::path(
                "an action's path must end in a method name".to_string(),
            )),
            // `name()?access=rw`: a read/write method (ui-engine's Lua convention): read with
            // no argument, written with the value.
            (Segment::Call(name), _) => call_method(table, name, Some(value)).map(drop),
            (Segment::Field(name), _) => table
                .set(name.as_str(), value)
                .map_err(|e| Failure::lua(&e)),
            (Segment::Index(i), _) => table.set(*i, value).map_err(|e| Failure::lua(&e)),
        }
    }
}

/// Splits `body?k=v&k2=v2` into the body and the properties of its suffix, in order; a key
/// without `=` gets the value `"true"` so that it reads as a set flag.
pub fn split_query(text: &str) -> (&str, Properties) {
    match text.split_once('?') {
        Some((body, query)) => (body, parse_query(query)),
        None => (text, Vec::new()),
    }
}

fn parse_query(query: &str) -> Properties {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), "true".to_string()),
        })
        .collect()
}

fn parse_segment(part: &str) -> Result<Segment, String> {
    if part.is_empty() {
        return Err("the path has an empty segment".into());
    }
    if let Some(name) = part.strip_suffix("(_)") {
        return valid_name(name, part).map(|n| Segment::Setter(n.to_string()));
    }
    if let Some(name) = part.strip_suffix("()") {
        return valid_name(name, part).map(|n| Segment::Call(n.to_string()));
    }
    if part.bytes().all(|b| b.is_ascii_digit()) {
        let index: i64 = part
            .parse()
            .map_err(|_| format!("index \"{part}\" is too large"))?;
        return index
            .checked_add(1)
            .map(Segment::Index)
            .ok_or_else(|| format!("index \"{part}\" is too large"));
    }
    valid_name(part, part).map(|n| Segment::Field(n.to_string()))
}

fn valid_name<'a>(name: &'a str, part: &str) -> Result<&'a str, String> {
    if name.is_empty() || name.contains(['(', ')']) {
        Err(format!(
            "\"{part}\" is not a field, index, name() or name(_)"
        ))
    } else {
        Ok(name)
    }
}

fn read_segments(base: &LuaValue, segments: &[Segment]) -> Result<LuaValue, Failure> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(base.clone());
    };
    let mut current = step(base, first)?;
    for segment in rest {
        current = step(&current, segment)?;
    }
    Ok(current)
}

fn step(current: &LuaValue, segment: &Segment) -> Result<LuaValue, Failure> {
    let table = match current {
        LuaValue::Table(t) => t,
        other => {
            return Err(Failure::path(format!(
                "cannot read {} of a {}",
                describe(segment),
                lua_type(other)
            )))
        }
    };
    match segment {
        Segment::Field(name) => table.get(name.as_str()).map_err(|e| Failure::lua(&e)),
        Segment::Index(i) => table.get(*i).map_err(|e| Failure::lua(&e)),
        Segment::Call(name) => call_method(table, name, None),
        Segment::Setter(name) => Err(Failure::path(format!(
            "{name}(_) can only be written, not read"
        ))),
    }
}

/// `t[key]` as Lua's indexing does it: the raw entry when present, else `__index` (only a
/// table with a metatable can have one, so most lookups need no protected call).
fn lookup(t: &Table, key: &LuaValue) -> Result<LuaValue, Failure> {
    let raw: LuaValue = t.raw_get(key).map_err(|e| Failure::lua(&e))?;
    if raw.is_nil() && t.has_metatable() {
        return t.get(key).map_err(|e| Failure::lua(&e));
    }
    Ok(raw)
}

/// `obj:name()` or `obj:name(value)`: the first result, nil when there is none.
fn call_method(obj: &Table, name: &str, value: Option<LuaValue>) -> Result<LuaValue, Failure> {
    let method: Function = match obj.get(name).map_err(|e| Failure::lua(&e))? {
        LuaValue::Function(f) => f,
        LuaValue::Nil => return Err(Failure::path(format!("no method {name}"))),
        other => {
            return Err(Failure::path(format!(
                "{name} is a {}, not a method",
                lua_type(&other)
            )))
        }
    };
    let result = match value {
        Some(v) => method.call::<LuaValue>((obj.clone(), v)),
        None => method.call::<LuaValue>(obj.clone()),
    };
    result.map_err(|e| Failure::lua(&e))
}

/// The type name Lua's `type()` would give (mlua tells integers from floats).
pub(super) fn lua_type(v: &LuaValue) -> &'static str {
    match v {
        LuaValue::Integer(_) | LuaValue::Number(_) => "number",
        other => other.type_name(),
    }
}

/// A value's Lua type, and its `type` when it is a table that has one.
pub(super) fn describe_value(v: &LuaValue) -> String {
    match v.as_table().and_then(super::value_json::table_type) {
        Some(t) => format!("table {t}"),
        None => lua_type(v).to_string(),
    }
}

fn describe(segment: &Segment) -> String {
    match segment {
        Segment::Field(name) => format!("field {name}"),
        Segment::Index(i) => format!("index {}", i - 1),
        Segment::Call(name) => format!("{name}()"),
        Segment::Setter(name) => format!("{name}(_)"),
    }
}

/// A parsed path and its text (without the `?…` suffix).
type ParsedPath = (Path, String);

/// Splits each `path` property into its body and the properties of its `?…` suffix, which
/// follow it. For a bound variable the (last) path is parsed; its body must not be empty.
pub fn expand_properties(
    props: &Properties,
    bound: bool,
) -> Result<(Properties, Option<ParsedPath>), Failure> {
    let mut out = Vec::with_capacity(props.len());
    let mut path = None;
    for (raw, value) in props {
        if split_priority(raw).0 != "path" {
            out.push((raw.clone(), value.clone()));
            continue;
        }
        let (body, query) = split_query(value);
        if bound {
            let (parsed, _) = Path::parse(body).map_err(|e| {
                Failure::bad_request(if body.is_empty() {
                    "a variable with a parent needs a path".to_string()
                } else {
                    format!("path \"{body}\": {e}")
                })
            })?;
            path = Some((parsed, body.to_string()));
        }
        out.push((raw.clone(), body.to_string()));
        out.extend(query);
    }
    Ok((out, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(text: &str) -> Vec<Segment> {
        Path::parse(text).unwrap().0.segments
    }

    #[test]
    fn segments_and_zero_based_indexes() {
        use Segment::*;
        assert_eq!(
            segs("items.0.total().name(_)"),
            vec![
                Field("items".into()),
                Index(1),
                Call("total".into()),
                Setter("name".into())
            ]
        );
    }

    #[test]
    fn a_method_with_access_rw_is_read_without_and_written_with_the_value() {
        let lua = mlua::Lua::new();
        let obj: LuaValue = lua
            .load(
                "local o = {v = 1}
                 function o:value(...)
                     if select('#', ...) > 0 then self.v = ... end
                     return self.v
                 end
                 return o",
            )
            .eval()
            .unwrap();
        let (p, _) = Path::parse("value()").unwrap();
        assert_eq!(p.read(&obj).unwrap(), LuaValue::Integer(1));
        p.write(obj.clone(), Access::RW, LuaValue::Integer(5))
            .unwrap();
        assert_eq!(p.read(&obj).unwrap(), LuaValue::Integer(5));
    }

    #[test]
    fn query_suffix_sets_properties() {
        let (path, props) = Path::parse("name?access=r&priority=high&flag").unwrap();
        assert_eq!(path.segments, vec![Segment::Field("name".into())]);
        assert_eq!(
            props,
            vec![
                ("access".into(), "r".into()),
                ("priority".into(), "high".into()),
                ("flag".into(), "true".into())
            ]
        );
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in ["", "a..b", "set(_).x", "f(x)", "()", "a(", "?x=1"] {
            assert!(Path::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn access_must_fit_the_last_segment() {
        let (call, _) = Path::parse("total()").unwrap();
        assert!(call.check_access(Access::R).is_ok());
        assert!(call.check_access(Access::Action).is_ok());
        assert!(call.check_access(Access::W).is_err());
        let (setter, _) = Path::parse("setName(_)").unwrap();
        assert!(setter.check_access(Access::W).is_ok());
        assert!(setter.check_access(Access::RW).is_err());
    }

    #[test]
    fn read_and_write_follow_lua_values() {
        let lua = mlua::Lua::new();
        let app: LuaValue = lua
            .load(
                "local P = {} P.__index = P
                 function P:double() return self.n * 2 end
                 function P:setN(v) self.n = v end
                 return {items = {setmetatable({n = 3}, P)}}",
            )
            .eval()
            .unwrap();
        let (p, _) = Path::parse("items.0.double()").unwrap();
        assert_eq!(p.read(&app).unwrap(), LuaValue::Integer(6));
        let (n, _) = Path::parse("items.0.n").unwrap();
        n.write(app.clone(), Access::RW, LuaValue::Integer(5))
            .unwrap();
        assert_eq!(p.read(&app).unwrap(), LuaValue::Integer(10));
        let (set, _) = Path::parse("items.0.setN(_)").unwrap();
        set.write(app.clone(), Access::W, LuaValue::Integer(1))
            .unwrap();
        assert_eq!(p.read(&app).unwrap(), LuaValue::Integer(2));
        // Fields found through __index (a class), read twice: the second read uses the
        // cached keys and must give the same answers.
        let (class_field, _) = Path::parse("items.0.double").unwrap();
        for _ in 0..2 {
            assert!(matches!(
                class_field.read(&app).unwrap(),
                LuaValue::Function(_)
            ));
            assert_eq!(p.read(&app).unwrap(), LuaValue::Integer(2));
        }
        let (missing, _) = Path::parse("nothing.here").unwrap();
        let err = missing.read(&app).unwrap_err();
        assert_eq!(err.code, protocol::ErrorCode::PathFailure);
        assert_eq!(err.description, "cannot read field here of a nil");
    }
}
