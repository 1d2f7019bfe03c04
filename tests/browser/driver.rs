//! Headless Chromium through chromedriver: finding them, starting the
//! driver on a free port, one fresh browser profile per page, and the page
//! helpers the tests read like a user would (type, press Enter, look).

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tempfile::TempDir;
use testkit::{free_port, skip_unless_ci};

/// How long a page may take to show what a test waits for. Generous: the
/// tests share two cores with compilers.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often a waiting test looks at the page again.
const POLL: Duration = Duration::from_millis(100);

/// The WebDriver key codes for Enter and Shift, and the code that releases
/// held modifier keys.
pub const ENTER: &str = "\u{E007}";
pub const SHIFT: &str = "\u{E008}";
pub const RELEASE: &str = "\u{E000}";
pub const CONTROL: &str = "\u{E009}";
pub const TAB: &str = "\u{E004}";
pub const ARROW_UP: &str = "\u{E013}";
pub const ESCAPE: &str = "\u{E00C}";

/// One browser test at a time: each starts one or two Chromium processes,
/// and the machine is small.
static ONE_BROWSER_TEST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where the browser and its driver are installed.
struct Programs {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// A running chromedriver (in its own process group, with the browsers it
/// starts); killed on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    chromium: PathBuf,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Starts chromedriver for `test`, or explains why the test is skipped.
///
/// Without a browser the test passes after saying so on stderr, unless the
/// `CI` variable is set: there a missing browser is a failure.
pub async fn browser_or_skip(test: &str) -> Option<Browser> {
    match locate() {
        Ok(programs) => Some(Browser::start(programs).await),
        Err(why) => {
            skip_unless_ci(
                &format!("browser test {test}"),
                &why,
                "install the chromium and chromium-driver packages to run it",
            );
            None
        }
    }
}

fn locate() -> Result<Programs, String> {
    let chromium = program("CHROMIUM", &["chromium", "chromium-browser"])
        .ok_or("no chromium found on PATH (or in $CHROMIUM)")?;
    let chromedriver = program("CHROMEDRIVER", &["chromedriver"])
        .ok_or("no chromedriver found on PATH (or in $CHROMEDRIVER)")?;
    Ok(Programs {
        chromium,
        chromedriver,
    })
}

/// `$variable` if it names a file, else the first of `names` on `PATH`.
fn program(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    async fn start(programs: Programs) -> Browser {
        let turn = ONE_BROWSER_TEST.lock().await;
        let port = free_port();
        let driver = Command::new(&programs.chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so drop can stop the browsers it started.
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let browser = Browser {
            driver,
            port,
            chromium: programs.chromium,
            _turn: turn,
        };
        let deadline = Instant::now() + DEADLINE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} in time"
            );
            tokio::time::sleep(POLL).await;
        }
        browser
    }

    /// A new browser window with a profile of its own (so its own
    /// localStorage), sized like a laptop screen.
    pub async fn page(&self) -> Page {
        let profile = TempDir::new().expect("a temporary browser profile");
        let args = chromium_args(profile.path());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": self.chromium, "args": args }),
        );
        let client = ClientBuilder::rustls()
            .expect("TLS roots for the WebDriver client")
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("chromedriver starts a Chromium session");
        let page = Page {
            client,
            _profile: profile,
        };
        page.set_viewport(1280, 800).await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and any browser left behind by a
        // test that failed before closing its pages.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{}", self.driver.id()))
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Chromium runs as root here and the network is closed: no sandbox, and
/// nothing that would try to reach the internet and stall.
fn chromium_args(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-extensions".into(),
        "--disable-default-apps".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--hide-scrollbars".into(),
        "--window-size=1280,800".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}

/// One browser window showing the chat page.
pub struct Page {
    pub client: Client,
    /// The browser profile; removed after the window is closed.
    _profile: TempDir,
}

impl Page {
    /// Sizes the window so that the page itself gets `width` x `height`
    /// (the window size includes the browser's own frame).
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let frame = self
            .js("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
            .await;
        let frame: (u32, u32) = serde_json::from_value(frame).expect("the window frame size");
        self.client
            .set_window_size(width + frame.0, height + frame.1)
            .await
            .expect("the window can be resized");
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
        // Record any dialog the page might open, instead of opening it.
        self.js("window.__dialogs = [];
             for (const name of ['alert', 'confirm', 'prompt']) {
               window[name] = (m) => { window.__dialogs.push(name + ':' + m); };
             }")
            .await;
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("the page runs the script {script:?}: {e}"))
    }

    /// Polls `script` until it returns something other than `null` or
    /// `false`, and returns that. Fails after [`DEADLINE`], naming `what`
    /// and the last answer.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let value = self.js(script).await;
            if !value.is_null() && value != Value::Bool(false) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the page answered {value}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `script` returns exactly `expected`.
    pub async fn wait_for_value(&self, what: &str, script: &str, expected: Value) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let value = self.js(script).await;
            if value == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: expected {expected}, the page shows {value}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn type_into(&self, css: &str, keys: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("the page has {css}: {e}"))
            .send_keys(keys)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Presses `keys` in whatever has the focus.
    pub async fn press(&self, keys: &str) {
        self.client
            .active_element()
            .await
            .expect("an element has the focus")
            .send_keys(keys)
            .await
            .unwrap_or_else(|e| panic!("pressing {keys:?}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("the page has {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Waits until the sign-in form is shown.
    pub async fn wait_for_sign_in_form(&self) {
        self.wait_for(
            "the sign-in form",
            "return !document.getElementById('login').hidden",
        )
        .await;
    }

    /// Picks `name` on the sign-in form and waits for the connection.
    pub async fn sign_in(&self, name: &str) {
        self.wait_for_sign_in_form().await;
        self.type_into("#name-input", &format!("{name}{ENTER}"))
            .await;
        self.wait_for(
            "the connection to open",
            "return document.getElementById('conn').dataset.state === 'online'",
        )
        .await;
    }

    /// Joins `room` through the sidebar field and waits until it is joined
    /// and shown.
    pub async fn join(&self, room: &str) {
        self.type_into("#join-input", &format!("{room}{ENTER}"))
            .await;
        self.wait_for(
            &format!("room {room} to be joined and shown"),
            &format!(
                "const li = document.querySelector('#joined-rooms li[data-room=\"{room}\"]');
                 return !!li && !li.textContent.includes('joining')
                   && document.getElementById('current-room').textContent === '# {room}';"
            ),
        )
        .await;
    }

    /// Types `text` in the message box and presses Enter.
    pub async fn say(&self, text: &str) {
        self.type_into("#composer-input", &format!("{text}{ENTER}"))
            .await;
    }

    /// Waits until the confirmed messages shown are exactly `expected`.
    pub async fn wait_for_texts(&self, what: &str, expected: &[&str]) {
        self.wait_for_value(
            what,
            "return [...document.querySelectorAll('#messages li.msg[data-id] .msg-text')].map(e => e.textContent);",
            json!(expected),
        )
        .await;
    }

    /// Waits until the member list shows exactly `expected`.
    pub async fn wait_for_members(&self, what: &str, expected: &[&str]) {
        self.wait_for_value(
            what,
            "return [...document.querySelectorAll('#members li')].map(e => e.dataset.user);",
            json!(expected),
        )
        .await;
    }

    /// The id of the confirmed message shown with `text` (the only one).
    pub async fn message_id(&self, text: &str) -> i64 {
        let ids = self
            .wait_for(
                &format!("the message {text:?}"),
                &format!(
                    "const ids = [...document.querySelectorAll('#messages li.msg[data-id]')]
                       .filter(li => li.querySelector('.msg-text').textContent === {text})
                       .map(li => Number(li.dataset.id));
                     return ids.length ? ids : null;",
                    text = json!(text)
                ),
            )
            .await;
        let ids: Vec<i64> = serde_json::from_value(ids).expect("message ids");
        assert_eq!(ids.len(), 1, "{text:?} is shown once: {ids:?}");
        ids[0]
    }

    /// Taps the message `id` (its controls show) and clicks its control
    /// `action` (reply, react, edit, delete).
    pub async fn message_action(&self, id: i64, action: &str) {
        self.click(&format!("#messages li[data-id=\"{id}\"] .msg-text"))
            .await;
        self.click(&format!(
            "#messages li[data-id=\"{id}\"] .msg-actions [data-action=\"{action}\"]"
        ))
        .await;
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
