//! Command line: run, check-config, params.

pub fn main() -> i32 {
    0
}
