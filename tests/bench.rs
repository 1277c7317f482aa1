//! `luabroker bench` as a user runs it: every scenario against spawned servers, small, with
//! `--json`; each row it promises is there with samples and no failure in its note; and
//! against a server that does not serve the bench app it says so and fails. It measures
//! nothing here (speed lives in BENCHMARKS.md), it checks that the bench still works.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value as Json;

#[test]
fn every_scenario_runs_and_reports_its_rows() {
    let out = Command::new(BIN)
        .args(["bench", "--spawn", "--json"])
        .args([
            "--scenarios",
            "floor,create,rate,action,relay,changes,live,busy",
        ])
        .args([
            "--requests",
            "20",
            "--rate-sessions",
            "20",
            "--clients",
            "4",
        ])
        .args(["--iterations", "20", "--relay-messages", "200"])
        .args(["--watched", "50", "--change-iterations", "10"])
        .args(["--live", "10", "--busy", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let report: Json = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(report["cores"].as_u64().map(|c| c > 0), Some(true));
    let rows = report["rows"].as_array().unwrap();
    let row = |key: &str| {
        rows.iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("no row {key} in {rows:#?}"))
    };
    for key in [
        "floor.direct",
        "floor.relayed",
        "create.latency",
        "create.rate",
        "action.round_trip",
        "changes.round_trip",
        "changes.pass",
        "live.health",
        "live.create.latency",
        "live.create.rate",
        "busy.health",
        "busy.create.latency",
        "busy.action.round_trip",
    ] {
        let r = row(key);
        assert!(r["n"].as_u64().unwrap() > 0, "{key}: no samples: {r}");
        assert!(r["p50_us"].as_f64().unwrap() > 0.0, "{key}: {r}");
        let note = r["note"].as_str().unwrap_or_default();
        assert!(!note.contains("FAILED"), "{key}: {note}");
    }
    for key in ["relay.messages", "live.open", "busy.spins"] {
        let r = row(key);
        assert!(r["rate_per_s"].as_f64().unwrap() > 0.0, "{key}: {r}");
    }
    assert!(row("action.above_floor")["p50_us"].as_f64().unwrap() >= 0.0);
    // A spawned server's CPU and wake-ups per unit of work, read off its processes.
    for (key, unit) in [
        ("create.rate", "session"),
        ("action.round_trip", "round trip"),
    ] {
        let note = row(key)["note"].as_str().unwrap().to_string();
        let runs: f64 = note
            .split(" thread runs per ")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{key}: no thread runs in {note:?}"));
        assert!(runs > 0.0, "{key}: {note}");
        assert!(
            note.contains(&format!("thread runs per {unit}")),
            "{key}: {note}"
        );
    }
    assert_eq!(row("live.open")["n"], 10, "every live session opened");
    assert!(row("busy.spins")["n"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn against_another_app_it_says_so_and_fails() {
    let broker = Broker::with_app(
        &[("main.lua", "session:createAppVariable({ count = 0 })")],
        &[],
    );
    let out = Command::new(BIN)
        .args(["bench", "--url", &broker.url(""), "--scenarios", "action"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not serve the bench app"),
        "stderr: {stderr}"
    );
}
