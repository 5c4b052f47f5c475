//! Linux backend: recvmmsg/sendmmsg, many datagrams per syscall.
//!
//! Owns: its socket and the scratch arrays (`mmsghdr`, `iovec`, addresses, control buffers) the
//! syscalls read; they are sized once. The receive side is set up once per receive batch and then
//! only the fields the kernel wrote are reset before each call (a wake-up that brings one datagram
//! must not pay for rebuilding all of them); the send side is filled per call.
//! Must not: block (every call passes MSG_DONTWAIT), or allocate per datagram.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;

use super::{BatchIo, RecvBatch, SendBatch, SendReport, UNSPECIFIED};

/// Largest vector the kernel accepts in one recvmmsg/sendmmsg (UIO_MAXIOV).
const MAX_VLEN: usize = 1024;

/// Control buffer per message: room for one SO_RXQ_OVFL cmsg (a u32), 8-byte aligned.
type Ctrl = [u64; 4];

/// recvmmsg/sendmmsg backend.
pub struct MmsgIo {
    sock: UdpSocket,
    vlen: usize,
    rx_hdrs: Vec<libc::mmsghdr>,
    rx_iovs: Vec<libc::iovec>,
    rx_names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<Ctrl>,
    /// The receive batch the `rx_*` headers point into (its buffer address, slot count, slot
    /// size), and how
    /// many leading headers the last call let the kernel write.
    rx_ready: Option<(*const u8, usize, usize)>,
    rx_dirty: usize,
    tx_hdrs: Vec<libc::mmsghdr>,
    tx_iovs: Vec<libc::iovec>,
    tx_names: Vec<libc::sockaddr_storage>,
    kernel_drops: Option<u64>,
}

// SAFETY: the raw pointers inside the headers and `rx_ready` are scratch: they point at the
// buffers passed in to each call (checked against `rx_ready`, rebuilt when they differ), are only
// used by the kernel during that call and never dereferenced by us, so moving the value to
// another thread cannot create shared access.
unsafe impl Send for MmsgIo {}

impl MmsgIo {
    /// Wraps `sock` (made nonblocking); at most `batch` datagrams per syscall (1..=1024).
    pub fn new(sock: UdpSocket, batch: usize) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        let vlen = batch.clamp(1, MAX_VLEN);
        // SAFETY: all-zero is a valid value for these plain C structs (null pointers, zero lengths).
        let (hdr, iov, name) = unsafe {
            (
                zeroed::<libc::mmsghdr>(),
                zeroed::<libc::iovec>(),
                zeroed::<libc::sockaddr_storage>(),
            )
        };
        Ok(Self {
            sock,
            vlen,
            rx_hdrs: vec![hdr; vlen],
            rx_iovs: vec![iov; vlen],
            rx_names: vec![name; vlen],
            ctrl: vec![[0; 4]; vlen],
            rx_ready: None,
            rx_dirty: 0,
            tx_hdrs: vec![hdr; vlen],
            tx_iovs: vec![iov; vlen],
            tx_names: vec![name; vlen],
            kernel_drops: None,
        })
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }
}

impl BatchIo for MmsgIo {
    fn name(&self) -> &'static str {
        "mmsg"
    }

    fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn recv_batch(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        let n = batch.capacity().min(self.vlen);
        let first = batch.slot_mut(0);
        let target = (first.as_ptr(), n, first.len());
        if self.rx_ready != Some(target) {
            for i in 0..n {
                let slot = batch.slot_mut(i);
                self.rx_iovs[i] = libc::iovec {
                    iov_base: slot.as_mut_ptr().cast(),
                    iov_len: slot.len(),
                };
                let h = &mut self.rx_hdrs[i];
                h.msg_hdr.msg_name = ptr::addr_of_mut!(self.rx_names[i]).cast();
                h.msg_hdr.msg_iov = ptr::addr_of_mut!(self.rx_iovs[i]);
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = self.ctrl[i].as_mut_ptr().cast();
            }
            self.rx_ready = Some(target);
            self.rx_dirty = n;
        }
        // The kernel writes these back for every datagram it delivers: restore the room.
        for h in &mut self.rx_hdrs[..self.rx_dirty] {
            h.msg_len = 0;
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = size_of::<Ctrl>() as _;
            h.msg_hdr.msg_flags = 0;
        }
        self.rx_dirty = 0;
        let got = loop {
            // SAFETY: `rx_hdrs[..n]` point at live buffers of the stated lengths: the slots of
            // `batch` (the same buffer they were set up for, checked above through `rx_ready`;
            // `RecvBatch` never reallocates), `rx_names`, `ctrl` and `rx_iovs`, all borrowed
            // mutably for the duration of the call.
            let r = unsafe {
                libc::recvmmsg(
                    self.sock.as_raw_fd(),
                    self.rx_hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        self.rx_dirty = got;
        if got == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        for i in 0..got {
            let h = &self.rx_hdrs[i];
            let src = from_storage(&self.rx_names[i]).unwrap_or(UNSPECIFIED);
            let trunc = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            if h.msg_hdr.msg_controllen > 0 {
                if let Some(d) = rxq_ovfl(&h.msg_hdr) {
                    self.kernel_drops = Some(d);
                }
            }
            batch.push(src, h.msg_len as usize, trunc);
        }
        Ok(got)
    }

    fn send_batch(&mut self, batch: &mut SendBatch) -> SendReport {
        let mut rep = SendReport::default();
        while !batch.is_empty() {
            let n = batch.len().min(self.vlen);
            for i in 0..n {
                let (dst, data) = batch.get(i);
                let namelen = to_storage(&dst, &mut self.tx_names[i]);
                self.tx_iovs[i] = libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                };
                let h = &mut self.tx_hdrs[i];
                h.msg_len = 0;
                h.msg_hdr.msg_name = ptr::addr_of_mut!(self.tx_names[i]).cast();
                h.msg_hdr.msg_namelen = namelen;
                h.msg_hdr.msg_iov = ptr::addr_of_mut!(self.tx_iovs[i]);
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
            }
            // SAFETY: `tx_hdrs[..n]` point at `tx_names`, `tx_iovs` and the batch's arena, which is not
            // touched until the call returns; the kernel only reads the data.
            let r = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    self.tx_hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                let sent = r as usize;
                rep.sent += sent;
                rep.bytes += (0..sent)
                    .map(|i| self.tx_hdrs[i].msg_len as usize)
                    .sum::<usize>();
                batch.advance(sent);
                // A partial send: loop; the next call sends the rest or reports why not.
                continue;
            }
            let e = if r == 0 {
                io::ErrorKind::WouldBlock.into()
            } else {
                io::Error::last_os_error()
            };
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    rep.blocked = true;
                    break;
                }
                // The first datagram failed on its own (bad address, too big, unreachable):
                // drop it and go on with the rest.
                _ => {
                    rep.errors += 1;
                    batch.advance(1);
                }
            }
        }
        if rep.blocked {
            batch.compact();
        }
        rep
    }

    fn kernel_drops(&self) -> Option<u64> {
        self.kernel_drops
    }
}

/// The SO_RXQ_OVFL counter carried by a received message, if any.
fn rxq_ovfl(hdr: &libc::msghdr) -> Option<u64> {
    // SAFETY: `hdr` was filled by recvmmsg; its control pointer and length describe our buffer,
    // and the CMSG_* macros stay inside msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                let v = ptr::read_unaligned(libc::CMSG_DATA(c) as *const u32);
                return Some(u64::from(v));
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

fn from_storage(st: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match st.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in; storage is large and aligned enough.
            let sin =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(addr: &SocketAddr, st: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in; all-zero is valid.
            let sin =
                unsafe { &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            *sin = unsafe { zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            *sin6 = unsafe { zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{RecvBatch, SendBatch};

    #[test]
    fn sockaddr_roundtrip() {
        for s in [
            "127.0.0.1:5060",
            "10.1.2.3:1",
            "[::1]:5061",
            "[fe80::1%2]:9",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            let mut st: libc::sockaddr_storage = unsafe { zeroed() };
            to_storage(&a, &mut st);
            assert_eq!(from_storage(&st), Some(a), "{s}");
        }
    }

    #[test]
    fn batch_receive_and_send_over_loopback() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let mut io = MmsgIo::new(sock, 16).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut rx = RecvBatch::new(16, 100);
        assert_eq!(
            io.recv_batch(&mut rx).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for k in 0..10u8 {
            peer.send_to(&[k; 3], addr).unwrap();
        }
        peer.send_to(&[9u8; 150], addr).unwrap();
        // Loopback delivers synchronously: all 11 are queued, one syscall takes them.
        assert_eq!(io.recv_batch(&mut rx).unwrap(), 11);
        for (k, d) in rx.iter().take(10).enumerate() {
            assert_eq!(d.src, peer.local_addr().unwrap());
            assert_eq!(d.data, &[k as u8; 3]);
            assert!(!d.truncated);
        }
        assert!(rx.get(10).truncated);
        assert_eq!(rx.get(10).data.len(), 100);

        let mut tx = SendBatch::new();
        for k in 0..40u8 {
            tx.push(peer.local_addr().unwrap(), &[k]);
        }
        let rep = io.send_batch(&mut tx);
        assert_eq!(
            (rep.sent, rep.bytes, rep.errors, rep.blocked),
            (40, 40, 0, false)
        );
        assert!(tx.is_empty());
        let mut buf = [0u8; 8];
        for k in 0..40u8 {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&[k][..], addr));
        }
        // A datagram the kernel refuses (too big for UDP) is dropped and counted; the rest go.
        tx.push(peer.local_addr().unwrap(), &vec![0u8; 70_000]);
        tx.push(peer.local_addr().unwrap(), b"ok");
        let rep = io.send_batch(&mut tx);
        assert_eq!((rep.sent, rep.errors), (1, 1));
        assert_eq!(peer.recv_from(&mut buf).unwrap().0, 2);
    }

    #[test]
    fn receive_headers_are_reused_across_calls_sends_and_batches() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let mut io = MmsgIo::new(sock, 8).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut rx = RecvBatch::new(8, 50);
        // Round 1: a truncated datagram first, so the kernel sets MSG_TRUNC in header 0.
        a.send_to(&[1u8; 80], addr).unwrap();
        b.send_to(b"two", addr).unwrap();
        assert_eq!(io.recv_batch(&mut rx).unwrap(), 2);
        assert!(rx.get(0).truncated);
        assert_eq!(
            (rx.get(1).src, rx.get(1).data),
            (b.local_addr().unwrap(), &b"two"[..])
        );
        // A send in between must not disturb the receive set-up.
        let mut tx = SendBatch::new();
        tx.push(b.local_addr().unwrap(), b"reply");
        assert_eq!(io.send_batch(&mut tx).sent, 1);
        let mut buf = [0u8; 16];
        assert_eq!(b.recv_from(&mut buf).unwrap(), (5, addr));
        // Round 2: more datagrams than before, from the other order of sources; header 0's
        // truncation flag and address length were reset.
        for k in 0..5u8 {
            let from = if k % 2 == 0 { &b } else { &a };
            from.send_to(&[k; 4], addr).unwrap();
        }
        assert_eq!(io.recv_batch(&mut rx).unwrap(), 5);
        for (k, d) in rx.iter().enumerate() {
            let from = if k % 2 == 0 { &b } else { &a };
            assert_eq!(d.src, from.local_addr().unwrap());
            assert_eq!(d.data, &[k as u8; 4]);
            assert!(!d.truncated);
        }
        assert_eq!(
            io.recv_batch(&mut rx).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // A different batch (other buffer, other slot size) gets its own set-up.
        let mut big = RecvBatch::new(4, 200);
        a.send_to(&[7u8; 120], addr).unwrap();
        assert_eq!(io.recv_batch(&mut big).unwrap(), 1);
        assert_eq!((big.get(0).data.len(), big.get(0).truncated), (120, false));
        a.send_to(&[8u8; 60], addr).unwrap();
        assert_eq!(io.recv_batch(&mut rx).unwrap(), 1);
        assert_eq!((rx.get(0).data.len(), rx.get(0).truncated), (50, true));
    }
}
