//! The deployment files (Dockerfile, docker-compose.yml, deploy/kubernetes, deploy/grafana,
//! deploy/prometheus) checked against the real binary, since no container engine can build or
//! run them on the CI machine (no image registry is reachable): every flag they pass exists in
//! `keyval --help`, the ports and paths agree with each other, the Kubernetes objects have the
//! properties a Raft cluster needs, the ConfigMap's TOML starts a node, the probes hit real
//! endpoints, and every metric the dashboard and the alerts use is exported by a running node.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every YAML document in a file, as JSON values.
fn yaml_docs(rel: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&read(rel))
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The long flags `keyval --help` documents.
fn keyval_flags() -> BTreeSet<String> {
    let out = Command::new(keyval_bin())
        .arg("--help")
        .output()
        .expect("run keyval --help");
    assert!(out.status.success());
    flags_in(&String::from_utf8_lossy(&out.stdout))
}

/// `--name` tokens of a command line or help text (`--name=value` counts as `--name`).
fn flags_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '[' || c == ']')
        .filter_map(|t| t.strip_prefix("--"))
        .map(|t| t.split('=').next().unwrap_or(t))
        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .map(|t| format!("--{t}"))
        .collect()
}

fn assert_known_flags(what: &str, used: &BTreeSet<String>, known: &BTreeSet<String>) {
    assert!(!used.is_empty(), "{what}: no flags found");
    let unknown: Vec<_> = used.difference(known).collect();
    assert!(
        unknown.is_empty(),
        "{what} uses flags keyval lacks: {unknown:?}"
    );
}

/// The value after `--name` or in `--name=value` in a list of arguments.
fn flag_value(args: &[String], name: &str) -> Option<String> {
    let eq = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&eq) {
            Some(v.to_string())
        } else if a == name {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The Dockerfile's instructions, continuation lines joined: (KEYWORD, rest).
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(k, rest)| (k.to_ascii_uppercase(), rest.trim().to_string()))
        .collect()
}

fn instruction<'a>(df: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    df.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Where the image puts the playground (the destination of `COPY --from=ui`).
fn image_ui_dir(df: &[(String, String)]) -> String {
    let copy = instruction(df, "COPY")
        .into_iter()
        .find(|c| c.starts_with("--from=ui"))
        .expect("the runtime stage copies the playground from the ui stage");
    copy.split_whitespace()
        .last()
        .expect("COPY destination")
        .trim_end_matches('/')
        .to_string()
}

#[test]
fn dockerfile_matches_the_binary() {
    let df = dockerfile();
    assert!(
        instruction(&df, "FROM").len() >= 3,
        "build, ui and runtime stages"
    );
    let user = instruction(&df, "USER");
    let user = user.last().expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as root: {user}"
    );
    let expose = instruction(&df, "EXPOSE");
    assert_eq!(expose.len(), 1, "one exposed port");
    let port: u16 = expose[0].parse().expect("EXPOSE a port number");
    let entry: Vec<String> =
        serde_json::from_str(instruction(&df, "ENTRYPOINT")[0]).expect("exec-form ENTRYPOINT");
    assert_eq!(entry, ["keyval"]);
    let cmd: Vec<String> = serde_json::from_str(instruction(&df, "CMD")[0]).expect("exec-form CMD");
    assert_known_flags("Dockerfile CMD", &flags_in(&cmd.join(" ")), &keyval_flags());
    let listen = flag_value(&cmd, "--listen").expect("CMD sets --listen");
    assert_eq!(port_of(&listen), port, "CMD listens where EXPOSE says");
    let volume = instruction(&df, "VOLUME");
    assert_eq!(
        flag_value(&cmd, "--data-dir").as_deref(),
        volume.first().copied(),
        "the data directory is the volume"
    );
    let health = instruction(&df, "HEALTHCHECK");
    assert!(
        health[0].contains(&format!("http://127.0.0.1:{port}/livez")),
        "HEALTHCHECK probes /livez on the exposed port: {}",
        health[0]
    );
    assert!(image_ui_dir(&df).starts_with('/'));
    let ignore = read(".dockerignore");
    for must in ["target", ".git", "data"] {
        assert!(
            ignore.lines().any(|l| l.trim() == must),
            ".dockerignore lacks {must}"
        );
    }
}

#[test]
fn compose_cluster_matches_the_binary_and_the_image() {
    let docs = yaml_docs("docker-compose.yml");
    let services = docs[0]["services"].as_object().expect("services");
    assert_eq!(services.len(), 3, "a 3-node cluster");
    let known = keyval_flags();
    let df = dockerfile();
    let image_port: u16 = instruction(&df, "EXPOSE")[0].parse().expect("port");
    let mut ids = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    let mut volumes = BTreeSet::new();
    let mut peers = BTreeSet::new();
    let mut ui_nodes = 0;
    for (name, svc) in services {
        let cmd: Vec<String> = svc["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: command is a list"))
            .iter()
            .map(|a| a.as_str().expect("string argument").to_string())
            .collect();
        assert_known_flags(
            &format!("compose {name}"),
            &flags_in(&cmd.join(" ")),
            &known,
        );
        let id: u64 = flag_value(&cmd, "--id").expect("--id").parse().expect("id");
        assert!(ids.insert(id), "{name}: duplicate id {id}");
        let listen = flag_value(&cmd, "--listen").expect("--listen");
        assert_eq!(
            port_of(&listen),
            image_port,
            "{name} listens on the image's port"
        );
        assert_eq!(svc["hostname"].as_str(), Some(name.as_str()));
        let peer_list = flag_value(&cmd, "--peers").expect("--peers");
        let parsed = native_node::config::parse_peers(&peer_list).expect("valid --peers");
        assert_eq!(
            parsed.get(&id).map(String::as_str),
            Some(format!("{name}:{image_port}").as_str()),
            "{name}'s own entry in --peers is its service name and port"
        );
        peers.insert(peer_list);
        for p in svc["ports"].as_array().expect("ports") {
            let p = p.as_str().expect("HOST:CONTAINER");
            let (host, container) = p.split_once(':').expect("HOST:CONTAINER");
            assert_eq!(
                container.parse::<u16>().ok(),
                Some(image_port),
                "{name}: {p}"
            );
            assert!(
                host_ports.insert(host.to_string()),
                "host port {host} used twice"
            );
        }
        let data_dir = flag_value(&cmd, "--data-dir").expect("--data-dir");
        for v in svc["volumes"].as_array().expect("volumes") {
            let v = v.as_str().expect("VOLUME:PATH");
            let (vol, path) = v.split_once(':').expect("VOLUME:PATH");
            assert_eq!(path, data_dir, "{name}: the volume holds the data dir");
            assert!(volumes.insert(vol.to_string()), "volume {vol} shared");
            assert!(
                docs[0]["volumes"].get(vol).is_some(),
                "volume {vol} declared"
            );
        }
        if let Some(ui) = flag_value(&cmd, "--ui") {
            assert_eq!(
                ui,
                image_ui_dir(&df),
                "--ui points at the image's playground"
            );
            ui_nodes += 1;
        }
    }
    assert_eq!(ui_nodes, 1, "one node serves the playground");
    assert_eq!(peers.len(), 1, "every node gets the same --peers");
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
}

/// The Kubernetes objects of deploy/kubernetes by kind and name.
fn kube_objects() -> BTreeMap<(String, String), Value> {
    let kustomization = yaml_docs("deploy/kubernetes/kustomization.yaml");
    let mut out = BTreeMap::new();
    let listed: Vec<&str> = kustomization[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for entry in fs::read_dir(repo().join("deploy/kubernetes")).expect("read dir") {
        let file = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if file == "kustomization.yaml" || !file.ends_with(".yaml") {
            continue;
        }
        assert!(
            listed.contains(&file.as_str()),
            "kustomization lacks {file}"
        );
        for doc in yaml_docs(&format!("deploy/kubernetes/{file}")) {
            let kind = doc["kind"].as_str().expect("kind").to_string();
            let name = doc["metadata"]["name"].as_str().expect("name").to_string();
            assert!(
                doc["apiVersion"].is_string(),
                "{kind}/{name} has an apiVersion"
            );
            out.insert((kind, name), doc);
        }
    }
    out
}

fn get<'a>(objs: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    objs.get(&(kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

/// The TOML the ConfigMap mounts, and where the pod reads it from.
fn configmap_toml(objs: &BTreeMap<(String, String), Value>) -> (String, toml::Table) {
    let cm = get(objs, "ConfigMap", "keyval-config");
    let text = cm["data"]["keyval.toml"]
        .as_str()
        .expect("keyval.toml in the ConfigMap");
    let table: toml::Table = toml::from_str(text).expect("the ConfigMap holds valid TOML");
    (text.to_string(), table)
}

#[test]
fn kubernetes_manifests_have_what_a_raft_cluster_needs() {
    let objs = kube_objects();
    let sts = get(&objs, "StatefulSet", "keyval");
    let spec = &sts["spec"];
    let headless_name = spec["serviceName"].as_str().expect("serviceName");
    let headless = &get(&objs, "Service", headless_name)["spec"];
    assert_eq!(
        headless["clusterIP"], "None",
        "the peer Service is headless"
    );
    assert_eq!(headless["publishNotReadyAddresses"], true);
    let client = objs
        .iter()
        .find(|((k, n), v)| {
            k == "Service" && n != headless_name && v["spec"]["clusterIP"] != "None"
        })
        .expect("a client Service");
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    let replicas = spec["replicas"].as_u64().expect("replicas");
    assert!(
        replicas >= 3 && replicas % 2 == 1,
        "an odd number of at least 3 nodes"
    );

    let pod_labels = &spec["template"]["metadata"]["labels"];
    for selector in [
        &spec["selector"]["matchLabels"],
        &headless["selector"],
        &client.1["spec"]["selector"],
        &get(&objs, "PodDisruptionBudget", "keyval")["spec"]["selector"]["matchLabels"],
    ] {
        for (k, v) in selector.as_object().expect("selector labels") {
            assert_eq!(&pod_labels[k], v, "selector {k}={v} matches the pods");
        }
    }
    let pdb = &get(&objs, "PodDisruptionBudget", "keyval")["spec"];
    assert_eq!(pdb["maxUnavailable"], 1);

    let (_, toml) = configmap_toml(&objs);
    let listen = toml["listen"].as_str().expect("listen in the TOML");
    let port = port_of(listen);
    let data_dir = toml["data_dir"].as_str().expect("data_dir in the TOML");

    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    let ports = c["ports"].as_array().expect("container ports");
    let named: BTreeMap<&str, u64> = ports
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or(""),
                p["containerPort"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        named.values().copied().collect::<Vec<_>>(),
        [u64::from(port)]
    );
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let target = match &get["port"] {
            Value::String(name) => named.get(name.as_str()).copied(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        assert_eq!(
            target,
            Some(u64::from(port)),
            "{probe} hits the listening port"
        );
    }
    for (svc_name, svc) in [
        (headless_name, headless),
        (client.0 .1.as_str(), &client.1["spec"]),
    ] {
        for p in svc["ports"].as_array().expect("service ports") {
            let target = match &p["targetPort"] {
                Value::String(name) => named.get(name.as_str()).copied(),
                Value::Number(n) => n.as_u64(),
                _ => p["port"].as_u64(),
            };
            assert_eq!(
                target,
                Some(u64::from(port)),
                "Service {svc_name} targets the node port"
            );
        }
    }
    let requests = &c["resources"]["requests"];
    assert!(
        requests["cpu"].is_string() && requests["memory"].is_string(),
        "resource requests"
    );

    // One PVC per pod, mounted at the data directory.
    let claim = spec["volumeClaimTemplates"][0]["metadata"]["name"]
        .as_str()
        .expect("a volumeClaimTemplate");
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    let mount_of = |vol: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == vol)
            .and_then(|m| m["mountPath"].as_str())
            .map(str::to_string)
    };
    assert_eq!(mount_of(claim).as_deref(), Some(data_dir));

    // The command: known flags, the config file from the ConfigMap mount.
    let script = c["args"][0].as_str().expect("args holds the shell command");
    assert_known_flags("StatefulSet args", &flags_in(script), &keyval_flags());
    let config_volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["configMap"]["name"] == "keyval-config")
        .and_then(|v| v["name"].as_str())
        .expect("the ConfigMap is a volume");
    let config_path = format!("{}/keyval.toml", mount_of(config_volume).expect("mounted"));
    assert!(
        script.contains(&format!("--config {config_path}")),
        "{script}"
    );
    assert!(
        script.contains("HOSTNAME##*-"),
        "the node id comes from the pod ordinal"
    );

    // The initial peers are the pods' stable DNS names, ordinal i as node i+1.
    let sts_name = sts["metadata"]["name"].as_str().expect("name");
    let peers = native_node::config::parse_peers(toml["peers"].as_str().expect("peers"))
        .expect("valid peers");
    let expected: BTreeMap<u64, String> = (0..replicas)
        .map(|i| (i + 1, format!("{sts_name}-{i}.{headless_name}:{port}")))
        .collect();
    assert_eq!(peers, expected);

    // TLS material is mounted from a Secret (optional until TLS is turned on).
    assert!(pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .any(|v| v["secret"]["secretName"].is_string()));
}

/// Starts one `keyval` with these arguments in `dir`; stderr goes to `dir/node.log`.
fn spawn_node(dir: &Path, args: &[String]) -> std::process::Child {
    let log = fs::File::create(dir.join("node.log")).expect("log file");
    Command::new(keyval_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn keyval")
}

#[test]
fn the_configmap_toml_starts_a_node_and_the_probes_answer() {
    let objs = kube_objects();
    let (text, _) = configmap_toml(&objs);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("keyval.toml");
    fs::write(&config, text).expect("write config");
    // As in the pod, but on a loopback port and a temp data dir: the other pods' names do not
    // resolve here, so the node runs alone and without a leader.
    let port = free_ports(1)[0];
    let args: Vec<String> = [
        "--id",
        "1",
        "--config",
        &config.to_string_lossy(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.path().join("data").to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = spawn_node(dir.path(), &args);
    let live = wait_until(Duration::from_secs(10), || {
        http_status(port, "/livez").is_some_and(|(s, _)| s == 200)
    });
    let log = fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        live,
        "the node did not serve /livez with the ConfigMap's TOML:\n{log}"
    );
    // The ConfigMap asks for JSON logs: every line the node wrote is one JSON object.
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty());
    for l in lines {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }
}

#[test]
fn probes_and_every_dashboard_and_alert_metric_are_served_by_a_running_cluster() {
    let c = Cluster::start(3);
    ok(&c, &["put", "k", "v"]);
    for n in &c.nodes {
        assert!(
            wait_until(Duration::from_secs(10), || http_status(n.port, "/readyz")
                .is_some_and(|(s, _)| s == 200)),
            "node {} never became ready: {:?}",
            n.id,
            http_status(n.port, "/readyz")
        );
        assert_eq!(http_status(n.port, "/livez").map(|(s, _)| s), Some(200));
    }
    let used = dashboard_and_alert_metrics();
    assert!(used.len() >= 8, "too few metrics found: {used:?}");
    // Round-trip series appear once a heartbeat has been answered; wait for them.
    let leader = c.wait_leader(Duration::from_secs(10)).expect("a leader");
    let port = c.nodes[(leader - 1) as usize].port;
    let mut missing = Vec::new();
    let found = wait_until(Duration::from_secs(10), || {
        let exported = exported_series(port);
        missing = used
            .iter()
            .filter(|m| !exported.contains(*m))
            .cloned()
            .collect();
        missing.is_empty()
    });
    assert!(
        found,
        "metrics used by deploy/ but not exported: {missing:?}"
    );
}

/// Every `keyval_*` name in the dashboard's queries and the alerts' expressions.
fn dashboard_and_alert_metrics() -> BTreeSet<String> {
    let mut exprs = Vec::new();
    let dash: Value = serde_json::from_str(&read("deploy/grafana/keyval.json")).expect("JSON");
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for t in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = t["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let alerts = yaml_docs("deploy/prometheus/alerts.yml");
    for g in alerts[0]["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            exprs.push(r["expr"].as_str().expect("expr").to_string());
        }
    }
    exprs
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|t| t.starts_with("keyval_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Series names in a node's /metrics (histogram samples under their `_bucket/_sum/_count`).
fn exported_series(port: u16) -> BTreeSet<String> {
    let Some((200, body)) = http_status(port, "/metrics") else {
        return BTreeSet::new();
    };
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The README's flag table lists exactly the flags `keyval --help` documents, and every
/// `keyval` flag the README mentions anywhere exists.
#[test]
fn the_readme_flag_table_matches_keyval_help() {
    let readme = read("README.md");
    let section = readme
        .split("\n## `keyval` flags\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a \"## `keyval` flags\" section");
    let first_cells: String = section
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .filter_map(|l| l.split('|').nth(1))
        .collect::<Vec<_>>()
        .join(" ")
        .replace('`', " ");
    let table = flags_in(&first_cells);
    let mut help = keyval_flags();
    help.remove("--help");
    help.remove("--version");
    let missing: Vec<_> = help.difference(&table).collect();
    let extra: Vec<_> = table.difference(&help).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README flag table: missing {missing:?}, not in keyval --help {extra:?}"
    );
}

#[test]
fn flags_in_reads_both_forms() {
    let f = flags_in("exec keyval --id \"$((1))\" --config=/x --data-dir /d, [--ui DIR]");
    assert_eq!(
        f,
        BTreeSet::from(["--id", "--config", "--data-dir", "--ui"].map(String::from))
    );
    let args: Vec<String> = ["--a=1", "--b", "2"].map(String::from).to_vec();
    assert_eq!(flag_value(&args, "--a").as_deref(), Some("1"));
    assert_eq!(flag_value(&args, "--b").as_deref(), Some("2"));
}
