//! Parser and builder benchmarks: a ~600-byte INVITE, a REGISTER with Authorization, a 200 OK,
//! and building a response to the INVITE. Digest: making a nonce, and verifying credentials as
//! the registrar does (nonce check + response from the stored HA1 + constant-time compare).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipshard::sip::digest::{
    ha1, response, response_matches, write_authorization, write_challenge, Algorithm, Credentials,
    NonceCheck, NonceKey, NONCE_LEN,
};
use sipshard::sip::{parse_auth, write_response, HeaderKind, Parser, ResponseOptions};

#[path = "common/load_messages.rs"]
mod load_messages;
use load_messages::{INVITE_605, LOAD_MESSAGES, OK200_510, REGISTER_AUTH_635};

const INVITE: &[u8] = INVITE_605;
const REGISTER: &[u8] = REGISTER_AUTH_635;
const OK200: &[u8] = OK200_510;

fn bench(c: &mut Criterion) {
    let mut p = Parser::new();
    for msg in [INVITE, REGISTER, OK200] {
        let m = p.parse(msg).unwrap();
        assert_eq!(m.validate(), Ok(()), "bench input must be valid");
        assert_eq!(m.body().len() as u32, m.content_length().unwrap());
    }
    let mut g = c.benchmark_group("sip");

    g.throughput(Throughput::Bytes(INVITE.len() as u64));
    g.bench_function(format!("parse_invite_{}B", INVITE.len()), |b| {
        b.iter(|| {
            let m = p.parse(black_box(INVITE)).unwrap();
            black_box(m.validate().is_ok());
            black_box(m.top_via().map(|v| v.branch()));
        })
    });

    g.throughput(Throughput::Bytes(REGISTER.len() as u64));
    g.bench_function(format!("parse_register_auth_{}B", REGISTER.len()), |b| {
        b.iter(|| {
            let m = p.parse(black_box(REGISTER)).unwrap();
            black_box(m.validate().is_ok());
            let a = parse_auth(m.header(HeaderKind::Authorization).unwrap()).unwrap();
            black_box(a.digest.response);
        })
    });

    g.throughput(Throughput::Bytes(OK200.len() as u64));
    g.bench_function(format!("parse_200ok_{}B", OK200.len()), |b| {
        b.iter(|| {
            let m = p.parse(black_box(OK200)).unwrap();
            black_box(m.validate().is_ok());
        })
    });

    // The messages of the load tests (parse + validate, what the dispatcher does first).
    for (name, msg) in LOAD_MESSAGES {
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(format!("parse_load_{name}"), |b| {
            b.iter(|| {
                let m = p.parse(black_box(msg)).unwrap();
                black_box(m.validate().is_ok());
            })
        });
    }

    let mut out = Vec::with_capacity(2048);
    let src = "198.51.100.99:40000".parse().unwrap();
    let extra: &[(&str, &[u8])] = &[("Server", b"sipshard")];
    g.throughput(Throughput::Elements(1));
    g.bench_function("build_180_to_invite", |b| {
        b.iter(|| {
            let m = p.parse(INVITE).unwrap();
            let opts = ResponseOptions {
                source: Some(src),
                to_tag: Some(b"a1b2c3d4"),
                headers: extra,
                body: b"",
            };
            write_response(&mut out, &m, 180, "Ringing", &opts);
            black_box(out.len());
        })
    });
    g.finish();
}

/// Registrar-side digest work per request. The Authorization value is made by our own client
/// side (so it verifies) and parsed once outside the loop: parsing is `parse_register_auth`.
fn bench_digest(c: &mut Criterion) {
    let key = NonceKey::new([0x5a; 32]);
    let now = 1_763_700_000_000u64;
    let mut g = c.benchmark_group("digest");
    g.throughput(Throughput::Elements(1));

    for (name, alg) in [
        ("verify_md5", Algorithm::Md5),
        ("verify_sha256", Algorithm::Sha256),
    ] {
        let mut nonce = [0u8; NONCE_LEN];
        key.make(now, 1, &mut nonce);
        let mut ch = Vec::new();
        write_challenge(&mut ch, alg, b"registrar.example.com", &nonce, false);
        let challenge = parse_auth(&ch).unwrap();
        let creds = Credentials {
            username: b"1001",
            password: b"s3cr3t!",
            method: b"REGISTER",
            digest_uri: b"sip:registrar.example.com",
            cnonce: b"0a4f113b",
            nc: 1,
        };
        let mut auth = Vec::new();
        write_authorization(&mut auth, &challenge, &creds).unwrap();
        let d = parse_auth(&auth).unwrap().digest;
        let stored = ha1(alg, b"1001", b"registrar.example.com", b"s3cr3t!");
        let (n, uri, resp) = (d.nonce.unwrap(), d.uri.unwrap(), d.response.unwrap());
        let qop = Some((d.nc.unwrap(), d.cnonce.unwrap()));
        g.bench_function(name, |b| {
            b.iter(|| {
                let fresh = key.check(black_box(n), now + 1_000, 300_000) == NonceCheck::Fresh;
                let expected = response(alg, &stored, b"REGISTER", black_box(uri), n, qop);
                black_box(fresh && response_matches(&expected, black_box(resp)))
            })
        });
    }

    let mut out = [0u8; NONCE_LEN];
    let mut salt = 0u64;
    g.bench_function("make_nonce", |b| {
        b.iter(|| {
            salt = salt.wrapping_add(1);
            key.make(black_box(now), salt, &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_digest);
criterion_main!(benches);
