//! Batches for failures no tab caused (a timer callback, a reloaded file): one `error` per open
//! tab with the code the failure deserves, merged ahead of the changes that follow.

use std::collections::BTreeSet;

use super::*;
use crate::backend::{error_batches, merge_batches};
use crate::budget::TIME_LIMIT_MARKER;

#[test]
fn a_timer_error_reaches_every_tab_before_its_changes() {
    let tabs = BTreeSet::from([1, 2]);
    let err = mlua::Error::runtime("main.lua:3: boom");
    let errors = error_batches(&tabs, &err);
    let change = ServerMessage::Destroy { var_id: 9 };
    let changes = vec![
        TabBatch {
            tab: 2,
            messages: vec![change.clone()],
        },
        TabBatch {
            tab: 3,
            messages: vec![change.clone()],
        },
    ];
    let error = ServerMessage::Error {
        var_id: None,
        code: ErrorCode::LuaError,
        description: err.to_string(),
    };
    assert_eq!(
        merge_batches(errors, changes),
        [
            TabBatch {
                tab: 1,
                messages: vec![error.clone()],
            },
            TabBatch {
                tab: 2,
                messages: vec![error, change.clone()],
            },
            TabBatch {
                tab: 3,
                messages: vec![change],
            },
        ]
    );
}

#[test]
fn a_stopped_runaway_timer_is_reported_as_a_limit() {
    let err = mlua::Error::runtime(format!("{TIME_LIMIT_MARKER} of 5s exceeded"));
    let batches = error_batches(&BTreeSet::from([4]), &err);
    assert!(matches!(
        &batches[0].messages[0],
        ServerMessage::Error {
            code: ErrorCode::Limit,
            var_id: None,
            ..
        }
    ));
    assert!(
        error_batches(&BTreeSet::new(), &err).is_empty(),
        "no tab, no message"
    );
}
