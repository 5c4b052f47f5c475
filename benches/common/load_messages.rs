//! The messages of the load tests as the server sees them (sipp's `tuning/register*.xml`,
//! `tuning/options.xml`, and `sipp -sn uac` / `-sn uas` through the proxy), with typical values
//! filled in; and the three messages of the original parser benches. Shared by `benches/sip.rs`,
//! `examples/parse_cost.rs` and the parser's differential test (`src/sip/parse_diff_tests.rs`).
#![allow(dead_code)]

/// (name, message) for every kind of message in the load tests.
pub const LOAD_MESSAGES: &[(&str, &[u8])] = &[
    ("register", REGISTER),
    ("register_auth", REGISTER_AUTH),
    ("options", OPTIONS),
    ("invite_sdp", INVITE),
    ("100", TRYING),
    ("180", RINGING),
    ("200_invite_sdp", OK_INVITE),
    ("ack", ACK),
    ("bye", BYE),
    ("200_bye", OK_BYE),
];

/// The original parser benches' messages, by name.
pub const BENCH_MESSAGES: &[(&str, &[u8])] = &[
    ("bench_invite_605", INVITE_605),
    ("bench_register_auth_635", REGISTER_AUTH_635),
    ("bench_200ok_510", OK200_510),
];

pub const REGISTER: &[u8] = b"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:16000;branch=z9hG4bK-23456-1-0\r\n\
Max-Forwards: 70\r\n\
From: <sip:u000123@127.0.0.1>;tag=23456SIPpTag001\r\n\
To: <sip:u000123@127.0.0.1>\r\n\
Call-ID: 1-23456@127.0.0.1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:u000123@127.0.0.1:16000>\r\n\
Expires: 3600\r\n\
User-Agent: sipshard-load\r\n\
Content-Length: 0\r\n\
\r\n";

pub const REGISTER_AUTH: &[u8] = b"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:16000;branch=z9hG4bK-23456-1-2\r\n\
Max-Forwards: 70\r\n\
From: <sip:u000123@127.0.0.1>;tag=23456SIPpTag001\r\n\
To: <sip:u000123@127.0.0.1>\r\n\
Call-ID: 1-23456@127.0.0.1\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:u000123@127.0.0.1:16000>\r\n\
Expires: 3600\r\n\
Authorization: Digest username=\"u000123\",realm=\"sipshard\",cnonce=\"6b8b4567\",nc=00000001,qop=auth,uri=\"sip:127.0.0.1:5060\",nonce=\"AAABmq3xZ0AAAAAAaF9sXw4qZ2RjYWJlZmdoaWprbG1u\",response=\"4f2c1d0e9b8a7f6e5d4c3b2a19080706\",algorithm=MD5\r\n\
User-Agent: sipshard-load\r\n\
Content-Length: 0\r\n\
\r\n";

pub const OPTIONS: &[u8] = b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:16000;branch=z9hG4bK-23456-1-0\r\n\
Max-Forwards: 70\r\n\
From: <sip:load@127.0.0.1:16000>;tag=23456SIPpTag001\r\n\
To: <sip:127.0.0.1:5060>\r\n\
Call-ID: 1-23456@127.0.0.1\r\n\
CSeq: 1 OPTIONS\r\n\
Contact: <sip:load@127.0.0.1:16000>\r\n\
Accept: application/sdp\r\n\
User-Agent: sipshard-load\r\n\
Content-Length: 0\r\n\
\r\n";

pub const INVITE: &[u8] = b"INVITE sip:15551234567@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:23000;branch=z9hG4bK-31337-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:23000>;tag=31337SIPpTag001\r\n\
To: 15551234567 <sip:15551234567@127.0.0.1:5060>\r\n\
Call-ID: 1-31337@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:23000\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// Responses as the proxy receives them from the gateway: its own Via on top.
pub const TRYING: &[u8] = b"SIP/2.0 100 Trying\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-ss-0-1a2b3c4d;rport=5060\r\n\
Via: SIP/2.0/UDP 127.0.0.1:23000;branch=z9hG4bK-31337-1-0;received=127.0.0.1;rport=23000\r\n\
From: sipp <sip:sipp@127.0.0.1:23000>;tag=31337SIPpTag001\r\n\
To: 15551234567 <sip:15551234567@127.0.0.1:5060>\r\n\
Call-ID: 1-31337@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";

pub const RINGING: &[u8] = b"SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-ss-0-1a2b3c4d;rport=5060\r\n\
Via: SIP/2.0/UDP 127.0.0.1:23000;branch=z9hG4bK-31337-1-0;received=127.0.0.1;rport=23000\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
From: sipp <sip:sipp@127.0.0.1:23000>;tag=31337SIPpTag001\r\n\
To: 15551234567 <sip:15551234567@127.0.0.1:5060>;tag=4242SIPpTag011\r\n\
Call-ID: 1-31337@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:127.0.0.1:5193;transport=UDP>\r\n\
Content-Length: 0\r\n\
\r\n";

pub const OK_INVITE: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-ss-0-1a2b3c4d;rport=5060\r\n\
Via: SIP/2.0/UDP 127.0.0.1:23000;branch=z9hG4bK-31337-1-0;received=127.0.0.1;rport=23000\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
From: sipp <sip:sipp@127.0.0.1:23000>;tag=31337SIPpTag001\r\n\
To: 15551234567 <sip:15551234567@127.0.0.1:5060>;tag=4242SIPpTag011\r\n\
Call-ID: 1-31337@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:127.0.0.1:5193;transport=UDP>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

pub const ACK: &[u8] = b"ACK sip:127.0.0.1:5193;transport=UDP SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:23000;branch=z9hG4bK-31337-1-5\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\n\
From: sipp <sip:sipp@127.0.0.1:23000>;tag=31337SIPpTag001\r\n\
To: 15551234567 <sip:15551234567@127.0.0.1:5060>;tag=4242SIPpTag011\r\n\
Call-ID: 1-31337@127.0.0.1\r\n\
CSeq: 1 ACK\r\n\
Contact: sip:sipp@127.0.0.1:23000\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Length: 0\r\n\
\r\n";

pub const BYE: &[u8] = b"BYE sip:127.0.0.1:5193;transport=UDP SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:23000;branch=z9hG4bK-31337-1-7\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\n\
From: sipp <sip:sipp@127.0.0.1:23000>;tag=31337SIPpTag001\r\n\
To: 15551234567 <sip:15551234567@127.0.0.1:5060>;tag=4242SIPpTag011\r\n\
Call-ID: 1-31337@127.0.0.1\r\n\
CSeq: 2 BYE\r\n\
Contact: sip:sipp@127.0.0.1:23000\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Length: 0\r\n\
\r\n";

pub const OK_BYE: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-ss-0-5e6f7a8b;rport=5060\r\n\
Via: SIP/2.0/UDP 127.0.0.1:23000;branch=z9hG4bK-31337-1-7;received=127.0.0.1;rport=23000\r\n\
From: sipp <sip:sipp@127.0.0.1:23000>;tag=31337SIPpTag001\r\n\
To: 15551234567 <sip:15551234567@127.0.0.1:5060>;tag=4242SIPpTag011\r\n\
Call-ID: 1-31337@127.0.0.1\r\n\
CSeq: 2 BYE\r\n\
Contact: <sip:127.0.0.1:5193;transport=UDP>\r\n\
Content-Length: 0\r\n\
\r\n";

/// The criterion benches' INVITE with SDP (605 bytes).
pub const INVITE_605: &[u8] =
    b"INVITE sip:+15551234567@gw1.example.net:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK-524287-1---c1a2b3c4d5e6f708;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:+15557654321@198.51.100.23:5060;transport=udp>\r\n\
To: <sip:+15551234567@gw1.example.net>\r\n\
From: \"Caller Name\" <sip:+15557654321@pbx.example.com>;tag=8f2b3c41\r\n\
Call-ID: 7d9a1c0e5b3f4a2d8e6c1b0a9f8e7d6c@198.51.100.23\r\n\
CSeq: 1 INVITE\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 110\r\n\
\r\n\
v=0\r\n\
o=- 3912003 3912003 IN IP4 198.51.100.23\r\n\
s=-\r\n\
c=IN IP4 198.51.100.23\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 8\r\n\
";

/// The criterion benches' REGISTER with Authorization (635 bytes).
pub const REGISTER_AUTH_635: &[u8] = b"REGISTER sip:registrar.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.44:5062;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:1001@registrar.example.com>\r\n\
From: <sip:1001@registrar.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1827 REGISTER\r\n\
Contact: <sip:1001@192.0.2.44:5062;transport=udp>;expires=3600\r\n\
Authorization: Digest username=\"1001\", realm=\"registrar.example.com\", nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", uri=\"sip:registrar.example.com\", response=\"dfe56131d1958046689d83306477ecc\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n\
User-Agent: ExamplePhone/1.0\r\n\
Content-Length: 0\r\n\
\r\n";

/// The criterion benches' 200 OK with two Vias and a Record-Route (510 bytes).
pub const OK200_510: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-sipshard-0-1a2b3c;received=203.0.113.10;rport=5060\r\n\
Via: SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK-524287-1---c1a2b3c4d5e6f708;rport=5060\r\n\
Record-Route: <sip:203.0.113.10;lr>\r\n\
From: \"Caller Name\" <sip:+15557654321@pbx.example.com>;tag=8f2b3c41\r\n\
To: <sip:+15551234567@gw1.example.net>;tag=as5d7f9a1b\r\n\
Call-ID: 7d9a1c0e5b3f4a2d8e6c1b0a9f8e7d6c@198.51.100.23\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+15551234567@192.0.2.200:5060>\r\n\
Content-Length: 0\r\n\
\r\n";
