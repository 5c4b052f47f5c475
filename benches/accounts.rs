//! Loading the account table: a 100 000-row CSV generated in memory (90 % digest accounts, 10 %
//! ip / ip_port gateways). Every digest row costs two hash computations (HA1 for MD5 and for
//! SHA-256), so these figures include about 180 000 hashes.
//!
//! Run briefly on a shared machine:
//! `cargo bench --bench accounts -- --warm-up-time 1 --measurement-time 5`

use std::fmt::Write as _;
use std::io::Write as _;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sipshard::config::RegistrarConfig;
use sipshard::registrar::accounts::Accounts;

const ROWS: u32 = 100_000;

/// `ROWS` accounts: digest rows `1000000+i,pw-i`, every tenth an ip (every odd tenth) or an
/// ip_port gateway with a distinct address; a header and a few comments.
fn generate(rows: u32) -> String {
    let mut s = String::with_capacity(rows as usize * 40);
    s.push_str("user,password,allowed,auth_mode\n# generated\n");
    for i in 0..rows {
        let user = 1_000_000 + i;
        let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        match i % 20 {
            0 => writeln!(s, "{user},,10.{a}.{b}.{c},ip"),
            10 => writeln!(s, "{user},,10.{a}.{b}.{c}:5060,ip_port"),
            _ => writeln!(s, "{user},\"pw-{i}\""),
        }
        .unwrap();
    }
    s
}

fn load(c: &mut Criterion) {
    let text = generate(ROWS);
    let dir = std::env::temp_dir().join(format!("sipshard-bench-accounts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("accounts.csv");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let cfg = RegistrarConfig {
        accounts_file: Some(path.to_string_lossy().into_owned()),
        ..RegistrarConfig::default()
    };

    let mut g = c.benchmark_group("accounts");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(ROWS)));
    g.bench_function("parse_csv_100k", |b| {
        b.iter(|| {
            let v = Accounts::parse_csv(black_box(&text), "sipshard", "bench.csv").unwrap();
            assert_eq!(v.len(), ROWS as usize);
            v
        })
    });
    g.bench_function("build_100k_from_file", |b| {
        b.iter(|| {
            let t = Accounts::build(black_box(&cfg)).unwrap();
            assert_eq!(t.len(), ROWS as usize);
            t
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, load);
criterion_main!(benches);
