//! Start the shards; graceful shutdown.

use crate::config::Config;

/// Run the server with `config` until SIGTERM/SIGINT. Called by `sipshard run`.
pub fn run_main(_config: Config) -> Result<(), String> {
    Err("server not built yet".into())
}
