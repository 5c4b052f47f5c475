//! Methods and header kinds.

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
}
