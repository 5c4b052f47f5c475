//! Binding storage of one shard: the slab of bindings, the AOR index, the tombstone ring, the
//! User-Agent table, and the canonical AOR / contact comparison helpers.
//!
//! Owns: memory layout of bindings (one boxed byte buffer per binding holding AOR, contact URI and
//! Call-ID, addressed by small offsets), slots addressed by index + generation, an open-addressing
//! AOR table of `u32` heads (the key is not duplicated: it is compared in the head binding's
//! buffer), and the bindings of one AOR chained through the slab.
//! Must not: decide anything about REGISTER semantics (that is `core`), touch sockets, threads,
//! clocks or locks.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::sip::{unescape_into, unescaped, Message, Scheme, Uri};
use crate::timer::Millis;

use super::accounts::AccountId;

/// "No binding" in chains and table slots.
pub(crate) const NIL: u32 = u32::MAX;
/// Largest canonical AOR key accepted, bytes.
pub const MAX_AOR_LEN: usize = 1024;
/// Largest contact URI accepted, bytes.
pub const MAX_CONTACT_LEN: usize = 2048;
/// Largest Call-ID accepted, bytes.
pub const MAX_CALL_ID_LEN: usize = 1024;
/// Largest User-Agent kept (longer ones are cut), bytes.
pub const MAX_UA_LEN: usize = 160;
/// Distinct User-Agent strings remembered per shard; later new ones count as "(other)".
pub const MAX_UA_KINDS: usize = 4096;

/// Canonical address of record of a REGISTER, from its To URI (RFC 3261 §10.3 step 5), written
/// into `out` (cleared first): `user@host`, scheme-independent (`sip:` and `sips:` give the same
/// key), the user %-unescaped byte for byte (`%00` stays a 0x00 byte, so `null-%00-null` is kept
/// whole and distinct from any other user), the host lower-cased, port and parameters dropped.
/// A To without a user gives `@host`.
///
/// Errors (the caller answers 400): no To, a To URI that is not `sip:`/`sips:` (RFC 4475
/// unksm2), a bad %-escape in the user, an empty host, a key longer than [`MAX_AOR_LEN`].
pub fn aor_key(msg: &Message, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let to = msg.to().ok_or("missing To")?;
    aor_key_of_uri(&to.uri(), out)
}

/// [`aor_key`] of any SIP/SIPS URI, e.g. a Request-URI to look up (same canonical form).
pub fn aor_key_of_uri(uri: &Uri, out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.clear();
    if !matches!(uri.scheme(), Scheme::Sip | Scheme::Sips) {
        return Err("To is not a SIP or SIPS URI");
    }
    if let Some(user) = uri.user() {
        unescape_into(user, out).map_err(|_| "bad escape in the To user")?;
    }
    let host = uri.host();
    if host.is_empty() {
        return Err("To URI without host");
    }
    out.push(b'@');
    out.extend(host.iter().map(u8::to_ascii_lowercase));
    if out.len() > MAX_AOR_LEN {
        out.clear();
        return Err("address of record too long");
    }
    Ok(())
}

/// The shard that owns the bindings of `key` (from [`aor_key`]): the steering hash of its user
/// part (`sip::steer`) modulo `shards`, identical on every shard of the process and the same one the
/// kernel's reuseport program computes from the To URI of a REGISTER (`io::steer`).
pub fn owner_of_aor(key: &[u8], shards: usize) -> usize {
    crate::sip::steer::steer_shard(key, shards)
}

/// A socket address in 20 bytes (a `SocketAddr` takes 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Addr {
    ip: [u8; 16],
    port: u16,
    v6: bool,
}

impl Addr {
    pub fn new(a: SocketAddr) -> Addr {
        let mut ip = [0u8; 16];
        match a.ip().to_canonical() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                Addr {
                    ip,
                    port: a.port(),
                    v6: false,
                }
            }
            IpAddr::V6(v6) => Addr {
                ip: v6.octets(),
                port: a.port(),
                v6: true,
            },
        }
    }
    pub fn ip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.ip[0], self.ip[1], self.ip[2], self.ip[3],
            ))
        }
    }
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }
}

/// An IP literal host (`1.2.3.4` or `[::1]`), canonical (v4-mapped v6 → v4).
pub(crate) fn host_ip(host: &[u8]) -> Option<IpAddr> {
    crate::sip::parse_ip_literal(host).map(|ip| ip.to_canonical())
}

/// RFC 1918, RFC 6598 (CGNAT), loopback, link-local, IPv6 ULA and link-local.
pub(crate) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (o[1] & 0xC0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            v6.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// True when `ip` is inside `net/prefix` (families must agree).
pub(crate) fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip.to_canonical(), net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let p = u32::from(prefix.min(32));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            (u32::from(a) & mask) == (u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let p = u32::from(prefix.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            (u128::from(a) & mask) == (u128::from(n) & mask)
        }
        _ => false,
    }
}

fn escaped_eq(a: Option<&[u8]>, b: Option<&[u8]>, ignore_case: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            if ignore_case {
                unescaped(x)
                    .map(|c| c.to_ascii_lowercase())
                    .eq(unescaped(y).map(|c| c.to_ascii_lowercase()))
            } else {
                unescaped(x).eq(unescaped(y))
            }
        }
        _ => false,
    }
}

/// URI parameters that must be present in both URIs for them to be equal (RFC 3261 §19.1.4).
fn special_param(name: &[u8]) -> bool {
    [&b"transport"[..], b"user", b"ttl", b"method", b"maddr"]
        .iter()
        .any(|s| escaped_eq(Some(name), Some(s), true))
}

fn params_cover(a: &Uri, b: &Uri) -> bool {
    for (n, v) in a.param_iter() {
        match b
            .param_iter()
            .find(|(m, _)| escaped_eq(Some(n), Some(m), true))
        {
            Some((_, w)) if !escaped_eq(v, w, true) => return false,
            Some(_) => {}
            None if special_param(n) => return false,
            None => {}
        }
    }
    true
}

/// Contact URI equality after RFC 3261 §19.1.4: scheme, user and password compared unescaped and
/// case-sensitively, host case-insensitively, ports exactly (absent ≠ 5060), parameters present
/// in both must agree, `transport`/`user`/`ttl`/`method`/`maddr` must be in both or neither,
/// headers compared as text. Other schemes: byte equality.
pub(crate) fn contact_eq(a: &Uri, b: &Uri) -> bool {
    if a.scheme() != b.scheme() {
        return false;
    }
    if !matches!(a.scheme(), Scheme::Sip | Scheme::Sips) {
        return a.as_bytes() == b.as_bytes();
    }
    escaped_eq(a.user(), b.user(), false)
        && escaped_eq(a.password(), b.password(), false)
        && a.host().eq_ignore_ascii_case(b.host())
        && a.port() == b.port()
        && params_cover(a, b)
        && params_cover(b, a)
        && a.headers() == b.headers()
}

/// Flag bits of [`Binding::flags`].
pub(crate) const F_NAT: u8 = 1;
/// A keepalive OPTIONS is outstanding (started, no result yet).
pub(crate) const F_KA_OUT: u8 = 2;

/// Sentinel for "no q given".
pub(crate) const NO_Q: u16 = u16::MAX;

/// One binding. About 96 bytes in the slab plus its text buffer.
pub(crate) struct Binding {
    /// AOR key, contact URI, Call-ID, back to back.
    pub text: Box<[u8]>,
    pub aor_len: u16,
    pub contact_len: u16,
    /// Where the REGISTER came from (the address used to reach a NAT binding).
    pub source: Addr,
    pub q: u16,
    pub ua: u16,
    pub flags: u8,
    pub ka_failures: u8,
    pub account: AccountId,
    pub cseq: u32,
    /// Low 32 bits of the AOR hash (table position and quick compare).
    pub aor_hash: u32,
    /// Next binding of the same AOR, or NIL.
    pub next_in_aor: u32,
    /// Granted duration of the last (re-)registration, ms (for the Expiring status).
    pub granted_ms: u32,
    pub expires_at: Millis,
    pub registered_at: Millis,
    /// Next keepalive (NAT bindings with keepalives on).
    pub next_ka: Millis,
}

impl Binding {
    pub fn aor(&self) -> &[u8] {
        &self.text[..self.aor_len as usize]
    }
    pub fn contact(&self) -> &[u8] {
        let s = self.aor_len as usize;
        &self.text[s..s + self.contact_len as usize]
    }
    pub fn call_id(&self) -> &[u8] {
        &self.text[self.aor_len as usize + self.contact_len as usize..]
    }
    pub fn nat(&self) -> bool {
        self.flags & F_NAT != 0
    }
    pub fn make_text(aor: &[u8], contact: &[u8], call_id: &[u8]) -> Box<[u8]> {
        let mut v = Vec::with_capacity(aor.len() + contact.len() + call_id.len());
        v.extend_from_slice(aor);
        v.extend_from_slice(contact);
        v.extend_from_slice(call_id);
        v.into_boxed_slice()
    }
}

pub(crate) struct Slot {
    pub generation: u32,
    pub binding: Option<Binding>,
}

/// Generations wrap at 2^30, so `BindingId::to_u64` never sets bit 63 (trunk tokens) nor bit 62
/// (proxy tokens).
pub const GENERATION_MASK: u32 = 0x3fff_ffff;

/// Identifies one binding (slab index + generation); stale ids never match a later binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BindingId {
    pub index: u32,
    pub generation: u32,
}

impl BindingId {
    /// Bits 63 and 62 are never set (generations are below 2^30): tokens with them belong to
    /// the trunks and the proxy.
    pub fn to_u64(self) -> u64 {
        u64::from(self.generation & GENERATION_MASK) << 32 | u64::from(self.index)
    }
    pub fn from_u64(v: u64) -> BindingId {
        BindingId {
            index: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

/// Slab + AOR table.
pub(crate) struct Store {
    pub slots: Vec<Slot>,
    free: Vec<u32>,
    /// Open addressing, linear probing, backward-shift deletion; NIL = empty; else the head
    /// binding of one AOR.
    table: Vec<u32>,
    table_len: usize,
    hasher: ahash::RandomState,
    pub live: usize,
}

impl Store {
    pub fn new(seed: u64) -> Store {
        Store {
            slots: Vec::new(),
            free: Vec::new(),
            table: vec![NIL; 16],
            table_len: 0,
            hasher: ahash::RandomState::with_seeds(
                seed,
                seed.rotate_left(17) ^ 0x9E37_79B9_7F4A_7C15,
                0x0123_4567_89ab_cdef,
                seed.wrapping_mul(0xD6E8_FEB8_6659_FD93),
            ),
            live: 0,
        }
    }

    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n.saturating_sub(self.free.len()));
        self.free
            .reserve_exact(self.slots.capacity().saturating_sub(self.free.len()));
        while (self.table_len + n) * 8 > self.table.len() * 7 {
            self.grow();
        }
    }

    pub fn hash(&self, key: &[u8]) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    #[inline]
    pub fn get(&self, idx: u32) -> Option<&Binding> {
        self.slots.get(idx as usize)?.binding.as_ref()
    }
    pub fn b(&self, idx: u32) -> &Binding {
        self.slots[idx as usize]
            .binding
            .as_ref()
            .expect("live binding")
    }
    pub fn b_mut(&mut self, idx: u32) -> &mut Binding {
        self.slots[idx as usize]
            .binding
            .as_mut()
            .expect("live binding")
    }
    pub fn generation(&self, idx: u32) -> u32 {
        self.slots[idx as usize].generation
    }
    pub fn get_id(&self, id: BindingId) -> Option<&Binding> {
        let s = self.slots.get(id.index as usize)?;
        if s.generation != id.generation {
            return None;
        }
        s.binding.as_ref()
    }
    pub fn id(&self, idx: u32) -> BindingId {
        BindingId {
            index: idx,
            generation: self.slots[idx as usize].generation,
        }
    }

    /// Table position of `key`, if any binding has it.
    pub fn find(&self, key: &[u8], hash: u32) -> Option<usize> {
        let mask = self.table.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let head = self.table[i];
            if head == NIL {
                return None;
            }
            let b = self.b(head);
            if b.aor_hash == hash && b.aor() == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// First binding of the AOR at table position `pos`.
    pub fn head(&self, pos: usize) -> u32 {
        self.table[pos]
    }

    /// Iterator over the bindings (indices) of the AOR `key`.
    pub fn chain(&self, key: &[u8], hash: u32) -> ChainIter<'_> {
        ChainIter {
            store: self,
            next: self.find(key, hash).map_or(NIL, |p| self.table[p]),
        }
    }

    /// Adds a binding (its `aor_hash` set) at the head of its AOR chain.
    pub fn insert(&mut self, mut b: Binding) -> u32 {
        let hash = b.aor_hash;
        let pos = self.find(b.aor(), hash);
        b.next_in_aor = pos.map_or(NIL, |p| self.table[p]);
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].binding = Some(b);
                i
            }
            None => {
                let i = self.slots.len();
                assert!(i < (NIL >> 1) as usize, "binding slab full");
                self.slots.push(Slot {
                    generation: 0,
                    binding: Some(b),
                });
                // The free list can hold every slot without growing: no large allocation (and
                // no allocator consolidation pause) while a mass expiry frees slots.
                if self.free.capacity() < self.slots.capacity() {
                    self.free
                        .reserve_exact(self.slots.capacity() - self.free.len());
                }
                i as u32
            }
        };
        self.live += 1;
        match pos {
            Some(p) => self.table[p] = idx,
            None => {
                if (self.table_len + 1) * 8 > self.table.len() * 7 {
                    self.grow();
                }
                let mask = self.table.len() - 1;
                let mut i = hash as usize & mask;
                while self.table[i] != NIL {
                    i = (i + 1) & mask;
                }
                self.table[i] = idx;
                self.table_len += 1;
            }
        }
        idx
    }

    /// Removes a live binding from its chain and the slab; returns it.
    pub fn remove(&mut self, idx: u32) -> Binding {
        let (hash, next) = {
            let b = self.b(idx);
            (b.aor_hash, b.next_in_aor)
        };
        let pos = {
            let b = self.b(idx);
            self.find(b.aor(), hash).expect("binding in the AOR table")
        };
        if self.table[pos] == idx {
            if next == NIL {
                self.table_remove(pos);
            } else {
                self.table[pos] = next;
            }
        } else {
            let mut p = self.table[pos];
            loop {
                let n = self.b(p).next_in_aor;
                if n == idx {
                    self.b_mut(p).next_in_aor = next;
                    break;
                }
                assert!(n != NIL, "binding not in its AOR chain");
                p = n;
            }
        }
        let slot = &mut self.slots[idx as usize];
        // Generations stay below 2^30 so `BindingId::to_u64` never sets bits 63 and 62 (the
        // dispatcher's trunk and proxy tokens use them).
        slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
        let b = slot.binding.take().expect("live binding");
        self.free.push(idx);
        self.live -= 1;
        b
    }

    fn table_remove(&mut self, pos: usize) {
        let mask = self.table.len() - 1;
        let mut i = pos;
        let mut j = pos;
        loop {
            j = (j + 1) & mask;
            let e = self.table[j];
            if e == NIL {
                break;
            }
            let k = self.b(e).aor_hash as usize & mask;
            // Leave `e` where it is if its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !stays {
                self.table[i] = e;
                i = j;
            }
        }
        self.table[i] = NIL;
        self.table_len -= 1;
    }

    fn grow(&mut self) {
        let new_len = self.table.len() * 2;
        let old = std::mem::replace(&mut self.table, vec![NIL; new_len]);
        let mask = new_len - 1;
        for head in old.into_iter().filter(|&h| h != NIL) {
            let mut i = self.b(head).aor_hash as usize & mask;
            while self.table[i] != NIL {
                i = (i + 1) & mask;
            }
            self.table[i] = head;
        }
    }

    /// Indices of every live binding, in slab order.
    pub fn iter_live(&self) -> impl Iterator<Item = (u32, &Binding)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.binding.as_ref().map(|b| (i as u32, b)))
    }
}

pub(crate) struct ChainIter<'a> {
    store: &'a Store,
    next: u32,
}

impl Iterator for ChainIter<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.next == NIL {
            return None;
        }
        let i = self.next;
        self.next = self.store.b(i).next_in_aor;
        Some(i)
    }
}

/// Why a binding went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemovalReason {
    /// REGISTER with `expires=0` / `Expires: 0` / `Contact: *`.
    Unregistered,
    /// Reached its expiry.
    Expired,
    /// Replaced by a newer binding (register replace On, binding limit reached).
    Replaced,
    /// Removed by the administrator.
    Forced,
    /// Too many unanswered NAT keepalives in a row.
    KeepaliveFailed,
}

/// A recently removed binding, kept for the "Unregistered" status of the management table.
pub(crate) struct Tombstone {
    pub text: Box<[u8]>,
    pub aor_len: u16,
    pub contact_len: u16,
    pub source: Addr,
    pub ua: u16,
    pub nat: bool,
    pub account: AccountId,
    pub registered_at: Millis,
    pub removed_at: Millis,
    pub reason: RemovalReason,
}

impl Tombstone {
    pub fn aor(&self) -> &[u8] {
        &self.text[..self.aor_len as usize]
    }
    pub fn contact(&self) -> &[u8] {
        let s = self.aor_len as usize;
        &self.text[s..s + self.contact_len as usize]
    }
    pub fn call_id(&self) -> &[u8] {
        &self.text[self.aor_len as usize + self.contact_len as usize..]
    }
}

/// Bounded ring of tombstones, oldest dropped first.
pub(crate) struct Tombstones {
    pub ring: VecDeque<Tombstone>,
    cap: usize,
}

impl Tombstones {
    pub fn new(cap: usize) -> Self {
        Tombstones {
            // Full size at once: no growth (large allocation) during a mass expiry.
            ring: VecDeque::with_capacity(cap),
            cap,
        }
    }
    pub fn push(&mut self, t: Tombstone) {
        if self.cap == 0 {
            return;
        }
        if self.ring.len() == self.cap {
            self.ring.pop_front();
        }
        self.ring.push_back(t);
    }
}

/// Interned User-Agent strings with live binding counts. Id 0 is "no User-Agent", id 1
/// "(other)" once [`MAX_UA_KINDS`] distinct strings have been seen.
pub(crate) struct UserAgents {
    names: Vec<Box<[u8]>>,
    pub live: Vec<u32>,
    index: HashMap<Box<[u8]>, u16, ahash::RandomState>,
}

impl UserAgents {
    pub fn new() -> Self {
        UserAgents {
            names: vec![Box::from(&b""[..]), Box::from(&b"(other)"[..])],
            live: vec![0, 0],
            index: HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
        }
    }
    /// Id of `ua` (cut to [`MAX_UA_LEN`]), interning it when new. Allocates only for a new string.
    pub fn intern(&mut self, ua: &[u8]) -> u16 {
        let ua = &ua[..ua.len().min(MAX_UA_LEN)];
        if ua.is_empty() {
            return 0;
        }
        if let Some(&id) = self.index.get(ua) {
            return id;
        }
        if self.names.len() >= MAX_UA_KINDS + 2 {
            return 1;
        }
        let id = self.names.len() as u16;
        self.names.push(Box::from(ua));
        self.live.push(0);
        self.index.insert(Box::from(ua), id);
        id
    }
    pub fn name(&self, id: u16) -> &[u8] {
        self.names.get(id as usize).map_or(&b""[..], |n| n)
    }
    pub fn counts(&self) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        self.names
            .iter()
            .zip(self.live.iter())
            .filter(|(_, &c)| c > 0)
            .map(|(n, &c)| (&n[..], c))
    }
}
