//! SIP messages: zero-copy parser, URIs, header values, builder, digest auth.
//!
//! Must not: import any other sipshard module; allocate per message in steady state.
