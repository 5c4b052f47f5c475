//! The per-core shard event loop and the mailboxes between shards.
