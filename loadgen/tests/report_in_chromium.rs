//! The HTML report opens in a real browser: a short run against the real broker writes
//! `report.html`, headless Chromium (Debian's package) renders it with no console error,
//! its DOM holds every chart with drawn data, and a screenshot of it is a real picture
//! (kept beside the report; `benches/results/loadgen-report.png` is one such screenshot).
//!
//! Without Chromium the test says so loudly and skips, unless `CI` is set, where a missing
//! browser is a failure (`.ci/run` installs it).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{loadgen, rill_binary, scratch_dir, BrokerProcess};
use rill_loadgen::report::HTML_FILE;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The flags the machine notes ask for: no sandbox as root, no GPU, and no background
/// networking (this machine's network refuses it, noisily).
fn chromium(args: &[&str]) -> std::process::Output {
    Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .args(args)
        .output()
        .expect("run chromium")
}

fn available() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
    );
    eprintln!(
        "\n*** report_in_chromium SKIPPED: {CHROMIUM} is missing (apt-get install chromium) ***\n"
    );
    false
}

#[test]
fn the_html_report_renders_its_charts_in_chromium() {
    if !available() {
        return;
    }
    let Some(bin) = rill_binary("HTML report in Chromium") else {
        return;
    };
    let dir = scratch_dir();
    let broker = BrokerProcess::start_fresh(&bin, dir.path());
    let report = dir.path().join("run");
    let out = loadgen(&[
        "--bootstrap",
        &broker.addr,
        "--topic",
        "html",
        "--create-topic",
        "--partitions",
        "2",
        "--record-bytes",
        "200",
        "--rate",
        "5000",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--producers",
        "1",
        "--consumers",
        "1",
        "--interval-ms",
        "200",
        "--report-dir",
        report.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "rill-loadgen failed: {out:?}");
    let html = report.join(HTML_FILE);
    let url = format!("file://{}", html.display());

    // The page as the browser built it.
    let dom = chromium(&["--virtual-time-budget=2000", "--dump-dom", &url]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(dom.status.success(), "chromium --dump-dom failed:\n{log}");
    let charts = dom_text.matches("<svg").count();
    assert!(
        charts >= 3,
        "the rendered report has {charts} charts:\n{dom_text}"
    );
    // Every chart draws data: a polyline or path with points.
    let drawn = dom_text.matches("<polyline").count() + dom_text.matches("<path").count();
    assert!(drawn >= charts, "{drawn} drawn series in {charts} charts");
    for needle in ["ack", "Throughput"] {
        assert!(
            dom_text.to_lowercase().contains(&needle.to_lowercase()),
            "the report does not mention {needle}"
        );
    }
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        errors.is_empty(),
        "console errors while rendering: {errors:#?}"
    );

    // A screenshot: a real picture, not a blank page.
    let png = report.join("report.png");
    let shot = chromium(&[
        "--window-size=1280,2400",
        "--hide-scrollbars",
        &format!("--screenshot={}", png.display()),
        &url,
    ]);
    assert!(
        shot.status.success(),
        "chromium --screenshot failed:\n{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert_eq!(&bytes[1..4], b"PNG", "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "a {} byte screenshot is a blank page, not a rendered report",
        bytes.len()
    );
    if let Ok(dest) = std::env::var("RILL_REPORT_SCREENSHOT") {
        std::fs::copy(&png, dest).expect("copy the screenshot");
    }
    drop(broker);
    std::thread::sleep(Duration::from_millis(10));
}
