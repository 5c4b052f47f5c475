//! Start the shards; graceful shutdown.
