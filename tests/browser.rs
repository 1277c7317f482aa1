//! The built-in session page in a real browser: the real executable serving the default app,
//! Debian's `chromedriver` driving headless Chromium through WebDriver (fantoccini). It checks
//! what a person does: open `/`, land on `/<id>`, see the counter, click `increment`, type a
//! todo and `add` it, and see the page recover when the session's worker crashes. Then, in the
//! same browser, an app written for the test: deep objects open on demand, a number edit
//! reaches Lua, and a Lua error becomes a dismissible banner.
//!
//! Then the page rendering an app's own viewdefs: `examples/tasks` (a copy, served with
//! `--hotload`) shows its board from its templates, not the tree; typing, actions, lists that
//! grow and shrink, classes and attributes that follow state, a viewdef edited in place, the
//! switch to the tree and back, a crash; and an app made for the test covers the other
//! bindings (textarea, select, contenteditable, ui-html, ui-style, key modifiers, ui-view
//! namespaces, `?itemWrapper=` rows, the built-in `lua.ViewList` template, a web component),
//! the destroy of a view's variables, and the debug variable browser of that session.
//!
//! Chromium and chromedriver are required (`.ci/run` installs them: `apt-get install chromium
//! chromium-driver`); without them the test fails, it never skips. Every wait is a WebDriver
//! wait for an element with a deadline; nothing sleeps.
//!
//! Set `LUABROKER_BROWSER_SCREENSHOT=/tmp/page.png` to keep a screenshot of the page.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_HINT: &str =
    "install them with `apt-get install chromium chromium-driver` (as .ci/run does)";

/// A `chromedriver` on a free loopback port. It runs in a process group of its own, with the
/// Chromium it starts; dropping it kills that group, so a failing test leaves no browser behind.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let exe = find_on_path("chromedriver")
            .unwrap_or_else(|| panic!("chromedriver is not on PATH; {INSTALL_HINT}"));
        assert!(
            Path::new(CHROMIUM).is_file(),
            "{CHROMIUM} is missing; {INSTALL_HINT}"
        );
        // A port the OS just handed out; chromedriver binds it right away.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(&exe)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            // Keeps reading until chromedriver exits, so its output never blocks it.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("started successfully") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(DEADLINE).is_err() {
            let _ = child.kill();
            panic!("chromedriver did not report that it started");
        }
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A fresh headless Chromium with its own profile directory.
    async fn browser(&self, profile: &Path) -> Client {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1100,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}"))
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (process_group(0)); only what it started is in it.
        let _ = nix::sys::signal::killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Waits (with the harness deadline) for an element matching `css`.
async fn wait_for(page: &Client, css: &str) -> Element {
    wait_for_element(page, Locator::Css(css)).await
}

/// Waits for the element matching `css`, then clicks it.
async fn click(page: &Client, css: &str) {
    wait_for(page, css).await.click().await.unwrap();
}

/// Waits (with the harness deadline) for an element matching the XPath `xpath` (CSS cannot
/// match text or count children).
async fn wait_for_xpath(page: &Client, xpath: &str) -> Element {
    wait_for_element(page, Locator::XPath(xpath)).await
}

async fn wait_for_element(page: &Client, what: Locator<'_>) -> Element {
    match page.wait().at_most(DEADLINE).for_element(what).await {
        Ok(e) => e,
        Err(e) => {
            let text = match page.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("no element {what:?} within {DEADLINE:?} ({e}); the page shows:\n{text}")
        }
    }
}

/// Deep nesting (opened lazily), a number, a computed value and a method that fails.
const BOX_APP: &str = r#"
local Box = { type = "Box" }
Box.__index = Box
function Box:double() return self.n * 2 end
function Box:jam() error("the box is jammed") end
local app = setmetatable({
  n = 21,
  deep = { inner = { more = { leaf = "deep leaf" } } },
}, Box)
session:createAppVariable(app, { computed = "double" })
"#;

/// The field of variable 1 at `path` showing exactly `text`.
fn field(path: &str, text: &str) -> String {
    format!("[data-path=\"{path}\"][data-text=\"{text}\"]")
}

#[tokio::test]
async fn the_page_shows_the_default_app_and_drives_it() {
    let broker = Broker::start(&[]);
    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let page = driver.browser(profile.path()).await;

    // `/` creates a session and redirects to its page.
    page.goto(&broker.url("/")).await.unwrap();
    let url = page.current_url().await.unwrap();
    let id = url.path().trim_start_matches('/').to_string();
    assert!(is_session_id(&id), "landed on {url}, not /<session id>");

    // Variable 1's fields arrive: the counter at 0, the app's type, its methods as buttons.
    // The default app ships no viewdefs, so the page shows the tree, and no switch to an app view.
    wait_for(&page, &field("count", "0")).await;
    wait_for(&page, "body[data-view=\"tree\"] #lb-app[hidden]").await;
    wait_for(&page, "#lb-view-toggle[hidden]").await;
    wait_for(&page, "[data-path=\"\"] .lb-type").await;
    let increment = wait_for(&page, "button[data-call=\"increment\"]").await;
    assert_eq!(increment.text().await.unwrap(), "increment()");

    // A click calls the method; the new value is pushed back.
    increment.click().await.unwrap();
    wait_for(&page, &field("count", "1")).await;
    increment.click().await.unwrap();
    wait_for(&page, &field("count", "2")).await;

    // An edited field reaches Lua: type a todo, `add` it, see it in the list and the
    // computed `remaining()` go up; `add` empties `newTodo`.
    let remaining_before: i64 = wait_for(&page, "[data-path=\"remaining()\"]")
        .await
        .attr("data-text")
        .await
        .unwrap()
        .expect("remaining() shows a value")
        .parse()
        .expect("remaining() is a number");
    let input = wait_for(&page, "input[data-value-of=\"newTodo\"]").await;
    input.send_keys("Buy milk").await.unwrap();
    click(&page, "button[data-call=\"add\"]").await;
    let added = wait_for(&page, "[data-path^=\"todos.\"][data-text=\"Buy milk\"]").await;
    let path = added.attr("data-path").await.unwrap().unwrap();
    assert!(path.ends_with(".text"), "the todo's text field: {path}");
    wait_for(&page, &field("newTodo", "")).await;
    wait_for(
        &page,
        &field("remaining()", &(remaining_before + 1).to_string()),
    )
    .await;
    // Its `done` checkbox writes through too: ticking it brings `remaining()` back down.
    let todo = path.trim_end_matches(".text");
    click(&page, &format!("input[data-value-of=\"{todo}.done\"]")).await;
    wait_for(&page, &field(&format!("{todo}.done"), "true")).await;
    wait_for(&page, &field("remaining()", &remaining_before.to_string())).await;

    // No error banner came up along the way.
    let errors = page.find_all(Locator::Css("#lb-errors > *")).await.unwrap();
    assert!(errors.is_empty(), "error banners: {}", errors.len());

    if let Ok(shot) = std::env::var("LUABROKER_BROWSER_SCREENSHOT") {
        std::fs::write(&shot, page.screenshot().await.unwrap()).unwrap();
    }

    // The worker crashes: the page says so, reconnects (a fresh worker runs main.lua again)
    // and shows the new app from scratch.
    let workers = broker.workers();
    assert_eq!(workers.len(), 1, "one session worker: {workers:?}");
    kill(Pid::from_raw(workers[0]), Signal::SIGKILL).unwrap();
    let banner = wait_for(&page, "#lb-connection-banner:not([hidden])").await;
    let text = banner.text().await.unwrap();
    assert!(text.contains("crashed"), "the banner says why: {text:?}");
    // The new tree replaces the old one (count was 2) once the page has reconnected.
    wait_for(&page, &field("count", "0")).await;
    wait_for(&page, "#lb-connection[data-state=\"open\"]").await;
    let text = banner.text().await.unwrap();
    assert!(
        text.contains("crashed") && text.contains("restarted"),
        "after reconnecting the banner says the app restarted: {text:?}"
    );
    if let Ok(shot) = std::env::var("LUABROKER_BROWSER_SCREENSHOT") {
        std::fs::write(
            shot.replace(".png", "-crash.png"),
            page.screenshot().await.unwrap(),
        )
        .unwrap();
    }
    let again = wait_for(&page, "button[data-call=\"increment\"]").await;
    again.click().await.unwrap();
    wait_for(&page, &field("count", "1")).await;

    // The same browser on a second server, with an app made for the test.
    let boxes = Broker::with_app(&[("main.lua", BOX_APP)], &[]);
    page.goto(&boxes.url("/")).await.unwrap();
    wait_for(&page, &field("double()", "42")).await;

    // Objects three levels down start closed and are fetched only when opened.
    let more = wait_for(
        &page,
        "[data-path=\"deep.inner.more\"][data-shape=\"object\"]",
    )
    .await;
    let toggle = more.find(Locator::Css(".lb-toggle")).await.unwrap();
    assert_eq!(
        toggle.attr("aria-expanded").await.unwrap().as_deref(),
        Some("false")
    );
    assert!(
        page.find_all(Locator::Css("[data-path=\"deep.inner.more.leaf\"]"))
            .await
            .unwrap()
            .is_empty(),
        "a closed object's fields are not bound"
    );
    toggle.click().await.unwrap();
    wait_for(&page, &field("deep.inner.more.leaf", "deep leaf")).await;

    // A number typed into a field reaches Lua: the computed value follows.
    let n = wait_for(&page, "input[data-value-of=\"n\"]").await;
    n.clear().await.unwrap();
    n.send_keys("50\u{E007}").await.unwrap(); // U+E007: WebDriver's Enter key
    wait_for(&page, &field("n", "50")).await;
    wait_for(&page, &field("double()", "100")).await;

    // A Lua error in a method: a banner with the code and Lua's message, which can be dismissed.
    click(&page, "button[data-call=\"jam\"]").await;
    let banner = wait_for(&page, "#lb-errors [data-code=\"lua-error\"]").await;
    let text = banner.text().await.unwrap();
    assert!(text.contains("the box is jammed"), "banner: {text:?}");
    if let Ok(shot) = std::env::var("LUABROKER_BROWSER_SCREENSHOT") {
        std::fs::write(
            shot.replace(".png", "-error.png"),
            page.screenshot().await.unwrap(),
        )
        .unwrap();
    }
    banner
        .find(Locator::Css(".lb-dismiss"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&page, "#lb-errors:empty").await;
    // The session carries on after the error.
    wait_for(&page, &field("double()", "100")).await;

    page.close().await.unwrap();
}

/// The files of `examples/tasks`, to serve a copy whose viewdefs the test may edit.
fn tasks_example() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tasks");
    let mut files = Vec::new();
    for sub in ["", "tasks", "viewdefs"] {
        for entry in std::fs::read_dir(root.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let source = path.extension().is_some_and(|e| e == "lua" || e == "html");
            if path.is_file() && source {
                let name = Path::new(sub).join(path.file_name().unwrap());
                files.push((
                    name.to_string_lossy().into_owned(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    app(&files)
}

/// The `n`th column of the board (1-based), as XPath.
fn column(n: usize) -> String {
    format!("(//div[contains(concat(' ', @class, ' '), ' column ')])[{n}]")
}

/// The task row titled `title`, as XPath.
fn row(title: &str) -> String {
    format!("//li[contains(concat(' ', @class, ' '), ' task ')][.//span[contains(@class, 'title')][.='{title}']]")
}

/// Clicks the `tag` of class `class` in the task row titled `title`.
async fn click_in_row(page: &Client, title: &str, tag: &str, class: &str) {
    let xpath = format!("{}//{tag}[contains(@class, '{class}')]", row(title));
    wait_for_xpath(page, &xpath).await.click().await.unwrap();
}

#[tokio::test]
async fn the_page_renders_the_apps_own_viewdefs() {
    let dir = tasks_example();
    let app_dir = dir.path().to_str().unwrap().to_string();
    let broker = Broker::start(&["--lua-dir", &app_dir, "--hotload"]);
    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let page = driver.browser(profile.path()).await;
    page.goto(&broker.url("/")).await.unwrap();

    // The board comes from Board.DEFAULT.html, its columns from a ui-viewlist of Column views,
    // the tasks from Task.list-item.html rows; the tree is not shown.
    wait_for(&page, "body[data-view=\"app\"] #lb-app .board").await;
    wait_for(&page, "#lb-tree[hidden]").await;
    wait_for_xpath(&page, "//h1[.='Team board']").await;
    wait_for_xpath(
        &page,
        &format!(
            "{}[.//span[@class='name'][.='To do']][count(.//li)=2]",
            column(1)
        ),
    )
    .await;
    wait_for_xpath(
        &page,
        &format!(
            "{}[.//span[@class='name'][.='Doing']]{}",
            column(2),
            row("Connect a frontend")
        ),
    )
    .await;
    wait_for_xpath(
        &page,
        &format!(
            "{}[.//span[@class='name'][.='Done']][count(.//li)=0]",
            column(3)
        ),
    )
    .await;
    assert!(
        page.find_all(Locator::Css("#lb-tree [data-path]"))
            .await
            .unwrap()
            .is_empty(),
        "no object tree"
    );
    // ui-class-*: the empty column says so; ui-attr-*: nothing typed, nothing to add; a task in
    // the first column cannot move left; ui-style-*: the progress bar's width.
    wait_for(&page, ".column.empty").await;
    wait_for(&page, "button.add[disabled]").await;
    wait_for_xpath(
        &page,
        &format!(
            "{}//button[contains(@class, 'move-left')][@disabled]",
            row("Write the README")
        ),
    )
    .await;
    wait_for(&page, ".progress .bar[style*=\"width: 0%\"]").await;
    // A template's own <style> is in the document head once, not in every copy.
    assert_eq!(
        page.find_all(Locator::Css("head style[data-viewdef=\"Task.list-item\"]"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(page
        .find_all(Locator::Css("#lb-app style"))
        .await
        .unwrap()
        .is_empty());

    // Typing reaches Lua at each key (`newTask?keypress`): the computed preview follows and
    // the Add button is enabled.
    let input = wait_for(&page, "input.new-title").await;
    input.send_keys("Buy milk").await.unwrap();
    wait_for_xpath(
        &page,
        "//span[contains(@class, 'preview')][.='Add “Buy milk” to To do']",
    )
    .await;
    wait_for(&page, "button.add:not([disabled])").await;

    // The Add action adds a task: the first column's list grows; the field is emptied by Lua.
    click(&page, "button.add").await;
    wait_for_xpath(
        &page,
        &format!("{}[count(.//li)=3]{}", column(1), row("Buy milk")),
    )
    .await;
    wait_for(&page, "button.add[disabled]").await;
    assert_eq!(input.prop("value").await.unwrap().as_deref(), Some(""));

    // A row's action moves its task: one list shrinks, the next grows.
    click_in_row(&page, "Buy milk", "button", "move-right").await;
    wait_for_xpath(
        &page,
        &format!("{}[count(.//li)=2]{}", column(2), row("Buy milk")),
    )
    .await;
    wait_for_xpath(&page, &format!("{}[count(.//li)=2]", column(1))).await;
    // Once more, to the last column: it is no longer empty, and the task cannot go further right.
    click_in_row(&page, "Buy milk", "button", "move-right").await;
    wait_for_xpath(
        &page,
        &format!(
            "{}[not(contains(@class, 'empty'))]{}",
            column(3),
            row("Buy milk")
        ),
    )
    .await;
    wait_for_xpath(
        &page,
        &format!(
            "{}//button[contains(@class, 'move-right')][@disabled]",
            row("Buy milk")
        ),
    )
    .await;
    wait_for(&page, ".progress .bar[style*=\"width: 25%\"]").await;

    // A checkbox writes through and the row's class follows.
    click_in_row(&page, "Try --hotload", "input", "done").await;
    wait_for_xpath(
        &page,
        &format!(
            "{}[contains(concat(' ', @class, ' '), ' done ')]",
            row("Try --hotload")
        ),
    )
    .await;

    // Edit: the title field shows, Enter saves what was typed.
    click_in_row(&page, "Write the README", "button", "edit").await;
    let edit = wait_for_xpath(
        &page,
        &format!(
            "{}[contains(@class, 'editing')]//input[contains(@class, 'title-edit')][not(@hidden)]",
            row("Write the README")
        ),
    )
    .await;
    edit.send_keys(" now\u{E007}").await.unwrap(); // U+E007: WebDriver's Enter key
    wait_for_xpath(
        &page,
        &format!(
            "{}[not(contains(@class, 'editing'))]",
            row("Write the README now")
        ),
    )
    .await;

    // No error banner came up along the way.
    let errors = page.find_all(Locator::Css("#lb-errors > *")).await.unwrap();
    assert!(errors.is_empty(), "error banners: {}", errors.len());
    if let Ok(shot) = std::env::var("LUABROKER_BROWSER_SCREENSHOT") {
        // The README's showcase picture (examples/tasks/screenshot.png): the page's body only.
        let body = page.find(Locator::Css("body")).await.unwrap();
        std::fs::write(
            shot.replace(".png", "-tasks.png"),
            body.screenshot().await.unwrap(),
        )
        .unwrap();
    }

    // --hotload: an edited viewdef re-renders the views that use it, in place: the page is not
    // reloaded (a marker set in it survives) and the board keeps its state.
    page.execute("window.lbMarker = 7;", vec![]).await.unwrap();
    let column_file = dir.path().join("viewdefs/Column.DEFAULT.html");
    let template = std::fs::read_to_string(&column_file).unwrap();
    let edited = template.replace(
        "<ul class=\"tasks\"",
        "<p class=\"hot\">edited</p><ul class=\"tasks\"",
    );
    assert_ne!(template, edited);
    std::fs::write(&column_file, edited).unwrap();
    wait_for_xpath(&page, &format!("{}//p[@class='hot']", column(3))).await;
    wait_for_xpath(&page, &format!("{}{}", column(3), row("Buy milk"))).await;
    assert_eq!(
        page.execute("return window.lbMarker;", vec![])
            .await
            .unwrap(),
        json!(7)
    );

    // The header's switch shows the same session as the object tree, and back.
    click(&page, "#lb-view-toggle:not([hidden])").await;
    wait_for(&page, "body[data-view=\"tree\"]").await;
    wait_for(&page, &field("title", "Team board")).await;
    click(&page, "#lb-view-toggle:not([hidden])").await;
    wait_for_xpath(&page, &format!("{}{}", column(3), row("Buy milk"))).await;

    // The worker crashes: the same banner as on the tree, and the board comes back from
    // scratch (a fresh main.lua) once the page has reconnected.
    let workers = broker.workers();
    assert_eq!(workers.len(), 1, "one session worker: {workers:?}");
    kill(Pid::from_raw(workers[0]), Signal::SIGKILL).unwrap();
    let banner = wait_for(&page, "#lb-connection-banner:not([hidden])").await;
    assert!(banner.text().await.unwrap().contains("crashed"));
    wait_for_xpath(
        &page,
        &format!("{}[count(.//li)=2]{}", column(1), row("Write the README")),
    )
    .await;
    wait_for_xpath(&page, &format!("{}[count(.//li)=0]", column(3))).await;
    wait_for(&page, "#lb-connection[data-state=\"open\"]").await;

    let errors = page.find_all(Locator::Css("#lb-errors > *")).await.unwrap();
    assert!(errors.is_empty(), "error banners: {}", errors.len());
    page.close().await.unwrap();
}

#[tokio::test]
async fn every_binding_reaches_lua_and_back() {
    let widgets = Broker::with_app(WIDGETS_APP, &["--debug-pages"]);
    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let page = driver.browser(profile.path()).await;
    page.goto(&widgets.url("/")).await.unwrap();
    wait_for(&page, "body[data-view=\"app\"] .form").await;
    let url = page.current_url().await.unwrap();
    let session = url.path().trim_start_matches('/').to_string();

    // A text input sends on change; the computed greeting follows.
    wait_for_xpath(&page, "//span[@class='greeting'][.='Hello, Ada']").await;
    let name = wait_for(&page, "input.name").await;
    name.send_keys(" Lovelace\u{E004}").await.unwrap(); // U+E004: Tab, which commits the edit
    wait_for_xpath(&page, "//span[@class='greeting'][.='Hello, Ada Lovelace']").await;

    // A textarea with ?keypress, a select, a contenteditable element: each writes to Lua,
    // and each field's echo (a computed span) shows Lua has it.
    wait_for(&page, "textarea.bio")
        .await
        .send_keys("Mathematician")
        .await
        .unwrap();
    wait_for_xpath(&page, "//span[@class='echo-bio'][.='13 characters']").await;
    click(&page, "select.color option[value=\"blue\"]").await;
    wait_for_xpath(&page, "//span[@class='echo-color'][.='blue']").await;
    let note = wait_for(&page, "div.note[contenteditable]").await;
    note.click().await.unwrap();
    note.send_keys("jotted").await.unwrap();
    click(&page, "input.name").await; // blur commits it
    wait_for_xpath(&page, "//span[@class='echo-note'][.='jotted']").await;

    // ui-html renders markup; ui-style-* sets a style property from a computed value.
    wait_for(&page, "div.html b.markup").await;
    wait_for(&page, "div.box[style*=\"width: 40px\"]").await;
    wait_for(&page, "button.grow").await.click().await.unwrap();
    wait_for(&page, "div.box[style*=\"width: 50px\"]").await;

    // Key bindings with modifiers: Ctrl+Enter calls save(), Enter alone does not; Escape on a
    // plain path writes the key's name.
    let keys = wait_for(&page, "input.keys").await;
    keys.send_keys("\u{E007}").await.unwrap();
    keys.send_keys("\u{E009}\u{E007}\u{E000}").await.unwrap(); // Ctrl down, Enter, keys up
    wait_for_xpath(&page, "//span[@class='saves'][.='1']").await;
    keys.send_keys("\u{E00C}").await.unwrap(); // Escape
    wait_for_xpath(&page, "//span[@class='lastkey'][.='escape']").await;
    wait_for_xpath(&page, "//span[@class='saves'][.='1']").await;

    // ui-view renders an object by its type's viewdef in the namespace asked for, falling
    // back to DEFAULT when that namespace has none.
    wait_for_xpath(&page, "//span[@class='pet-compact'][.='cat']").await;
    wait_for_xpath(&page, "//div[@class='pet-default'][.='a cat']").await;
    // The object changes: the view follows; it goes away when the field is nil, and its
    // variables with it.
    wait_for(&page, "button.swap").await.click().await.unwrap();
    wait_for_xpath(&page, "//span[@class='pet-compact'][.='dog']").await;
    let paths = |vars: Vec<serde_json::Value>| -> Vec<String> {
        vars.iter()
            .filter_map(|v| v["path"].as_str().map(str::to_string))
            .collect()
    };
    // (`phrase()` is bound by the DEFAULT pet view and by each row of the pet table below.)
    let count = |paths: &[String], path: &str| paths.iter().filter(|p| *p == path).count();
    let before = paths(widgets.variables(&session).await);
    assert_eq!(count(&before, "kind"), 1, "{before:?}");
    wait_for(&page, "button.lose").await.click().await.unwrap();
    wait_for_xpath(
        &page,
        "//*[@class='pets'][not(.//span[@class='pet-compact'])][not(.//div[@class='pet-default'])]",
    )
    .await;
    // One more round trip: the worker handles a tab's frames in order, so the destroys the
    // page sent when the views went away have been handled once this answer is back.
    wait_for(&page, "button.grow").await.click().await.unwrap();
    wait_for(&page, "div.box[style*=\"width: 60px\"]").await;
    let left = paths(widgets.variables(&session).await);
    assert!(
        count(&left, "kind") == 0 && count(&left, "phrase()") == count(&before, "phrase()") - 1,
        "the views' bindings are destroyed with them: {left:?}"
    );

    // A web component the page provides binds through its `value` property and its own
    // `<prefix>-change` event.
    page.execute(
        r#"customElements.define("wc-field", class extends HTMLElement {
             get value() { return this.dataset.value || ""; }
             set value(v) { this.dataset.value = v; this.textContent = "[" + v + "]"; }
           });"#,
        vec![],
    )
    .await
    .unwrap();
    wait_for_xpath(&page, "//wc-field[.='[Ada Lovelace]']").await;
    page.execute(
        r#"const f = document.querySelector("wc-field");
           f.value = "Grace"; f.dispatchEvent(new Event("wc-change"));"#,
        vec![],
    )
    .await
    .unwrap();
    wait_for_xpath(&page, "//span[@class='greeting'][.='Hello, Grace']").await;
    wait_for(&page, "input.name").await;
    assert_eq!(
        wait_for(&page, "input.name")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Grace")
    );

    // A list with a presenter per row (`?itemWrapper=`), and a list rendered by the built-in
    // `lua.ViewList.DEFAULT` template through `ui-view="…?wrapper=lua.ViewList"`: both follow
    // the Lua array.
    wait_for_xpath(
        &page,
        "//ul[@class='pet-rows'][count(li)=2]/li[2][.='2. dog']",
    )
    .await;
    let table = "//div[contains(@class, 'pet-table')][contains(@class, 'lua-viewlist')]";
    wait_for_xpath(
        &page,
        &format!("{table}[count(.//div[contains(@class, 'pet-default')])=2]"),
    )
    .await;
    wait_for(&page, "button.adopt").await.click().await.unwrap();
    wait_for_xpath(
        &page,
        "//ul[@class='pet-rows'][count(li)=3]/li[3][.='3. fish']",
    )
    .await;
    wait_for_xpath(
        &page,
        &format!("{table}[count(.//div[contains(@class, 'pet-default')])=3]"),
    )
    .await;

    // ui-event-<name> listens for any event, a custom one too.
    page.execute(
        r#"document.querySelector(".poke").dispatchEvent(new Event("poke"));"#,
        vec![],
    )
    .await
    .unwrap();
    wait_for_xpath(&page, "//span[@class='pokes'][.='1']").await;

    // `?access=rw` on a method path makes it writable (a method path is read-only by default).
    wait_for_xpath(&page, "//span[@class='nick-echo'][.='nick: anon']").await;
    let nick = wait_for(&page, "input.nick").await;
    nick.clear().await.unwrap();
    nick.send_keys("zed\u{E004}").await.unwrap();
    wait_for_xpath(&page, "//span[@class='nick-echo'][.='nick: zed']").await;

    // A select whose options are a ui-viewlist: Lua's value is chosen once they exist, and
    // choosing another writes it back.
    wait_for(&page, "select.pick option[value=\"c\"]").await;
    let picked = page
        .execute(
            r#"return document.querySelector("select.pick").value;"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(picked, json!("b"));
    click(&page, "select.pick option[value=\"c\"]").await;
    wait_for_xpath(&page, "//span[@class='picked'][.='c']").await;

    let errors = page.find_all(Locator::Css("#lb-errors > *")).await.unwrap();
    assert!(errors.is_empty(), "error banners: {}", errors.len());

    // The variable browser (--debug-pages), in a second tab so this one keeps its variables:
    // the app's type, the greeting's change count (Ada → Ada Lovelace → Grace), the tree, and
    // the diagnostics of a row once a level is chosen.
    let app_tab = page.window().await.unwrap();
    let browser_tab = page.new_window(true).await.unwrap();
    page.switch_to_window(browser_tab.handle).await.unwrap();
    page.goto(&widgets.url(&format!("/{session}/variables")))
        .await
        .unwrap();
    wait_for_xpath(
        &page,
        "//tr[td[@class='col-id'][.='1']]/td[@class='col-type'][.='Form']",
    )
    .await;
    wait_for_xpath(
        &page,
        "//tr[td[@class='col-path'][.='greeting()']]/td[@class='col-changes'][number(.) >= 2]",
    )
    .await;
    click(&page, "input[name=view][value=tree]").await;
    wait_for_xpath(
        &page,
        "//td[@class='col-path']/span[@class='toggle'][.='▼']",
    )
    .await;
    click(&page, "select#diag option[value=\"1\"]").await;
    click(&page, "button.diag-btn").await;
    wait_for_xpath(
        &page,
        "//tr[@class='diag-row']//li[starts-with(., 'value: ')]",
    )
    .await;
    page.close_window().await.unwrap();
    page.switch_to_window(app_tab).await.unwrap();
    page.close().await.unwrap();
}

/// The bindings the task board does not use, on one object, and a Pet shown by ui-view.
const WIDGETS_APP: &[(&str, &str)] = &[
    (
        "main.lua",
        r#"
local Pet = session:prototype("Pet", { kind = "cat" })
function Pet:phrase() return "a " .. self.kind end
local Form = session:prototype("Form", {
  name = "Ada", bio = "", color = "red", note = "", size = 40, saves = 0, lastKey = "",
  pokes = 0, picked = "b",
  html = '<b class="markup">bold</b>',
})
function Form:greeting() return "Hello, " .. self.name end
function Form:bioLength() return #self.bio .. " characters" end
function Form:width() return self.size .. "px" end
function Form:grow() self.size = self.size + 10 end
function Form:save() self.saves = self.saves + 1 end
function Form:swap() self.pet = Pet:new({ kind = "dog" }) end
function Form:lose() self.pet = nil end
function Form:adopt() table.insert(self.pets, Pet:new({ kind = "fish" })) end
function Form:poke() self.pokes = self.pokes + 1 end
-- A read/write method (`nick()?access=rw`): called with the value to write, without to read.
function Form:nick(...)
  if select('#', ...) > 0 then self._nick = ... end
  return self._nick or "anon"
end
function Form:nickEcho() return "nick: " .. (self._nick or "anon") end
local Choice = session:prototype("Choice", { code = "", label = "" })
-- A presenter per list row (`itemWrapper=PetRow`), built from the row's ViewListItem.
local PetRow = session:prototype("PetRow", {})
function PetRow:new(row) return session:create(self, { row = row }) end
function PetRow:label() return (self.row.index + 1) .. ". " .. self.row.baseItem.kind end
local form = Form:new()
form.pet = Pet:new()
form.pets = { Pet:new(), Pet:new({ kind = "dog" }) }
form.choices = {
  Choice:new({ code = "a", label = "Apple" }), Choice:new({ code = "b", label = "Banana" }),
  Choice:new({ code = "c", label = "Cherry" }),
}
session:createAppVariable(form)
"#,
    ),
    (
        "viewdefs/Form.DEFAULT.html",
        r#"<template>
  <div class="form">
    <input class="name" ui-value="name"> <span class="greeting" ui-value="greeting()"></span>
    <textarea class="bio" ui-value="bio?keypress"></textarea> <span class="echo-bio" ui-value="bioLength()"></span>
    <select class="color" ui-value="color"><option value="red">Red</option><option value="blue">Blue</option></select>
    <span class="echo-color" ui-value="color"></span>
    <div class="note" contenteditable="true" ui-value="note"></div> <span class="echo-note" ui-value="note"></span>
    <div class="html" ui-html="html"></div>
    <div class="box" ui-style-width="width()" style="height: 4px; background: teal"></div>
    <button class="grow" ui-action="grow()">grow</button>
    <input class="keys" ui-event-keypress-ctrl-enter="save()" ui-event-keypress-escape="lastKey">
    <span class="saves" ui-value="saves"></span> <span class="lastkey" ui-value="lastKey"></span>
    <div class="pets">
      <div ui-view="pet" ui-namespace="COMPACT"></div>
      <div ui-view="pet" ui-namespace="NO-SUCH"></div>
    </div>
    <button class="swap" ui-action="swap()">swap</button> <button class="lose" ui-action="lose()">lose</button>
    <wc-field ui-value="name"></wc-field>
    <ul class="pet-rows" ui-viewlist="pets?itemWrapper=PetRow"></ul>
    <div class="pet-table" ui-view="pets?wrapper=lua.ViewList"></div>
    <button class="adopt" ui-action="adopt()">adopt</button>
    <div class="poke" ui-event-poke="poke()"></div> <span class="pokes" ui-value="pokes"></span>
    <input class="nick" ui-value="nick()?access=rw"> <span class="nick-echo" ui-value="nickEcho()"></span>
    <select class="pick" ui-value="picked" ui-viewlist="choices"><option></option></select>
    <span class="picked" ui-value="picked"></span>
  </div>
</template>"#,
    ),
    (
        "viewdefs/Pet.COMPACT.html",
        r#"<template><span class="pet-compact" ui-value="kind"></span></template>"#,
    ),
    (
        "viewdefs/Choice.list-item.html",
        r#"<template><option ui-attr-value="code" ui-value="label"></option></template>"#,
    ),
    (
        "viewdefs/PetRow.list-item.html",
        r#"<template><li class="pet-row" ui-value="label()"></li></template>"#,
    ),
    (
        "viewdefs/Pet.DEFAULT.html",
        r#"<template><div class="pet-default" ui-value="phrase()"></div></template>"#,
    ),
];
