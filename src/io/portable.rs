//! Portable backend: one `recv_from` / `send_to` per datagram on a nonblocking socket.
//!
//! Owns: nothing but its socket. Must not: block, or allocate per datagram.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};

use super::{BatchIo, RecvBatch, SendBatch, SendReport};

/// One syscall per datagram; works wherever std's UDP sockets do.
pub struct PortableIo {
    sock: UdpSocket,
}

impl PortableIo {
    /// Wraps `sock` and makes it nonblocking.
    pub fn new(sock: UdpSocket) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Self { sock })
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }
}

impl BatchIo for PortableIo {
    fn name(&self) -> &'static str {
        "portable"
    }

    fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn recv_batch(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        while batch.len() < batch.capacity() {
            let i = batch.len();
            match self.sock.recv_from(batch.slot_mut(i)) {
                // The slot is one byte longer than max_datagram, so n > max_datagram means the
                // kernel cut the datagram; `push` marks it truncated.
                Ok((n, src)) => batch.push(src, n, false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if batch.is_empty() => return Err(e),
                // Got some: report them; a persistent error shows up on the next call.
                Err(_) => break,
            }
        }
        Ok(batch.len())
    }

    fn send_batch(&mut self, batch: &mut SendBatch) -> SendReport {
        let mut rep = SendReport::default();
        let mut done = 0;
        while done < batch.len() {
            let (dst, data) = batch.get(done);
            match self.sock.send_to(data, dst) {
                Ok(_) => {
                    rep.sent += 1;
                    rep.bytes += data.len();
                    done += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    rep.blocked = true;
                    break;
                }
                Err(_) => {
                    rep.errors += 1;
                    done += 1;
                }
            }
        }
        batch.advance(done);
        if rep.blocked {
            batch.compact();
        }
        rep
    }
}
