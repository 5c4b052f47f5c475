//! The CDR writer: a runtime thread that takes finished calls' records off a bounded queue and
//! appends them to a CSV file that rotates by size and age.
//!
//! Owns: the queue's receiving end, the file (opened when the first record arrives, header first),
//! buffering and the periodic flush, rotation (rename to `NAME-YYYYMMDDTHHMMSSZ[-N].EXT`, then a new
//! file), and the drain on shutdown: every record queued before [`CdrWriter::finish`] is written
//! and flushed. Counts rows written, records lost to file errors, and (through the [`CdrSender`])
//! records the shards could not queue; and hands every record it takes off the queue to the
//! [`RecentCalls`] ring when it has one (for the management API).
//! Must not: be called from a shard's hot path (shards only `emit` into the queue), or decide what a
//! row contains (that is [`super::csv`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use super::csv::{self, RowFormatter, WallClock};
use super::recent::RecentCalls;
use super::{CdrRecord, CdrSender};
use crate::config::CdrConfig;

/// How often buffered rows reach the file when calls keep ending (and at the latest this long
/// after a row is written).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the writer takes the records queued by the shards.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// Buffer in front of the file.
const BUFFER_BYTES: usize = 64 * 1024;
/// Records held for reuse by the shards at most (the rest are freed).
const USED_RECORDS: usize = 1024;

/// What the writer does, from `[cdr]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterSettings {
    pub path: PathBuf,
    /// 0: never by size.
    pub rotate_bytes: u64,
    /// None: never by age.
    pub rotate_after: Option<Duration>,
    pub queue_capacity: usize,
    pub flush_interval: Duration,
}

impl From<&CdrConfig> for WriterSettings {
    fn from(c: &CdrConfig) -> Self {
        Self {
            path: PathBuf::from(&c.path),
            rotate_bytes: c.rotate_bytes,
            rotate_after: (c.rotate_seconds > 0).then(|| Duration::from_secs(c.rotate_seconds)),
            queue_capacity: c.queue_capacity.max(1),
            flush_interval: FLUSH_INTERVAL,
        }
    }
}

/// The writer's totals, reported at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterReport {
    /// Rows written to a file (and flushed, once the writer has finished).
    pub written: u64,
    /// Records the shards could not queue (queue full, or the writer had stopped).
    pub refused: u64,
    /// Records taken off the queue but not written because the file could not be opened or
    /// written (logged).
    pub lost: u64,
    /// Files rotated (renamed to a timestamped name).
    pub rotations: u64,
}

impl WriterReport {
    /// `cdr_written=N cdr_refused=N cdr_lost=N cdr_rotations=N` pairs for the totals line.
    pub fn pairs(&self) -> [(&'static str, u64); 4] {
        [
            ("cdr_written", self.written),
            ("cdr_refused", self.refused),
            ("cdr_lost", self.lost),
            ("cdr_rotations", self.rotations),
        ]
    }
}

/// A running CDR writer thread. Dropping it stops the thread after it drained the queue (without
/// waiting); [`finish`](CdrWriter::finish) stops it and waits.
pub struct CdrWriter {
    sender: CdrSender,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<WriterReport>>,
    written: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    recent: Option<RecentCalls>,
}

/// A live view of a running writer's counts and its recent-calls ring, for the admin thread
/// (relaxed atomic loads and the ring's own lock: never waits on the writer).
#[derive(Clone, Debug)]
pub struct CdrMonitor {
    written: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    refused: CdrSender,
    recent: Option<RecentCalls>,
}

impl CdrMonitor {
    /// Rows written so far, records the shards could not queue, records lost to file errors.
    pub fn counts(&self) -> WriterReport {
        WriterReport {
            written: self.written.load(Ordering::Relaxed),
            refused: self.refused.refused(),
            lost: self.lost.load(Ordering::Relaxed),
            rotations: 0,
        }
    }

    /// The ring of recent calls (None: `admin.recent_calls` is 0).
    pub fn recent(&self) -> Option<&RecentCalls> {
        self.recent.as_ref()
    }
}

/// Where the writer reports as it goes (besides its final [`WriterReport`]).
#[derive(Clone, Copy)]
pub struct Taps<'a> {
    /// Rows written so far.
    pub written: &'a AtomicU64,
    /// Records lost to file errors so far.
    pub lost: Option<&'a AtomicU64>,
    /// Every record taken off the queue is pushed here (written or lost).
    pub recent: Option<&'a RecentCalls>,
    /// Records done with (written, and out of the recent-calls ring) go back to the shards here
    /// for reuse (`CdrSender::used`); dropped when it is full.
    pub used: Option<&'a Sender<CdrRecord>>,
}

impl CdrWriter {
    /// Creates the queue and starts the writer thread. `wall` is the wall-clock time of the
    /// shards' `Millis` 0. The file is opened when the first record arrives.
    pub fn start(settings: WriterSettings, wall: WallClock) -> io::Result<CdrWriter> {
        Self::start_with_recent(settings, wall, None)
    }

    /// As [`start`](CdrWriter::start), and every record taken off the queue also goes into
    /// `recent` (the admin thread reads it through [`CdrWriter::monitor`]).
    pub fn start_with_recent(
        settings: WriterSettings,
        wall: WallClock,
        recent: Option<RecentCalls>,
    ) -> io::Result<CdrWriter> {
        let (tx, rx) = crossbeam_channel::bounded(settings.queue_capacity.max(1));
        // Records written (and out of the recent-calls ring) go back to the shards for reuse.
        let (used_tx, used_rx) = crossbeam_channel::bounded(USED_RECORDS);
        let sender = CdrSender::with_used(tx, used_rx);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let written = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let refused_from = sender.clone();
        let (w, l, r) = (written.clone(), lost.clone(), recent.clone());
        let thread = std::thread::Builder::new()
            .name("cdr-writer".into())
            .spawn(move || {
                let taps = Taps {
                    written: &w,
                    lost: Some(&l),
                    recent: r.as_ref(),
                    used: Some(&used_tx),
                };
                run_writer_with(&settings, wall, &rx, &stop_rx, &refused_from, taps)
            })?;
        Ok(CdrWriter {
            sender,
            stop: Some(stop_tx),
            thread: Some(thread),
            written,
            lost,
            recent,
        })
    }

    /// A live view of the counts and the recent-calls ring, for the admin thread.
    pub fn monitor(&self) -> CdrMonitor {
        CdrMonitor {
            written: self.written.clone(),
            lost: self.lost.clone(),
            refused: self.sender.clone(),
            recent: self.recent.clone(),
        }
    }

    /// The shards' end of the queue (put it in `Shared.cdr`).
    pub fn sender(&self) -> CdrSender {
        self.sender.clone()
    }

    /// Rows written so far (they may still sit in the buffer until the next flush).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops the writer once every record queued so far is written, flushes, and returns the
    /// totals. Call it after the shards have stopped, so that none emits afterwards (a record
    /// emitted later is refused and counted).
    pub fn finish(mut self) -> WriterReport {
        self.stop.take(); // disconnects the stop channel: the writer drains and ends
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(report)) => report,
            _ => {
                tracing::error!("the CDR writer thread panicked; CDRs may be missing");
                WriterReport {
                    written: self.written(),
                    refused: self.sender.refused(),
                    ..WriterReport::default()
                }
            }
        }
    }
}

/// The writer's loop, on the calling thread: writes every record from `rx` until `stop` is
/// signalled or disconnected (or every sender is gone), then drains what is still queued, flushes,
/// and returns the totals. `refused` is a clone of the shards' sender (for its refusal count);
/// `written` is updated as rows are written. `CdrWriter::start` runs it on its own thread.
pub fn run_writer(
    settings: &WriterSettings,
    wall: WallClock,
    rx: &Receiver<CdrRecord>,
    stop: &Receiver<()>,
    refused: &CdrSender,
    written: &AtomicU64,
) -> WriterReport {
    let taps = Taps {
        written,
        lost: None,
        recent: None,
        used: None,
    };
    run_writer_with(settings, wall, rx, stop, refused, taps)
}

/// As [`run_writer`], reporting through `taps` as it goes.
pub fn run_writer_with(
    settings: &WriterSettings,
    wall: WallClock,
    rx: &Receiver<CdrRecord>,
    stop: &Receiver<()>,
    refused: &CdrSender,
    taps: Taps<'_>,
) -> WriterReport {
    let mut out = Output::new(settings, wall, taps);
    // The writer does not wait on the queue itself: a blocked receiver is woken by every record a
    // shard sends, one context switch per call at full load (measured: a large share of the CPU
    // per call). It wakes every DRAIN_INTERVAL instead and takes what has queued up; the queue
    // (`queue_capacity`, 65,536 by default) holds far more than one interval's calls.
    'run: loop {
        let wait = out
            .next_wake()
            .min(Instant::now() + DRAIN_INTERVAL)
            .saturating_duration_since(Instant::now());
        crossbeam_channel::select! {
            recv(stop) -> _ => break 'run,
            default(wait) => {}
        }
        loop {
            match rx.try_recv() {
                Ok(r) => out.take(r),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => break 'run,
            }
        }
        out.tick();
    }
    for r in rx.try_iter() {
        out.take(r);
    }
    out.flush();
    let mut report = out.report;
    report.refused = refused.refused();
    report
}

/// The current file and what the writer counts.
struct Output<'a> {
    settings: &'a WriterSettings,
    format: RowFormatter,
    file: Option<BufWriter<File>>,
    /// Bytes in the current file (what was there when opened, plus what we wrote).
    size: u64,
    /// The current file holds at least one row.
    has_rows: bool,
    opened_at: Instant,
    /// Rows written since the last flush; when the first of them was.
    dirty_since: Option<Instant>,
    row: Vec<u8>,
    report: WriterReport,
    taps: Taps<'a>,
    /// The last open/write error was logged (log once per streak of failures).
    failing: bool,
}

impl<'a> Output<'a> {
    fn new(settings: &'a WriterSettings, wall: WallClock, taps: Taps<'a>) -> Self {
        Output {
            settings,
            format: RowFormatter::new(wall),
            file: None,
            size: 0,
            has_rows: false,
            opened_at: Instant::now(),
            dirty_since: None,
            row: Vec::with_capacity(512),
            report: WriterReport::default(),
            taps,
            failing: false,
        }
    }

    /// When the loop must wake up with nothing queued: the next flush or age rotation.
    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let flush = self
            .dirty_since
            .map_or(far, |t| t + self.settings.flush_interval);
        let rotate = match (self.settings.rotate_after, self.has_rows) {
            (Some(age), true) => self.opened_at + age,
            _ => far,
        };
        flush.min(rotate)
    }

    /// Writes `r`, then hands it to the recent-calls ring (if any), and the record that is done
    /// with back to the shards (if they take records back).
    fn take(&mut self, r: CdrRecord) {
        self.write(&r);
        let done = match self.taps.recent {
            Some(recent) => recent.push(r),
            None => Some(r),
        };
        if let (Some(used), Some(r)) = (self.taps.used, done) {
            let _ = used.try_send(r);
        }
    }

    fn write(&mut self, r: &CdrRecord) {
        self.row.clear();
        self.format.write_row(&mut self.row, r);
        if self.age_due() {
            self.rotate();
        }
        if let Err(e) = self.write_row() {
            self.report.lost += 1;
            if let Some(l) = self.taps.lost {
                l.store(self.report.lost, Ordering::Relaxed);
            }
            if !self.failing {
                tracing::error!(path = %self.settings.path.display(), error = %e,
                    "cannot write CDRs; records are being lost");
                self.failing = true;
            }
            self.file = None;
            return;
        }
        if self.failing {
            tracing::info!(path = %self.settings.path.display(), "writing CDRs again");
            self.failing = false;
        }
        self.report.written += 1;
        self.taps
            .written
            .store(self.report.written, Ordering::Relaxed);
        if self.settings.rotate_bytes > 0 && self.size >= self.settings.rotate_bytes {
            self.rotate();
        }
    }

    fn write_row(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        let f = self.file.as_mut().expect("opened");
        f.write_all(&self.row)?;
        self.size += self.row.len() as u64;
        self.has_rows = true;
        self.dirty_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn open(&mut self) -> io::Result<()> {
        let path = &self.settings.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let mut size = file.metadata()?.len();
        let mut w = BufWriter::with_capacity(BUFFER_BYTES, file);
        if size == 0 {
            w.write_all(csv::HEADER.as_bytes())?;
            w.write_all(b"\n")?;
            size = csv::HEADER.len() as u64 + 1;
            self.has_rows = false;
        } else {
            self.has_rows = true;
        }
        self.size = size;
        self.opened_at = Instant::now();
        self.file = Some(w);
        Ok(())
    }

    fn age_due(&self) -> bool {
        match self.settings.rotate_after {
            Some(age) => self.file.is_some() && self.has_rows && self.opened_at.elapsed() >= age,
            None => false,
        }
    }

    /// Periodic work: flush rows older than the flush interval, rotate by age.
    fn tick(&mut self) {
        if self
            .dirty_since
            .is_some_and(|t| t.elapsed() >= self.settings.flush_interval)
        {
            self.flush();
        }
        if self.age_due() {
            self.rotate();
        }
    }

    fn flush(&mut self) {
        self.dirty_since = None;
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.flush() {
                tracing::error!(path = %self.settings.path.display(), error = %e,
                    "cannot flush the CDR file");
                self.file = None;
            }
        }
    }

    /// Flush and close the current file, rename it to a timestamped name; the next record opens
    /// a new file.
    fn rotate(&mut self) {
        self.flush();
        if self.file.take().is_none() {
            return;
        }
        let path = &self.settings.path;
        let to = rotated_name(path, SystemTime::now());
        match fs::rename(path, &to) {
            Ok(()) => {
                self.report.rotations += 1;
                tracing::info!(file = %to.display(), "CDR file rotated");
            }
            Err(e) => tracing::error!(path = %path.display(), to = %to.display(), error = %e,
                "cannot rotate the CDR file; appending to it"),
        }
        self.has_rows = false;
    }
}

/// A free name for the rotated `path` at `now`: `DIR/STEM-YYYYMMDDTHHMMSSZ.EXT`, with `-1`, `-2`...
/// after the time when that exists already.
pub fn rotated_name(path: &Path, now: SystemTime) -> PathBuf {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut stamp = String::new();
    csv::push_utc_compact(&mut stamp, secs);
    let stem = path
        .file_stem()
        .map_or_else(|| "cdr".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut n = 0u32;
    loop {
        let name = if n == 0 {
            format!("{stem}-{stamp}{ext}")
        } else {
            format!("{stem}-{stamp}-{n}{ext}")
        };
        let candidate = dir.join(name);
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// The wall-clock time (ms since the Unix epoch) of `SystemTime` `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
