//! `switchyard import`: the reference manifests (tests/fixtures/import) and hand-written
//! ones import, validate once the listed variables are set, and serve their scenarios with
//! the provider hosts pointed at mocks (the test rewrites host/port/tls in the imported
//! YAML); hostile input gets clear messages and the documented exit status.

use crate::harness::*;
use mock_llm::{TEST_AWS_ACCESS_KEY_ID, TEST_AWS_SECRET_ACCESS_KEY};
use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/import")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `switchyard import ARGS...` in `dir`.
fn import_in(dir: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new(BIN).current_dir(dir).arg("import").args(args).output().expect("run import");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn import(files: &[&str]) -> Run {
    import_in(&fixtures(), files)
}

/// The variables an import asks for, each set to a test value.
fn listed_env(stderr: &str) -> Vec<(String, String)> {
    let section = stderr.split("set these environment variables:").nth(1).unwrap_or("");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_once(':').map(|(v, _)| v.to_string()))
        .map(|v| {
            let value = match v.as_str() {
                "AWS_ACCESS_KEY_ID" => TEST_AWS_ACCESS_KEY_ID.to_string(),
                "AWS_SECRET_ACCESS_KEY" => TEST_AWS_SECRET_ACCESS_KEY.to_string(),
                _ => format!("key-for-{v}"),
            };
            (v, value)
        })
        .collect()
}

/// Imports `file` with `-o`, then checks `--validate`: 64 without the listed variables,
/// 0 with them. Returns the config and the variables.
fn import_and_validate(files: &[&str]) -> (String, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("switchyard.yaml");
    let mut args: Vec<String> = files.iter().map(|f| fixtures().join(f).display().to_string()).collect();
    args.extend(["-o".to_string(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = import_in(dir.path(), &args);
    assert_eq!(run.code, 0, "{files:?}: {}", run.stderr);
    assert!(run.stdout.is_empty(), "with -o nothing goes to stdout");
    let env = listed_env(&run.stderr);
    assert!(!env.is_empty(), "{files:?}: every reference needs a credential: {}", run.stderr);
    let (code, text) = validate(&out, &[]);
    assert_eq!(code, 64, "{files:?} validates without its secrets?\n{text}");
    assert!(text.contains(&env[0].0), "{text}");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (code, text) = validate(&out, &pairs);
    assert_eq!(code, 0, "{files:?}: {text}");
    (std::fs::read_to_string(&out).unwrap(), env)
}

#[test]
fn references_and_handwritten_manifests_import_and_validate() {
    for files in [
        &["001-kgateway-multipool.yaml"][..],
        &["002-agentgateway-health.yaml"],
        &["003-agentgateway-retry-after.yaml"],
        &["004-envoy-ai-gateway.yaml"],
        &["handwritten-agentgateway.yaml"],
        &["handwritten-kgateway.yaml"],
        &["handwritten-envoy.yaml"],
        &["handwritten-agentgateway.yaml", "handwritten-kgateway.yaml", "handwritten-envoy.yaml"],
    ] {
        import_and_validate(files);
    }
}

/// Golden configs, imported with relative file names so the comments are stable.
#[test]
fn golden_imports() {
    for file in [
        "001-kgateway-multipool.yaml",
        "002-agentgateway-health.yaml",
        "003-agentgateway-retry-after.yaml",
        "004-envoy-ai-gateway.yaml",
        "handwritten-agentgateway.yaml",
        "handwritten-kgateway.yaml",
        "handwritten-envoy.yaml",
    ] {
        let run = import(&[file]);
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        insta::assert_snapshot!(file.trim_end_matches(".yaml"), run.stdout);
    }
}

/// 000 shows only the route: its backend is not on the page.
#[test]
fn ref000_names_the_missing_backend() {
    let run = import(&["000-agentgateway-route.yaml"]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains(
            "000-agentgateway-route.yaml: HTTPRoute gloo-system/model-failover: spec.rules[0].backendRefs[0]: \
             skipped: backend Backend gloo-system/model-failover (gateway.kgateway.dev) is not among the inputs"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn secrets_are_listed_never_copied() {
    let run = import(&["002-agentgateway-health.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("$ANTHROPIC_API_KEY"), "the Secret's value leaked:\n{}", run.stdout);
    assert!(run.stderr.contains("Secret agentgateway-system/anthropic-secret: skipped: secrets are never copied"));
    assert!(run.stdout.contains("env: ANTHROPIC_SECRET_AUTHORIZATION"));
    // The two earlier definitions of the backend are replaced by the last, as kubectl would.
    assert_eq!(run.stderr.matches("the later definition replaces this one").count(), 2, "{}", run.stderr);
    assert!(run.stdout.contains("claude-opus-4-6-FAKE"));
}

/// Envoy's `numRetries: N` is N retries, so N + 1 attempts; kgateway and agentgateway the same.
#[test]
fn retry_counts_keep_their_meaning() {
    assert!(import(&["004-envoy-ai-gateway.yaml"]).stdout.contains("attempts: 6"));
    assert!(import(&["handwritten-kgateway.yaml"]).stdout.contains("attempts: 4"));
    assert!(import(&["handwritten-agentgateway.yaml"]).stdout.contains("attempts: 4"));
}

/// The imported YAML with `listen`/`admin` removed (the harness adds its own) and each
/// named provider pointed at its mock.
fn point_at_mocks(yaml: &str, mocks: &[(&str, &MockLlm)]) -> String {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let map = doc.as_mapping_mut().unwrap();
    map.remove("listen");
    map.remove("admin");
    let mut pointed = 0;
    for backend in map.get_mut("backends").unwrap().as_mapping_mut().unwrap().values_mut() {
        for group in backend["groups"].as_sequence_mut().unwrap() {
            for p in group["providers"].as_sequence_mut().unwrap() {
                let p = p.as_mapping_mut().unwrap();
                if let Some((_, mock)) = mocks.iter().find(|(n, _)| p["name"] == *n) {
                    p.insert("host".into(), "127.0.0.1".into());
                    p.insert("port".into(), u64::from(mock.port()).into());
                    p.insert("tls".into(), false.into());
                    pointed += 1;
                }
            }
        }
    }
    assert_eq!(pointed, mocks.len(), "providers not found in:\n{yaml}");
    serde_yaml::to_string(&doc).unwrap()
}

async fn serve(files: &[&str], mocks: &[(&str, &MockLlm)]) -> Gateway {
    let (yaml, env) = import_and_validate(files);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Gateway::start_with_env(&point_at_mocks(&yaml, mocks), &env).await
}

fn served(r: &Reply) -> (u16, &str, Option<&str>) {
    (r.status, r.provider(), r.header("x-switchyard-attempts"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ref001_imported_serves_three_priorities() {
    let mocks = [
        MockLlm::start("a", Behavior::default()).await.unwrap(),
        MockLlm::start("b", Behavior::default()).await.unwrap(),
        MockLlm::start("c", Behavior::default()).await.unwrap(),
    ];
    let names = ["model-failover-gpt-4o", "model-failover-gpt-4.0-turbo", "model-failover-gpt-3.5-turbo"];
    let pairs: Vec<(&str, &MockLlm)> = names.iter().copied().zip(mocks.iter()).collect();
    let gw = serve(&["001-kgateway-multipool.yaml"], &pairs).await;
    // Each provider fails after serving once; an ejected one is not tried again.
    let attempts = ["1", "2", "2"];
    for (i, expected_model) in ["gpt-4o", "gpt-4.0-turbo", "gpt-3.5-turbo"].into_iter().enumerate() {
        let r = post_json(&gw.url("/model"), &chat(None)).await;
        assert_eq!(served(&r), (200, names[i], Some(attempts[i])), "{}", r.body);
        let seen = mocks[i].last_request().unwrap();
        assert_eq!(
            (seen.path.as_str(), seen.json().unwrap()["model"].as_str()),
            ("/v1/chat/completions", Some(expected_model))
        );
        assert_eq!(seen.header("authorization"), Some("Bearer key-for-OPENAI_SECRET_AUTHORIZATION"));
        mocks[i].set_behavior(Behavior { status: 500, ..Behavior::default() });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ref002_imported_fails_over_on_404() {
    let opus = MockLlm::start("opus", Behavior { status: 404, ..Behavior::default() }).await.unwrap();
    let sonnet = MockLlm::start("sonnet", Behavior::default()).await.unwrap();
    let gw =
        serve(&["002-agentgateway-health.yaml"], &[("anthropic-opus-46", &opus), ("anthropic-sonnet-46", &sonnet)])
            .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(None)).await;
    assert_eq!(served(&r), (200, "anthropic-sonnet-46", Some("2")), "{}", r.body);
    let seen = sonnet.last_request().unwrap();
    assert_eq!(
        (seen.path.as_str(), seen.json().unwrap()["model"].as_str()),
        ("/v1/messages", Some("claude-sonnet-4-6"))
    );
    assert_eq!(seen.header("x-api-key"), Some("key-for-ANTHROPIC_SECRET_AUTHORIZATION"));
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(None)).await;
    assert_eq!(served(&r), (200, "anthropic-sonnet-46", Some("1")), "ejected for 10s");
    assert_eq!(opus.requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ref003_imported_keeps_retry_after_ejection() {
    let mock = MockLlm::start("mock-gpt-4o", Behavior { status: 429, ..Behavior::default() }).await.unwrap();
    let openai = MockLlm::start("openai", Behavior::default()).await.unwrap();
    let gw = serve(
        &["003-agentgateway-retry-after.yaml"],
        &[("mock-ratelimit-provider", &mock), ("openai-fallback", &openai)],
    )
    .await;
    let body = serde_json::json!({"model": "", "messages": [{"role": "user", "content": "What is 2+2?"}]});
    let r = post_with(
        client().post(gw.url("/openai")).header("authorization", "Bearer client-token").body(body.to_string()),
    )
    .await;
    assert_eq!(served(&r), (200, "openai-fallback", Some("2")), "{}", r.body);
    assert_eq!(mock.last_request().unwrap().header("authorization"), Some("Bearer client-token"), "passthrough");
    let seen = openai.last_request().unwrap();
    assert_eq!(
        (seen.path.as_str(), seen.json().unwrap()["model"].as_str()),
        ("/v1/chat/completions", Some("gpt-4o-mini"))
    );
    for _ in 0..3 {
        let r = post_json(&gw.url("/openai"), &body).await;
        assert_eq!(served(&r), (200, "openai-fallback", Some("1")));
    }
    assert_eq!(mock.requests(), 1, "ejected for the route's Retry-After: 60");
}

#[tokio::test(flavor = "multi_thread")]
async fn ref004_imported_falls_back_to_bedrock() {
    let failing = MockLlm::start("failing", Behavior { status: 500, ..Behavior::default() }).await.unwrap();
    let aws = MockLlm::start("aws", Behavior::default()).await.unwrap();
    let gw = serve(
        &["004-envoy-ai-gateway.yaml"],
        &[("provider-fallback-always-failing-upstream", &failing), ("provider-fallback-aws", &aws)],
    )
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("us.meta.llama3-2-1b-instruct-v1:0"))).await;
    assert_eq!(served(&r), (200, "provider-fallback-aws", Some("2")), "{}", r.body);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello from aws");
    let seen = aws.last_request().unwrap();
    assert!(seen.path.ends_with("/converse"), "{}", seen.path);
    assert_eq!(seen.sigv4_valid, Some(true));
    assert_eq!(failing.requests(), 1);
}

/// Hand-written agentgateway manifests: three groups of mixed kinds, served in order.
#[tokio::test(flavor = "multi_thread")]
async fn handwritten_three_groups_serve_in_order() {
    let claude = MockLlm::start("claude", Behavior { status: 503, ..Behavior::default() }).await.unwrap();
    let gpt_a = MockLlm::start("gpt-a", Behavior { status: 429, ..Behavior::default() }).await.unwrap();
    let gpt_b = MockLlm::start("gpt-b", Behavior { status: 500, ..Behavior::default() }).await.unwrap();
    let gemini = MockLlm::start("gemini", Behavior::default()).await.unwrap();
    let vllm = MockLlm::start("vllm", Behavior::default()).await.unwrap();
    let gw = serve(
        &["handwritten-agentgateway.yaml"],
        &[
            ("tier1-claude", &claude),
            ("tier2-gpt-a", &gpt_a),
            ("tier2-gpt-b", &gpt_b),
            ("tier3-gemini", &gemini),
            ("local-vllm", &vllm),
        ],
    )
    .await;
    let r = post_with(client().post(gw.url("/chat")).header("x-debug", "1").body(chat(None).to_string())).await;
    assert_eq!(served(&r), (200, "tier3-gemini", Some("4")), "{}", r.body);
    let seen = gemini.last_request().unwrap();
    assert!(seen.path.contains("gemini-2.5-flash:generateContent"), "{}", seen.path);
    assert_eq!((seen.header("x-team"), seen.header("x-debug")), (Some("search"), None));
    let r = post_json(&gw.url("/local"), &chat(Some("my-model"))).await;
    assert_eq!(served(&r), (200, "local-vllm", Some("1")), "{}", r.body);
    assert_eq!(vllm.last_request().unwrap().path, "/v1/chat/completions");
}

fn write_temp(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path.display().to_string())
}

#[test]
fn hostile_input_gets_clear_messages() {
    // Not YAML: unreadable, 64.
    let (_d, path) = write_temp("kind: [unclosed\n  - {");
    let run = import(&[&path]);
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert!(run.stderr.contains("document 1: not YAML"), "{}", run.stderr);
    // A missing file: 64.
    let run = import(&["/nonexistent/manifest.yaml"]);
    assert_eq!(run.code, 64);
    assert!(run.stderr.contains("/nonexistent/manifest.yaml: cannot read"), "{}", run.stderr);
    // YAML that is not Kubernetes: listed, nothing to write, 65.
    let (_d, path) = write_temp("just: a map\n---\n- a list\n---\n42\n");
    let run = import(&[&path]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    for doc in
        ["document 1: skipped: not a Kubernetes object", "document 2: skipped: not a Kubernetes object", "document 3"]
    {
        assert!(run.stderr.contains(doc), "missing {doc:?}:\n{}", run.stderr);
    }
    // Missing fields, a duplicate backend, a route to a missing backend, an unknown kind.
    let (_d, path) = write_temp(
        r#"
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: twice, namespace: x}
spec: {ai: {provider: {openai: {model: first}}}}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: twice, namespace: x}
spec: {ai: {groups: [{providers: [{openai: {model: no-name}}, {name: ok, openai: {model: second}}]}]}}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {namespace: x}
spec: {}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good, namespace: x}
spec:
  rules: [{matches: [{path: {value: /a}}], backendRefs: [{name: twice, group: agentgateway.dev, kind: AgentgatewayBackend}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: dangling, namespace: x}
spec:
  rules: [{matches: [{path: {value: /b}}], backendRefs: [{name: nowhere, group: agentgateway.dev, kind: AgentgatewayBackend}]}]
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
"#,
    );
    let run = import(&[&path]);
    assert_eq!(run.code, 0, "a valid config with warnings: {}", run.stderr);
    for needle in [
        "AgentgatewayBackend x/twice: defined again in",
        "AgentgatewayBackend x/twice: spec.ai.groups[0].providers[0].name: missing or not a string",
        "document 3: skipped: AgentgatewayBackend: metadata.name: missing field",
        "HTTPRoute x/dangling: spec.rules[0].backendRefs[0]: skipped: backend AgentgatewayBackend x/nowhere (agentgateway.dev) is not among the inputs",
        "Widget default/w: skipped: kind Widget (example.com) is not imported",
    ] {
        assert!(run.stderr.contains(needle), "missing {needle:?} in:\n{}", run.stderr);
    }
    assert!(run.stdout.contains("model: second") && !run.stdout.contains("model: first"), "{}", run.stdout);
}

#[test]
fn default_listener_is_announced() {
    let run = import(&["001-kgateway-multipool.yaml"]);
    assert!(run.stderr.contains("no Gateway listener among the inputs; listening on 127.0.0.1:8080"), "{}", run.stderr);
    assert!(run.stdout.contains("- 127.0.0.1:8080"));
    let run = import(&["002-agentgateway-health.yaml"]);
    assert!(run.stdout.contains("- 0.0.0.0:8080") && !run.stderr.contains("listening on"), "{}", run.stderr);
}
