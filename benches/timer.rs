//! Placeholder: replaced by the module's criterion benches.
fn main() {}
