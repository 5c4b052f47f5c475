//! sipp against the real binary: the OPTIONS scenario of the load script, at a modest rate.
//! Fails (not skips) when CI=true and sipp is missing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn sipp_options_all_answered() {
    if !have_sipp() {
        return;
    }
    let server = start_server(2, &[]);
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/options.xml");
    let dir = std::env::temp_dir().join(format!("sipshard-sipp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let calls = 3000;
    let out = Command::new("sipp")
        .current_dir(&dir)
        .args(["-sf", scenario, &server.addr.to_string()])
        .args([
            "-i",
            "127.0.0.1",
            "-m",
            &calls.to_string(),
            "-r",
            "1000",
            "-l",
            "2000",
        ])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sipp");
    let errors = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipp failed: {}\n{}\n{errors}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, lines, err, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    let t = totals(&lines);
    assert!(t["options_answered"] >= calls, "{t:?}");
}
