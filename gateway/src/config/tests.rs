use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

/// Loads a document with an empty environment (for tests of other config modules).
pub(super) fn load_with(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, &env_of(&[]))
}

const GOOD: &str = r#"
[server]
listen = "${TOLLGATE_LISTEN:-127.0.0.1:8080}"

[providers.openai]
kind = "openai"
base_url = "${OPENAI_BASE_URL:-https://api.openai.com/v1}"
api_keys = ["${OPENAI_API_KEY}", "sk-second"]

[providers.local]
kind = "ollama"

[models."gpt-4o-mini"]
deployments = [{ provider = "openai", model = "gpt-4o-mini" }, { provider = "local", model = "llama3" }]

[keys.default]
tenant = "acme"
key_env = "TOLLGATE_API_KEY"
models = ["*"]

[keys.ci]
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
models = ["gpt-4o-mini"]
"#;

#[test]
fn loads_a_good_config_with_defaults_and_interpolation() {
    let env = env_of(&[
        ("OPENAI_API_KEY", "sk-first"),
        ("TOLLGATE_API_KEY", "tg-raw"),
    ]);
    let c = Config::from_toml(GOOD, &env).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    let openai = c.providers.iter().find(|p| p.name == "openai").unwrap();
    assert_eq!(
        openai
            .api_keys
            .iter()
            .map(Secret::expose)
            .collect::<Vec<_>>(),
        ["sk-first", "sk-second"]
    );
    assert_eq!(openai.base_url.as_str(), "https://api.openai.com/v1");
    let local = c.providers.iter().find(|p| p.name == "local").unwrap();
    assert_eq!(local.base_url.as_str(), "http://127.0.0.1:11434/v1");
    assert!(local.api_keys.is_empty());
    let default = c.keys.iter().find(|k| k.name == "default").unwrap();
    assert_eq!(default.hash, KeyHash::of("tg-raw"));
    assert_eq!(default.tenant, "acme");
    assert_eq!(default.team, "default");
    let ci = c.keys.iter().find(|k| k.name == "ci").unwrap();
    assert_eq!(ci.hash, KeyHash::of("abc"));
    assert!(ci.models.allows("gpt-4o-mini") && !ci.models.allows("other"));
    assert_eq!(c.models[0].tiers.len(), 1);
    assert_eq!(c.models[0].tiers[0].len(), 2);

    let moved = env_of(&[
        ("OPENAI_API_KEY", "sk-first"),
        ("TOLLGATE_API_KEY", "tg-raw"),
        ("TOLLGATE_LISTEN", "0.0.0.0:9000"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:1234/v1/"),
    ]);
    let c = Config::from_toml(GOOD, &moved).unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
    let openai = c.providers.iter().find(|p| p.name == "openai").unwrap();
    assert_eq!(openai.base_url.as_str(), "http://127.0.0.1:1234/v1");
}

#[test]
fn lists_every_problem_with_its_path_at_once() {
    let bad = r#"
[server]
listen = "not-an-address"
max_body_bytes = 0
colour = "blue"

[providers.a]
kind = "openai"

[providers.b]
kind = "nonsense"

[providers.c]
kind = "openai-compatible"
api_keys = [""]

[models.m]
deployments = [{ provider = "missing", model = "x" }]

[models.empty]
deployments = []

[keys.k1]
sha256 = "zz"
models = ["*"]

[keys.k2]
key_env = "UNSET_VAR"
models = ["nope"]

[keys.k3]
models = ["*"]

[extra]
"#;
    let err = Config::from_toml(bad, &env_of(&[])).unwrap_err();
    let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
    for expected in [
        "extra",
        "server",
        "providers.a.api_keys",
        "providers.b.kind",
        "providers.c.base_url",
        "providers.c.api_keys",
        "models.m.deployments[0].provider",
        "models.empty.deployments",
        "keys.k1.sha256",
        "keys.k2.key_env",
        "keys.k2.models[0]",
        "keys.k3",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
    }
    let text = err.to_string();
    assert!(
        text.contains("providers.b.kind: unknown kind \"nonsense\""),
        "{text}"
    );
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let env = env_of(&[
        ("OPENAI_API_KEY", "sk-very-secret"),
        ("TOLLGATE_API_KEY", "tg-raw-secret"),
    ]);
    let c = Config::from_toml(GOOD, &env).unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("sk-very-secret") && !debug.contains("tg-raw-secret"),
        "{debug}"
    );
    // A secret in a bad field is not echoed either.
    let bad = GOOD.replace("max_body_bytes", "x").replace(
        "[server]",
        "[server]\nmax_body_bytes = \"${OPENAI_API_KEY}\"",
    );
    let err = Config::from_toml(&bad, &env).unwrap_err().to_string();
    assert!(!err.contains("sk-very-secret"), "{err}");
}

#[test]
fn unset_variable_is_reported_with_its_path() {
    let err = Config::from_toml(GOOD, &env_of(&[("TOLLGATE_API_KEY", "x")])).unwrap_err();
    assert!(err
        .issues
        .iter()
        .any(|i| i.path == "providers.openai.api_keys[0]" && i.message.contains("OPENAI_API_KEY")));
}

#[test]
fn the_same_key_twice_is_refused() {
    let text = r#"
[keys.a]
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
models = ["*"]
[keys.b]
key_env = "K"
models = ["*"]
"#;
    let err = Config::from_toml(text, &env_of(&[("K", "abc")])).unwrap_err();
    assert!(err.issues.iter().any(|i| i.message.contains("twice")));
}

#[test]
fn kafka_section_selects_the_kafka_sink_with_defaults() {
    let text = "[kafka]\nbrokers = \"127.0.0.1:19092\"\n";
    let c = Config::from_toml(text, &env_of(&[])).unwrap();
    let k = c.kafka.unwrap();
    assert_eq!(k.brokers, "127.0.0.1:19092");
    assert_eq!(k.topic, tollgate_schemas::topics::USAGE);
    assert_eq!(k.message_timeout, Duration::from_secs(5));
    assert!(Config::from_toml("", &env_of(&[])).unwrap().kafka.is_none());
    let err = Config::from_toml(
        "[kafka]\nbrokers = \" \"\nspool_max_bytes = 0\nfoo = 1\n",
        &env_of(&[]),
    )
    .unwrap_err();
    assert!(err.issues.iter().any(|i| i.path == "kafka"), "{err}");
    let err = Config::from_toml(
        "[kafka]\nbrokers = \" \"\nspool_max_bytes = 0\n",
        &env_of(&[]),
    )
    .unwrap_err();
    let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["kafka.brokers", "kafka.spool_max_bytes"]);
}

#[test]
fn telemetry_is_off_unless_an_endpoint_is_configured_or_in_the_standard_environment() {
    let base = [
        ("OPENAI_API_KEY", "sk-first"),
        ("TOLLGATE_API_KEY", "tg-raw"),
    ];
    let c = Config::from_toml(GOOD, &env_of(&base)).unwrap();
    assert!(c.telemetry.is_none());

    let text = format!(
        "{GOOD}\n[telemetry]\notlp_endpoint = \"http://collector:4318/\"\nservice_name = \"gw-eu\"\nsample_ratio = 0.25\n"
    );
    let t = Config::from_toml(&text, &env_of(&base))
        .unwrap()
        .telemetry
        .unwrap();
    assert_eq!(
        t.traces_endpoint.as_str(),
        "http://collector:4318/v1/traces"
    );
    assert_eq!((t.service_name.as_str(), t.sample_ratio), ("gw-eu", 0.25));

    let mut env = base.to_vec();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318"));
    let t = Config::from_toml(GOOD, &env_of(&env))
        .unwrap()
        .telemetry
        .unwrap();
    assert_eq!(t.traces_endpoint.as_str(), "http://otel:4318/v1/traces");
    assert_eq!((t.service_name.as_str(), t.sample_ratio), ("tollgate", 1.0));
    env.push(("OTEL_SDK_DISABLED", "true"));
    assert!(Config::from_toml(GOOD, &env_of(&env))
        .unwrap()
        .telemetry
        .is_none());

    // An empty endpoint (an unset `${VAR:-}`) is off, not an error.
    let text = format!("{GOOD}\n[telemetry]\notlp_endpoint = \"${{OTLP_URL:-}}\"\n");
    assert!(Config::from_toml(&text, &env_of(&base))
        .unwrap()
        .telemetry
        .is_none());
}

#[test]
fn telemetry_problems_are_reported_with_their_paths() {
    let env = env_of(&[
        ("OPENAI_API_KEY", "sk-first"),
        ("TOLLGATE_API_KEY", "tg-raw"),
    ]);
    let text = format!(
        "{GOOD}\n[telemetry]\notlp_endpoint = \"collector:4318\"\nsample_ratio = 1.5\nexporter = \"jaeger\"\n"
    );
    let paths: Vec<String> = Config::from_toml(&text, &env)
        .unwrap_err()
        .issues
        .into_iter()
        .map(|i| i.path)
        .collect();
    assert_eq!(paths, ["telemetry"], "unknown field refused first");
    let text = format!("{GOOD}\n[telemetry]\notlp_endpoint = \"ftp://x\"\nsample_ratio = 1.5\n");
    let paths: Vec<String> = Config::from_toml(&text, &env)
        .unwrap_err()
        .issues
        .into_iter()
        .map(|i| i.path)
        .collect();
    assert_eq!(paths, ["telemetry.sample_ratio", "telemetry.otlp_endpoint"]);
}

#[test]
fn reports_default_to_the_embedded_store_and_validate_clickhouse_settings() {
    let env = env_of(&[
        ("OPENAI_API_KEY", "sk"),
        ("TOLLGATE_API_KEY", "tg"),
        ("CH_PW", "pw"),
    ]);
    let config = Config::from_toml(GOOD, &env).unwrap();
    assert!(config.reports.clickhouse.is_none());

    let text = format!(
        "{GOOD}\n[reports]\nclickhouse_url = \"http://127.0.0.1:18123\"\nclickhouse_user = \"reader\"\nclickhouse_password_env = \"CH_PW\"\n"
    );
    let ch = Config::from_toml(&text, &env)
        .unwrap()
        .reports
        .clickhouse
        .unwrap();
    assert_eq!(ch.url.as_str(), "http://127.0.0.1:18123/");
    assert_eq!(ch.database, "tollgate");
    assert_eq!(ch.password.as_ref().map(Secret::expose), Some("pw"));

    let bad = format!(
        "{GOOD}\n[reports]\nclickhouse_url = \"ftp://x\"\nclickhouse_database = \"a;b\"\nclickhouse_password_env = \"UNSET\"\n"
    );
    let err = Config::from_toml(&bad, &env).unwrap_err();
    let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"reports.clickhouse_url"), "{err}");
    assert!(paths.contains(&"reports.clickhouse_database"), "{err}");
    assert!(paths.contains(&"reports.clickhouse_password_env"), "{err}");

    let orphan = format!("{GOOD}\n[reports]\nclickhouse_database = \"x\"\n");
    let err = Config::from_toml(&orphan, &env).unwrap_err();
    assert_eq!(err.issues[0].path, "reports.clickhouse_database");
}

#[test]
fn vertex_providers_take_a_project_region_and_service_account() {
    let sa = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/google-service-account/service-account.json"
    ))
    .unwrap();
    let text = r#"
[providers.vtx]
kind = "vertex"
project = "proj-1"
region = "europe-west4"
service_account_env = "SA_JSON"
publisher = "anthropic"

[providers.gem]
kind = "gemini"
api_key = "AIza-1"

[models.m]
deployments = [{ provider = "vtx", model = "claude-sonnet-4-5@20250929" }, { provider = "gem", model = "gemini-2.5-flash" }]
"#;
    let c = Config::from_toml(text, &env_of(&[("SA_JSON", &sa)])).unwrap();
    let vtx = c.providers.iter().find(|p| p.name == "vtx").unwrap();
    assert_eq!(
        vtx.base_url.as_str(),
        "https://europe-west4-aiplatform.googleapis.com/"
    );
    let v = vtx.vertex.as_ref().unwrap();
    assert_eq!(
        (v.project.as_str(), v.region.as_str()),
        ("proj-1", "europe-west4")
    );
    assert_eq!(
        v.publisher,
        Some(crate::provider::vertex::Publisher::Anthropic)
    );
    assert!(vtx.api_keys.is_empty());
    let gem = c.providers.iter().find(|p| p.name == "gem").unwrap();
    assert_eq!(
        gem.base_url.as_str(),
        "https://generativelanguage.googleapis.com/v1beta"
    );
    assert!(gem.vertex.is_none());

    // Everything wrong at once; the key file's content is never echoed.
    let bad = r#"
[providers.vtx]
kind = "vertex"
project = "Proj 1"
service_account_env = "SA_JSON"
api_keys = ["k"]
publisher = "meta"

[providers.oa]
kind = "openai"
api_key = "sk"
region = "us-central1"

[models.m]
deployments = [{ provider = "vtx", model = "gemini-2.5-flash" }]
"#;
    let broken = sa.replace("PRIVATE KEY", "EC PRIVATE KEY");
    let err = Config::from_toml(bad, &env_of(&[("SA_JSON", &broken)])).unwrap_err();
    let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
    for path in [
        "providers.vtx.project",
        "providers.vtx.region",
        "providers.vtx.api_keys",
        "providers.vtx",
        "providers.oa.region",
    ] {
        assert!(paths.contains(&path), "{path} missing in {err}");
    }
    let key_line = sa.split("\\n").nth(1).unwrap();
    assert!(!err.to_string().contains(key_line), "{err}");
}

#[test]
fn signed_kinds_take_id_secret_pairs_and_a_region() {
    let env = env_of(&[
        ("TOLLGATE_API_KEY", "x"),
        ("OPENAI_API_KEY", "sk-1"),
        ("TC_KEY", "tc-secret"),
    ]);
    let with = |provider: &str| {
        format!("{GOOD}\n{provider}\n[models.\"native\"]\ndeployments = [{{ provider = \"n\", model = \"m\" }}]\n")
    };
    let good = with("[providers.n]\nkind = \"hunyuan-native\"\napi_keys = [\"AKID1:${TC_KEY}\"]\nregion = \"ap-guangzhou\"");
    let c = Config::from_toml(&good, &env).unwrap();
    let n = c.providers.iter().find(|p| p.name == "n").unwrap();
    assert_eq!(n.region.as_deref(), Some("ap-guangzhou"));
    assert_eq!(n.base_url.as_str(), "https://hunyuan.tencentcloudapi.com/");
    for kind in ["hunyuan-native", "qianfan-v1"] {
        let bad = with(&format!(
            "[providers.n]\nkind = \"{kind}\"\napi_keys = [\"${{TC_KEY}}\"]"
        ));
        let err = Config::from_toml(&bad, &env).unwrap_err();
        assert!(
            err.issues
                .iter()
                .any(|i| i.path == "providers.n.api_keys" && i.message.contains("ID:SECRET")),
            "{err}"
        );
        assert!(!err.to_string().contains("tc-secret"));
    }
    // A bearer kind takes its key as it is.
    assert!(Config::from_toml(
        &with("[providers.n]\nkind = \"dashscope-native\"\napi_keys = [\"sk-ds\"]"),
        &env
    )
    .is_ok());
}
