//! `switchyard`: parse the command line, load the config, set up logging, run.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::server::{self, ProcessOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a bad configuration (EX_USAGE... sysexits' EX_USAGE is 64).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "switchyard", version, about = "LLM failover gateway on Pingora")]
struct Cli {
    /// Configuration file (YAML).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration and exit (0 when valid, 64 when not).
    #[arg(long)]
    validate: bool,
    /// Take over the listening sockets of a running instance (graceful upgrade).
    #[arg(short = 'u', long)]
    upgrade: bool,
    /// Socket used to hand listeners over during an upgrade.
    #[arg(long, value_name = "PATH", default_value = "/tmp/switchyard_upgrade.sock")]
    upgrade_sock: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match switchyard::config::load_file(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: invalid configuration:", cli.config.display());
            for line in &e.errors {
                eprintln!("  {line}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.validate {
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    init_logging();
    let opts = ProcessOptions { upgrade: cli.upgrade, upgrade_sock: cli.upgrade_sock, config_path: cli.config.clone() };
    let (server, _gateway) = match server::build(config, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchyard: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %cli.config.display(), "switchyard starting");
    server.run_forever()
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_log::LogTracer::init();
    let filter = EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
