//! `genseg serve` in a real browser: Debian's headless chromium, driven over WebDriver
//! (chromedriver), opens the page, paints a stroke on the canvas with the mouse, saves, and the
//! mask is on disk with the stroke in it. Leaves a screenshot of the page in
//! target/tmp/serve-page.png (docs/serve/page.png is one).
mod common;

use common::server::{data_with_some_masks, free_port, Server};
use fantoccini::actions::{InputSource, MouseActions, PointerAction};
use fantoccini::{ClientBuilder, Locator};
use std::process::{Command, Stdio};
use std::time::Duration;

/// chromedriver on a free port, stopped when dropped.
struct Chromedriver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver; the test fails naming the fix when it is not installed.
fn chromedriver() -> Chromedriver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start chromedriver ({e}): install Debian's chromium and chromium-driver (`make test` does)")
        });
    let driver = Chromedriver { child, port };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return driver;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("chromedriver did not listen on port {port}");
}

/// `document.body.dataset[key]`, the page's mark that a step finished, once it is set (empty
/// after 10 s).
async fn page_mark(client: &fantoccini::Client, key: &str) -> String {
    let script = format!("return document.body.dataset.{key} || ''");
    for _ in 0..100 {
        let value = client.execute(&script, vec![]).await.unwrap().as_str().unwrap_or_default().to_string();
        if !value.is_empty() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    String::new()
}

#[test]
fn a_stroke_painted_in_the_browser_is_saved_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_with_some_masks(dir.path(), 6, 64, 0);
    let project = dir.path().join("project");
    let server = Server::start(&data, &project, &["--retrain-every", "0"]);
    let driver = chromedriver();
    let port = driver.port;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        let args =
            ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"];
        caps.insert("goog:chromeOptions".into(), serde_json::json!({ "args": args }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session (is chromium installed?)");
        client.goto(&server.url()).await.unwrap();
        // The page opens the first image of the queue by itself.
        let id = page_mark(&client, "loaded").await;
        assert!(!id.is_empty(), "the page never loaded an image");
        // A stroke with the mouse across the middle of the canvas (offsets from its centre).
        let canvas = client.find(Locator::Id("mask")).await.unwrap();
        let stroke = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement { element: canvas, duration: None, x: -60.0, y: 0.0 })
            .then(PointerAction::Down { button: 0 })
            .then(PointerAction::MoveBy { duration: Some(Duration::from_millis(300)), x: 120.0, y: 0.0 })
            .then(PointerAction::Up { button: 0 });
        client.perform_actions(stroke).await.unwrap();
        let painted = client
            .execute("return Array.from(cur.mask).reduce((a, b) => a + b, 0)", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap();
        assert!(painted > 0, "the stroke painted nothing");
        client.find(Locator::Id("save")).await.unwrap().click().await.unwrap();
        let saved = page_mark(&client, "saved").await;
        assert_eq!(saved, format!("{id}:1"), "the page says the save went through");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let shot = client.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png"), shot).unwrap();
        client.close().await.unwrap();
        (id, painted)
    });
    drop(driver);
    let (id, painted) = result;
    let file = project.join("annotations").join(&id).join("v000001.png");
    let mask = image::open(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).to_luma8();
    let on: Vec<(u32, u32)> =
        mask.enumerate_pixels().filter(|(_, _, p)| p.0[0] == 255).map(|(x, y, _)| (x, y)).collect();
    assert_eq!(on.len() as u64, painted, "the file holds exactly the painted pixels");
    assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    // A horizontal stroke through the middle: painted pixels span the width around mid-height.
    let (min_x, max_x) = (on.iter().map(|p| p.0).min().unwrap(), on.iter().map(|p| p.0).max().unwrap());
    let mean_y = on.iter().map(|p| p.1 as f64).sum::<f64>() / on.len() as f64;
    assert!(max_x - min_x > 20 && (mean_y - 32.0).abs() < 8.0, "x {min_x}..{max_x}, mean y {mean_y}");
}
