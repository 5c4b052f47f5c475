//! The proxy core end to end with the real binary: `sipp -sn uac` → sipshard → `sipp -sn uas`
//! (the gateway), the uac trusted as a `[[peers]]` entry. sipp's built-in uac sends its ACK and
//! BYE straight to sipshard without Route headers, so every call completing proves the dialog
//! routing. Fails (not skips) when CI=true and sipp is missing.

mod common;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A free UDP port on loopback (bound then released; sipp binds it right after).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `child` to exit, at most `within`; kills it after that.
fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sipp_uac_through_sipshard_to_sipp_uas() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("proxy-bb");
    let calls = 20u64;
    let uas_port = free_port();
    let uas = Command::new("sipp")
        .current_dir(&dir.0)
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas_port.to_string()])
        .args(["-m", &calls.to_string(), "-timeout", "60s", "-nostdin"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp uas");
    let mut uas = KillOnDrop(uas);
    let config = dir.write(
        "proxy.toml",
        &format!(
            "[[gateways]]\nname = \"uas\"\naddress = \"127.0.0.1:{uas_port}\"\n\
             [[routes]]\nprefix = \"\"\ngateways = [\"uas\"]\n\
             [[peers]]\nname = \"uac\"\naddress = \"127.0.0.1\"\n"
        ),
    );
    let server = start_server(2, &["--config", &config]);
    let out = Command::new("sipp")
        .current_dir(&dir.0)
        .args(["-sn", "uac", &server.addr.to_string(), "-i", "127.0.0.1"])
        .args(["-s", "15551234", "-m", &calls.to_string(), "-r", "10"])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run sipp uac");
    let errors = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipp uac failed: {}\n{}\n{errors}",
        stdout.lines().rev().take(40).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    // sipp's final statistics screen: every call successful, none failed.
    let stat = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    assert_eq!(
        (stat("Successful call"), stat("Failed call")),
        (Some(calls), Some(0)),
        "{stdout}"
    );
    assert_eq!(
        wait_exit(&mut uas.0, Duration::from_secs(30)),
        Some(0),
        "sipp uas did not complete its {calls} calls"
    );
    let (code, lines, err, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    let t = totals(&lines);
    assert_eq!(t["calls"], calls, "{t:?}");
    assert_eq!(t["calls_answered"], calls, "{t:?}");
    assert_eq!(t["calls_ended"], calls, "{t:?}");
    assert_eq!(t["calls_failed"], 0, "{t:?}");
    assert_eq!(t["acks_forwarded"], calls, "{t:?}");
    assert_eq!(t["calls_live"], 0, "every call's state was freed: {t:?}");
}
