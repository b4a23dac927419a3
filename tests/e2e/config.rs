//! `--validate`: every shipped config passes; errors name their YAML path, all at once.

use crate::harness::*;

const FAKE_KEYS: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-test"),
    ("OPENAI_API_KEY_2", "sk-test-2"),
    ("ANTHROPIC_API_KEY", "sk-ant-test"),
    ("AZURE_OPENAI_API_KEY", "az-test"),
    ("GEMINI_API_KEY", "gm-test"),
    ("AWS_ACCESS_KEY_ID", "AKIATEST"),
    ("AWS_SECRET_ACCESS_KEY", "secret"),
];

#[test]
fn every_conf_file_validates() {
    let dir = repo_root().join("conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (code, out) = validate(&path, FAKE_KEYS);
            assert_eq!(code, 0, "{}: {out}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 6, "expected demo.yaml and the reference configs, found {checked}");
}

#[test]
fn errors_name_paths_all_at_once_and_exit_64() {
    let (code, out) = validate_yaml(
        r#"
listen: ["127.0.0.1:8080"]
routes:
  - {name: r, match: {pathPrefix: /v1}, backend: nope}
  - {name: s, match: {pathPrefix: v1}, timeouts: {request: soon}, backend: chat}
backends:
  chat:
    groups:
      - providers:
          - {name: a, openai: {model: m}, host: 127.0.0.1, port: 1}
      - providers:
          - {name: b, openai: {modle: gpt-4o}}
          - {name: c, openai: {}, auth: {apiKey: {env: SWITCHYARD_TEST_MISSING_VAR}}}
    health:
      unhealthyCondition: "response.code =="
"#,
    );
    assert_eq!(code, 64, "{out}");
    for needle in [
        r#"backends.chat.groups[1].providers[0].openai: unknown field "modle""#,
        "backends.chat.groups[1].providers[1].auth.apiKey: environment variable SWITCHYARD_TEST_MISSING_VAR is not set",
        "backends.chat.health.unhealthyCondition: invalid CEL expression",
        r#"routes[0].backend: unknown backend "nope""#,
        r#"routes[1].match.pathPrefix: must start with "/""#,
        r#"routes[1].timeouts.request: invalid duration "soon""#,
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn key_file_permissions_are_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-file\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: [\"127.0.0.1:8080\"]\nroutes: [{{name: r, match: {{pathPrefix: /}}, backend: b}}]\nbackends:\n  b:\n    groups:\n      - providers: [{{name: p, openai: {{}}, auth: {{apiKey: {{file: {}}}}}}}]\n",
            key.display()
        ),
    )
    .unwrap();
    let (code, out) = validate(&path, &[]);
    assert_eq!(code, 64);
    assert!(out.contains("readable by group or others"), "{out}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = validate(&path, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = validate(&dir.path().join("missing.yaml"), &[]);
    assert_eq!(code, 64);
    assert!(out.contains("cannot read"), "{out}");
}

#[test]
fn vertex_credentials_and_translation_policy_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vertex.yaml");
    let not_a_key = dir.path().join("key.json");
    std::fs::write(&not_a_key, r#"{"type": "authorized_user"}"#).unwrap();
    std::fs::write(
        &path,
        r#"
listen: ["127.0.0.1:8080"]
routes:
  - {name: r, match: {pathPrefix: /v1}, backend: claude}
backends:
  claude:
    translation: {unsupported: ignore}
    groups:
      - providers:
          - {name: gcp, vertex: {project: p, region: us-east5, model: claude-sonnet-4-6}}
          - {name: gcp-missing, vertex: {project: p, region: us-east5, model: claude-sonnet-4-6}, auth: {apiKey: {env: SWITCHYARD_TEST_MISSING_VAR}}}
          - {name: gcp-typo, vertex: {project: p, model: claude-sonnet-4-6}}
"#,
    )
    .unwrap();
    let key_path = not_a_key.display().to_string();
    let (code, out) = validate(&path, &[("GOOGLE_APPLICATION_CREDENTIALS", &key_path)]);
    assert_eq!(code, 64, "{out}");
    for needle in [
        r#"backends.claude.translation.unsupported: unknown value "ignore"; use refuse or drop"#,
        "backends.claude.groups[0].providers[0].auth: vertex needs Google credentials: ",
        "not a service-account key file",
        "backends.claude.groups[0].providers[1].auth.apiKey: environment variable SWITCHYARD_TEST_MISSING_VAR is not set",
        r#"backends.claude.groups[0].providers[2].vertex: missing field "region""#,
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}
