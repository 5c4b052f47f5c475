//! The CDR writer (runtime side): every record queued is written exactly once, across rotated
//! files, also when the shutdown comes while records are still queued; refusals and file errors
//! are counted, never fatal.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use common::TempDir;
use sipshard::cdr::csv::{parse_csv, WallClock, COLUMNS, HEADER};
use sipshard::cdr::writer::{run_writer, CdrWriter, WriterSettings};
use sipshard::cdr::{AttemptOutcome, CdrAttempt, CdrRecord, CdrSender, Emitted, EndReason};

fn record(i: usize) -> CdrRecord {
    CdrRecord {
        // A comma and a quote in some Call-IDs, so rows are quoted and must still count once.
        call_id: if i % 7 == 0 {
            format!("call-{i},\"x\"@host")
        } else {
            format!("call-{i}@host")
        },
        caller: "1001".into(),
        callee: format!("555{i:04}"),
        source: "127.0.0.1:5061".parse().unwrap(),
        caller_identity: "peer:loadgen".into(),
        start: i as u64,
        answer: (i % 2 == 0).then_some(i as u64 + 100),
        end: i as u64 + 5_000,
        attempts: vec![CdrAttempt {
            target: "gw1".into(),
            destination: "127.0.0.1:5080".parse().unwrap(),
            called: format!("555{i:04}"),
            started: i as u64,
            ended: i as u64 + 100,
            outcome: if i % 2 == 0 {
                AttemptOutcome::Answered
            } else {
                AttemptOutcome::Rejected(486)
            },
        }],
        final_status: if i % 2 == 0 { 200 } else { 486 },
        end_reason: if i % 2 == 0 {
            EndReason::CallerHangup
        } else {
            EndReason::Rejected
        },
    }
}

fn settings(dir: &Path, rotate_bytes: u64) -> WriterSettings {
    WriterSettings {
        path: dir.join("cdr").join("calls.csv"),
        rotate_bytes,
        rotate_after: None,
        queue_capacity: 100_000,
        flush_interval: Duration::from_millis(100),
    }
}

/// Every CDR file in `dir/cdr` (current and rotated): (path, data rows). Checks each file starts
/// with the header and every row has every column.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<Vec<String>>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("cdr")) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let mut rows = parse_csv(&text);
        assert!(!rows.is_empty(), "{} is empty", p.display());
        assert_eq!(
            rows.remove(0),
            parse_csv(HEADER)[0],
            "{} header",
            p.display()
        );
        for r in &rows {
            assert_eq!(r.len(), COLUMNS, "{}: {r:?}", p.display());
        }
        out.push((p, rows));
    }
    out.sort();
    out
}

fn call_ids(files: &[(PathBuf, Vec<Vec<String>>)]) -> Vec<String> {
    let mut ids: Vec<String> = files
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r[0].clone()))
        .collect();
    ids.sort();
    ids
}

fn expected_ids(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| record(i).call_id).collect();
    ids.sort();
    ids
}

#[test]
fn n_records_from_several_threads_rotate_by_size_and_all_arrive_once() {
    let dir = TempDir::new("cdr-rotate");
    let n = 4_000;
    let writer = CdrWriter::start(settings(&dir.0, 4096), WallClock::new(1_795_244_370_000))
        .expect("start writer");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = writer.sender();
            std::thread::spawn(move || {
                for i in (t..n).step_by(4) {
                    assert_eq!(s.emit(record(i)), Emitted::Queued);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = writer.finish();
    assert_eq!(report.written, n as u64);
    assert_eq!(report.refused, 0);
    assert_eq!(report.lost, 0);
    let files = files(&dir.0);
    // ~100 bytes a row, 4 KiB a file: dozens of files.
    assert!(report.rotations >= 20, "{report:?}");
    let current = usize::from(dir.0.join("cdr/calls.csv").exists());
    assert_eq!(files.len(), report.rotations as usize + current);
    assert_eq!(call_ids(&files), expected_ids(n));
    for (p, rows) in &files {
        let text = std::fs::read(p).unwrap();
        let size = text.len() as u64;
        // A file is rotated after the row that reaches the size: without its last row it was
        // below the size, and a rotated file reached it.
        let body = &text[..text.len() - 1];
        let last_row = (text.len() - body.iter().rposition(|&b| b == b'\n').unwrap() - 1) as u64;
        assert!(
            size - last_row < 4096,
            "{} is {size} bytes, {last_row} in its last row",
            p.display()
        );
        if p.file_name().unwrap() != "calls.csv" {
            assert!(size >= 4096, "{} rotated at {size} bytes", p.display());
        }
        assert!(!rows.is_empty(), "{} has no rows", p.display());
        if p.file_name().unwrap() != "calls.csv" {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with("calls-") && name.ends_with(".csv"),
                "{name}"
            );
        }
    }
    // Times are wall-clock, from the epoch given: row i started at epoch + i ms.
    let first = files
        .iter()
        .flat_map(|(_, r)| r)
        .find(|r| r[0] == "call-1@host")
        .unwrap();
    assert_eq!(first[5], "2026-11-21T06:59:30.001Z");
    assert_eq!(first[6], "");
    assert_eq!(first[7], "2026-11-21T06:59:35.001Z");
}

#[test]
fn shutdown_with_records_still_queued_loses_none() {
    // Records are queued before the writer runs at all, and the stop is already signalled when
    // it starts: it must still write every one of them.
    let dir = TempDir::new("cdr-drain");
    let n = 10_000;
    let (tx, rx) = crossbeam_channel::bounded(n);
    let sender = CdrSender::new(tx);
    for i in 0..n {
        assert_eq!(sender.emit(record(i)), Emitted::Queued);
    }
    assert_eq!(rx.len(), n);
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    drop(stop_tx);
    let written = AtomicU64::new(0);
    let report = run_writer(
        &settings(&dir.0, 0),
        WallClock::new(0),
        &rx,
        &stop_rx,
        &sender,
        &written,
    );
    assert_eq!(report.written, n as u64);
    assert_eq!(report.lost, 0);
    assert_eq!(report.rotations, 0);
    assert!(rx.is_empty());
    let files = files(&dir.0);
    assert_eq!(files.len(), 1);
    assert_eq!(call_ids(&files), expected_ids(n));
}

#[test]
fn a_full_queue_refuses_and_counts_instead_of_blocking() {
    let dir = TempDir::new("cdr-full");
    let (tx, rx) = crossbeam_channel::bounded(4);
    let sender = CdrSender::new(tx);
    let outcomes: Vec<Emitted> = (0..10).map(|i| sender.emit(record(i))).collect();
    assert_eq!(&outcomes[..4], &[Emitted::Queued; 4]);
    assert_eq!(&outcomes[4..], &[Emitted::QueueFull; 6]);
    assert_eq!(sender.clone().refused(), 6, "clones share the count");
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    drop(stop_tx);
    let report = run_writer(
        &settings(&dir.0, 0),
        WallClock::new(0),
        &rx,
        &stop_rx,
        &sender,
        &AtomicU64::new(0),
    );
    assert_eq!((report.written, report.refused), (4, 6));
    // Disabled: not a writer's refusal, not counted.
    let off = CdrSender::disabled();
    assert_eq!(off.emit(record(0)), Emitted::NoWriter);
    assert_eq!(off.refused(), 0);
    // The writer gone: refused and counted.
    drop(rx);
    assert_eq!(sender.emit(record(0)), Emitted::NoWriter);
    assert_eq!(sender.refused(), 7);
}

#[test]
fn rotation_by_age_starts_a_new_file() {
    let dir = TempDir::new("cdr-age");
    let mut s = settings(&dir.0, 0);
    s.rotate_after = Some(Duration::from_millis(300));
    let writer = CdrWriter::start(s, WallClock::new(0)).unwrap();
    let tx = writer.sender();
    tx.emit(record(1));
    // The file with its one row is renamed once it is 300 ms old, with no new record coming.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rotated = || {
        std::fs::read_dir(dir.0.join("cdr"))
            .map(|d| d.flatten().any(|e| e.file_name() != "calls.csv"))
            .unwrap_or(false)
    };
    while !rotated() {
        assert!(Instant::now() < deadline, "no age rotation within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    tx.emit(record(2));
    let report = writer.finish();
    assert_eq!(report.written, 2);
    assert_eq!(report.rotations, 1);
    let files = files(&dir.0);
    assert_eq!(files.len(), 2, "{files:?}");
    let current = files
        .iter()
        .find(|(p, _)| p.ends_with("calls.csv"))
        .unwrap();
    assert_eq!(current.1.len(), 1);
    assert_eq!(current.1[0][0], "call-2@host");
}

#[test]
fn restart_appends_without_a_second_header() {
    let dir = TempDir::new("cdr-append");
    for round in 0..2 {
        let w = CdrWriter::start(settings(&dir.0, 0), WallClock::new(0)).unwrap();
        for i in 0..3 {
            w.sender().emit(record(round * 3 + i));
        }
        assert_eq!(w.finish().written, 3);
    }
    let files = files(&dir.0);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].1.len(), 6, "one header, six rows");
}

#[test]
fn an_unwritable_path_loses_records_with_a_count_and_no_panic() {
    let dir = TempDir::new("cdr-unwritable");
    // `cdr` is a plain file, so `cdr/calls.csv` can be neither created nor opened.
    std::fs::write(dir.0.join("cdr"), "not a directory").unwrap();
    let w = CdrWriter::start(settings(&dir.0, 0), WallClock::new(0)).unwrap();
    for i in 0..5 {
        assert_eq!(w.sender().emit(record(i)), Emitted::Queued);
    }
    let report = w.finish();
    assert_eq!((report.written, report.lost), (0, 5));
}

#[test]
fn written_records_come_back_to_the_shards_for_reuse() {
    let dir = TempDir::new("cdr-used");
    let writer = CdrWriter::start(settings(&dir.0, 0), WallClock::new(0)).unwrap();
    let tx = writer.sender();
    assert!(tx.is_enabled());
    assert!(tx.used().is_none(), "nothing written yet");
    for i in 0..3 {
        assert_eq!(tx.emit(record(i)), Emitted::Queued);
    }
    // The writer wakes every 100 ms; each record it wrote comes back, as it was.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = Vec::new();
    while back.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "records not handed back: {back:?}"
        );
        match tx.used() {
            Some(r) => back.push(r.call_id),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert_eq!(back, ["call-0,\"x\"@host", "call-1@host", "call-2@host"]);
    assert_eq!(writer.finish().written, 3);
    assert!(!CdrSender::disabled().is_enabled());
    assert!(CdrSender::disabled().used().is_none());
}
