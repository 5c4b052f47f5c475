//! UDP socket setup: one SO_REUSEPORT group of nonblocking sockets on one address.
//!
//! Owns: creating, configuring and binding the sockets. Must not: read or write datagrams.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What to ask of every socket in the group.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketOptions {
    /// SO_RCVBUF to request, bytes; 0 keeps the OS default.
    pub recv_buffer_bytes: usize,
    /// SO_SNDBUF to request, bytes; 0 keeps the OS default.
    pub send_buffer_bytes: usize,
    /// Ask the kernel to report receive-queue drops (SO_RXQ_OVFL, Linux).
    pub rxq_overflow: bool,
}

/// A bound SO_REUSEPORT group.
#[derive(Debug)]
pub struct UdpGroup {
    /// One nonblocking socket per shard, all bound to `local_addr`.
    pub sockets: Vec<UdpSocket>,
    /// The address actually bound (the real port when asked for port 0).
    pub local_addr: SocketAddr,
    /// SO_RCVBUF / SO_SNDBUF as the kernel reports them for the first socket (Linux reports
    /// twice the usable size, and clamps to net.core.{r,w}mem_max without CAP_NET_ADMIN).
    pub recv_buffer_bytes: usize,
    pub send_buffer_bytes: usize,
    /// SO_RXQ_OVFL was enabled.
    pub rxq_overflow: bool,
}

fn in_use(addr: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("udp {addr} is already in use by another process"),
    )
}

fn context(addr: SocketAddr, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        return in_use(addr);
    }
    io::Error::new(e.kind(), format!("cannot bind udp {addr}: {e}"))
}

/// Bind `count` (at least 1) sockets to `addr` in one SO_REUSEPORT group.
///
/// A port another process already holds is refused (`ErrorKind::AddrInUse`, message
/// "udp <addr> is already in use by another process"): the address is first probe-bound without
/// SO_REUSEPORT, so we never silently join someone else's reuseport group. Port 0 binds the first
/// socket to a fresh port and the rest to that port.
pub fn bind_udp_group(
    addr: SocketAddr,
    count: usize,
    opts: &SocketOptions,
) -> io::Result<UdpGroup> {
    let count = count.max(1);
    if addr.port() != 0 {
        let probe = new_socket(addr).map_err(|e| context(addr, e))?;
        probe
            .bind(&SockAddr::from(addr))
            .map_err(|e| context(addr, e))?;
        drop(probe);
    }
    let mut sockets = Vec::with_capacity(count);
    let mut local = addr;
    let mut rxq = false;
    for i in 0..count {
        let s = new_socket(local).map_err(|e| context(local, e))?;
        s.set_reuse_port(true).map_err(|e| context(local, e))?;
        set_buffers(&s, opts).map_err(|e| context(local, e))?;
        if opts.rxq_overflow {
            rxq = enable_rxq_ovfl(&s);
        }
        s.bind(&SockAddr::from(local))
            .map_err(|e| context(local, e))?;
        if i == 0 {
            local = s
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("bound socket has no inet address"))?;
        }
        sockets.push(s);
    }
    let recv_buffer_bytes = sockets[0].recv_buffer_size()?;
    let send_buffer_bytes = sockets[0].send_buffer_size()?;
    Ok(UdpGroup {
        sockets: sockets.into_iter().map(UdpSocket::from).collect(),
        local_addr: local,
        recv_buffer_bytes,
        send_buffer_bytes,
        rxq_overflow: rxq,
    })
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Ask for the configured buffer sizes: with CAP_NET_ADMIN the *FORCE variants go past the
/// sysctl maximum; without, fall back to the plain options (which the kernel clamps).
fn set_buffers(s: &Socket, opts: &SocketOptions) -> io::Result<()> {
    if opts.recv_buffer_bytes > 0 && !force(s, true, opts.recv_buffer_bytes) {
        s.set_recv_buffer_size(opts.recv_buffer_bytes)?;
    }
    if opts.send_buffer_bytes > 0 && !force(s, false, opts.send_buffer_bytes) {
        s.set_send_buffer_size(opts.send_buffer_bytes)?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn force(s: &Socket, recv: bool, bytes: usize) -> bool {
    use std::os::fd::AsRawFd;
    let opt = if recv {
        libc::SO_RCVBUFFORCE
    } else {
        libc::SO_SNDBUFFORCE
    };
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    setsockopt_int(s.as_raw_fd(), opt, v)
}

#[cfg(not(target_os = "linux"))]
fn force(_: &Socket, _: bool, _: usize) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn enable_rxq_ovfl(s: &Socket) -> bool {
    use std::os::fd::AsRawFd;
    setsockopt_int(s.as_raw_fd(), libc::SO_RXQ_OVFL, 1)
}

#[cfg(not(target_os = "linux"))]
fn enable_rxq_ovfl(_: &Socket) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn setsockopt_int(fd: std::os::fd::RawFd, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: plain setsockopt with a pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_group_shares_one_port() {
        let g =
            bind_udp_group("127.0.0.1:0".parse().unwrap(), 3, &SocketOptions::default()).unwrap();
        assert_ne!(g.local_addr.port(), 0);
        for s in &g.sockets {
            assert_eq!(s.local_addr().unwrap(), g.local_addr);
        }
        let again = bind_udp_group(g.local_addr, 1, &SocketOptions::default()).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            again.to_string(),
            format!("udp {} is already in use by another process", g.local_addr)
        );
    }

    #[test]
    fn plain_socket_holder_is_detected() {
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        let e = bind_udp_group(addr, 2, &SocketOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn ipv6_and_buffers() {
        let opts = SocketOptions {
            recv_buffer_bytes: 1 << 20,
            send_buffer_bytes: 1 << 20,
            rxq_overflow: true,
        };
        let g = match bind_udp_group("[::1]:0".parse().unwrap(), 2, &opts) {
            Ok(g) => g,
            // No IPv6 loopback in this environment.
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => return,
            Err(e) => panic!("{e}"),
        };
        assert!(g.local_addr.is_ipv6());
        assert!(g.recv_buffer_bytes > 0 && g.send_buffer_bytes > 0);
    }
}
