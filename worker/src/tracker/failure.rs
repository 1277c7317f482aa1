//! [`Failure`]: why one tracker operation did not happen, as the `code` and `description` of the
//! `error` message the tab receives. Every fallible tracker operation returns one, so the
//! backend can answer it without knowing where it came from.

use protocol::browser::{ServerMessage, VarId};
use protocol::ErrorCode;

use crate::budget;

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: ErrorCode,
    pub description: String,
}

impl Failure {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Failure {
        Failure {
            code,
            description: description.into(),
        }
    }

    pub fn not_found(description: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::NotFound, description)
    }

    pub fn bad_request(description: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::BadRequest, description)
    }

    pub fn bad_access(description: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::BadAccess, description)
    }

    pub fn path(description: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::PathFailure, description)
    }

    pub fn internal(description: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::Internal, description)
    }

    /// A failed call into Lua: `limit` when a budget stopped it, else `lua-error`, with the
    /// message the Lua code raised.
    pub fn lua(err: &mlua::Error) -> Failure {
        Failure::new(budget::error_code(err), lua_message(err))
    }

    /// The same failure seen by change detection, where anything short of a limit means the
    /// path could not be followed.
    pub fn as_path_failure(self) -> Failure {
        match self.code {
            ErrorCode::Limit => self,
            _ => Failure::new(ErrorCode::PathFailure, self.description),
        }
    }

    pub fn into_message(self, var_id: Option<VarId>) -> ServerMessage {
        ServerMessage::Error {
            var_id,
            code: self.code,
            description: self.description,
        }
    }
}

/// The message a Lua error carries, without mlua's callback wrapping and without the stack
/// traceback (tabs get one line a person can act on; the traceback helps nobody there).
pub fn lua_message(err: &mlua::Error) -> String {
    let text = match err {
        mlua::Error::CallbackError { cause, .. } => return lua_message(cause),
        mlua::Error::WithContext { context, cause } => {
            return format!("{context}: {}", lua_message(cause))
        }
        mlua::Error::RuntimeError(msg) | mlua::Error::MemoryError(msg) => msg.clone(),
        other => other.to_string(),
    };
    match text.find("\nstack traceback:") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_errors_lose_their_traceback() {
        let lua = mlua::Lua::new();
        let err = lua
            .load("local function f() error('boom') end f()")
            .set_name("=app")
            .exec()
            .unwrap_err();
        let f = Failure::lua(&err);
        assert_eq!(f.code, ErrorCode::LuaError);
        assert_eq!(f.description, "app:1: boom");
    }
}
