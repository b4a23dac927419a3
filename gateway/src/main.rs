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
#[command(
    name = "switchyard",
    version,
    about = "LLM failover gateway on Pingora",
    after_help = "Migrating from Kubernetes: switchyard import MANIFEST... [-o OUT] (see switchyard import --help)"
)]
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

/// `switchyard import`: Kubernetes manifests (agentgateway, kgateway, Envoy AI Gateway) to
/// one Switchyard configuration.
#[derive(Parser, Debug)]
#[command(name = "switchyard import")]
struct ImportCli {
    /// Multi-document Kubernetes YAML files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write the configuration here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "import") {
        return import(ImportCli::parse_from(std::env::args_os().skip(1)));
    }
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

/// Exit status when the output file cannot be written (sysexits `EX_CANTCREAT`).
const EXIT_CANTCREAT: u8 = 73;

fn import(cli: ImportCli) -> ExitCode {
    use switchyard::import;
    let result = import::import_files(&cli.files);
    let diagnostics = match &result {
        Ok(i) => &i.diagnostics,
        Err(f) => &f.diagnostics,
    };
    if !diagnostics.is_empty() {
        eprintln!("switchyard import: not mapped or skipped:");
        for d in diagnostics {
            eprintln!("  {d}");
        }
    }
    let imported = match result {
        Ok(i) => i,
        Err(f) => {
            eprintln!("switchyard import: {}", f.message);
            return ExitCode::from(f.code);
        }
    };
    match &cli.output {
        None => print!("{}", imported.yaml),
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.yaml) {
                eprintln!("switchyard import: {}: cannot write: {e}", path.display());
                return ExitCode::from(EXIT_CANTCREAT);
            }
            eprintln!("switchyard import: wrote {}", path.display());
        }
    }
    if !imported.env.is_empty() {
        eprintln!("switchyard import: secrets are not copied; set these environment variables:");
        for (var, what) in &imported.env {
            eprintln!("  {var}: {what}");
        }
    }
    ExitCode::SUCCESS
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_log::LogTracer::init();
    let filter = EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
