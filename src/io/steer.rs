//! Kernel steering of datagrams to their owner shard: a classic BPF program attached to the
//! SO_REUSEPORT group (`SO_ATTACH_REUSEPORT_CBPF`) that picks the socket from the SIP text.
//!
//! Owns: building that program and attaching it. Must not: be needed for correctness. The program
//! is an optimisation: whatever it cannot read (compact header forms, a display name before the To
//! URI, a header beyond the scanned window, non-SIP data) it leaves to the kernel's own 4-tuple hash,
//! and a shard that receives a datagram it does not own hands it over as it always did.
//!
//! What it computes, for the UDP payload (the kernel runs it with the payload at offset 0):
//! - a REGISTER (`REGI` at offset 0): the user of the To URI, written `To: sip:USER@…` or
//!   `To: <sip:USER@…>` (one optional space), within the first [`TO_WINDOW`] bytes;
//! - anything else (requests and responses): the value of the first `Call-ID:` header within the first
//!   [`CALL_ID_WINDOW`] bytes (one optional space);
//! - socket index = `steer_hash(key) % shards`, the hash of `sip::steer` (the same function
//!   the shards use for `owner_of_aor` and `owner_of_call_id`): at most 16 bytes of the key, ending
//!   at a control byte, space, `@`, `;`, `>` or `:`, letters folded with `| 0x20`, then a mix.
//!
//! Classic BPF has no loops, so the header search is unrolled: three instructions per offset,
//! scanning from the end of the window (or of the datagram, in steps of 32 bytes) down to the
//! start, so the lowest match wins. The whole program stays under the kernel's 4096-instruction limit.

use std::io;

/// Offsets scanned for `\r\nTo` in a REGISTER.
pub const TO_WINDOW: u32 = 400;
/// Offsets scanned for `\r\nCall-ID:`.
pub const CALL_ID_WINDOW: u32 = 600;
/// First offset scanned (a start line is longer than this).
const FIRST_OFFSET: u32 = 8;
/// Granularity of the entry points into a scan (by datagram length).
const TIER: u32 = 32;
/// Bytes of the key that are hashed (`sip::steer::STEER_HASH_BYTES`).
const HASH_BYTES: u32 = 16;
/// Returned when the program cannot tell: out of range, so the kernel uses its 4-tuple hash.
const NO_CHOICE: u32 = u32::MAX;
/// The kernel's limit on classic BPF programs.
pub const MAX_INSTRUCTIONS: usize = 4096;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
const ADD: u16 = 0x00;
const MUL: u16 = 0x20;
const OR: u16 = 0x40;
const RSH: u16 = 0x70;
const MOD: u16 = 0x90;
const XOR: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGE: u16 = 0x30;
const K: u16 = 0x00;
const X: u16 = 0x08;
const RA: u16 = 0x10;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

/// Scratch memory cells.
const M_HASH: u32 = 0;
const M_BYTE: u32 = 1;
const M_BASE: u32 = 2;
const M_LEN: u32 = 3;

/// One classic BPF instruction (layout of `struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[derive(Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

enum Op {
    Plain(Insn),
    Cond {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Jump(usize),
}

/// A tiny assembler with forward labels.
#[derive(Default)]
struct Asm {
    ops: Vec<Op>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn here(&mut self, l: usize) {
        self.labels[l] = Some(self.ops.len());
    }
    fn op(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Plain(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }
    fn cond(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.ops.push(Op::Cond { code, k, jt, jf });
    }
    fn jump(&mut self, l: usize) {
        self.ops.push(Op::Jump(l));
    }
    /// If A == k, go on; else jump to `l` (which must be near).
    fn expect_eq(&mut self, k: u32, l: usize) {
        self.cond(JMP | JEQ | K, k, Target::Next, Target::Label(l));
    }
    /// Unless `A <code> k` holds, jump to `l` (any distance).
    fn jump_unless(&mut self, code: u16, k: u32, l: usize) {
        let ok = self.label();
        self.cond(code, k, Target::Label(ok), Target::Next);
        self.jump(l);
        self.here(ok);
    }
    /// X += n.
    fn add_x(&mut self, n: u32) {
        self.op(MISC | TXA, 0);
        self.op(ALU | ADD | K, n);
        self.op(MISC | TAX, 0);
    }

    fn finish(self) -> Result<Vec<Insn>, String> {
        let at = |l: usize| self.labels[l].ok_or_else(|| format!("label {l} never placed"));
        let mut out = Vec::with_capacity(self.ops.len());
        for (pc, op) in self.ops.iter().enumerate() {
            let rel = |t: Target| -> Result<u8, String> {
                match t {
                    Target::Next => Ok(0),
                    Target::Label(l) => {
                        let to = at(l)?;
                        let d = to
                            .checked_sub(pc + 1)
                            .ok_or_else(|| format!("backward jump at {pc}"))?;
                        u8::try_from(d).map_err(|_| format!("jump of {d} at {pc} is too far"))
                    }
                }
            };
            out.push(match *op {
                Op::Plain(i) => i,
                Op::Cond { code, k, jt, jf } => Insn {
                    code,
                    jt: rel(jt)?,
                    jf: rel(jf)?,
                    k,
                },
                Op::Jump(l) => {
                    let to = at(l)?;
                    let d = to
                        .checked_sub(pc + 1)
                        .ok_or_else(|| format!("backward jump at {pc}"))?;
                    Insn {
                        code: JMP | JA,
                        jt: 0,
                        jf: 0,
                        k: d as u32,
                    }
                }
            });
        }
        if out.len() > MAX_INSTRUCTIONS {
            return Err(format!(
                "steering program has {} instructions (limit {MAX_INSTRUCTIONS})",
                out.len()
            ));
        }
        Ok(out)
    }
}

fn word(s: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*s)
}

/// Emits a descending scan for the 4-byte `pattern` over offsets `FIRST_OFFSET..=window`, entered
/// at the highest tier the datagram length (in M_LEN) allows; leaves the lowest match offset in X
/// (0 when none) and falls through to what follows.
fn scan(a: &mut Asm, pattern: u32, window: u32, none: usize) {
    // Entry points, highest first: the scan from offset T reads bytes T..T+4.
    let mut tiers = Vec::new();
    let mut t = window;
    while t >= FIRST_OFFSET + TIER {
        tiers.push((t, a.label()));
        t -= TIER;
    }
    a.op(LDX | IMM, 0);
    a.op(LD | MEM, M_LEN);
    for &(t, l) in &tiers {
        let skip = a.label();
        a.cond(JMP | JGE | K, t + 4, Target::Next, Target::Label(skip));
        a.jump(l);
        a.here(skip);
    }
    a.jump(none);
    let mut next_tier = 0;
    let mut o = window;
    while o >= FIRST_OFFSET {
        if next_tier < tiers.len() && tiers[next_tier].0 == o {
            a.here(tiers[next_tier].1);
            next_tier += 1;
        }
        let skip = a.label();
        a.op(LD | W | ABS, o);
        a.cond(JMP | JEQ | K, pattern, Target::Next, Target::Label(skip));
        a.op(LDX | IMM, o);
        a.here(skip);
        o -= 1;
    }
}

/// The steering program for a group of `shards` sockets (bound in shard order).
pub fn program(shards: u32) -> Result<Vec<Insn>, String> {
    if shards < 2 {
        return Err("steering needs at least 2 shards".into());
    }
    let mut a = Asm::default();
    let fallback = a.label();
    let register = a.label();
    let call_id = a.label();
    let hash = a.label();

    a.op(LD | W | LEN, 0);
    a.jump_unless(JMP | JGE | K, FIRST_OFFSET + TIER + 4, fallback);
    a.op(ST, M_LEN);
    a.op(LD | W | ABS, 0);
    a.jump_unless(JMP | JEQ | K, word(b"REGI"), call_id);
    a.jump(register);

    // REGISTER: `\r\nTo:` [space] [<] `sip:` USER
    a.here(register);
    let reg_none = a.label();
    scan(&mut a, word(b"\r\nTo"), TO_WINDOW, reg_none);
    a.op(MISC | TXA, 0);
    let found = a.label();
    a.cond(
        JMP | JEQ | K,
        0,
        Target::Label(reg_none),
        Target::Label(found),
    );
    a.here(reg_none);
    a.op(RET | K, NO_CHOICE);
    a.here(found);
    let reg_fail = a.label();
    a.op(LD | B | IND, 4);
    a.expect_eq(u32::from(b':'), reg_fail);
    for skip in [b' ', b'<'] {
        let no = a.label();
        a.op(LD | B | IND, 5);
        a.cond(
            JMP | JEQ | K,
            u32::from(skip),
            Target::Next,
            Target::Label(no),
        );
        a.add_x(1);
        a.here(no);
    }
    a.op(LD | W | IND, 5);
    a.expect_eq(word(b"sip:"), reg_fail);
    a.add_x(9);
    a.jump(hash);
    a.here(reg_fail);
    a.op(RET | K, NO_CHOICE);

    // Everything else: `\r\nCall-ID:` [space] VALUE
    a.here(call_id);
    let cid_none = a.label();
    scan(&mut a, word(b"\r\nCa"), CALL_ID_WINDOW, cid_none);
    a.op(MISC | TXA, 0);
    let found = a.label();
    a.cond(
        JMP | JEQ | K,
        0,
        Target::Label(cid_none),
        Target::Label(found),
    );
    a.here(cid_none);
    a.op(RET | K, NO_CHOICE);
    a.here(found);
    let cid_fail = a.label();
    a.op(LD | W | IND, 4);
    a.expect_eq(word(b"ll-I"), cid_fail);
    a.op(LD | H | IND, 8);
    a.expect_eq(u32::from(u16::from_be_bytes(*b"D:")), cid_fail);
    let no_space = a.label();
    a.op(LD | B | IND, 10);
    a.cond(
        JMP | JEQ | K,
        u32::from(b' '),
        Target::Next,
        Target::Label(no_space),
    );
    a.add_x(1);
    a.here(no_space);
    a.add_x(10);
    a.jump(hash);
    a.here(cid_fail);
    a.op(RET | K, NO_CHOICE);

    // The hash of the key at X (see sip::steer::steer_hash).
    a.here(hash);
    let fin = a.label();
    a.op(STX, M_BASE);
    a.op(LD | IMM, 0);
    a.op(ST, M_HASH);
    for i in 0..HASH_BYTES {
        a.op(LD | B | IND, i);
        a.cond(JMP | JGE | K, 0x21, Target::Next, Target::Label(fin));
        for end in [b'@', b';', b'>', b':'] {
            a.cond(
                JMP | JEQ | K,
                u32::from(end),
                Target::Label(fin),
                Target::Next,
            );
        }
        a.op(ALU | OR | K, 0x20);
        a.op(ST, M_BYTE);
        a.op(LD | MEM, M_HASH);
        a.op(ALU | MUL | K, 31);
        a.op(LDX | MEM, M_BYTE);
        a.op(ALU | ADD | X, 0);
        a.op(ST, M_HASH);
        a.op(LDX | MEM, M_BASE);
    }
    a.here(fin);
    a.op(LD | MEM, M_HASH);
    a.op(MISC | TAX, 0);
    a.op(ALU | RSH | K, 16);
    a.op(ALU | XOR | X, 0);
    a.op(ALU | MUL | K, 0x045d_9f3b);
    a.op(MISC | TAX, 0);
    a.op(ALU | RSH | K, 16);
    a.op(ALU | XOR | X, 0);
    a.op(ALU | MOD | K, shards);
    a.op(RET | RA, 0);

    a.here(fallback);
    a.op(RET | K, NO_CHOICE);
    a.finish()
}

/// Attach the steering program to the reuseport group that `fd` belongs to (any member).
#[cfg(target_os = "linux")]
pub fn attach(fd: std::os::fd::RawFd, shards: u32) -> io::Result<usize> {
    let prog = program(shards).map_err(io::Error::other)?;
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; `Insn` has the layout of
    // `struct sock_filter`; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(prog.len())
}

/// Not available: the caller runs without steering.
#[cfg(not(target_os = "linux"))]
pub fn attach(_fd: i32, _shards: u32) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reuseport steering needs Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_the_kernel_limit_for_every_shard_count() {
        for n in [2, 3, 4, 16, 64, 1024] {
            let p = program(n).unwrap();
            assert!(p.len() <= MAX_INSTRUCTIONS, "{n}: {}", p.len());
            assert_eq!(p.last().unwrap().code, RET | K);
        }
        assert!(program(1).is_err());
    }
}
