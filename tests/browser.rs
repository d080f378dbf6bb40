//! Headless Chromium for the page tests: Debian's `chromium`, driven by Debian's
//! `chromedriver` over WebDriver (fantoccini), with the flags this machine needs (no
//! network beyond loopback: no background networking, component updates, sync or QUIC)
//! and a fresh profile directory. Missing either program fails the test with how to get
//! it; it never skips.

use std::process::Stdio;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// GoCD's admin pages at the narrowest width they are used at.
pub const WIDTH: u32 = 1024;

const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // The page is 1024 px wide, not 1024 px less a scrollbar.
    "--hide-scrollbars",
];

pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    profile: std::path::PathBuf,
    pages: std::path::PathBuf,
}

/// What a rendered page shows, as the checks read it.
#[derive(Debug)]
pub struct Rendered {
    /// The page's own text.
    pub text: String,
    /// Elements and attributes an escaped page cannot contain (`img`, `script`, `on*=`…).
    pub smuggled: Vec<String>,
    /// Elements reaching past the right edge, or scrolling sideways inside.
    pub overflow: Vec<String>,
    /// Every link target.
    pub links: Vec<String>,
    /// The browser's console: errors and warnings (CSP violations, failed loads, scripts).
    pub console: Vec<String>,
    pub height: u32,
}

impl Browser {
    pub async fn start() -> Self {
        for (program, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(program).is_file(),
                "the page tests need Debian's {package} ({program} is missing): run `bash .ci/chromium-up.sh` (as root)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        // It says when it listens.
        let mut lines = tokio::io::BufReader::new(driver.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next_line().await.unwrap().expect("chromedriver exited before it listened");
            if line.contains("started successfully") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let profile = std::env::temp_dir().join(format!("gocd-dind-chromium-{unique}"));
        let pages = std::env::temp_dir().join(format!("gocd-dind-pages-{unique}"));
        std::fs::create_dir_all(&pages).unwrap();
        let mut args: Vec<String> = FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={WIDTH},900"));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        Self { client, driver, profile, pages }
    }

    /// Shows `fragment` as GoCD would (inside its page, in a document with a strict
    /// content security policy: a smuggled script, handler or image is refused and logged),
    /// then reads what the checks need.
    pub async fn render(&self, name: &str, fragment: &str) -> Rendered {
        let document = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
             <title>{name}</title></head><body style=\"margin:0;padding:16px;font-family:sans-serif\">{fragment}</body></html>"
        );
        let file = self.pages.join(format!("{name}.html"));
        std::fs::write(&file, document).unwrap();
        self.client.set_window_size(WIDTH, 900).await.unwrap();
        self.client.goto(&format!("file://{}", file.display())).await.unwrap();
        let read = self.client.execute(READ_PAGE, vec![]).await.unwrap();
        let strings = |key: &str| -> Vec<String> {
            read[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        Rendered {
            text: read["text"].as_str().unwrap().to_owned(),
            smuggled: strings("smuggled"),
            overflow: strings("overflow"),
            links: strings("links"),
            console: self.console().await,
            height: u32::try_from(read["height"].as_u64().unwrap()).unwrap(),
        }
    }

    /// A PNG of the whole page as last rendered, at [`WIDTH`] (Chromium's own capture
    /// beyond the window, through chromedriver's DevTools endpoint).
    pub async fn screenshot(&self, height: u32) -> Vec<u8> {
        let shot = self.client.issue_cmd(FullPageScreenshot { height }).await.unwrap();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, shot["data"].as_str().unwrap()).unwrap()
    }

    /// The console entries since the last call (chromedriver hands each out once).
    async fn console(&self) -> Vec<String> {
        let entries = self.client.issue_cmd(BrowserLog).await.unwrap();
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub async fn stop(mut self) {
        self.client.close().await.unwrap();
        let _ = self.driver.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_dir_all(&self.pages);
    }
}

/// chromedriver's log endpoint (`POST /session/{id}/se/log`, type `browser`): the console.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

/// `Page.captureScreenshot` of the whole page (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct FullPageScreenshot {
    height: u32,
}

impl WebDriverCompatibleCommand for FullPageScreenshot {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let clip = json!({"x": 0, "y": 0, "width": WIDTH, "height": self.height, "scale": 1});
        let params = json!({"format": "png", "captureBeyondViewport": true, "clip": clip});
        (http::Method::POST, Some(json!({"cmd": "Page.captureScreenshot", "params": params}).to_string()))
    }
}

/// Reads the page: its text, anything an escaped page cannot hold, what overflows.
const READ_PAGE: &str = r"
const root = document.documentElement;
const width = root.clientWidth;
const page = document.querySelector('.gocd-dind') || document.body;
const smuggled = [];
for (const el of page.querySelectorAll('script,img,iframe,object,embed,svg,math,form,input,button,link,meta,base,video,audio,template')) {
  smuggled.push(el.outerHTML.slice(0, 120));
}
for (const el of page.querySelectorAll('*')) {
  for (const a of el.attributes) {
    if (a.name.startsWith('on') || (a.name !== 'href' && a.name !== 'class' && a.name !== 'open')) {
      smuggled.push(el.tagName + ' ' + a.name + '=' + a.value.slice(0, 80));
    }
  }
}
const overflow = [];
if (root.scrollWidth > width) overflow.push('the page scrolls sideways: ' + root.scrollWidth + ' > ' + width);
for (const el of page.querySelectorAll('*')) {
  const box = el.getBoundingClientRect();
  if (box.width > 0 && box.right > width + 0.5) overflow.push(el.tagName + ' ends at ' + Math.round(box.right) + ' > ' + width);
  if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) overflow.push(el.tagName + ' scrolls sideways inside');
}
return {
  text: document.body.innerText,
  smuggled,
  overflow: overflow.slice(0, 20),
  links: [...page.querySelectorAll('a')].map(a => a.getAttribute('href') || ''),
  height: Math.ceil(page.getBoundingClientRect().bottom + 16),
};
";
