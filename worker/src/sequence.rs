//! The one rule for "is this Lua table an array": its raw keys are exactly `1..n`, n ≥ 1.
//! Value JSON (what tabs see, `tracker::value_json`) and `ui.json_encode` both use it, with the
//! same nesting ceiling ([`protocol::limits::MAX_VALUE_DEPTH`]); value JSON adds that a table
//! with a type is an object.

use mlua::{Table, Value};

/// The elements of `t`, in order, when its raw keys are exactly `1..n` (n ≥ 1); `None` for an
/// empty table or any other key. Metatables are not consulted.
pub fn sequence(t: &Table) -> Option<Vec<Value>> {
    let len = t.raw_len();
    if len == 0 {
        return None;
    }
    let mut items = vec![Value::Nil; len];
    let mut count = 0usize;
    let walked = t.for_each::<Value, Value>(|k, v| {
        let slot = match k {
            Value::Integer(i) if i >= 1 && (i as u64) <= len as u64 => (i - 1) as usize,
            _ => return Err(mlua::Error::runtime("not a sequence")),
        };
        items[slot] = v;
        count += 1;
        Ok(())
    });
    (walked.is_ok() && count == len).then_some(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::Lua;

    fn check(code: &str) -> Option<usize> {
        let lua = Lua::new();
        let t: Table = lua.load(code).eval().unwrap();
        sequence(&t).map(|items| items.len())
    }

    #[test]
    fn only_keys_one_to_n_make_a_sequence() {
        assert_eq!(check("return {'a', 'b', 'c'}"), Some(3));
        assert_eq!(check("return {[1] = true, [2.0] = false}"), Some(2));
        assert_eq!(check("return {}"), None);
        assert_eq!(check("return {'a', x = 1}"), None);
        assert_eq!(check("return {[2] = 'b'}"), None);
        assert_eq!(check("return {'a', nil, 'c'}"), None);
        assert_eq!(
            check("return setmetatable({}, {__index = function() return 1 end})"),
            None,
            "metatables are not consulted"
        );
    }
}
