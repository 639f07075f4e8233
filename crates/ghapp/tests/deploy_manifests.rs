//! docs/deploy/ (issue 15.5) stays true: every Kubernetes manifest parses, every ghapp config in
//! it (ConfigMaps, the systemd host's files) passes `Config::parse` — the daemon's own check — and
//! what must agree across files does: ports (container, Service, `[network] listen`), probe paths
//! (routes that need no credential), the socket on both sides of the hostPath, the projected
//! tokens' audience and mount paths against `[[oidc]]` and `id_token_file`, the service accounts
//! the policies name, the Redis URL against its Service, and every Secret, ConfigMap and
//! ServiceAccount referenced. The manifests were never applied to a cluster here; this is what
//! keeps them from drifting from the code. It runs in well under a second.

use ghapp_daemon::routes::Route;
use ghapp_protocol::config::Config;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy")
}

/// One document of a manifest file.
struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        text(&self.value, "kind")
    }
    fn name(&self) -> &str {
        text(&self.value, "metadata.name")
    }
    fn namespace(&self) -> &str {
        get(&self.value, "metadata.namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Every document of every `kubernetes/*.yaml`, in file order.
fn docs() -> Vec<Doc> {
    let dir = deploy_dir().join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the manifests in {}",
        dir.display()
    );
    let mut docs = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&source) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{file}: not valid YAML: {e}"));
            if value.is_null() {
                continue;
            }
            docs.push(Doc {
                file: file.clone(),
                value,
            });
        }
    }
    docs
}

/// The value at a dotted path (`spec.template.spec`, `ports.0.port`), if there is one.
fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(value, |value, key| match key.parse::<usize>() {
            Ok(index) => value.get(index),
            Err(_) => value.get(key),
        })
}

/// The value at a dotted path; its absence fails the test, naming the path.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    get(value, path).unwrap_or_else(|| panic!("missing {path} in {}", brief(value)))
}

/// The string at a dotted path.
fn text<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string in {}", brief(value)))
}

/// The sequence at a dotted path, empty when absent.
fn list<'a>(value: &'a Value, path: &str) -> &'a [Value] {
    get(value, path)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

fn brief(value: &Value) -> String {
    let shown = serde_yaml_ng::to_string(value).unwrap_or_default();
    shown.chars().take(160).collect()
}

fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Doc {
    docs.iter()
        .find(|d| d.kind() == kind && d.name() == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in docs/deploy/kubernetes"))
}

/// The pod spec of a workload object (Deployment, DaemonSet, StatefulSet, Job) or of a Pod.
fn pod_spec(doc: &Doc) -> Option<&Value> {
    match doc.kind() {
        "Pod" => get(&doc.value, "spec"),
        "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => get(&doc.value, "spec.template.spec"),
        _ => None,
    }
}

fn container<'a>(spec: &'a Value, name: &str) -> &'a Value {
    list(spec, "containers")
        .iter()
        .find(|c| text(c, "name") == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn volume<'a>(spec: &'a Value, name: &str) -> &'a Value {
    list(spec, "volumes")
        .iter()
        .find(|v| text(v, "name") == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// The mount (and its volume) under which `path` lies in `container`, the deepest one.
fn mount_of<'a>(spec: &'a Value, container: &'a Value, path: &str) -> (&'a Value, &'a Value) {
    list(container, "volumeMounts")
        .iter()
        .filter(|m| {
            let mount = text(m, "mountPath");
            path == mount || path.starts_with(&format!("{}/", mount.trim_end_matches('/')))
        })
        .max_by_key(|m| text(m, "mountPath").len())
        .map(|m| (m, volume(spec, text(m, "name"))))
        .unwrap_or_else(|| {
            panic!(
                "{path} is on no volume mounted in container {}",
                text(container, "name")
            )
        })
}

/// A container's `command` followed by its `args`.
fn argv(container: &Value) -> Vec<String> {
    list(container, "command")
        .iter()
        .chain(list(container, "args"))
        .map(|v| {
            v.as_str()
                .expect("command and args are strings")
                .to_string()
        })
        .collect()
}

fn flag<'a>(argv: &'a [String], name: &str) -> &'a str {
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .unwrap_or_else(|| panic!("{name} missing in {argv:?}"))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a str {
    list(container, "env")
        .iter()
        .find(|e| text(e, "name") == name)
        .map(|e| text(e, "value"))
        .unwrap_or_else(|| {
            panic!(
                "env {name} missing in container {}",
                text(container, "name")
            )
        })
}

fn int(value: &Value, path: &str) -> i64 {
    at(value, path)
        .as_i64()
        .unwrap_or_else(|| panic!("{path} is not an integer"))
}

/// A pod-level or container-level `securityContext` integer (the container's wins).
fn security(spec: &Value, container: &Value, key: &str) -> Option<i64> {
    get(container, &format!("securityContext.{key}"))
        .or_else(|| get(spec, &format!("securityContext.{key}")))
        .and_then(Value::as_i64)
}

/// A port as a Service or probe names it (number or container port name) → the number.
fn resolve_port(container: &Value, port: &Value) -> i64 {
    if let Some(number) = port.as_i64() {
        return number;
    }
    let name = port.as_str().expect("a port is a number or a name");
    list(container, "ports")
        .iter()
        .find(|p| get(p, "name").and_then(Value::as_str) == Some(name))
        .map(|p| int(p, "containerPort"))
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// The projected service-account token `file` is: (audience, expirationSeconds).
fn projected_token(spec: &Value, container: &Value, file: &str) -> (String, i64) {
    let (mount, volume) = mount_of(spec, container, file);
    let relative = file
        .strip_prefix(text(mount, "mountPath"))
        .map(|rest| rest.trim_start_matches('/'))
        .unwrap();
    let source = list(volume, "projected.sources")
        .iter()
        .filter_map(|s| get(s, "serviceAccountToken"))
        .find(|t| text(t, "path") == relative)
        .unwrap_or_else(|| panic!("{file} is not a projected serviceAccountToken"));
    (
        text(source, "audience").to_string(),
        int(source, "expirationSeconds"),
    )
}

// ---- ghapp configs ----

/// A ghapp config as the daemon would load it, plus its raw TOML.
struct Ghapp {
    config: Config,
    raw: toml::Table,
}

impl Ghapp {
    fn raw_str(&self, path: &str) -> Option<&str> {
        let mut parts = path.split('.');
        let mut value = self.raw.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        value.as_str()
    }
}

fn parse_config(label: &str, text: &str) -> Ghapp {
    let raw: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{label}: not TOML: {e}"));
    let config = Config::parse(text, Path::new(label))
        .unwrap_or_else(|e| panic!("the daemon would refuse {label}:\n{e}"));
    Ghapp { config, raw }
}

/// The config a ghapp container runs with: its `--config` file, through the volume mount, from
/// the ConfigMap.
fn container_config(docs: &[Doc], owner: &Doc, container: &Value) -> Ghapp {
    let spec = pod_spec(owner).unwrap();
    let args = argv(container);
    let path = flag(&args, "--config");
    let (mount, volume) = mount_of(spec, container, path);
    let key = match get(mount, "subPath").and_then(Value::as_str) {
        Some(sub) => sub.to_string(),
        None => path
            .strip_prefix(text(mount, "mountPath"))
            .unwrap()
            .trim_start_matches('/')
            .to_string(),
    };
    let map = find(docs, "ConfigMap", text(volume, "configMap.name"));
    let label = format!("{}: ConfigMap {} {key}", map.file, map.name());
    // The key holds a dot (`config.toml`): not a dotted path.
    let source = at(&map.value, "data")
        .get(key.as_str())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{label}: no such key"));
    parse_config(&label, source)
}

fn policy_subject_for(config: &Config, issuer: &str, namespace: &str, account: &str) -> bool {
    let subject = format!("system:serviceaccount:{namespace}:{account}");
    config
        .policy
        .iter()
        .any(|p| p.issuer.as_deref() == Some(issuer) && p.subject.as_deref() == Some(&subject))
}

fn oidc_audience<'a>(config: &'a Config, issuer: &str) -> &'a str {
    config
        .oidc
        .iter()
        .find(|o| o.issuer == issuer)
        .map(|o| o.audience.as_str())
        .unwrap_or_else(|| panic!("no [[oidc]] for {issuer}"))
}

/// The `issuer` of the first `[[policy]]` that names one.
fn policy_issuer(config: &Config) -> &str {
    config
        .policy
        .iter()
        .find_map(|p| p.issuer.as_deref())
        .expect("a [[policy]] entry selecting by issuer")
}

// ---- the tests ----

#[test]
fn manifests_parse_and_follow_the_conventions() {
    let docs = docs();
    for doc in &docs {
        let at_doc = format!("{}: {} {}", doc.file, doc.kind(), doc.name());
        assert!(
            get(&doc.value, "apiVersion").is_some(),
            "{at_doc}: apiVersion"
        );
        assert!(!doc.name().is_empty(), "{at_doc}: metadata.name");
        let cluster_scoped = matches!(
            doc.kind(),
            "Namespace" | "ClusterRoleBinding" | "ClusterRole"
        );
        assert_eq!(
            !cluster_scoped,
            !doc.namespace().is_empty(),
            "{at_doc}: namespace"
        );
        let Some(spec) = pod_spec(doc) else { continue };
        assert_eq!(
            get(spec, "securityContext.runAsNonRoot").and_then(Value::as_bool),
            Some(true),
            "{at_doc}: the pod runs as non-root"
        );
        assert_eq!(
            get(spec, "automountServiceAccountToken").and_then(Value::as_bool),
            Some(false),
            "{at_doc}: no API token where none is needed"
        );
        let long_running = doc.kind() != "Pod";
        for (init, c) in list(spec, "initContainers")
            .iter()
            .map(|c| (true, c))
            .chain(list(spec, "containers").iter().map(|c| (false, c)))
        {
            let at_c = format!("{at_doc} container {}", text(c, "name"));
            assert!(
                text(c, "image").contains(':'),
                "{at_c}: image without a tag"
            );
            assert!(
                get(c, "resources.requests.cpu").is_some(),
                "{at_c}: cpu request"
            );
            assert!(
                get(c, "resources.requests.memory").is_some(),
                "{at_c}: memory request"
            );
            let context = at(c, "securityContext");
            assert_eq!(
                get(context, "allowPrivilegeEscalation").and_then(Value::as_bool),
                Some(false),
                "{at_c}"
            );
            assert_eq!(
                get(context, "readOnlyRootFilesystem").and_then(Value::as_bool),
                Some(true),
                "{at_c}"
            );
            assert!(
                list(context, "capabilities.drop")
                    .iter()
                    .any(|c| c.as_str() == Some("ALL")),
                "{at_c}: drops ALL capabilities"
            );
            if security(spec, c, "runAsUser") == Some(0) {
                // Root only for a one-shot step, with only the ownership capabilities.
                assert!(init, "{at_c}: only an init container may run as root");
                for cap in list(context, "capabilities.add") {
                    assert!(
                        matches!(cap.as_str(), Some("CHOWN" | "FOWNER")),
                        "{at_c}: adds {cap:?}"
                    );
                }
            } else {
                assert!(
                    list(context, "capabilities.add").is_empty(),
                    "{at_c}: adds capabilities"
                );
            }
            if long_running && !init {
                for probe in ["readinessProbe", "livenessProbe"] {
                    assert!(get(c, probe).is_some(), "{at_c}: {probe}");
                }
            }
        }
    }
}

#[test]
fn every_reference_exists() {
    let docs = docs();
    let exists = |kind: &str, name: &str, namespace: &str| {
        // Kubernetes publishes the cluster's CA in every namespace (since 1.20).
        (kind == "ConfigMap" && name == "kube-root-ca.crt")
            || docs
                .iter()
                .any(|d| d.kind() == kind && d.name() == name && d.namespace() == namespace)
    };
    let mut checked = 0;
    for doc in &docs {
        let Some(spec) = pod_spec(doc) else { continue };
        let namespace = doc.namespace();
        let at_doc = format!("{}: {} {}", doc.file, doc.kind(), doc.name());
        if let Some(account) = get(spec, "serviceAccountName").and_then(Value::as_str) {
            assert!(
                exists("ServiceAccount", account, namespace),
                "{at_doc}: ServiceAccount {account}"
            );
            checked += 1;
        }
        for v in list(spec, "volumes") {
            let sources = list(v, "projected.sources");
            for source in std::iter::once(v).chain(sources) {
                if let Some(name) = get(source, "configMap.name").and_then(Value::as_str) {
                    assert!(
                        exists("ConfigMap", name, namespace),
                        "{at_doc}: ConfigMap {name}"
                    );
                    checked += 1;
                }
                let secret =
                    get(source, "secret.secretName").or_else(|| get(source, "secret.name"));
                if let Some(name) = secret.and_then(Value::as_str) {
                    assert!(exists("Secret", name, namespace), "{at_doc}: Secret {name}");
                    checked += 1;
                }
            }
        }
        for c in list(spec, "containers")
            .iter()
            .chain(list(spec, "initContainers"))
        {
            for mount in list(c, "volumeMounts") {
                volume(spec, text(mount, "name"));
            }
            for e in list(c, "env") {
                for (kind, path) in [
                    ("Secret", "valueFrom.secretKeyRef.name"),
                    ("ConfigMap", "valueFrom.configMapKeyRef.name"),
                ] {
                    if let Some(name) = get(e, path).and_then(Value::as_str) {
                        assert!(exists(kind, name, namespace), "{at_doc}: {kind} {name}");
                    }
                }
            }
        }
    }
    for service in docs.iter().filter(|d| d.kind() == "Service") {
        let selector = at(&service.value, "spec.selector").as_mapping().unwrap();
        let selected = docs
            .iter()
            .filter(|d| d.namespace() == service.namespace())
            .any(|d| {
                let labels =
                    get(&d.value, "spec.template.metadata.labels").and_then(Value::as_mapping);
                labels.is_some_and(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            });
        assert!(
            selected,
            "Service {} selects no pod template",
            service.name()
        );
    }
    assert!(
        checked >= 10,
        "only {checked} references found: is the walk broken?"
    );
}

#[test]
fn broker_ports_probes_files_and_redis_agree() {
    let docs = docs();
    let broker = find(&docs, "Deployment", "ghapp-broker");
    assert!(
        int(&broker.value, "spec.replicas") >= 2,
        "the broker runs replicas"
    );
    let spec = pod_spec(broker).unwrap();
    let ghapp = container(spec, "ghapp");
    let Ghapp { config, raw } = container_config(&docs, broker, ghapp);
    let network = config
        .network
        .as_ref()
        .expect("the broker serves [network]");
    let listen_ports: Vec<i64> = network
        .listen
        .iter()
        .map(|a| a.parse::<std::net::SocketAddr>().unwrap().port().into())
        .collect();
    for port in list(ghapp, "ports") {
        assert!(
            listen_ports.contains(&int(port, "containerPort")),
            "containerPort not in [network] listen {listen_ports:?}"
        );
    }
    let service = find(&docs, "Service", "ghapp-broker");
    for port in list(&service.value, "spec.ports") {
        let target = resolve_port(ghapp, at(port, "targetPort"));
        assert!(
            listen_ports.contains(&target),
            "Service targetPort {target} is not in [network] listen {listen_ports:?}"
        );
        assert_eq!(int(port, "port"), 8443);
    }
    let tls = network.tls_cert_file.is_some() && network.tls_key_file.is_some();
    for probe in ["readinessProbe", "livenessProbe"] {
        let get_ = at(ghapp, &format!("{probe}.httpGet"));
        let path = text(get_, "path");
        let route = Route::parse(path);
        assert!(
            route != Route::Unmatched && route.credential_free(),
            "{probe} path {path} is not a route answered without a credential"
        );
        let port = resolve_port(ghapp, at(get_, "port"));
        assert!(listen_ports.contains(&port), "{probe} port {port}");
        assert_eq!(
            text(get_, "scheme") == "HTTPS",
            tls,
            "{probe} scheme vs TLS in [network]"
        );
    }

    // Every file the config names is on a volume of the container; one on the in-memory
    // volume is put there by an init container (the keys, copied 0600).
    let init_scripts: String = list(spec, "initContainers")
        .iter()
        .flat_map(argv)
        .collect::<Vec<_>>()
        .join("\n");
    let mut files: Vec<PathBuf> = [&network.tls_cert_file, &network.tls_key_file]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    for app in &config.apps {
        files.extend(app.private_key_file.clone());
    }
    for oidc in &config.oidc {
        files.extend(oidc.ca_file.clone());
    }
    let cache_key = raw
        .get("cache")
        .and_then(|c| c.get("encryption_key_file"))
        .and_then(toml::Value::as_str)
        .expect("the broker shares its cache: [cache] encryption_key_file");
    files.push(cache_key.into());
    for file in &files {
        let file = file.to_str().unwrap();
        let (mount, volume) = mount_of(spec, ghapp, file);
        if get(volume, "emptyDir").is_some() {
            assert!(
                init_scripts.contains(file),
                "{file} is on {}, but no init container puts it there",
                text(mount, "name")
            );
        }
    }

    // [cache] redis_url → the Redis Service → the Redis container.
    let redis_url = raw["cache"]["redis_url"].as_str().unwrap();
    let authority = redis_url
        .split("://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let (host, port) = authority
        .rsplit_once(':')
        .expect("redis_url names its port");
    let redis_service = find(&docs, "Service", host.split('.').next().unwrap());
    let namespace = redis_service.namespace();
    assert!(
        [
            format!("{}.{namespace}.svc", redis_service.name()),
            format!("{}.{namespace}.svc.cluster.local", redis_service.name())
        ]
        .contains(&host.to_string()),
        "redis_url host {host} is not the Service's DNS name"
    );
    let service_port = &list(&redis_service.value, "spec.ports")[0];
    assert_eq!(
        int(service_port, "port").to_string(),
        port,
        "redis_url port vs the Service"
    );
    let redis = find(&docs, "Deployment", "ghapp-redis");
    let redis_container = container(pod_spec(redis).unwrap(), "redis");
    let target = resolve_port(redis_container, at(service_port, "targetPort"));
    assert_eq!(
        flag(&argv(redis_container), "--port"),
        target.to_string(),
        "redis --port vs the Service's targetPort"
    );
    let network_policy = find(&docs, "NetworkPolicy", "ghapp-redis");
    let allowed = at(
        &network_policy.value,
        "spec.ingress.0.from.0.podSelector.matchLabels",
    );
    assert_eq!(
        Some(allowed),
        get(&broker.value, "spec.template.metadata.labels"),
        "Redis admits the broker's pods"
    );
}

#[test]
fn node_daemon_is_keyless_and_chained_to_the_broker() {
    let docs = docs();
    let broker = find(&docs, "Deployment", "ghapp-broker");
    let broker_config =
        container_config(&docs, broker, container(pod_spec(broker).unwrap(), "ghapp")).config;
    let node = find(&docs, "DaemonSet", "ghapp-node");
    let spec = pod_spec(node).unwrap();
    let ghapp = container(spec, "ghapp");
    let node_config = container_config(&docs, node, ghapp);
    assert!(
        node_config.config.apps.is_empty(),
        "a node daemon holds no App key: no [[app]]"
    );
    for v in list(spec, "volumes") {
        assert!(
            get(v, "secret").is_none(),
            "no Secret on the node daemon: {}",
            brief(v)
        );
    }

    // [upstream] url → the broker's Service, on its port, over TLS.
    let url = node_config.raw_str("upstream.url").expect("[upstream] url");
    let authority = url
        .strip_prefix("https://")
        .expect("upstream over TLS")
        .trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .expect("upstream url names its port");
    let service = find(&docs, "Service", "ghapp-broker");
    let namespace = service.namespace();
    assert!(
        [
            format!("ghapp-broker.{namespace}.svc"),
            format!("ghapp-broker.{namespace}.svc.cluster.local")
        ]
        .contains(&host.to_string()),
        "upstream host {host} is not the broker Service's DNS name"
    );
    assert_eq!(
        int(&list(&service.value, "spec.ports")[0], "port").to_string(),
        port
    );
    let ca = node_config
        .raw_str("upstream.ca_file")
        .expect("upstream.ca_file");
    let (_, ca_volume) = mount_of(spec, ghapp, ca);
    assert_eq!(text(ca_volume, "configMap.name"), "ghapp-broker-ca");

    // Its identity: the projected token at id_token_file, whose audience the broker accepts,
    // for the service account the broker's policy names.
    let token_file = node_config
        .raw_str("upstream.id_token_file")
        .expect("upstream.id_token_file");
    let (audience, lifetime) = projected_token(spec, ghapp, token_file);
    let issuer = policy_issuer(&broker_config);
    assert_eq!(
        audience,
        oidc_audience(&broker_config, issuer),
        "projected token audience vs the broker's [[oidc]]"
    );
    assert!(
        lifetime >= 600,
        "expirationSeconds {lifetime} < 600 (the kubelet's minimum)"
    );
    let account = text(spec, "serviceAccountName");
    assert!(
        policy_subject_for(&broker_config, issuer, node.namespace(), account),
        "no broker [[policy]] selects system:serviceaccount:{}:{account}",
        node.namespace()
    );

    // The ghapp command lines and the probes' socket.
    let socket = node_config
        .config
        .daemon
        .socket
        .as_ref()
        .expect("[daemon] socket")
        .to_str()
        .unwrap();
    for probe in ["readinessProbe", "livenessProbe"] {
        let command: Vec<String> = list(ghapp, &format!("{probe}.exec.command"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            command.first(),
            argv(ghapp).first(),
            "{probe} runs the same ghapp"
        );
        assert_eq!(
            flag(&command, "--socket"),
            socket,
            "{probe} asks the daemon's socket"
        );
        assert_cli_parses(&command[1..]);
    }
    for doc in [broker, node] {
        assert_cli_parses(&argv(container(pod_spec(doc).unwrap(), "ghapp"))[1..]);
    }
}

#[test]
fn the_socket_and_the_pods_identity_agree_across_the_hostpath() {
    let docs = docs();
    let node = find(&docs, "DaemonSet", "ghapp-node");
    let node_spec = pod_spec(node).unwrap();
    let ghapp = container(node_spec, "ghapp");
    let Ghapp { config, .. } = container_config(&docs, node, ghapp);
    let socket = config.daemon.socket.clone().expect("[daemon] socket");
    let socket_dir = socket.parent().unwrap().to_str().unwrap();
    let (mount, node_volume) = mount_of(node_spec, ghapp, socket.to_str().unwrap());
    assert_eq!(
        text(mount, "mountPath"),
        socket_dir,
        "the hostPath is the socket's directory"
    );
    let host_dir = text(node_volume, "hostPath.path");

    // The init container hands the node's directory to the daemon's uid and the socket group.
    let group: i64 = config
        .daemon
        .socket_group
        .as_deref()
        .expect("socket_group")
        .parse()
        .expect("socket_group as a gid");
    let daemon_uid = security(node_spec, ghapp, "runAsUser").unwrap();
    assert_eq!(
        security(node_spec, ghapp, "runAsGroup"),
        Some(group),
        "the daemon's own group is socket_group"
    );
    let init = &list(node_spec, "initContainers")[0];
    let (init_mount, init_volume) = mount_of(
        node_spec,
        init,
        text(&list(init, "volumeMounts")[0], "mountPath"),
    );
    assert_eq!(text(init_volume, "hostPath.path"), host_dir);
    let script = argv(init).join(" ");
    assert!(
        script.contains(&format!(
            "chown {daemon_uid}:{group} {}",
            text(init_mount, "mountPath")
        )),
        "the init container gives the socket directory to {daemon_uid}:{group}: {script}"
    );

    // The workload mounts the same directory, points GHAPP_SOCKET at the socket, runs with the
    // socket's group, and presents a projected token the node daemon's [[oidc]] accepts.
    let pod = find(&docs, "Pod", "builder");
    let pod_spec_ = pod_spec(pod).unwrap();
    let build = container(pod_spec_, "build");
    let client_socket = env(build, "GHAPP_SOCKET");
    assert_eq!(
        client_socket,
        ghapp_protocol::paths::SYSTEM_SOCKET,
        "clients trust /run/ghapp's owner only at the system path"
    );
    let (pod_mount, pod_volume) = mount_of(pod_spec_, build, client_socket);
    assert_eq!(
        text(pod_volume, "hostPath.path"),
        host_dir,
        "the workload mounts the node daemon's hostPath"
    );
    assert_eq!(
        get(pod_mount, "readOnly").and_then(Value::as_bool),
        Some(true),
        "the socket directory is mounted read-only"
    );
    assert_eq!(
        Path::new(text(pod_mount, "mountPath")).join(socket.file_name().unwrap()),
        Path::new(client_socket),
        "GHAPP_SOCKET vs the daemon's socket through the mount"
    );
    assert_eq!(
        security(pod_spec_, build, "runAsGroup"),
        Some(group),
        "the workload's gid is socket_group"
    );

    let token_file = env(build, "GHAPP_ID_TOKEN_FILE");
    let (audience, lifetime) = projected_token(pod_spec_, build, token_file);
    let issuer = policy_issuer(&config);
    assert_eq!(
        audience,
        oidc_audience(&config, issuer),
        "the pod's token audience vs the node daemon's [[oidc]]"
    );
    assert!(lifetime >= 600, "expirationSeconds {lifetime} < 600");
    let account = text(pod_spec_, "serviceAccountName");
    assert!(
        policy_subject_for(&config, issuer, pod.namespace(), account),
        "no node [[policy]] selects system:serviceaccount:{}:{account}",
        pod.namespace()
    );
    assert!(
        config
            .policy
            .iter()
            .any(|p| p.gid == Some(group as u32) && p.uid.is_none()),
        "the pods' gid has a [[policy]] (the ceiling a token narrows)"
    );
}

#[test]
fn keyless_systemd_host_agrees_with_the_standard_unit() {
    let dir = deploy_dir().join("systemd");
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let host = parse_config("systemd/config.toml", &read(&dir.join("config.toml")));
    assert!(
        host.config.apps.is_empty(),
        "a key-less host has no [[app]]"
    );
    let socket = host
        .config
        .daemon
        .socket
        .as_ref()
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(socket, ghapp_protocol::paths::SYSTEM_SOCKET);
    for key in ["upstream.ca_file", "upstream.client_key_file"] {
        let file = host.raw_str(key).unwrap_or_else(|| panic!("{key}"));
        assert!(
            file.starts_with("/etc/ghapp/"),
            "{key} {file} is not where the unit's comments install it"
        );
    }
    let audit = host.config.daemon.audit_log.as_ref().unwrap();
    assert!(
        audit.starts_with("/var/log/ghapp"),
        "audit_log must be in LogsDirectory=ghapp (ProtectSystem=strict)"
    );

    let broker = parse_config(
        "systemd/broker-side.toml",
        &read(&dir.join("broker-side.toml")),
    );
    for client in &broker.config.clients {
        assert!(
            broker
                .config
                .policy
                .iter()
                .any(|p| p.client.as_deref() == Some(&client.name)),
            "no [[policy]] selects [[client]] {}",
            client.name
        );
    }

    let unit = read(&dir.join("ghapp.service"));
    let standard = read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/systemd/system/ghapp.service"),
    );
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let args: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    assert!(exec.contains("ghapp daemon --foreground"), "{exec}");
    assert_eq!(flag(&args, "--config"), "/etc/ghapp/config.toml");
    assert_eq!(flag(&args, "--socket"), socket);
    assert_cli_parses(&args[1..]);
    // Every setting of the standard system unit from its hardening on, and its contract.
    let hardening = standard
        .split("# Hardening.")
        .nth(1)
        .expect("the standard unit's hardening section");
    for line in hardening
        .lines()
        .chain([
            "Type=notify",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "LimitNOFILE=16384",
            "LimitCORE=0",
            "RuntimeDirectory=ghapp",
            "LogsDirectory=ghapp",
            "Requires=ghapp.socket",
        ])
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with('['))
    {
        assert!(
            unit.lines().any(|l| l == line),
            "the key-less unit lacks {line:?} (scripts/systemd/system/ghapp.service has it)"
        );
    }
    systemd_analyze_verify(&unit);
}

/// `systemd-analyze verify` of the key-less unit with the standard socket: silent, as
/// `ghapp-daemon/tests/systemd_units.rs` requires of the shipped units.
fn systemd_analyze_verify(unit: &str) {
    let Some(analyze) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("systemd-analyze"))
            .find(|p| p.is_file())
    }) else {
        assert!(
            std::env::var_os("GHAPP_TEST_REQUIRE_SYSTEMD_ANALYZE").is_none(),
            "systemd-analyze is not installed and GHAPP_TEST_REQUIRE_SYSTEMD_ANALYZE is set"
        );
        eprintln!("SKIPPED: systemd-analyze is not installed: the key-less unit was not verified");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let socket =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/systemd/system/ghapp.socket");
    std::fs::copy(&socket, tmp.path().join("ghapp.socket")).unwrap();
    // ExecStart must name an existing executable, as in systemd_units.rs.
    let unit: String = unit
        .lines()
        .map(|line| match line.strip_prefix("ExecStart=") {
            Some(rest) => format!(
                "ExecStart=/bin/true {}\n",
                rest.split_once(' ').map_or("", |(_, a)| a)
            ),
            None => format!("{line}\n"),
        })
        .collect();
    std::fs::write(tmp.path().join("ghapp.service"), unit).unwrap();
    let output = Command::new(analyze)
        .args(["verify", "./ghapp.socket", "./ghapp.service"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
}

/// The real `ghapp` binary accepts these arguments (checked with `--help` appended: clap
/// rejects an unknown flag or value before it prints the help).
fn assert_cli_parses(args: &[String]) {
    let output = Command::new(env!("CARGO_BIN_EXE_ghapp"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ghapp {} --help: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
