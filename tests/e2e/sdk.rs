//! The official OpenAI and Anthropic Python SDKs against the gateway (tests/sdk/check_sdks.py),
//! failing over across provider kinds so that every answer they parse was translated: text,
//! streams and tool-call round trips.
//!
//! The SDKs come from a virtualenv: `$SWITCHYARD_SDK_PYTHON` (tests/run.sh makes it), or else
//! `target/sdk-venv`, created here with `python3 -m venv` and tests/sdk/requirements.txt
//! when missing or out of date. Without Python or PyPI this test fails, saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::*;
use mock_llm::{TEST_AWS_ACCESS_KEY_ID, TEST_AWS_SECRET_ACCESS_KEY};

/// Requests check_sdks.py makes with each SDK: text, stream, tool call + tool result,
/// streamed tool call.
const SDK_REQUESTS: u64 = 5;

const ENV: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-openai-test"),
    ("ANTHROPIC_API_KEY", "sk-ant-test"),
    ("AWS_ACCESS_KEY_ID", TEST_AWS_ACCESS_KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", TEST_AWS_SECRET_ACCESS_KEY),
];

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{cmd:?} failed: {}", describe(&out)))
    }
}

fn has_sdks(python: &Path) -> Result<(), String> {
    run(Command::new(python).args(["-c", "import openai, anthropic"])).map(drop)
}

/// A Python with the SDKs of tests/sdk/requirements.txt; why there is none otherwise.
pub fn sdk_python() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("SWITCHYARD_SDK_PYTHON") {
        let python = PathBuf::from(python);
        has_sdks(&python).map_err(|e| format!("SWITCHYARD_SDK_PYTHON={} has no SDKs: {e}", python.display()))?;
        return Ok(python);
    }
    let root = repo_root();
    let requirements = root.join("tests/sdk/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let venv = root.join("target/sdk-venv");
    let python = venv.join("bin/python");
    // What was installed last, so that a changed requirements.txt is installed again.
    let stamp = venv.join("requirements.installed");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && has_sdks(&python).is_ok() {
        return Ok(python);
    }
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).map_err(|e| {
            format!("{e}\ncreating a virtualenv needs python3 with venv (Debian: apt-get install python3-venv)")
        })?;
    }
    let pip = ["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"];
    run(Command::new(&python).args(pip).arg(&requirements))
        .map_err(|e| format!("installing the SDKs (needs PyPI): {e}"))?;
    has_sdks(&python)?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

const OPENAI_AUTH: &str = "{apiKey: {env: OPENAI_API_KEY}}";
const ANTHROPIC_AUTH: &str = "{apiKey: {env: ANTHROPIC_API_KEY}}";
const BEDROCK: &str = "bedrock: {model: \"us.anthropic.claude-sonnet-4-6-v1:0\", region: us-east-1}";

/// One route per client API, each backend a failing primary and a fallback of another
/// kind. A primary is never ejected (`maxEjectionPercent: 0`), so every request tries it
/// and fails over.
fn body(openai_groups: [&str; 2], anthropic_groups: [&str; 2]) -> String {
    let backend = |name: &str, [primary, fallback]: [&str; 2]| {
        format!(
            "  {name}:\n    groups:\n      - providers: [{primary}]\n      - providers: [{fallback}]\n    \
             health: {{eviction: {{maxEjectionPercent: 0}}}}\n"
        )
    };
    format!(
        "routes:\n  - {{name: openai-sdk, match: {{pathPrefix: /v1/chat}}, backend: openai-sdk}}\n  \
         - {{name: anthropic-sdk, match: {{pathPrefix: /v1/messages}}, backend: anthropic-sdk}}\nbackends:\n{}{}",
        backend("openai-sdk", openai_groups),
        backend("anthropic-sdk", anthropic_groups)
    )
}

/// Runs check_sdks.py against `gw`, expecting every call of each SDK served by the
/// fallback named.
async fn check_sdks(python: &Path, gw: &Gateway, openai_provider: &str, anthropic_provider: &str) {
    run_checks(python, gw, openai_provider, anthropic_provider, "all").await
}

/// Runs check_sdks.py's `checks` (`all`, `claude-code`).
async fn run_checks(python: &Path, gw: &Gateway, openai_provider: &str, anthropic_provider: &str, checks: &str) {
    let script = repo_root().join("tests/sdk/check_sdks.py");
    let run = tokio::process::Command::new(python)
        .arg(&script)
        .env("SDK_CHECKS", checks)
        .env("OPENAI_BASE_URL", gw.url("/v1"))
        .env("ANTHROPIC_BASE_URL", gw.url(""))
        .env("EXPECT_OPENAI_PROVIDER", openai_provider)
        .env("EXPECT_ANTHROPIC_PROVIDER", anthropic_provider)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("check_sdks.py still running after 120 s; gateway stderr:\n{}", gw.stderr()))
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", python.display(), script.display()));
    let report = describe(&out);
    assert!(out.status.success(), "check_sdks.py failed: {report}\n--- gateway stderr\n{}", gw.stderr());
    println!("{report}");
}

/// Every SDK request reached the failing primary once, then the fallback, which served it.
fn assert_failed_over(primary: &MockLlm, fallback: &MockLlm) {
    assert_eq!(primary.requests(), SDK_REQUESTS, "each request tried the failing primary {}", primary.name());
    assert_eq!(fallback.requests(), SDK_REQUESTS, "each request failed over to {}", fallback.name());
}

#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_through_cross_kind_failover() {
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap().unwrap_or_else(|why| panic!("{why}"));

    // OpenAI SDK: OpenAI 503 → Anthropic. Anthropic SDK: Anthropic 529 → Bedrock.
    let gpt_down = MockLlm::start("gpt-down", Behavior::failing(503)).await.unwrap();
    let claude = MockLlm::start("claude", Behavior::default()).await.unwrap();
    let claude_down = MockLlm::start("claude-down", Behavior::failing(529)).await.unwrap();
    let bedrock = MockLlm::start("bedrock", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &body(
            [
                &kind_provider("gpt-down", &gpt_down, "openai: {model: gpt-4o-mini}", OPENAI_AUTH),
                &kind_provider("claude", &claude, "anthropic: {model: claude-sonnet-4-6}", ANTHROPIC_AUTH),
            ],
            [
                &kind_provider("claude-down", &claude_down, "anthropic: {model: claude-sonnet-4-6}", ANTHROPIC_AUTH),
                &kind_provider("aws", &bedrock, BEDROCK, ""),
            ],
        ),
        ENV,
    )
    .await;
    check_sdks(&python, &gw, "claude", "aws").await;
    assert_failed_over(&gpt_down, &claude);
    assert_failed_over(&claude_down, &bedrock);

    let tried = gpt_down.last_request().unwrap();
    assert_eq!(tried.path, "/v1/chat/completions");
    assert_eq!(tried.header("authorization"), Some("Bearer sk-openai-test"), "the configured key, not the SDK's");
    let served = claude.last_request().unwrap();
    assert_eq!(served.path, "/v1/messages");
    assert_eq!(served.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(served.json().unwrap()["tools"][0]["name"], "get_weather", "the tool reached Anthropic");
    let tried = claude_down.last_request().unwrap();
    assert_eq!((tried.path.as_str(), tried.header("x-api-key")), ("/v1/messages", Some("sk-ant-test")));
    // An Anthropic model on Bedrock gets the Anthropic body as is (InvokeModel).
    let served = bedrock.last_request().unwrap();
    assert_eq!(served.path, "/model/us.anthropic.claude-sonnet-4-6-v1%3A0/invoke-with-response-stream");
    assert_eq!(served.sigv4_valid, Some(true));
    assert_eq!(served.json().unwrap()["tools"][0]["name"], "get_weather");
    drop(gw);

    // The Anthropic SDK again, now failing over from Anthropic 503 to OpenAI.
    let gpt = MockLlm::start("gpt", Behavior::default()).await.unwrap();
    claude_down.set_behavior(Behavior::failing(503));
    claude_down.reset_stats();
    gpt_down.reset_stats();
    claude.reset_stats();
    let gw = Gateway::start_with_env(
        &body(
            [
                &kind_provider("gpt-down", &gpt_down, "openai: {model: gpt-4o-mini}", OPENAI_AUTH),
                &kind_provider("claude", &claude, "anthropic: {model: claude-sonnet-4-6}", ANTHROPIC_AUTH),
            ],
            [
                &kind_provider("claude-down", &claude_down, "anthropic: {model: claude-sonnet-4-6}", ANTHROPIC_AUTH),
                &kind_provider("gpt", &gpt, "openai: {model: gpt-4o}", OPENAI_AUTH),
            ],
        ),
        ENV,
    )
    .await;
    check_sdks(&python, &gw, "claude", "gpt").await;
    assert_failed_over(&gpt_down, &claude);
    assert_failed_over(&claude_down, &gpt);
    let served = gpt.last_request().unwrap();
    assert_eq!(served.path, "/v1/chat/completions");
    assert_eq!(served.header("authorization"), Some("Bearer sk-openai-test"));
    let sent = served.json().unwrap();
    assert_eq!(sent["model"], "gpt-4o");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather", "the tool reached OpenAI");
}

/// The Anthropic SDK sending what Claude Code sends (thinking, cache_control, tools, an
/// anthropic-beta header, streaming): Anthropic 529 → Claude on Bedrock (SigV4 verified,
/// the body unchanged) → Claude on Vertex AI (a token from the service account's token
/// endpoint).
#[tokio::test(flavor = "multi_thread")]
async fn anthropic_sdk_claude_code_fails_over_to_bedrock_then_vertex() {
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap().unwrap_or_else(|why| panic!("{why}"));
    let claude_down = MockLlm::start("claude-down", Behavior::failing(529)).await.unwrap();
    let bedrock = MockLlm::start("bedrock", Behavior::default()).await.unwrap();
    let vertex = MockLlm::start("vertex", Behavior::default()).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let credentials = crate::claude::service_account(keys.path(), &vertex);
    let config = format!(
        "routes:\n  - {{name: anthropic-sdk, match: {{pathPrefix: /v1/messages}}, backend: claude}}\nbackends:\n  claude:\n    \
         groups:\n      - providers: [{}]\n      - providers: [{}]\n      - providers: [{}]\n    \
         health: {{eviction: {{maxEjectionPercent: 0}}}}\n",
        kind_provider("claude-down", &claude_down, "anthropic: {model: claude-sonnet-4-6}", ANTHROPIC_AUTH),
        kind_provider("aws", &bedrock, crate::claude::BEDROCK_CLAUDE, ""),
        kind_provider("gcp", &vertex, crate::claude::VERTEX_CLAUDE, ""),
    );
    let mut env = ENV.to_vec();
    env.push(("GOOGLE_APPLICATION_CREDENTIALS", &credentials));
    let gw = Gateway::start_with_env(&config, &env).await;
    // A stream, then a tool round trip (2 requests).
    const REQUESTS: u64 = 3;

    run_checks(&python, &gw, "", "aws", "claude-code").await;
    assert_eq!((claude_down.requests(), bedrock.requests()), (REQUESTS, REQUESTS));
    let served = bedrock.last_request().unwrap();
    assert_eq!(served.path, "/model/us.anthropic.claude-sonnet-4-6-v1%3A0/invoke");
    assert_eq!(served.sigv4_valid, Some(true), "SigV4 verified by the mock");
    let body = served.json().unwrap();
    assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(body["anthropic_beta"], serde_json::json!(["interleaved-thinking-2025-05-14"]));
    assert_eq!(body["thinking"], serde_json::json!({"type": "enabled", "budget_tokens": 1024}), "thinking unchanged");
    assert_eq!(body["system"][0]["cache_control"], serde_json::json!({"type": "ephemeral"}), "cache_control unchanged");
    assert_eq!(body["messages"][0]["content"][0]["cache_control"], serde_json::json!({"type": "ephemeral"}));
    assert_eq!(body["messages"][1]["content"][0]["type"], "thinking", "the thinking block went back as it came");
    assert_eq!(body["tools"][0]["name"], "get_weather");
    let tried = claude_down.last_request().unwrap();
    assert_eq!(tried.json().unwrap()["messages"], body["messages"], "Bedrock got what Anthropic got");

    bedrock.set_behavior(Behavior::failing(503));
    run_checks(&python, &gw, "", "gcp", "claude-code").await;
    assert_eq!(vertex.requests(), REQUESTS);
    let served = vertex.last_request().unwrap();
    assert!(served.path.ends_with("/publishers/anthropic/models/claude-sonnet-4-6%4020250929:rawPredict"));
    assert_eq!(served.header("authorization"), Some("Bearer ya29.mock-vertex-1"), "the token the mock issued");
    assert_eq!(vertex.tokens_issued(), 1, "one token for every request");
    let body = served.json().unwrap();
    assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(body["thinking"]["budget_tokens"], 1024);
    assert_eq!(body["system"][0]["cache_control"]["type"], "ephemeral");
}

/// The OpenAI SDK's `client.responses` (plain, streamed, a function-call round trip):
/// OpenAI 429 → Azure (natively, on its v1 surface) → Anthropic (translated).
#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_responses_fail_over_to_azure_then_anthropic() {
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap().unwrap_or_else(|why| panic!("{why}"));
    let gpt_down = MockLlm::start("gpt-down", Behavior::failing(429)).await.unwrap();
    let azure = MockLlm::start("azure", Behavior::default()).await.unwrap();
    let claude = MockLlm::start("claude", Behavior::default()).await.unwrap();
    let config = format!(
        "routes:\n  - {{name: responses, match: {{pathPrefix: /v1/responses}}, backend: r}}\nbackends:\n  r:\n    \
         groups:\n      - providers: [{}]\n      - providers: [{}]\n      - providers: [{}]\n    \
         health: {{eviction: {{maxEjectionPercent: 0}}}}\n",
        kind_provider("gpt-down", &gpt_down, "openai: {model: gpt-4.1}", OPENAI_AUTH),
        kind_provider(
            "azure",
            &azure,
            "azure: {deployment: gpt-41-prod, apiVersion: \"2024-10-21\"}",
            "{apiKey: {env: AZURE_KEY}}"
        ),
        kind_provider("claude", &claude, "anthropic: {model: claude-sonnet-4-6}", ANTHROPIC_AUTH),
    );
    let mut env = ENV.to_vec();
    env.push(("AZURE_KEY", "az-test"));
    let gw = Gateway::start_with_env(&config, &env).await;
    // Text, a stream, a function call and its output.
    const REQUESTS: u64 = 4;

    run_checks(&python, &gw, "azure", "", "responses").await;
    assert_eq!((gpt_down.requests(), azure.requests()), (REQUESTS, REQUESTS));
    let tried = gpt_down.last_request().unwrap();
    assert_eq!((tried.path.as_str(), tried.header("authorization")), ("/v1/responses", Some("Bearer sk-openai-test")));
    let served = azure.last_request().unwrap();
    assert_eq!((served.path.as_str(), served.header("api-key")), ("/openai/v1/responses", Some("az-test")));
    let sent = served.json().unwrap();
    assert_eq!(sent["model"], "gpt-41-prod", "the deployment names the model");
    assert_eq!(sent["input"].as_array().unwrap().last().unwrap()["type"], "function_call_output");

    azure.set_behavior(Behavior::failing(503));
    run_checks(&python, &gw, "claude", "", "responses").await;
    assert_eq!(claude.requests(), REQUESTS);
    let served = claude.last_request().unwrap();
    assert_eq!((served.path.as_str(), served.header("x-api-key")), ("/v1/messages", Some("sk-ant-test")));
    let sent = served.json().unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-6");
    assert_eq!(sent["tools"][0]["name"], "get_weather", "the function tool reached Anthropic");
    let last = sent["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["content"][0]["type"], "tool_result", "the function output became a tool_result: {last}");
}
