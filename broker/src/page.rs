//! The HTML the broker serves itself: the built-in session page (embedded, no build step),
//! the 404 and error pages (the debug variable browser is `crate::variable_browser`).

/// The built-in session page: connects to `/ws/<id>` and shows the app through its own
/// viewdefs, or as a live object tree when it has none.
pub const SESSION_PAGE: &str = include_str!("page/session.html");

/// The page's script and style, served at `/_luabroker/<name>` (a prefix no 32-hex session id
/// can take): hand-written ES modules with `// @ts-check`, embedded as they are (no build step).
/// `session.js` is the entry module; it imports the rest by relative URL.
const ASSETS: &[(&str, &str, &str)] = &[
    ("session.js", JS, include_str!("page/session.js")),
    ("client.js", JS, include_str!("page/client.js")),
    ("status.js", JS, include_str!("page/status.js")),
    ("tree.js", JS, include_str!("page/tree.js")),
    ("variables.js", JS, include_str!("page/variables.js")),
    ("viewdefs.js", JS, include_str!("page/viewdefs.js")),
    ("bindings.js", JS, include_str!("page/bindings.js")),
    ("view.js", JS, include_str!("page/view.js")),
    ("dom.js", JS, include_str!("page/dom.js")),
    ("session.css", CSS, include_str!("page/session.css")),
    // The debug variable browser's script (`crate::variable_browser`).
    (
        "variable_browser.js",
        JS,
        include_str!("page/variable_browser.js"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The asset called `name`: its content type and text; `None` for any other name.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, content_type, body)| (*content_type, *body))
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;\
         margin:4rem auto;padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}pre{{background:#f4f4f4;\
         padding:1rem;overflow:auto;white-space:pre-wrap}}a{{color:#0b5fff}}</style></head>\
         <body>{body}</body></html>",
        title = escape(title)
    )
}

/// The page for an unknown or expired session id.
pub fn not_found_page(id: &str, why: Option<&str>) -> String {
    let detail = match why {
        Some(why) => format!("<p>This session was closed: {}.</p>", escape(why)),
        None => "<p>This session does not exist or has expired.</p>".to_string(),
    };
    let shown = if id.is_empty() {
        String::new()
    } else {
        format!(" <code>{}</code>", escape(id))
    };
    shell(
        "Session not found",
        &format!(
            "<h1>Session{shown} not found</h1>{detail}\
             <p><a href=\"/\">Start a new session</a></p>"
        ),
    )
}

pub fn error_page(title: &str, detail: &str) -> String {
    shell(
        title,
        &format!(
            "<h1>{}</h1><pre>{}</pre><p><a href=\"/\">Start a new session</a></p>",
            escape(title),
            escape(detail)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module a page module imports (`from "./x.js"`) is served: a module added to
    /// `page/` but not to `ASSETS` would break the page only in a browser.
    #[test]
    fn every_imported_module_is_served() {
        for (name, _, body) in ASSETS {
            for part in body.split("from \"./").skip(1) {
                let imported = &part[..part.find('"').expect("a closing quote")];
                assert!(
                    asset(imported).is_some(),
                    "{name} imports {imported}, which is not served"
                );
            }
        }
        assert!(asset("../page.rs").is_none() && asset("nope.js").is_none());
    }
}
