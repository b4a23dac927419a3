//! `mock-llm`: runs one mock LLM provider (OpenAI, Anthropic, Bedrock, Gemini and Azure
//! layouts, chosen by request path) until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use mock_llm::{Behavior, MockLlm};

/// Mock LLM provider with failure injection: OpenAI chat completions on any path, and
/// Anthropic (/v1/messages), Bedrock (/model/ID/converse[-stream]), Gemini
/// (/v1beta/models/M:generateContent) and Azure (/openai/deployments/D/...) layouts.
///
/// Unset options keep the defaults of `Behavior`; everything else can be
/// changed at run time with `POST /__mock/behavior`.
#[derive(Debug, Parser)]
#[command(name = "mock-llm", version)]
struct Args {
    /// Name used in answers ("Hello from NAME") and in error messages.
    #[arg(long, default_value = "mock")]
    name: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Status of injected failures (200 = never fail).
    #[arg(long)]
    status: Option<u16>,
    /// Fraction of requests that get --status (0.0..=1.0).
    #[arg(long, value_parser = parse_rate)]
    failure_rate: Option<f64>,
    /// Retry-After value on injected failures.
    #[arg(long)]
    retry_after: Option<String>,
    /// Delay before the response head, in milliseconds.
    #[arg(long)]
    delay_ms: Option<u64>,
    /// Never answer chat requests.
    #[arg(long)]
    hang: bool,
    /// Reset the connection (RST) after reading a request head.
    #[arg(long)]
    reset: bool,
    /// Content chunks in streamed answers.
    #[arg(long)]
    stream_chunks: Option<usize>,
    /// Delay between streamed chunks, in milliseconds.
    #[arg(long)]
    chunk_delay_ms: Option<u64>,
    /// Status of GET /v1/models and GET /health.
    #[arg(long)]
    health_status: Option<u16>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        Ok(_) => Err("must be between 0.0 and 1.0".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

impl Args {
    fn behavior(&self) -> Behavior {
        let defaults = Behavior::default();
        Behavior {
            status: self.status.unwrap_or(defaults.status),
            failure_rate: self.failure_rate.unwrap_or(defaults.failure_rate),
            retry_after: self.retry_after.clone(),
            first_byte_delay_ms: self.delay_ms.unwrap_or(defaults.first_byte_delay_ms),
            hang: self.hang,
            reset: self.reset,
            stream_chunks: self.stream_chunks.unwrap_or(defaults.stream_chunks),
            chunk_delay_ms: self.chunk_delay_ms.unwrap_or(defaults.chunk_delay_ms),
            health_status: self.health_status.unwrap_or(defaults.health_status),
            ..defaults
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mock = match MockLlm::start_on(&args.name, args.listen, args.behavior()).await {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("mock-llm: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "mock-llm {} listening on {}", mock.name(), mock.addr());
    let _ = stdout.flush();
    drop(stdout);
    std::future::pending::<()>().await;
    drop(mock);
    ExitCode::SUCCESS
}
