//! `ui.log`, `ui.json_encode`, `ui.json_decode`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::harness::{App, SESSION_ID, VENDED_ID};

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn ui_log_writes_levelled_lines_with_the_session_ids() {
    let app = App::new(&[(
        "main.lua",
        r#"
        ui.log("plain message")
        ui.log("debug", "a debug line")
        ui.log("warn", "a warning")
        ui.log("error", 42)
        ui.log(0, "level zero shows")
        ui.log(1, "level one shows")
        ui.log(2, "level two is detail")
        ui.log(4, "level four is a trace")
        local ok, err = pcall(ui.log, "loud", "x")
        assert(not ok and tostring(err):find("unknown level 'loud'"), tostring(err))
        assert(not pcall(ui.log), "a message is required")
        "#,
    )]);
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        // No timestamps: a needle like "42" must not match the clock.
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || app.run_main().unwrap());
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_string()
    };
    for (needle, level) in [
        ("plain message", "INFO"),
        ("a debug line", "DEBUG"),
        ("a warning", "WARN"),
        ("42", "ERROR"),
        ("level zero shows", "INFO"),
        ("level one shows", "INFO"),
        ("level two is detail", "DEBUG"),
        ("level four is a trace", "TRACE"),
    ] {
        let l = line(needle);
        assert!(l.contains(level), "{l}");
        assert!(l.contains(SESSION_ID), "{l}");
        assert!(l.contains(&format!("vended={VENDED_ID}")), "{l}");
    }
}

#[test]
fn json_round_trips_sequences_objects_and_scalars() {
    let app = App::new(&[(
        "main.lua",
        r#"
        local t = {name = "x", list = {1, 2, 3}, nested = {ok = true, empty = {}}, n = 1.5, i = 42,
                   text = "é\n\"q\""}
        local s, err = ui.json_encode(t)
        assert(err == nil, err)
        local want = '{"i":42,"list":[1,2,3],"n":1.5,"name":"x",' ..
                     '"nested":{"empty":{},"ok":true},"text":"é\\n\\"q\\""}'
        assert(s == want, s)
        local back = ui.json_decode(s)
        assert(back.name == "x" and back.i == 42 and math.type(back.i) == "integer")
        assert(back.n == 1.5 and back.text == t.text)
        assert(#back.list == 3 and back.list[3] == 3 and back.nested.ok == true)
        assert(ui.json_encode(back) == s, "decode then encode gives the same text")

        -- Scalars, a sparse table (an object), numeric keys, metatables ignored.
        assert(ui.json_encode("hi") == '"hi"' and ui.json_encode(nil) == "null")
        assert(ui.json_encode(false) == "false" and ui.json_encode(-7) == "-7")
        assert(ui.json_encode({[1] = "a", [3] = "c"}) == '{"1":"a","3":"c"}')
        assert(ui.json_encode(setmetatable({a = 1}, {__index = {b = 2}})) == '{"a":1}')
        local shared = {1}
        assert(ui.json_encode({a = shared, b = shared}) == '{"a":[1],"b":[1]}',
               "a table seen twice is not a cycle")

        -- JSON null becomes nil.
        local d = ui.json_decode('{"a": null, "b": [1, null, 3], "c": 12345678901234567890}')
        assert(d.a == nil and d.b[1] == 1 and d.b[2] == nil and d.b[3] == 3)
        assert(math.type(d.c) == "float", "integers beyond Lua's range become floats")
        assert(ui.json_decode("null") == nil and ui.json_decode("true") == true)
        "#,
    )]);
    app.run_main().unwrap();
}

#[test]
fn json_failures_return_nil_and_the_error_text() {
    let app = App::new(&[(
        "main.lua",
        r#"
        -- The call goes last so that both of its results reach `fails`.
        local function fails(needle, v, err)
            assert(v == nil, "expected a failure")
            assert(type(err) == "string" and err:find(needle, 1, true), tostring(err))
        end
        local cyc = {}
        cyc.me = cyc
        fails("contains itself", ui.json_encode(cyc))
        fails("contains itself", ui.json_encode({list = {cyc}}))
        fails("function", ui.json_encode(function() end))
        fails("function", ui.json_encode({f = print}))
        fails("number", ui.json_encode(0/0))
        fails("number", ui.json_encode(math.huge))
        fails("boolean key", ui.json_encode({[true] = 1}))
        local deep = {}
        for i = 1, 200 do deep = {deep} end
        fails("nested", ui.json_encode(deep))

        fails("invalid JSON", ui.json_decode("{bad"))
        fails("invalid JSON", ui.json_decode(""))
        fails("JSON is text", ui.json_decode(42))
        fails("invalid JSON", ui.json_decode(string.rep("[", 500) .. string.rep("]", 500)))
        "#,
    )]);
    app.run_main().unwrap();
}
