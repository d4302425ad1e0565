//! The deployment kit, checked without a container engine: the runtime image installs
//! every shared library the release binary links (ldd + dpkg on this Debian 12
//! machine); the compose file, Kubernetes manifests and Grafana dashboard parse and
//! carry what the service needs; the config the ConfigMap ships passes `--check`.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The packages the Dockerfile's final stage installs with apt-get.
fn runtime_packages() -> BTreeSet<String> {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let runtime = dockerfile.split("\nFROM ").last().expect("a runtime stage");
    // The base is a build argument whose default is Debian 12 slim.
    assert!(
        runtime.starts_with("${RUNTIME_IMAGE} AS runtime"),
        "runtime stage base: {runtime:.40}"
    );
    assert!(
        dockerfile.contains("ARG RUNTIME_IMAGE=debian:bookworm-slim@sha256:"),
        "the runtime base defaults to Debian 12 slim, pinned by digest"
    );
    let install = runtime
        .split("apt-get install")
        .nth(1)
        .expect("the runtime stage installs packages");
    install
        .split("&&")
        .next()
        .unwrap()
        .split_whitespace()
        .filter(|w| !w.starts_with('-') && *w != "\\")
        .map(str::to_string)
        .collect()
}

/// Which Debian package ships `path` (trying the /usr-merged spelling too).
fn owner(path: &str) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let real = real.to_string_lossy().to_string();
    let mut candidates = vec![path.to_string(), real.clone()];
    for p in [path, real.as_str()] {
        if let Some(rest) = p.strip_prefix("/usr") {
            candidates.push(rest.to_string());
        } else {
            candidates.push(format!("/usr{p}"));
        }
    }
    candidates.iter().find_map(|c| {
        let out = run("dpkg", &["-S", c]);
        out.lines()
            .next()
            .and_then(|l| l.split_once(':'))
            .map(|(pkg, _)| pkg.split(',').next().unwrap_or(pkg).trim().to_string())
            .filter(|p| !p.is_empty())
    })
}

/// Issue 21 item 7: a rebuild from one commit starts from the same base bytes (every
/// base image the Dockerfile names by default is pinned by digest, with its tag beside it
/// for the reader), and the runtime image carries no curl (its HEALTHCHECK asks the
/// binary itself).
#[test]
fn the_image_bases_are_pinned_by_digest_and_the_runtime_has_no_curl() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let bases: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ARG "))
        .filter(|a| a.starts_with("BUILDER_IMAGE=") || a.starts_with("RUNTIME_IMAGE="))
        .collect();
    assert_eq!(bases.len(), 2, "the two base-image arguments: {bases:?}");
    let syntax = dockerfile.lines().next().unwrap_or_default();
    assert!(
        syntax.starts_with("# syntax=docker/dockerfile:") && syntax.contains("@sha256:"),
        "the BuildKit frontend is pinned too: {syntax}"
    );
    for arg in &bases {
        let image = arg.split_once('=').unwrap().1;
        let (reference, digest) = image
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("{arg}: not pinned by digest"));
        assert!(
            reference.contains(':') && !reference.ends_with(":latest"),
            "{arg}: a tag beside the digest says what was pinned"
        );
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{arg}: a full sha256 digest"
        );
    }
    // Every other FROM is a stage of this file, a build argument, or scratch.
    for from in dockerfile.lines().filter_map(|l| l.strip_prefix("FROM ")) {
        let base = from.split_whitespace().next().unwrap();
        assert!(
            base.starts_with("${") || base == "scratch",
            "FROM {from}: name the base through a pinned argument"
        );
    }
    assert!(
        !runtime_packages().contains("curl"),
        "the runtime image installs no curl"
    );
    assert!(
        dockerfile.contains("CMD [\"/usr/local/bin/wsi-thumbnail\", \"health\"]"),
        "HEALTHCHECK asks the binary"
    );
}

#[test]
fn the_runtime_image_provides_every_linked_library() {
    let packages = runtime_packages();
    // OpenSSL is linked in and finds its CA store by probing the system's paths
    // (`kafka::settings`): the image must have one to verify a TLS broker.
    assert!(
        packages.iter().any(|p| p == "ca-certificates"),
        "the runtime stage installs no CA store: {packages:?}"
    );
    // What apt installs with them (dependencies, recursively), plus what every
    // debian:bookworm-slim image has (the Essential and Priority: required packages).
    let mut args = vec![
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
    ];
    args.extend(packages.iter().map(String::as_str));
    let mut provided: HashSet<String> = run("apt-cache", &args)
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("Depends:")
                .trim()
                .trim_start_matches("PreDepends:")
                .trim()
        })
        .map(|l| {
            l.trim_matches(|c| c == '<' || c == '>')
                .split(':')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    for line in run(
        "dpkg-query",
        &["-W", "-f", "${Package} ${Essential} ${Priority}\\n"],
    )
    .lines()
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"yes") || fields.get(2) == Some(&"required") {
            provided.insert(fields[0].to_string());
        }
    }
    assert!(
        provided.len() > 50,
        "apt-cache and dpkg-query gave too little: is apt set up?"
    );

    let binary = env!("CARGO_BIN_EXE_wsi-thumbnail");
    let ldd = run("ldd", &[binary]);
    let libraries: Vec<&str> = ldd
        .lines()
        .filter_map(|l| l.split("=>").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|p| p.starts_with('/'))
        .collect();
    assert!(libraries.len() > 5, "ldd listed too little:\n{ldd}");
    // OpenSlide is openslide-bin's, under its prefix (the RUNPATH): no Debian package
    // owns it, and the runtime stage copies that prefix from the build stage.
    let prefix = env!("WSI_OPENSLIDE_BIN_PREFIX");
    let openslide: Vec<&&str> = libraries
        .iter()
        .filter(|l| l.contains("libopenslide"))
        .collect();
    assert_eq!(
        openslide,
        [&format!("{prefix}/lib/libopenslide.so.1").as_str()],
        "the binary loads openslide-bin's OpenSlide:\n{ldd}"
    );
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("OPENSLIDE_BIN_PREFIX={prefix}"))
            && dockerfile
                .contains("COPY --from=binary ${OPENSLIDE_BIN_PREFIX}/lib/libopenslide.so.1"),
        "the Dockerfile installs openslide-bin at {prefix} and the runtime stage copies it"
    );
    let mut missing = Vec::new();
    for lib in libraries.iter().filter(|l| !l.starts_with(prefix)) {
        match owner(lib) {
            Some(pkg) if provided.contains(&pkg) => {}
            Some(pkg) => missing.push(format!("{lib} (package {pkg})")),
            None => missing.push(format!("{lib} (no Debian package owns it)")),
        }
    }
    assert!(
        missing.is_empty(),
        "the Dockerfile's runtime stage ({packages:?}) lacks: {missing:#?}"
    );
}

fn yaml_documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn the_compose_stack_has_broker_emulator_topics_service_and_prometheus() {
    let compose = &yaml_documents("deploy/compose/docker-compose.yml")[0];
    let services = &compose["services"];
    let kafka = &services["kafka"];
    assert!(
        kafka["image"]
            .as_str()
            .unwrap()
            .starts_with("apache/kafka:4.")
    );
    assert_eq!(
        kafka["environment"]["KAFKA_PROCESS_ROLES"],
        "broker,controller"
    );
    assert!(
        services["gcs"]["image"]
            .as_str()
            .unwrap()
            .contains("fake-gcs-server")
    );
    assert_eq!(
        services["topics"]["command"],
        serde_json::json!(["topics", "ensure"])
    );
    let service = &services["wsi-thumbnail"];
    assert_eq!(
        service["environment"]["KAFKA_BOOTSTRAP_SERVER"],
        "kafka:9092"
    );
    assert!(service["environment"]["STORAGE_EMULATOR_HOST"].is_string());
    assert_eq!(
        service["depends_on"]["topics"]["condition"],
        "service_completed_successfully"
    );
    let prometheus = &yaml_documents("deploy/compose/prometheus.yml")[0];
    let scrape = &prometheus["scrape_configs"][0];
    assert_eq!(scrape["metrics_path"], "/metrics");
    assert_eq!(
        scrape["static_configs"][0]["targets"][0],
        "wsi-thumbnail:8080"
    );
}

/// Mebibytes in a Kubernetes quantity of the binary forms the kit uses (`10Gi`, `512Mi`).
fn mib(quantity: &Value) -> u64 {
    let q = quantity
        .as_str()
        .unwrap_or_else(|| panic!("quantity {quantity}"));
    if let Some(g) = q.strip_suffix("Gi") {
        g.parse::<u64>().unwrap() * 1024
    } else if let Some(m) = q.strip_suffix("Mi") {
        m.parse().unwrap()
    } else {
        panic!("quantity {q}: the kit writes Gi or Mi")
    }
}

/// The overlays as rendered: deploy/k8s/rendered/<overlay>.yaml is `kubectl kustomize
/// deploy/k8s/overlays/<overlay>`, which scripts/validate-k8s.sh (run by scripts/test.sh
/// before the tests) keeps equal to the overlay and validates against the Kubernetes and
/// CRD schemas. Here: what the service needs from each.
#[test]
fn the_kubernetes_overlays_carry_probes_budgets_and_scaling() {
    let mut overlays = Vec::new();
    for entry in std::fs::read_dir(repo("deploy/k8s/rendered")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        assert!(
            repo(&format!("deploy/k8s/overlays/{name}/kustomization.yaml")).exists(),
            "deploy/k8s/rendered/{name}.yaml has no overlay"
        );
        overlays.push(name);
    }
    overlays.sort();
    assert_eq!(
        overlays,
        [
            "gke-autopilot",
            "gke-standard-managed-prometheus",
            "gke-standard-prometheus-operator"
        ],
        "the overlays deploy/k8s/README.md describes"
    );
    for overlay in &overlays {
        check_overlay(overlay);
    }
}

fn check_overlay(overlay: &str) {
    let file = format!("deploy/k8s/rendered/{overlay}.yaml");
    let docs = yaml_documents(&file);
    let mut kinds = HashSet::new();
    for doc in &docs {
        assert!(
            doc["apiVersion"].is_string() && doc["metadata"]["name"].is_string(),
            "{file}: {doc}"
        );
        kinds.insert(doc["kind"].as_str().unwrap().to_string());
    }
    for kind in [
        "Deployment",
        "ConfigMap",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ScaledObject",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {file}");
    }
    let of = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {file}"))
    };

    // The ConfigMap's config is a valid service config.
    let config_text = of("ConfigMap")["data"]["config.toml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config_text).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
        .args(["serve", "--check", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // `--check` prints the effective configuration.
    let config: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(
        config["kafka"]["oauth"], "google",
        "the GKE example uses Google tokens"
    );

    let pod = &of("Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    let grace_s = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace_s * 1000 > config["pipeline"]["shutdown_grace_ms"].as_u64().unwrap(),
        "{file}: the pod is killed before the service's drain ends"
    );
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/etc/wsi-thumbnail")
    );

    // Scratch: the volume mounted at the service's temp_dir holds its temp-disk budget.
    let temp_dir = config["storage"]["temp_dir"].as_str().unwrap();
    let scratch_name = mounts
        .iter()
        .find(|m| m["mountPath"] == temp_dir)
        .unwrap_or_else(|| panic!("{file}: nothing mounted at temp_dir {temp_dir}"))["name"]
        .clone();
    let scratch = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == scratch_name)
        .unwrap();
    let budget_mib = config["storage"]["max_temp_disk_mb"].as_u64().unwrap();
    // Ephemeral storage: request = limit (issue 21 item 6), in every overlay.
    let ephemeral = &container["resources"]["limits"]["ephemeral-storage"];
    assert_eq!(
        &container["resources"]["requests"]["ephemeral-storage"], ephemeral,
        "{file}: ephemeral-storage request and limit differ"
    );
    let ephemeral_mib = mib(ephemeral);
    let scratch_mib = if scratch["emptyDir"].is_object() {
        // An emptyDir counts against the pod's ephemeral storage, with the logs.
        let size = mib(&scratch["emptyDir"]["sizeLimit"]);
        assert!(
            size <= ephemeral_mib,
            "{file}: the scratch emptyDir ({size} MiB) exceeds the ephemeral-storage limit"
        );
        size
    } else {
        let claim = &scratch["ephemeral"]["volumeClaimTemplate"]["spec"];
        assert!(
            claim["storageClassName"].is_string(),
            "{file}: scratch is neither an emptyDir nor a generic ephemeral volume: {scratch}"
        );
        mib(&claim["resources"]["requests"]["storage"])
    };
    assert!(
        budget_mib + 1024 <= scratch_mib,
        "{file}: max_temp_disk_mb {budget_mib} leaves under 1 GiB of the {scratch_mib} MiB scratch"
    );
    if overlay.contains("autopilot") {
        // Autopilot: at most 10 GiB of ephemeral storage per Pod, so the scratch is a
        // disk of its own (deploy/k8s/README.md, "Autopilot").
        assert!(ephemeral_mib <= 10 * 1024, "{file}: {ephemeral_mib} MiB");
        assert!(
            scratch["ephemeral"]["volumeClaimTemplate"].is_object(),
            "{file}: Autopilot scratch on a generic ephemeral volume"
        );
        assert!(
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v.get("emptyDir").is_none()),
            "{file}: no emptyDir on Autopilot"
        );
    }

    let scaled_object = of("ScaledObject");
    let scaled = &scaled_object["spec"];
    assert_eq!(
        scaled["maxReplicaCount"], config["kafka"]["topics"]["partitions"],
        "max replicas = request topic partitions"
    );
    // While Prometheus cannot be read, KEDA holds the fallback count.
    let fallback = &scaled["fallback"];
    let fallback_replicas = fallback["replicas"].as_u64().unwrap();
    assert!(fallback["failureThreshold"].as_u64().unwrap() > 0);
    assert!(
        (scaled["minReplicaCount"].as_u64().unwrap()..=scaled["maxReplicaCount"].as_u64().unwrap())
            .contains(&fallback_replicas),
        "{file}: fallback replicas {fallback_replicas} outside min..max"
    );
    // KEDA's Kafka scaler cannot authenticate to Managed Kafka: scale on our own lag.
    let triggers = scaled["triggers"].as_array().unwrap();
    for trigger in triggers {
        // KEDA before 2.18 applies the fallback only to AverageValue triggers.
        assert_eq!(trigger["metricType"], "AverageValue", "{file}: {trigger}");
    }
    let trigger = &triggers[0];
    assert_eq!(trigger["type"], "prometheus");
    assert!(
        trigger["metadata"]["query"]
            .as_str()
            .unwrap()
            .contains("wsi_thumbnail_consumer_lag")
    );
    let server = trigger["metadata"]["serverAddress"].as_str().unwrap();
    assert!(
        pod.get("replicas").is_none() && of("Deployment")["spec"].get("replicas").is_none(),
        "a fixed replica count fights KEDA"
    );
    // One monitoring stack per overlay, and KEDA reads the lag from that one.
    match (
        kinds.contains("PodMonitor"),
        kinds.contains("PodMonitoring"),
    ) {
        (true, false) => {
            assert_eq!(
                of("PodMonitor")["spec"]["podMetricsEndpoints"][0]["path"],
                "/metrics"
            );
            assert_eq!(
                of("PodMonitor")["metadata"]["labels"]["release"],
                "kube-prometheus-stack"
            );
            assert_eq!(server, "http://prometheus-operated.monitoring.svc:9090");
        }
        (false, true) => {
            assert_eq!(
                of("PodMonitoring")["spec"]["endpoints"][0]["path"],
                "/metrics"
            );
            // The Managed Prometheus query API, as the KEDA operator's Google identity.
            assert!(
                server.starts_with("https://monitoring.googleapis.com/v1/projects/")
                    && server.ends_with("/location/global/prometheus"),
                "{file}: {server}"
            );
            let auth = of("TriggerAuthentication");
            assert_eq!(auth["spec"]["podIdentity"]["provider"], "gcp");
            assert_eq!(
                trigger["authenticationRef"]["name"],
                auth["metadata"]["name"]
            );
            // That API answers for the whole project: the query names this deployment.
            let query = trigger["metadata"]["query"].as_str().unwrap();
            assert!(
                query.contains("cluster=") && query.contains("namespace="),
                "{file}: {query}"
            );
        }
        other => panic!("{file}: want exactly one of PodMonitor, PodMonitoring: {other:?}"),
    }
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "Pod Security restricted"
    );
    assert!(pod["securityContext"]["runAsGroup"].is_number());
    let image = container["image"].as_str().unwrap();
    assert!(!image.ends_with(":latest"), "pinned image: {image}");
    assert!(
        container["resources"]["limits"]["cpu"].is_string()
            || config["pipeline"]["decoder_threads"].as_u64() != Some(0),
        "decoder_threads = 0 without a CPU limit means one thread per node core"
    );
    // Pod memory covers every decoder's worker at its cap plus the service.
    let limit_mib = mib(&container["resources"]["limits"]["memory"]);
    let decoders = config["pipeline"]["decoder_threads"].as_u64().unwrap();
    let worker_mib = config["thumbnail"]["worker_memory_mb"].as_u64().unwrap();
    assert!(
        decoders > 0 && decoders * worker_mib + 256 <= limit_mib,
        "{decoders} workers x {worker_mib} MiB + the service do not fit {limit_mib} MiB"
    );
    let sa = of("ServiceAccount");
    assert_eq!(sa["metadata"]["name"], pod["serviceAccountName"]);
    assert!(
        sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
            .as_str()
            .unwrap()
            .ends_with(".iam.gserviceaccount.com")
    );
    assert_eq!(
        of("PodDisruptionBudget")["spec"]["unhealthyPodEvictionPolicy"],
        "AlwaysAllow"
    );
    // Workload Identity's metadata server, on both GKE dataplanes.
    let egress = serde_json::to_string(&of("NetworkPolicy")["spec"]["egress"]).unwrap();
    for needed in ["169.254.169.254/32", "169.254.169.252/32", "987", "988"] {
        assert!(egress.contains(needed), "egress lacks {needed}: {egress}");
    }
    let ingress = of("NetworkPolicy")["spec"]["ingress"].as_array().unwrap();
    assert!(
        ingress.iter().all(|rule| rule["from"].is_array()),
        "every ingress rule names who may connect"
    );
    assert!(of("PodDisruptionBudget")["spec"]["maxUnavailable"].is_number());
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_the_service_exports() {
    let text = std::fs::read_to_string(repo("deploy/grafana/wsi-thumbnail.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let telemetry = std::fs::read_to_string(repo("src/telemetry/record.rs")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut used = BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("wsi_thumbnail_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .fold(name.clone(), |n, s| {
                        n.strip_suffix(s).map_or(n.clone(), str::to_string)
                    });
                used.insert(base);
            }
        }
    }
    for contract in [
        "wsi_thumbnail_completed_total",
        "wsi_thumbnail_failed_total",
        "wsi_thumbnail_consumer_lag",
        "wsi_thumbnail_stage_seconds",
        "wsi_thumbnail_end_to_end_seconds",
        "wsi_thumbnail_in_flight",
    ] {
        assert!(
            used.contains(contract),
            "the dashboard does not show {contract}"
        );
    }
    for name in &used {
        assert!(
            telemetry.contains(&format!("\"{name}\"")),
            "the dashboard queries {name}, which src/telemetry/record.rs does not name"
        );
    }
}
