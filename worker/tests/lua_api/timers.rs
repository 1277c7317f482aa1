//! `session:setTimeout` and friends, driven as the worker loop drives them: by asking for the
//! next deadline and running what is due at an explicit instant (no sleeping).

use std::time::{Duration, Instant};

use luabroker_worker::api::timers::MAX_TIMERS;
use luabroker_worker::budget::{error_code, is_limit};
use protocol::ErrorCode;

use crate::harness::App;

/// Runs every callback due at `now`; the results in order.
fn run_due(app: &App, now: Instant) -> Vec<mlua::Result<()>> {
    std::iter::from_fn(|| app.run_timer(now)).collect()
}

/// Runs callbacks one deadline at a time, as the loop would, `n` times.
fn run_deadlines(app: &App, n: usize) -> Vec<Instant> {
    (0..n)
        .map(|_| {
            let at = app.api.timers().next_deadline().expect("a timer is set");
            app.run_timer(at).expect("due").unwrap();
            at
        })
        .collect()
}

fn order(app: &App) -> String {
    app.eval("return table.concat(order, ',')")
}

#[test]
fn setting_a_timer_runs_nothing_and_returns_a_handle() {
    let app = App::new(&[(
        "main.lua",
        r#"
        ran = false
        local h1 = session:setTimeout(function() ran = true end, 0)
        local h2 = session:setImmediate(function() ran = true end)
        local h3 = session:setInterval(function() ran = true end, 10)
        assert(math.type(h1) == "integer" and h1 ~= h2 and h2 ~= h3 and h1 ~= h3)
        assert(ran == false, "nothing runs while main.lua runs")
        "#,
    )]);
    app.run_main().unwrap();
    assert_eq!(app.api.timers().live(), 3);
    assert!(!app.eval::<bool>("return ran"));
}

#[test]
fn immediates_first_then_deadlines_then_the_order_they_were_set() {
    let app = App::new(&[(
        "main.lua",
        r#"
        order = {}
        local function mark(name) return function() order[#order + 1] = name end end
        session:setTimeout(mark("t30s"), 30000)
        session:setTimeout(mark("t10s-a"), 10000)
        session:setTimeout(mark("t10s-b"), 10000)
        session:setTimeout(mark("t0"), 0)
        session:setImmediate(mark("imm1"))
        session:setTimeout(function()
            order[#order + 1] = "t0b"
            session:setImmediate(mark("imm-from-t0b"))
            session:setTimeout(mark("t0c"), 0)
        end, 0)
        session:setImmediate(mark("imm2"))
        "#,
    )]);
    let set_by = Instant::now();
    app.run_main().unwrap();
    // Five seconds on: every 0 ms timeout is due, none of the 10 s ones.
    let now = set_by + Duration::from_secs(5);
    let ran = run_due(&app, now);
    assert_eq!(
        ran.len(),
        6,
        "immediates and the 0 ms timeouts are due at once"
    );
    assert_eq!(order(&app), "imm1,imm2,t0,t0b,imm-from-t0b,t0c");

    let next = app.api.timers().next_deadline().unwrap();
    assert!(next > now && next >= set_by + Duration::from_secs(10));
    assert!(app.run_timer(now).is_none(), "nothing else is due yet");
    run_deadlines(&app, 3);
    assert_eq!(
        order(&app),
        "imm1,imm2,t0,t0b,imm-from-t0b,t0c,t10s-a,t10s-b,t30s"
    );
    assert_eq!(app.api.timers().next_deadline(), None);
    assert_eq!(app.api.timers().live(), 0, "finished timeouts are gone");
}

#[test]
fn intervals_rearm_one_period_after_their_deadline() {
    let app = App::new(&[(
        "main.lua",
        r#"
        ticks = 0
        handle = session:setInterval(function() ticks = ticks + 1 end, 100)
        "#,
    )]);
    app.run_main().unwrap();
    let at = run_deadlines(&app, 3);
    assert_eq!(app.eval::<i64>("return ticks"), 3);
    assert_eq!(at[1] - at[0], Duration::from_millis(100), "no drift");
    assert_eq!(at[2] - at[1], Duration::from_millis(100));

    // A worker that wakes up late skips the missed beats instead of bursting.
    let late = at[2] + Duration::from_secs(10);
    assert_eq!(run_due(&app, late).len(), 1);
    assert_eq!(
        app.api.timers().next_deadline(),
        Some(late + Duration::from_millis(100))
    );
    app.check("session:clearInterval(handle)");
    assert_eq!(app.api.timers().next_deadline(), None);
    assert_eq!(app.api.timers().live(), 0);
}

#[test]
fn an_interval_can_clear_itself_and_a_zero_period_does_not_spin() {
    let app = App::new(&[(
        "main.lua",
        r#"
        n = 0
        h = session:setInterval(function()
            n = n + 1
            if n == 2 then session:clearInterval(h) end
        end, 0)
        "#,
    )]);
    app.run_main().unwrap();
    let first = run_deadlines(&app, 1)[0];
    let second = app.api.timers().next_deadline().unwrap();
    assert!(
        second >= first + Duration::from_millis(1),
        "periods are at least 1 ms"
    );
    run_deadlines(&app, 1);
    assert_eq!(app.eval::<i64>("return n"), 2);
    assert_eq!(app.api.timers().next_deadline(), None);
}

#[test]
fn cleared_timers_never_run_and_unknown_handles_are_ignored() {
    let app = App::new(&[(
        "main.lua",
        r#"
        order = {}
        local function mark(name) return function() order[#order + 1] = name end end
        local t = session:setTimeout(mark("cleared-timeout"), 0)
        local i = session:setImmediate(mark("cleared-immediate"))
        local v = session:setInterval(mark("cleared-interval"), 5)
        local kept = session:setTimeout(mark("kept"), 0)
        session:clearTimeout(t)
        session:clearImmediate(i)
        session:clearTimeout(v)  -- any clear cancels any kind, as in browsers
        session:clearTimeout(t)  -- twice: no-op
        session:clearTimeout(123456)
        session:clearInterval(nil)
        session:clearImmediate("nonsense")
        session:setTimeout(function()
            order[#order + 1] = "first"
            session:clearTimeout(later)
        end, 10)
        later = session:setTimeout(mark("later"), 20)
        "#,
    )]);
    app.run_main().unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    assert!(run_due(&app, end).iter().all(|r| r.is_ok()));
    assert_eq!(order(&app), "kept,first");
    assert_eq!(app.api.timers().live(), 0);
}

#[test]
fn a_failing_callback_is_reported_and_the_timers_keep_going() {
    let app = App::new(&[(
        "main.lua",
        r#"
        order = {}
        session:setTimeout(function() error("timer boom") end, 0)
        session:setTimeout(function() order[#order + 1] = "after" end, 0)
        failures = 0
        flaky = session:setInterval(function()
            failures = failures + 1
            error("interval boom")
        end, 50)
        "#,
    )]);
    app.run_main().unwrap();
    let now = Instant::now();
    let err = app.run_timer(now).unwrap().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("main.lua:3: timer boom"), "{text}");
    assert_eq!(error_code(&err), ErrorCode::LuaError);
    app.run_timer(now).unwrap().unwrap();
    assert_eq!(order(&app), "after");

    for _ in 0..3 {
        let at = app.api.timers().next_deadline().unwrap();
        assert!(app.run_timer(at).unwrap().is_err());
    }
    assert_eq!(
        app.eval::<i64>("return failures"),
        3,
        "a failing interval stays armed"
    );
    assert_eq!(app.api.timers().live(), 1);
}

#[test]
fn the_number_of_live_timers_is_bounded() {
    let app = App::new(&[(
        "main.lua",
        &format!(
            r#"
            local function f() end
            handles = {{}}
            for i = 1, {MAX_TIMERS} do handles[i] = session:setTimeout(f, 1000) end
            local ok, err = pcall(session.setTimeout, session, f, 0)
            assert(not ok and tostring(err):find("too many timers"), tostring(err))
            assert(not pcall(session.setImmediate, session, f))
            assert(not pcall(session.setInterval, session, f, 10))
            session:clearTimeout(handles[1])
            assert(session:setImmediate(f), "clearing makes room")
            "#
        ),
    )]);
    app.run_main().unwrap();
    assert_eq!(app.api.timers().live(), MAX_TIMERS);
    app.run_timer(Instant::now()).unwrap().unwrap();
    app.check("session:setImmediate(function() end)");
}

#[test]
fn a_runaway_callback_is_stopped_by_the_turn_budget() {
    let app = App::with_turn_limit(
        &[(
            "main.lua",
            r#"
            session:setTimeout(function() while true do end end, 0)
            session:setTimeout(function() survived = true end, 0)
            "#,
        )],
        100,
    );
    app.run_main().unwrap();
    let started = Instant::now();
    let err = app.run_timer(Instant::now()).unwrap().unwrap_err();
    assert!(is_limit(&err), "{err}");
    assert_eq!(error_code(&err), ErrorCode::Limit);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The next callback is a new turn with a fresh budget.
    app.run_timer(Instant::now()).unwrap().unwrap();
    assert!(app.eval::<bool>("return survived"));
}

#[test]
fn odd_delays_are_tolerated_and_bad_callbacks_refused() {
    let app = App::new(&[(
        "main.lua",
        r#"
        count = 0
        local function f() count = count + 1 end
        session:setTimeout(f)
        session:setTimeout(f, -5)
        session:setTimeout(f, 0/0)
        far = session:setTimeout(f, 1e300)
        local ok, err = pcall(session.setTimeout, session, "not a function", 10)
        assert(not ok and tostring(err):find("expects a function"), tostring(err))
        assert(not pcall(session.setImmediate, session))
        "#,
    )]);
    app.run_main().unwrap();
    assert_eq!(run_due(&app, Instant::now()).len(), 3);
    assert_eq!(app.eval::<i64>("return count"), 3);
    let far = app.api.timers().next_deadline().unwrap();
    assert!(far > Instant::now() + Duration::from_secs(20 * 24 * 3600));
}
