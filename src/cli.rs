//! Command line: run, check-config, params, ctl.
//!
//! Owns: argument parsing, loading the config for each command, logging set-up for `run`, exit
//! codes. Must not: do any server work itself; `run` hands the config to
//! [`crate::server::run_main`].
//!
//! Exit codes: 0 success; 1 the server failed (`run_main` returned an error); 2 bad config or bad
//! command line.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigErrors, Override, PARAMS};

/// Exit status: a config or command-line error.
pub const EXIT_CONFIG: i32 = 2;
/// Exit status: the server stopped with an error.
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "sipshard",
    version,
    about = "High-performance sharded SIP signaling server",
    long_about = "High-performance sharded SIP signaling server.\n\n\
                  With no command, runs the server on the embedded default config \
                  (listening on 127.0.0.1:5060)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default command).
    Run(RunArgs),
    /// Validate a config file: prints `FILE: OK` or every error (exit 0 or 2).
    CheckConfig {
        /// The TOML config file to check.
        file: PathBuf,
    },
    /// Print every parameter: key, VOS3000 name, default, range and the value in force.
    Params {
        /// Config file whose values to show (default: the embedded default config).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Talk to a running server's management API (exit 0 ok, 1 refused, 2 unreachable).
    Ctl(CtlArgs),
}

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Address of the management HTTP server (admin.listen).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub admin: String,
    /// Bearer token (admin.token); also read from SIPSHARD_ADMIN_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// List registrations (filters and paging as in the API).
    List {
        #[arg(long)]
        number: Option<String>,
        /// IP or IP/PREFIX (source or contact).
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        account: Option<String>,
        /// Registered, Expiring or Unregistered.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one AOR's bindings with details (JSON).
    Show { aor: String },
    /// Force unregister every binding of an AOR (needs the token).
    Unregister { aor: String },
    /// Write the whole registration table as CSV to stdout (streamed).
    Export,
    /// Server status and runtime counters (JSON).
    Status,
    /// Outbound registrations and their state.
    Trunks,
    /// Force a new registration attempt of one trunk now (needs the token).
    Reregister { name: String },
    /// Routing gateways: health and counters.
    Gateways,
    /// Recent calls from the CDR, newest first (filters and paging as in the API).
    Calls {
        /// Part of the caller number.
        #[arg(long)]
        caller: Option<String>,
        /// Part of the called number.
        #[arg(long)]
        callee: Option<String>,
        /// Final status (200) or class (4xx).
        #[arg(long)]
        status: Option<String>,
        /// End reason (caller_hangup, no_answer, all_gateways_failed, ...).
        #[arg(long)]
        reason: Option<String>,
        /// A gateway one of the attempts went to.
        #[arg(long)]
        gateway: Option<String>,
        /// Calls started at or after: Unix ms or 2026-11-21T07:00:00Z.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {
    /// Config file (default: the embedded default config).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override server.listen, e.g. 0.0.0.0:5060.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Override server.shards (0 = one per core).
    #[arg(long, value_name = "N")]
    pub shards: Option<String>,
    /// Override admin.listen (the management HTTP server), e.g. 127.0.0.1:0.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
}

impl RunArgs {
    fn overrides(&self) -> Vec<Override> {
        let mut v = Vec::new();
        if let Some(listen) = &self.listen {
            v.push(Override {
                key: "server.listen".into(),
                value: listen.clone(),
                origin: "--listen".into(),
            });
        }
        if let Some(shards) = &self.shards {
            v.push(Override {
                key: "server.shards".into(),
                value: shards.clone(),
                origin: "--shards".into(),
            });
        }
        if let Some(a) = &self.admin_listen {
            v.push(Override {
                key: "admin.listen".into(),
                value: a.clone(),
                origin: "--admin-listen".into(),
            });
        }
        v
    }
}

/// Entry point of the binary: parse `std::env::args`, run, return the exit status.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    // Not locked for the whole run: the shard threads log to stderr (tracing) meanwhile, and
    // would block on a lock held here.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    main_with(args, &mut out, &mut err)
}

/// As [`main`], with the arguments (including the program name) and output streams given.
pub fn main_with(args: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            let styled = e.render();
            let terminal = if e.use_stderr() {
                std::io::IsTerminal::is_terminal(&std::io::stderr())
            } else {
                std::io::IsTerminal::is_terminal(&std::io::stdout())
            };
            let text = if terminal {
                styled.ansi().to_string()
            } else {
                styled.to_string()
            };
            if e.use_stderr() {
                let _ = write!(err, "{text}");
            } else {
                let _ = write!(out, "{text}");
            }
            return code;
        }
    };
    match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Run(args) => run(&args, err),
        Command::CheckConfig { file } => check_config(&file, out),
        Command::Params { config } => params(config.as_deref(), out, err),
        Command::Ctl(args) => ctl(args, out, err),
    }
}

fn ctl(args: CtlArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    use crate::admin::ctl::{run, Action, Target};
    let action = match args.command {
        CtlCommand::List {
            number,
            ip,
            account,
            status,
            offset,
            limit,
        } => Action::List {
            number,
            ip,
            account,
            status,
            offset,
            limit,
        },
        CtlCommand::Show { aor } => Action::Show(aor),
        CtlCommand::Unregister { aor } => Action::Unregister(aor),
        CtlCommand::Export => Action::Export,
        CtlCommand::Status => Action::Status,
        CtlCommand::Trunks => Action::Trunks,
        CtlCommand::Reregister { name } => Action::Reregister(name),
        CtlCommand::Gateways => Action::Gateways,
        CtlCommand::Calls {
            caller,
            callee,
            status,
            reason,
            gateway,
            since,
            offset,
            limit,
        } => Action::Calls {
            filters: [
                ("caller", caller),
                ("callee", callee),
                ("status", status),
                ("reason", reason),
                ("gateway", gateway),
                ("since", since),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
            offset,
            limit,
        },
    };
    let target = Target {
        addr: args.admin,
        token: args
            .token
            .or_else(|| std::env::var("SIPSHARD_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty()),
    };
    run(&target, &action, out, err)
}

fn print_errors(w: &mut dyn Write, source: &str, errors: &ConfigErrors) {
    for e in errors.iter() {
        let _ = match e.line {
            Some(line) => writeln!(w, "{source}:{line}: {}", e.message),
            None => writeln!(w, "{source}: {}", e.message),
        };
    }
}

fn source_name(path: Option<&Path>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "(embedded default)".to_string(),
    }
}

fn run(args: &RunArgs, err: &mut dyn Write) -> i32 {
    let config = match Config::load_with_overrides(args.config.as_deref(), &args.overrides()) {
        Ok(c) => c,
        Err(errors) => {
            print_errors(err, &source_name(args.config.as_deref()), &errors);
            return EXIT_CONFIG;
        }
    };
    init_logging(&config.log_level, err);
    tracing::info!(
        listen = %config.server.listen,
        shards = config.server.shards,
        config = %source_name(args.config.as_deref()),
        "starting sipshard"
    );
    match crate::server::run_main(config) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "sipshard stopped with an error");
            let _ = writeln!(err, "sipshard: {e}");
            EXIT_FAILURE
        }
    }
}

/// Logging to stderr at `level` (validated by the config); a non-empty `RUST_LOG` wins.
fn init_logging(level: &str, err: &mut dyn Write) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                let _ = writeln!(
                    err,
                    "sipshard: ignoring RUST_LOG={v:?} ({e}); using {level:?}"
                );
                EnvFilter::new(level)
            }
        },
        _ => EnvFilter::new(level),
    };
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn check_config(file: &Path, out: &mut dyn Write) -> i32 {
    let name = file.display().to_string();
    match Config::load(file) {
        Ok(_) => {
            let _ = writeln!(out, "{name}: OK");
            0
        }
        Err(errors) => {
            print_errors(out, &name, &errors);
            let _ = writeln!(
                out,
                "{name}: {} error{}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            EXIT_CONFIG
        }
    }
}

fn params(config: Option<&Path>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match Config::load_with_overrides(config, &[]) {
        Ok(c) => {
            let _ = write!(out, "{}", params_table(&c));
            0
        }
        Err(errors) => {
            print_errors(err, &source_name(config), &errors);
            EXIT_CONFIG
        }
    }
}

/// The `sipshard params` table: key, VOS3000 name, default, range, value in force; aligned.
/// A `*` after the value marks one that differs from the default.
pub fn params_table(config: &Config) -> String {
    let defaults = Config::default();
    let mut rows: Vec<[String; 5]> = vec![[
        "KEY".into(),
        "VOS3000 NAME".into(),
        "DEFAULT".into(),
        "RANGE".into(),
        "VALUE".into(),
    ]];
    for p in PARAMS {
        let default = if p.key == "send_retry" {
            "(number of intervals)".to_string()
        } else {
            defaults.value_text(p)
        };
        let value = config.value_text(p);
        let changed = p.key != "send_retry" && value != defaults.value_text(p)
            || p.key == "send_retry"
                && config.sip.timers.send_retry as usize
                    != config.sip.timers.resend_intervals_ms.len();
        rows.push([
            p.dotted(),
            p.vos_name.unwrap_or("-").to_string(),
            default,
            p.range(),
            if changed { format!("{value} *") } else { value },
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s.push_str("(* = differs from the default)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_cli(args: &[&str]) -> (i32, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let args = std::iter::once("sipshard")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        let code = main_with(args, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn no_subcommand_is_run_with_defaults() {
        let cli = Cli::try_parse_from(["sipshard"]).unwrap();
        assert!(cli.command.is_none());
    }

    #[test]
    fn run_parses_overrides() {
        let cli = Cli::try_parse_from([
            "sipshard",
            "run",
            "--config",
            "x.toml",
            "--listen",
            "0.0.0.0:5070",
            "--shards",
            "4",
        ])
        .unwrap();
        let Some(Command::Run(args)) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.config.as_deref(), Some(Path::new("x.toml")));
        let c = Config::load_with_overrides(None, &args.overrides()).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:5070".parse().unwrap());
        assert_eq!(c.server.shards, 4);
    }

    #[test]
    fn run_rejects_bad_overrides_with_status_2() {
        let (code, _, err) = run_cli(&["run", "--shards", "257", "--listen", "nowhere"]);
        assert_eq!(code, EXIT_CONFIG);
        assert!(err.contains("--shards: server.shards = \"257\" is out of range: allowed 0..=256"));
        assert!(err.contains("--listen: server.listen = \"nowhere\" is not valid"));
    }

    #[test]
    fn params_table_is_aligned_and_complete() {
        let t = params_table(&Config::default());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), PARAMS.len() + 2);
        let vos_col = lines[0].find("VOS3000 NAME").unwrap();
        let range_col = lines[0].find("RANGE").unwrap();
        for (line, p) in lines[1..].iter().zip(PARAMS) {
            assert!(line.starts_with(&p.dotted()), "{line}");
            assert_eq!(&line[vos_col..vos_col + 1], &p.vos_name.unwrap_or("-")[..1]);
            assert!(line[range_col..].starts_with(&p.range()), "{line}");
            assert!(!line.ends_with('*'), "default marked changed: {line}");
        }
    }

    #[test]
    fn params_table_marks_changed_values() {
        let c = Config::from_toml_str("[sip]\nSS_SIP_TIMEOUT_INVITE = \"15\"\n").unwrap();
        let t = params_table(&c);
        let line = t
            .lines()
            .find(|l| l.starts_with("sip.timeout_invite"))
            .unwrap();
        assert!(line.ends_with("15 *"), "{line}");
    }

    #[test]
    fn unknown_subcommand_is_usage_error() {
        let (code, _, err) = run_cli(&["frobnicate"]);
        assert_eq!(code, 2);
        assert!(err.contains("frobnicate"));
    }
}
