//! docs/deploy/ — the systemd unit for a key-less host and the Kubernetes manifests — parsed and
//! cross-checked: every embedded config.toml passes ghapp's own validation, and what must agree
//! across files does (ports, paths, the token audience, the service account the broker's policy
//! names, the socket on both sides of the hostPath, the workload's uid). They were not run on a
//! cluster; this is what can be checked without one.

use ghapp_protocol::config::Config;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy")
}

/// Every document of a multi-document YAML file, as JSON values.
fn documents(file: &str) -> Vec<Value> {
    let path = deploy_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_yaml_ng::Value =
                serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            serde_json::to_value(value).unwrap()
        })
        .collect()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The config.toml of a ConfigMap, validated as the daemon would.
fn config_of(config_map: &Value) -> Config {
    let text = config_map["data"]["config.toml"]
        .as_str()
        .expect("config.toml");
    Config::parse(text, Path::new("/etc/ghapp/config/config.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The file `path` must lie in one of `container`'s volume mounts; returns that volume's name.
fn mounted_volume<'a>(container: &'a Value, path: &Path) -> &'a str {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
        .and_then(|m| m["name"].as_str())
        .unwrap_or_else(|| {
            panic!(
                "{} is on no volume of {}",
                path.display(),
                container["name"]
            )
        })
}

fn volume<'a>(pod_spec: &'a Value, name: &str) -> &'a Value {
    pod_spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn port_of(address: &str) -> u64 {
    address
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[test]
fn kubernetes_manifests_agree_on_ports_paths_and_audience() {
    let broker = documents("kubernetes/broker.yaml");
    let node = documents("kubernetes/node-daemonset.yaml");
    let workload = documents("kubernetes/workload-pod.yaml");

    // The broker: its listener, Service and the node daemons' upstream URL name one port.
    let broker_config = config_of(object(&broker, "ConfigMap", "ghapp-broker-config"));
    let network = broker_config.network.as_ref().expect("[network]");
    let listen_port = port_of(&network.listen[0]);
    let deployment = object(&broker, "Deployment", "ghapp-broker");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], listen_port);
    let service = object(&broker, "Service", "ghapp-broker");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], listen_port);
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );
    let node_config = config_of(object(&node, "ConfigMap", "ghapp-node-config"));
    let upstream = node_config.upstream.as_ref().expect("[upstream]");
    assert!(node_config.apps.is_empty(), "the node daemon holds no key");
    assert_eq!(
        upstream.url,
        format!(
            "https://{}.{}.svc:{}",
            service["metadata"]["name"].as_str().unwrap(),
            service["metadata"]["namespace"].as_str().unwrap(),
            service["spec"]["ports"][0]["port"]
        )
    );

    // The broker's files are on its volumes: key, TLS pair, cache key, config.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    assert_eq!(mounted_volume(container, Path::new(config_path)), "config");
    let app_key = broker_config.apps[0].private_key_file.clone().unwrap();
    let cache = broker_config.cache.as_ref().expect("[cache]");
    for (file, secret) in [
        (app_key, "ghapp-app-key"),
        (cache.encryption_key_file.clone(), "ghapp-cache-key"),
        (network.tls_cert_file.clone().unwrap(), "ghapp-broker-tls"),
        (network.tls_key_file.clone().unwrap(), "ghapp-broker-tls"),
    ] {
        let name = mounted_volume(container, &file);
        assert_eq!(
            volume(pod, name)["secret"]["secretName"],
            secret,
            "{}",
            file.display()
        );
    }

    // Redis: the [cache] URL names the Redis Service and the port Redis listens on.
    let redis_service = object(&broker, "Service", "ghapp-redis");
    let redis =
        &object(&broker, "Deployment", "ghapp-redis")["spec"]["template"]["spec"]["containers"][0];
    let redis_port = redis["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(redis_service["spec"]["ports"][0]["targetPort"], redis_port);
    assert_eq!(
        cache.redis_url,
        format!(
            "redis://ghapp-redis.ghapp.svc:{}",
            redis_service["spec"]["ports"][0]["port"]
        )
    );
    let redis_args: Vec<&str> = redis["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        redis_args
            .windows(2)
            .any(|w| w[0] == "--port" && w[1].parse() == Ok(redis_port))
    );

    // Identity: the projected token's audience is the broker's [[oidc]] audience, its file is
    // the node daemon's id_token_file, and the broker's policy names the DaemonSet's account.
    let daemonset = object(&node, "DaemonSet", "ghapp-node");
    let node_pod = &daemonset["spec"]["template"]["spec"];
    let node_container = &node_pod["containers"][0];
    let id_token_file = upstream.id_token_file.clone().expect("id_token_file");
    let identity = volume(node_pod, mounted_volume(node_container, &id_token_file));
    let projected = &identity["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(projected["audience"], "ghapp");
    assert_eq!(broker_config.oidc[0].audience, "ghapp");
    let mount = node_container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == identity["name"])
        .unwrap();
    assert_eq!(
        Path::new(mount["mountPath"].as_str().unwrap()).join(projected["path"].as_str().unwrap()),
        id_token_file
    );
    let account = node_pod["serviceAccountName"].as_str().unwrap();
    object(&node, "ServiceAccount", account);
    let policy = &broker_config.policy[0];
    assert_eq!(
        policy.issuer.as_deref(),
        Some(broker_config.oidc[0].issuer.as_str())
    );
    assert_eq!(
        policy.subject.as_deref(),
        Some(
            format!(
                "system:serviceaccount:{}:{account}",
                daemonset["metadata"]["namespace"].as_str().unwrap()
            )
            .as_str()
        )
    );
    let ca = upstream.ca_file.clone().unwrap();
    assert!(volume(node_pod, mounted_volume(node_container, &ca))["configMap"].is_object());

    // The socket: the node daemon's socket sits in the hostPath the workload mounts, at the
    // path the workload's GHAPP_SOCKET names, and the workload's uid is admitted.
    let socket = node_config.daemon.socket.clone().expect("[daemon] socket");
    let socket_volume = volume(node_pod, mounted_volume(node_container, &socket));
    let host_dir = socket_volume["hostPath"]["path"].as_str().unwrap();
    let pod = object(&workload, "Pod", "builder");
    let workload_container = &pod["spec"]["containers"][0];
    let env = workload_container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "GHAPP_SOCKET")
        .unwrap();
    let workload_socket = PathBuf::from(env["value"].as_str().unwrap());
    let workload_volume = volume(
        &pod["spec"],
        mounted_volume(workload_container, &workload_socket),
    );
    assert_eq!(workload_volume["hostPath"]["path"], host_dir);
    let in_host = |container: &Value, path: &Path| {
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap();
        Path::new(host_dir).join(
            path.strip_prefix(mount["mountPath"].as_str().unwrap())
                .unwrap(),
        )
    };
    assert_eq!(
        in_host(node_container, &socket),
        in_host(workload_container, &workload_socket)
    );
    let uid = pod["spec"]["securityContext"]["runAsUser"]
        .as_u64()
        .unwrap() as u32;
    assert!(
        node_config.daemon.allow_uids.contains(&uid),
        "uid {uid} is admitted"
    );
}

#[test]
fn systemd_unit_for_a_key_less_host_matches_its_config() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/ghapp-keyless.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    let after = |flag: &str| words[words.iter().position(|w| *w == flag).unwrap() + 1];
    assert_eq!(after("--config"), "/etc/ghapp/config.toml");
    let text = std::fs::read_to_string(deploy_dir().join("systemd/config.toml")).unwrap();
    let config =
        Config::parse(&text, Path::new("/etc/ghapp/config.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.apps.is_empty(), "a key-less host");
    let upstream = config.upstream.expect("[upstream]");
    assert!(upstream.url.starts_with("https://"));
    assert!(upstream.client_key_file.unwrap().starts_with("/etc/ghapp"));
    let socket = config.daemon.socket.unwrap();
    assert_eq!(Path::new(after("--socket")), socket);
    let runtime_dir = unit
        .lines()
        .find_map(|l| l.strip_prefix("RuntimeDirectory="))
        .expect("RuntimeDirectory");
    assert_eq!(
        socket.parent().unwrap(),
        Path::new("/run").join(runtime_dir)
    );
    let audit = config.daemon.audit_log.unwrap();
    let logs = unit
        .lines()
        .find_map(|l| l.strip_prefix("LogsDirectory="))
        .unwrap();
    assert!(
        audit.starts_with(Path::new("/var/log").join(logs)),
        "ProtectSystem=strict: the audit log must be writable"
    );
}
