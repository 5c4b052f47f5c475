//! Batch UDP I/O and socket setup.
//!
//! Must not: import any other sipshard module.
