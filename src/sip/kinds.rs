//! Methods and header kinds.

use super::text::fast_paths;

/// A request method. Methods are case-sensitive: `invite` and `RE%47IST%45R` are extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token.
    Extension(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Classifies a method token (exact, case-sensitive match).
    #[inline]
    pub fn from_bytes(b: &'a [u8]) -> Method<'a> {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            other => Method::Extension(other),
        }
    }
    /// The method token.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Register => b"REGISTER",
            Method::Options => b"OPTIONS",
            Method::Info => b"INFO",
            Method::Update => b"UPDATE",
            Method::Prack => b"PRACK",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Publish => b"PUBLISH",
            Method::Extension(b) => b,
        }
    }
    /// True for [`Method::Extension`].
    pub fn is_extension(&self) -> bool {
        matches!(self, Method::Extension(_))
    }
}

/// Header kinds known to the parser; compact forms (`i m f t v l c k s e o u r b x y a j d n`)
/// map to the same kind as the long name. Names are case-insensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderKind {
    /// `Via` (compact `v`)
    Via,
    /// `From` (compact `f`)
    From,
    /// `To` (compact `t`)
    To,
    /// `Call-ID` (compact `i`)
    CallId,
    /// `CSeq`
    CSeq,
    /// `Contact` (compact `m`)
    Contact,
    /// `Max-Forwards`
    MaxForwards,
    /// `Content-Length` (compact `l`)
    ContentLength,
    /// `Content-Type` (compact `c`)
    ContentType,
    /// `Content-Encoding` (compact `e`)
    ContentEncoding,
    /// `Expires`
    Expires,
    /// `Min-Expires`
    MinExpires,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// `Path`
    Path,
    /// `Require`
    Require,
    /// `Proxy-Require`
    ProxyRequire,
    /// `Supported` (compact `k`)
    Supported,
    /// `Unsupported`
    Unsupported,
    /// `Allow`
    Allow,
    /// `Accept`
    Accept,
    /// `Accept-Encoding`
    AcceptEncoding,
    /// `Accept-Language`
    AcceptLanguage,
    /// `Authorization`
    Authorization,
    /// `Proxy-Authorization`
    ProxyAuthorization,
    /// `WWW-Authenticate`
    WwwAuthenticate,
    /// `Proxy-Authenticate`
    ProxyAuthenticate,
    /// `Authentication-Info`
    AuthenticationInfo,
    /// `User-Agent`
    UserAgent,
    /// `Server`
    Server,
    /// `Subject` (compact `s`)
    Subject,
    /// `Event` (compact `o`)
    Event,
    /// `Allow-Events` (compact `u`)
    AllowEvents,
    /// `Refer-To` (compact `r`)
    ReferTo,
    /// `Referred-By` (compact `b`)
    ReferredBy,
    /// `Session-Expires` (compact `x`)
    SessionExpires,
    /// `Identity` (compact `y`)
    Identity,
    /// `Accept-Contact` (compact `a`)
    AcceptContact,
    /// `Reject-Contact` (compact `j`)
    RejectContact,
    /// `Request-Disposition` (compact `d`)
    RequestDisposition,
    /// `Identity-Info` (compact `n`)
    IdentityInfo,
    /// `Retry-After`
    RetryAfter,
    /// `Warning`
    Warning,
    /// `Date`
    Date,
    /// `Timestamp`
    Timestamp,
    /// `Privacy`
    Privacy,
    /// `Subscription-State`
    SubscriptionState,
    /// `Min-SE`
    MinSe,
    /// `RSeq`
    Rseq,
    /// `RAck`
    Rack,
    /// Any other header (look at its name).
    Other,
}

impl HeaderKind {
    /// Canonical header name (empty for `Other`).
    pub fn name(self) -> &'static str {
        match self {
            HeaderKind::Via => "Via",
            HeaderKind::From => "From",
            HeaderKind::To => "To",
            HeaderKind::CallId => "Call-ID",
            HeaderKind::CSeq => "CSeq",
            HeaderKind::Contact => "Contact",
            HeaderKind::MaxForwards => "Max-Forwards",
            HeaderKind::ContentLength => "Content-Length",
            HeaderKind::ContentType => "Content-Type",
            HeaderKind::ContentEncoding => "Content-Encoding",
            HeaderKind::Expires => "Expires",
            HeaderKind::MinExpires => "Min-Expires",
            HeaderKind::Route => "Route",
            HeaderKind::RecordRoute => "Record-Route",
            HeaderKind::Path => "Path",
            HeaderKind::Require => "Require",
            HeaderKind::ProxyRequire => "Proxy-Require",
            HeaderKind::Supported => "Supported",
            HeaderKind::Unsupported => "Unsupported",
            HeaderKind::Allow => "Allow",
            HeaderKind::Accept => "Accept",
            HeaderKind::AcceptEncoding => "Accept-Encoding",
            HeaderKind::AcceptLanguage => "Accept-Language",
            HeaderKind::Authorization => "Authorization",
            HeaderKind::ProxyAuthorization => "Proxy-Authorization",
            HeaderKind::WwwAuthenticate => "WWW-Authenticate",
            HeaderKind::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderKind::AuthenticationInfo => "Authentication-Info",
            HeaderKind::UserAgent => "User-Agent",
            HeaderKind::Server => "Server",
            HeaderKind::Subject => "Subject",
            HeaderKind::Event => "Event",
            HeaderKind::AllowEvents => "Allow-Events",
            HeaderKind::ReferTo => "Refer-To",
            HeaderKind::ReferredBy => "Referred-By",
            HeaderKind::SessionExpires => "Session-Expires",
            HeaderKind::Identity => "Identity",
            HeaderKind::AcceptContact => "Accept-Contact",
            HeaderKind::RejectContact => "Reject-Contact",
            HeaderKind::RequestDisposition => "Request-Disposition",
            HeaderKind::IdentityInfo => "Identity-Info",
            HeaderKind::RetryAfter => "Retry-After",
            HeaderKind::Warning => "Warning",
            HeaderKind::Date => "Date",
            HeaderKind::Timestamp => "Timestamp",
            HeaderKind::Privacy => "Privacy",
            HeaderKind::SubscriptionState => "Subscription-State",
            HeaderKind::MinSe => "Min-SE",
            HeaderKind::Rseq => "RSeq",
            HeaderKind::Rack => "RAck",
            HeaderKind::Other => "",
        }
    }

    /// Kind of a header name (any case, long or compact form).
    #[inline]
    pub fn from_name(name: &[u8]) -> HeaderKind {
        #[cfg(test)]
        if !fast_paths() {
            return from_name_chain(name);
        }
        if name.len() > 24 {
            return HeaderKind::Other;
        }
        let mut pad = [0u8; 24];
        pad[..name.len()].copy_from_slice(name);
        classify(&pad, name.len())
    }

    /// [`HeaderKind::from_name`] of `buf[s..e]`, reading whole words from `buf` when it
    /// extends 24 bytes past `s` (always inside a message: the value and CRLF follow the name).
    #[inline]
    pub(crate) fn from_name_in(buf: &[u8], s: usize, e: usize) -> HeaderKind {
        let n = e - s;
        if n > 24 {
            return HeaderKind::Other;
        }
        match buf.get(s..s + 24).filter(|_| fast_paths()) {
            Some(w) => classify(w.try_into().unwrap_or(&[0; 24]), n),
            None => HeaderKind::from_name(&buf[s..e]),
        }
    }

    /// For a header line starting at `s`: the first `:` among the 24 bytes from `s` (found a
    /// word at a time) when no LF comes before it, and the kind of the name right before it
    /// (no white space between); needs `buf` to extend 24 bytes past `s`. None otherwise: the
    /// caller searches the usual way.
    #[inline(always)]
    pub(crate) fn colon_and_kind(buf: &[u8], s: usize) -> Option<(usize, HeaderKind)> {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        if !fast_paths() {
            return None;
        }
        let pad: &[u8; 24] = buf.get(s..s + 24)?.try_into().ok()?;
        for k in 0..3 {
            let w = u64::from_le_bytes(pad[k * 8..k * 8 + 8].try_into().unwrap_or([0; 8]));
            let x = w ^ (LO * u64::from(b':'));
            let y = w ^ (LO * u64::from(b'\n'));
            let t = (x.wrapping_sub(LO) & !x | y.wrapping_sub(LO) & !y) & HI;
            if t != 0 {
                let n = k * 8 + (t.trailing_zeros() / 8) as usize;
                return (pad[n] == b':').then(|| (s + n, classify(pad, n)));
            }
        }
        None
    }
}

/// `b[k*8..k*8+8]` as a little-endian word, for the name constants below.
const fn word(b: &[u8], k: usize) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < 8 {
        let j = k * 8 + i;
        if j < b.len() {
            w |= (b[j] as u64) << (8 * i);
        }
        i += 1;
    }
    w
}

/// 0x20 in the bytes of word `k` of `b` that are `-`: a byte that is `-` once OR-ed with 0x20
/// is `-` or CR, and only the `-` has that bit itself.
const fn dashes(b: &[u8], k: usize) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < 8 {
        let j = k * 8 + i;
        if j < b.len() && b[j] == b'-' {
            w |= 0x20 << (8 * i);
        }
        i += 1;
    }
    w
}

/// The low `n` bytes of a word (n ≤ 8).
const MASKS: [u64; 9] = [
    0,
    0xff,
    0xffff,
    0xff_ffff,
    0xffff_ffff,
    0xff_ffff_ffff,
    0xffff_ffff_ffff,
    0xff_ffff_ffff_ffff,
    u64::MAX,
];

/// Every byte OR 0x20: ASCII letters to lower case, `-` stays `-` (and CR becomes `-`, which
/// [`dashes`] rules out).
const FOLD: u64 = 0x2020_2020_2020_2020;

/// The kind of the `n`-byte name at the start of `pad` (bytes after it ignored), by length and
/// up to three case-folded words compared with constants. Known names are letters and `-`
/// only, for which OR 0x20 is an exact case-insensitive comparison once CR is ruled out.
#[inline(always)]
fn classify(pad: &[u8; 24], n: usize) -> HeaderKind {
    let rd = |k: usize| u64::from_le_bytes(pad[k * 8..k * 8 + 8].try_into().unwrap_or([0; 8]));
    let raw0 = rd(0);
    let w0 = (raw0 | FOLD) & MASKS[n.min(8)];
    // Within one length the first eight bytes of the known names differ, so the first word
    // picks the candidate and the other words only confirm it.
    macro_rules! pick {
        ($($name:literal => $kind:ident),* $(,)?) => {{
            $(
                if w0 == const { word($name, 0) } {
                    let ok = |k: usize, raw: u64| {
                        let m = MASKS[n.saturating_sub(8 * k).min(8)];
                        (raw | FOLD) & m == const { [word($name, 0), word($name, 1), word($name, 2)] }[k]
                            && raw & const { [dashes($name, 0), dashes($name, 1), dashes($name, 2)] }[k]
                                == const { [dashes($name, 0), dashes($name, 1), dashes($name, 2)] }[k]
                    };
                    return if ok(0, raw0) && (n <= 8 || ok(1, rd(1))) && (n <= 16 || ok(2, rd(2))) {
                        HeaderKind::$kind
                    } else {
                        HeaderKind::Other
                    };
                }
            )*
            HeaderKind::Other
        }};
    }
    match n {
        1 => match (raw0 as u8).to_ascii_lowercase() {
            b'v' => HeaderKind::Via,
            b'f' => HeaderKind::From,
            b't' => HeaderKind::To,
            b'i' => HeaderKind::CallId,
            b'm' => HeaderKind::Contact,
            b'l' => HeaderKind::ContentLength,
            b'c' => HeaderKind::ContentType,
            b'e' => HeaderKind::ContentEncoding,
            b'k' => HeaderKind::Supported,
            b's' => HeaderKind::Subject,
            b'o' => HeaderKind::Event,
            b'u' => HeaderKind::AllowEvents,
            b'r' => HeaderKind::ReferTo,
            b'b' => HeaderKind::ReferredBy,
            b'x' => HeaderKind::SessionExpires,
            b'y' => HeaderKind::Identity,
            b'a' => HeaderKind::AcceptContact,
            b'j' => HeaderKind::RejectContact,
            b'd' => HeaderKind::RequestDisposition,
            b'n' => HeaderKind::IdentityInfo,
            _ => HeaderKind::Other,
        },
        2 => pick!(b"to" => To),
        3 => pick!(b"via" => Via),
        4 => pick!(b"from" => From, b"cseq" => CSeq, b"path" => Path, b"date" => Date,
            b"rseq" => Rseq, b"rack" => Rack),
        5 => pick!(b"route" => Route, b"allow" => Allow, b"event" => Event),
        6 => pick!(b"accept" => Accept, b"server" => Server, b"min-se" => MinSe),
        7 => pick!(b"call-id" => CallId, b"contact" => Contact, b"expires" => Expires,
            b"require" => Require, b"subject" => Subject, b"warning" => Warning,
            b"privacy" => Privacy),
        8 => pick!(b"refer-to" => ReferTo, b"identity" => Identity),
        9 => pick!(b"supported" => Supported, b"timestamp" => Timestamp),
        10 => pick!(b"user-agent" => UserAgent),
        11 => pick!(b"min-expires" => MinExpires, b"unsupported" => Unsupported,
            b"referred-by" => ReferredBy, b"retry-after" => RetryAfter),
        12 => pick!(b"max-forwards" => MaxForwards, b"content-type" => ContentType,
            b"record-route" => RecordRoute, b"allow-events" => AllowEvents),
        13 => pick!(b"proxy-require" => ProxyRequire, b"authorization" => Authorization,
            b"identity-info" => IdentityInfo),
        14 => pick!(b"content-length" => ContentLength, b"accept-contact" => AcceptContact,
            b"reject-contact" => RejectContact),
        15 => pick!(b"accept-encoding" => AcceptEncoding, b"accept-language" => AcceptLanguage,
            b"session-expires" => SessionExpires),
        16 => pick!(b"content-encoding" => ContentEncoding, b"www-authenticate" => WwwAuthenticate),
        18 => pick!(b"proxy-authenticate" => ProxyAuthenticate,
            b"subscription-state" => SubscriptionState),
        19 => pick!(b"proxy-authorization" => ProxyAuthorization,
            b"authentication-info" => AuthenticationInfo,
            b"request-disposition" => RequestDisposition),
        _ => HeaderKind::Other,
    }
}

/// The general path of [`HeaderKind::from_name`] (test builds only: see
/// [`fast_paths`](super::text::fast_paths)): name lower-cased, then compared by length, one
/// name after another, as the parser did before the word classifier [`classify`].
#[cfg(test)]
fn from_name_chain(name: &[u8]) -> HeaderKind {
    let mut low = [0u8; 24];
    if name.len() > low.len() {
        return HeaderKind::Other;
    }
    for (d, s) in low.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let low = &low[..name.len()];
    match name.len() {
        1 => match low[0] {
            b'v' => HeaderKind::Via,
            b'f' => HeaderKind::From,
            b't' => HeaderKind::To,
            b'i' => HeaderKind::CallId,
            b'm' => HeaderKind::Contact,
            b'l' => HeaderKind::ContentLength,
            b'c' => HeaderKind::ContentType,
            b'e' => HeaderKind::ContentEncoding,
            b'k' => HeaderKind::Supported,
            b's' => HeaderKind::Subject,
            b'o' => HeaderKind::Event,
            b'u' => HeaderKind::AllowEvents,
            b'r' => HeaderKind::ReferTo,
            b'b' => HeaderKind::ReferredBy,
            b'x' => HeaderKind::SessionExpires,
            b'y' => HeaderKind::Identity,
            b'a' => HeaderKind::AcceptContact,
            b'j' => HeaderKind::RejectContact,
            b'd' => HeaderKind::RequestDisposition,
            b'n' => HeaderKind::IdentityInfo,
            _ => HeaderKind::Other,
        },
        2 => match low {
            b"to" => HeaderKind::To,
            _ => HeaderKind::Other,
        },
        3 => match low {
            b"via" => HeaderKind::Via,
            _ => HeaderKind::Other,
        },
        4 => match low {
            b"from" => HeaderKind::From,
            b"cseq" => HeaderKind::CSeq,
            b"path" => HeaderKind::Path,
            b"date" => HeaderKind::Date,
            b"rseq" => HeaderKind::Rseq,
            b"rack" => HeaderKind::Rack,
            _ => HeaderKind::Other,
        },
        5 => match low {
            b"route" => HeaderKind::Route,
            b"allow" => HeaderKind::Allow,
            b"event" => HeaderKind::Event,
            _ => HeaderKind::Other,
        },
        6 => match low {
            b"accept" => HeaderKind::Accept,
            b"server" => HeaderKind::Server,
            b"min-se" => HeaderKind::MinSe,
            _ => HeaderKind::Other,
        },
        7 => match low {
            b"call-id" => HeaderKind::CallId,
            b"contact" => HeaderKind::Contact,
            b"expires" => HeaderKind::Expires,
            b"require" => HeaderKind::Require,
            b"subject" => HeaderKind::Subject,
            b"warning" => HeaderKind::Warning,
            b"privacy" => HeaderKind::Privacy,
            _ => HeaderKind::Other,
        },
        8 => match low {
            b"refer-to" => HeaderKind::ReferTo,
            b"identity" => HeaderKind::Identity,
            _ => HeaderKind::Other,
        },
        9 => match low {
            b"supported" => HeaderKind::Supported,
            b"timestamp" => HeaderKind::Timestamp,
            _ => HeaderKind::Other,
        },
        10 => match low {
            b"user-agent" => HeaderKind::UserAgent,
            _ => HeaderKind::Other,
        },
        11 => match low {
            b"min-expires" => HeaderKind::MinExpires,
            b"unsupported" => HeaderKind::Unsupported,
            b"referred-by" => HeaderKind::ReferredBy,
            b"retry-after" => HeaderKind::RetryAfter,
            _ => HeaderKind::Other,
        },
        12 => match low {
            b"max-forwards" => HeaderKind::MaxForwards,
            b"content-type" => HeaderKind::ContentType,
            b"record-route" => HeaderKind::RecordRoute,
            b"allow-events" => HeaderKind::AllowEvents,
            _ => HeaderKind::Other,
        },
        13 => match low {
            b"proxy-require" => HeaderKind::ProxyRequire,
            b"authorization" => HeaderKind::Authorization,
            b"identity-info" => HeaderKind::IdentityInfo,
            _ => HeaderKind::Other,
        },
        14 => match low {
            b"content-length" => HeaderKind::ContentLength,
            b"accept-contact" => HeaderKind::AcceptContact,
            b"reject-contact" => HeaderKind::RejectContact,
            _ => HeaderKind::Other,
        },
        15 => match low {
            b"accept-encoding" => HeaderKind::AcceptEncoding,
            b"accept-language" => HeaderKind::AcceptLanguage,
            b"session-expires" => HeaderKind::SessionExpires,
            _ => HeaderKind::Other,
        },
        16 => match low {
            b"content-encoding" => HeaderKind::ContentEncoding,
            b"www-authenticate" => HeaderKind::WwwAuthenticate,
            _ => HeaderKind::Other,
        },
        18 => match low {
            b"proxy-authenticate" => HeaderKind::ProxyAuthenticate,
            b"subscription-state" => HeaderKind::SubscriptionState,
            _ => HeaderKind::Other,
        },
        19 => match low {
            b"proxy-authorization" => HeaderKind::ProxyAuthorization,
            b"authentication-info" => HeaderKind::AuthenticationInfo,
            b"request-disposition" => HeaderKind::RequestDisposition,
            _ => HeaderKind::Other,
        },
        _ => HeaderKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in [
            HeaderKind::Via,
            HeaderKind::CallId,
            HeaderKind::WwwAuthenticate,
            HeaderKind::MinSe,
        ] {
            assert_eq!(HeaderKind::from_name(k.name().as_bytes()), k);
            assert_eq!(
                HeaderKind::from_name(k.name().to_ascii_uppercase().as_bytes()),
                k
            );
        }
        assert_eq!(HeaderKind::from_name(b"I"), HeaderKind::CallId);
        assert_eq!(HeaderKind::from_name(b"m"), HeaderKind::Contact);
        assert_eq!(HeaderKind::from_name(b"C%6Fntact"), HeaderKind::Other);
        assert_eq!(Method::from_bytes(b"REGISTER"), Method::Register);
        assert_eq!(
            Method::from_bytes(b"register"),
            Method::Extension(b"register")
        );
        assert_eq!(
            Method::from_bytes(b"RE%47IST%45R").as_bytes(),
            b"RE%47IST%45R"
        );
    }

    /// The word classifier agrees with the old comparison chain on every known name in three
    /// cases, on every name with one byte replaced by any byte value, on all 1- and 2-byte
    /// names, and read in place from a buffer (`from_name_in`) as from a slice.
    #[test]
    fn classifier_matches_chain() {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut k = 0u32;
        loop {
            let kind = ALL.get(k as usize).copied();
            let Some(kind) = kind else { break };
            let n = kind.name().as_bytes().to_vec();
            names.push(n.to_ascii_uppercase());
            names.push(
                n.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if i % 2 == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            *c
                        }
                    })
                    .collect(),
            );
            for i in 0..n.len() {
                for b in 0..=255u8 {
                    let mut m = n.clone();
                    m[i] = b;
                    names.push(m);
                }
            }
            names.push(n);
            k += 1;
        }
        for a in 0..=255u8 {
            names.push(vec![a]);
            for b in 0..=255u8 {
                names.push(vec![a, b]);
            }
        }
        names.push(b"proxy-authorization-x".to_vec());
        names.push(vec![b'a'; 25]);
        names.push(Vec::new());
        for n in &names {
            let want = from_name_chain(n);
            assert_eq!(
                HeaderKind::from_name(n),
                want,
                "{:?}",
                String::from_utf8_lossy(n)
            );
            let mut buf = n.clone();
            buf.extend_from_slice(b": value that is long enough\r\n");
            assert_eq!(HeaderKind::from_name_in(&buf, 0, n.len()), want);
            assert_eq!(HeaderKind::from_name_in(n, 0, n.len()), want);
        }
    }

    const ALL: &[HeaderKind] = &[
        HeaderKind::Via,
        HeaderKind::From,
        HeaderKind::To,
        HeaderKind::CallId,
        HeaderKind::CSeq,
        HeaderKind::Contact,
        HeaderKind::MaxForwards,
        HeaderKind::ContentLength,
        HeaderKind::ContentType,
        HeaderKind::ContentEncoding,
        HeaderKind::Expires,
        HeaderKind::MinExpires,
        HeaderKind::Route,
        HeaderKind::RecordRoute,
        HeaderKind::Path,
        HeaderKind::Require,
        HeaderKind::ProxyRequire,
        HeaderKind::Supported,
        HeaderKind::Unsupported,
        HeaderKind::Allow,
        HeaderKind::Accept,
        HeaderKind::AcceptEncoding,
        HeaderKind::AcceptLanguage,
        HeaderKind::Authorization,
        HeaderKind::ProxyAuthorization,
        HeaderKind::WwwAuthenticate,
        HeaderKind::ProxyAuthenticate,
        HeaderKind::AuthenticationInfo,
        HeaderKind::UserAgent,
        HeaderKind::Server,
        HeaderKind::Subject,
        HeaderKind::Event,
        HeaderKind::AllowEvents,
        HeaderKind::ReferTo,
        HeaderKind::ReferredBy,
        HeaderKind::SessionExpires,
        HeaderKind::Identity,
        HeaderKind::AcceptContact,
        HeaderKind::RejectContact,
        HeaderKind::RequestDisposition,
        HeaderKind::IdentityInfo,
        HeaderKind::RetryAfter,
        HeaderKind::Warning,
        HeaderKind::Date,
        HeaderKind::Timestamp,
        HeaderKind::Privacy,
        HeaderKind::SubscriptionState,
        HeaderKind::MinSe,
        HeaderKind::Rseq,
        HeaderKind::Rack,
    ];
}
