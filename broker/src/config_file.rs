//! Where each setting comes from. Every flag can also be given in a TOML file (`--config FILE`,
//! keys are the flag names with `_`: `max_sessions = 500`, `idle_timeout = "2h"`), and the
//! precedence is flag > environment (`LUABROKER_<NAME>`) > file > default.
//!
//! clap parses flags and environment as usual and tells us which values it took from neither;
//! for those the file's value is validated with the flag's own parser (so a bad value is
//! reported with its key and file) and then handed to clap as if it were a flag. Besides the
//! effective [`Config`], loading yields each setting's [`Source`] for `--print-config` and for
//! SIGHUP's comparison of old and new (see `reload`).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, CommandFactory, FromArgMatches};

use crate::config::Config;

/// Flags that are not settings (they say how to load or what to do).
const NOT_SETTINGS: &[&str] = &["config", "print_config", "help", "version"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(String),
    File(PathBuf),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// One setting as loaded: its key, its value(s) as written, and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: String,
    /// Empty when unset (an optional flag nobody gave).
    pub values: Vec<String>,
    pub source: Source,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Switch,
    List,
    Single,
}

pub struct Loaded {
    pub config: Config,
    pub settings: Vec<Setting>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A bad flag or environment value, `--help`, `--version`: clap prints and exits.
    #[error(transparent)]
    Args(#[from] clap::Error),
    #[error("config file {}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
}

/// Loads the configuration from `args` (the full command line), the environment and the
/// `--config` file, if any.
pub fn load(args: &[OsString]) -> Result<Loaded, LoadError> {
    let cmd = Config::command();
    let matches = cmd.clone().try_get_matches_from(args)?;
    let file = matches.get_one::<PathBuf>("config").cloned();
    let table = match &file {
        Some(path) => read_table(path)?,
        None => toml::Table::new(),
    };
    let err = |msg: String| LoadError::File {
        path: file.clone().unwrap_or_default(),
        msg,
    };

    // The file's values for the settings neither a flag nor the environment gave.
    let mut extra: Vec<OsString> = Vec::new();
    let mut from_file: Vec<String> = Vec::new();
    for (key, value) in &table {
        let arg = settings(&cmd)
            .find(|a| key_of(a) == *key)
            .ok_or_else(|| err(format!("unknown key `{key}` (known keys: {})", known(&cmd))))?;
        let values = file_values(arg, key, value).map_err(&err)?;
        let id = arg.get_id().as_str();
        let long = arg.get_long().unwrap_or(id);
        if kind_of(arg) != Kind::Switch {
            // The flag's own parser judges the value, exactly as on the command line.
            for v in &values {
                cmd.clone()
                    .try_get_matches_from([
                        OsStr::new("luabroker"),
                        OsStr::new(&format!("--{long}={v}")),
                    ])
                    .map_err(|e| {
                        err(format!("key `{key}`: invalid value {v:?}: {}", reason(&e)))
                    })?;
            }
        }
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        from_file.push(key.clone());
        if kind_of(arg) == Kind::Switch {
            if values.first().map(String::as_str) == Some("true") {
                extra.push(format!("--{long}").into());
            }
        } else {
            extra.extend(
                values
                    .iter()
                    .map(|v| OsString::from(format!("--{long}={v}"))),
            );
        }
    }

    let all: Vec<OsString> = args.iter().cloned().chain(extra).collect();
    let final_matches = cmd
        .clone()
        .try_get_matches_from(&all)
        .map_err(|e| err(e.to_string()))?;
    let config = Config::from_arg_matches(&final_matches).map_err(|e| err(e.to_string()))?;
    let settings = settings(&cmd)
        .map(|arg| {
            let id = arg.get_id().as_str();
            let key = key_of(arg);
            let source = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Env(
                    arg.get_env()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ if from_file.contains(&key) => Source::File(file.clone().unwrap_or_default()),
                _ => Source::Default,
            };
            let values = final_matches
                .get_raw(id)
                .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            Setting {
                key,
                values,
                source,
                kind: kind_of(arg),
            }
        })
        .collect();
    Ok(Loaded { config, settings })
}

/// The effective configuration as TOML that `--config` accepts, each line saying where its
/// value came from (`--print-config`).
pub fn to_toml(settings: &[Setting]) -> String {
    let mut out =
        String::from("# luabroker's effective configuration; each value's source follows it.\n");
    for s in settings {
        let Some(value) = toml_value(s) else {
            out.push_str(&format!("# {} is unset ({})\n", s.key, s.source));
            continue;
        };
        out.push_str(&format!("{} = {value}  # {}\n", s.key, s.source));
    }
    out
}

fn toml_value(s: &Setting) -> Option<String> {
    let scalar = |v: &str| match v.parse::<i64>() {
        Ok(n) => toml::Value::Integer(n),
        Err(_) => toml::Value::String(v.to_string()),
    };
    let value = match s.kind {
        Kind::Switch => toml::Value::Boolean(s.values.first().map(String::as_str) == Some("true")),
        Kind::List => toml::Value::Array(s.values.iter().map(|v| scalar(v)).collect()),
        Kind::Single => scalar(s.values.first()?),
    };
    Some(value.to_string())
}

fn read_table(path: &Path) -> Result<toml::Table, LoadError> {
    let err = |msg: String| LoadError::File {
        path: path.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    text.parse::<toml::Table>()
        .map_err(|e| err(e.to_string().trim_end().to_string()))
}

/// The flags that are settings.
fn settings(cmd: &clap::Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| !NOT_SETTINGS.contains(&a.get_id().as_str()) && a.get_long().is_some())
}

/// A setting's key: its flag's name with `_` (`--max-sessions` → `max_sessions`).
fn key_of(arg: &Arg) -> String {
    arg.get_long().unwrap_or_default().replace('-', "_")
}

fn kind_of(arg: &Arg) -> Kind {
    match arg.get_action() {
        ArgAction::SetTrue => Kind::Switch,
        ArgAction::Append => Kind::List,
        _ => Kind::Single,
    }
}

fn known(cmd: &clap::Command) -> String {
    settings(cmd).map(key_of).collect::<Vec<_>>().join(", ")
}

/// A TOML value as the strings the flag would have been given.
fn file_values(arg: &Arg, key: &str, value: &toml::Value) -> Result<Vec<String>, String> {
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => Err(format!(
            "key `{key}`: expected a string or a number, found {}",
            other.type_str()
        )),
    };
    match (kind_of(arg), value) {
        (Kind::Switch, toml::Value::Boolean(b)) => Ok(vec![b.to_string()]),
        (Kind::Switch, other) => Err(format!(
            "key `{key}`: expected true or false, found {}",
            other.type_str()
        )),
        (Kind::List, toml::Value::Array(items)) => items.iter().map(scalar).collect(),
        (_, toml::Value::Boolean(_) | toml::Value::Array(_)) => Err(format!(
            "key `{key}`: expected a string or a number, found {}",
            value.type_str()
        )),
        (_, v) => Ok(vec![scalar(v)?]),
    }
}

/// What a flag's parser said, without clap's usage text.
fn reason(e: &clap::Error) -> String {
    use std::error::Error;
    match e.source() {
        Some(source) => source.to_string(),
        None => e
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("luabroker")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn source_of<'a>(loaded: &'a Loaded, key: &str) -> &'a Source {
        &loaded
            .settings
            .iter()
            .find(|s| s.key == key)
            .unwrap()
            .source
    }

    #[test]
    fn file_values_fill_in_what_flags_did_not_set() {
        let f = file("max_sessions = 7\nidle_timeout = \"2h\"\ndebug_pages = true\nallow_origin = [\"http://a\", \"http://b\"]\nstatic = \"/srv/www\"\n");
        let path = f.path().to_str().unwrap();
        let loaded = load(&args(&["--config", path, "--max-sessions", "9"])).unwrap();
        assert_eq!(loaded.config.max_sessions, 9);
        assert_eq!(source_of(&loaded, "max_sessions"), &Source::Flag);
        assert_eq!(loaded.config.idle_timeout.as_secs(), 7200);
        assert!(matches!(
            source_of(&loaded, "idle_timeout"),
            Source::File(_)
        ));
        assert!(loaded.config.debug_pages);
        assert_eq!(loaded.config.allow_origin, vec!["http://a", "http://b"]);
        assert_eq!(
            loaded.config.static_dir.as_deref(),
            Some(Path::new("/srv/www"))
        );
        assert_eq!(source_of(&loaded, "listen"), &Source::Default);
    }

    #[test]
    fn printed_configuration_loads_back_to_the_same_values() {
        let f = file("max_sessions = 7\nallow_origin = [\"http://a\"]\nlua_time_limit = 0\n");
        let path = f.path().to_str().unwrap();
        let loaded = load(&args(&["--config", path, "--hotload"])).unwrap();
        let printed = to_toml(&loaded.settings);
        let again = file(&printed);
        let reloaded = load(&args(&["--config", again.path().to_str().unwrap()])).unwrap();
        let values = |l: &Loaded| {
            l.settings
                .iter()
                .map(|s| s.values.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&loaded), values(&reloaded), "{printed}");
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let bad = |text: &str| {
            let f = file(text);
            let e = load(&args(&["--config", f.path().to_str().unwrap()]))
                .err()
                .expect("an error")
                .to_string();
            assert!(e.contains(f.path().to_str().unwrap()), "{e}");
            e
        };
        assert!(bad("max_sesions = 5\n").contains("unknown key `max_sesions`"));
        let e = bad("idle_timeout = \"soon\"\n");
        assert!(
            e.contains("key `idle_timeout`: invalid value \"soon\""),
            "{e}"
        );
        assert!(bad("max_sessions = \"many\"\n").contains("key `max_sessions`"));
        assert!(bad("debug_pages = \"yes\"\n").contains("expected true or false"));
        assert!(bad("config = \"x\"\n").contains("unknown key `config`"));
        assert!(bad("max_sessions = [\n").contains("TOML parse error"));
    }
}
