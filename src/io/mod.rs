//! Batch UDP I/O and socket setup.
//!
//! Owns: the [`BatchIo`] trait (batch receive / batch send over owned, reused buffers), its
//! backends ([`MmsgIo`]: recvmmsg/sendmmsg on Linux; [`PortableIo`]: one recv_from/send_to per
//! datagram), and UDP socket setup ([`bind_udp_group`]: SO_REUSEPORT group, buffer sizes,
//! "port already in use" detection).
//! Must not: import any other sipshard module, start threads, read the protocol clock, or
//! allocate per datagram in steady state.
//!
//! [`BatchIo`] is the seam where a kernel-bypass backend (AF_XDP) plugs in later: it needs only
//! to fill a [`RecvBatch`], drain a [`SendBatch`] and expose a pollable file descriptor.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;

#[cfg(target_os = "linux")]
mod mmsg;
mod portable;
mod socket;
pub mod steer;

#[cfg(target_os = "linux")]
pub use mmsg::MmsgIo;
pub use portable::PortableIo;
pub use socket::{bind_udp_group, SocketOptions, UdpGroup};

/// A batch I/O backend over one socket (or queue).
///
/// Both calls are nonblocking: they never wait for the socket to become ready.
pub trait BatchIo: Send + 'static {
    /// Short backend name for logs ("mmsg", "portable", ...).
    fn name(&self) -> &'static str;

    /// File descriptor the event loop polls for readability/writability.
    fn raw_fd(&self) -> RawFd;

    /// Clear `batch`, then fill it with up to `batch.capacity()` received datagrams.
    ///
    /// Returns the number received (>= 1), or `Err(WouldBlock)` when none was waiting.
    /// A datagram longer than the batch's `max_datagram` is kept with `truncated == true`
    /// and its data cut to `max_datagram` bytes.
    fn recv_batch(&mut self, batch: &mut RecvBatch) -> io::Result<usize>;

    /// Send queued datagrams from `batch`, oldest first, until it is empty or the socket would
    /// block. Sent datagrams and datagrams that failed with an error (counted in
    /// [`SendReport::errors`], then dropped) leave the batch; the rest stay queued.
    fn send_batch(&mut self, batch: &mut SendBatch) -> SendReport;

    /// Datagrams the kernel dropped because this socket's receive queue was full, as last
    /// reported by the kernel (SO_RXQ_OVFL), if the backend can tell.
    fn kernel_drops(&self) -> Option<u64> {
        None
    }
}

/// What one [`BatchIo::send_batch`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Datagrams handed to the kernel.
    pub sent: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Datagrams dropped because the kernel refused them (e.g. EMSGSIZE, ENETUNREACH).
    pub errors: usize,
    /// The socket would block; datagrams remain queued in the batch.
    pub blocked: bool,
}

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub src: SocketAddr,
    pub data: &'a [u8],
    /// The datagram was longer than the batch's `max_datagram`; `data` is its first bytes.
    pub truncated: bool,
}

#[derive(Clone, Copy, Debug)]
struct RecvMeta {
    src: SocketAddr,
    len: usize,
    truncated: bool,
}

const UNSPECIFIED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// Owned, reused receive buffers: `capacity` slots of `max_datagram + 1` bytes each (the extra
/// byte lets every backend detect truncation the same way).
pub struct RecvBatch {
    max_datagram: usize,
    slot: usize,
    data: Vec<u8>,
    meta: Vec<RecvMeta>,
    len: usize,
}

impl RecvBatch {
    /// `capacity` datagrams per batch (at least 1), each up to `max_datagram` bytes.
    pub fn new(capacity: usize, max_datagram: usize) -> Self {
        let capacity = capacity.max(1);
        let max_datagram = max_datagram.max(1);
        let slot = max_datagram + 1;
        Self {
            max_datagram,
            slot,
            data: vec![0; slot * capacity],
            meta: vec![
                RecvMeta {
                    src: UNSPECIFIED,
                    len: 0,
                    truncated: false,
                };
                capacity
            ],
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// Datagrams held by the last receive.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The `i`-th datagram of the last receive. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> Datagram<'_> {
        assert!(i < self.len, "RecvBatch index out of range");
        let m = &self.meta[i];
        let start = i * self.slot;
        let n = m.len.min(self.max_datagram);
        Datagram {
            src: m.src,
            data: &self.data[start..start + n],
            truncated: m.truncated,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        (0..self.len).map(move |i| self.get(i))
    }

    /// For backends: the buffer of slot `i` (`max_datagram + 1` bytes), to receive into.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * self.slot;
        &mut self.data[start..start + self.slot]
    }

    /// For backends: record slot `len()` as received from `src`; `len` is the datagram's length
    /// as the kernel reported it (more than `max_datagram` means truncated).
    pub fn push(&mut self, src: SocketAddr, len: usize, kernel_truncated: bool) {
        let i = self.len;
        self.meta[i] = RecvMeta {
            src,
            len,
            truncated: kernel_truncated || len > self.max_datagram,
        };
        self.len += 1;
    }
}

#[derive(Clone, Copy, Debug)]
struct SendEntry {
    dst: SocketAddr,
    start: usize,
    len: usize,
}

/// Owned, reused send queue: datagrams are copied into one arena that keeps its capacity, so
/// queueing allocates nothing once it has grown to the working size.
#[derive(Default)]
pub struct SendBatch {
    data: Vec<u8>,
    entries: Vec<SendEntry>,
    /// First entry not yet sent.
    head: usize,
}

impl SendBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue with room for `datagrams` datagrams of `bytes` bytes in total.
    pub fn with_capacity(datagrams: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(datagrams),
            head: 0,
        }
    }

    /// Queue a copy of `data` to `dst`.
    pub fn push(&mut self, dst: SocketAddr, data: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(data);
        self.entries.push(SendEntry {
            dst,
            start,
            len: data.len(),
        });
    }

    /// Datagrams queued and not yet sent.
    pub fn len(&self) -> usize {
        self.entries.len() - self.head
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop everything queued. Returns how many datagrams were dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.len();
        self.data.clear();
        self.entries.clear();
        self.head = 0;
        n
    }

    /// The `i`-th queued datagram (0 = oldest unsent).
    pub fn get(&self, i: usize) -> (SocketAddr, &[u8]) {
        let e = &self.entries[self.head + i];
        (e.dst, &self.data[e.start..e.start + e.len])
    }

    /// For backends: the `n` oldest queued datagrams are gone (sent or dropped).
    pub fn advance(&mut self, n: usize) {
        self.head = (self.head + n).min(self.entries.len());
        if self.head == self.entries.len() {
            self.data.clear();
            self.entries.clear();
            self.head = 0;
        }
    }

    /// For backends: move the unsent tail to the front of the arena. Call it when the socket
    /// blocked, so a partially drained queue does not keep growing.
    pub fn compact(&mut self) {
        if self.head == 0 {
            return;
        }
        let base = self.entries[self.head].start;
        self.data.drain(..base);
        self.entries.drain(..self.head);
        for e in &mut self.entries {
            e.start -= base;
        }
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_batch_queue_advance_compact() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "[::1]:2".parse().unwrap();
        let mut q = SendBatch::new();
        q.push(a, b"one");
        q.push(b, b"two!");
        q.push(a, b"three");
        assert_eq!(q.len(), 3);
        assert_eq!(q.get(1), (b, &b"two!"[..]));
        q.advance(1);
        assert_eq!(q.get(0), (b, &b"two!"[..]));
        q.compact();
        assert_eq!(q.len(), 2);
        assert_eq!(q.get(0), (b, &b"two!"[..]));
        assert_eq!(q.get(1), (a, &b"three"[..]));
        q.push(b, b"four");
        q.advance(3);
        assert!(q.is_empty());
        assert_eq!(q.data.len(), 0);
        assert!(q.data.capacity() > 0);
    }

    #[test]
    fn recv_batch_marks_truncation() {
        let mut r = RecvBatch::new(2, 4);
        r.slot_mut(0)[..5].copy_from_slice(b"abcde");
        r.push(UNSPECIFIED, 5, false);
        r.slot_mut(1)[..2].copy_from_slice(b"xy");
        r.push(UNSPECIFIED, 2, false);
        let d0 = r.get(0);
        assert!(d0.truncated);
        assert_eq!(d0.data, b"abcd");
        let d1 = r.get(1);
        assert!(!d1.truncated);
        assert_eq!(d1.data, b"xy");
        r.clear();
        assert!(r.is_empty());
    }
}
