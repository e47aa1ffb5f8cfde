"""The Kubernetes install (configs/k8s, issue 18): every manifest parses, and the DaemonSet
agrees with the daemon: probe ports and paths, the metrics port, hugepages and the volumes the
API socket, the CNI plugin and its network list go through. The daemon's defaults are read from
its source (observe.hpp, config.hpp, health_module.cpp), the node config is the ConfigMap's
node.json rendered by the init container's own script and checked by `dpdk-fwd --check-config`.
No cluster needed (PyYAML parses; nothing is applied)."""
import json
import pathlib
import posixpath
import re
import subprocess

import yaml

from fwdlab import DAEMON

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "configs" / "k8s"


def source(rel):
    return (ROOT / rel).read_text()


def code_defaults():
    """The daemon's defaults, from its code: {"metrics": (enabled, host, port), "health": ...,
    "memory_mb", "api_socket", "run_dir", "state_dir", "health_paths"}."""
    obs = source("control/include/fwd/control/observe.hpp")
    out = {}
    for name, key in (("MetricsConfig", "metrics"), ("HealthConfig", "health")):
        m = re.search(name + r'\(\) : ListenConfig\{(true|false), "([^"]*)", (\d+)\}', obs)
        assert m, f"{name}'s defaults not found in observe.hpp"
        out[key] = {"enabled": m.group(1) == "true", "host": m.group(2), "port": int(m.group(3))}
    cfg = source("control/include/fwd/control/config.hpp")
    for key, pattern in (("memory_mb", r"uint32_t memory_mb = (\d+);"),
                         ("api_socket", r'std::string api_socket = "([^"]+)";'),
                         ("run_dir", r'std::string run_dir = "([^"]+)";'),
                         ("state_dir", r'std::string state_dir = "([^"]+)";')):
        m = re.search(pattern, cfg)
        assert m, f"{key}'s default not found in config.hpp"
        out[key] = int(m.group(1)) if key == "memory_mb" else m.group(1)
    out["health_paths"] = set(re.findall(r'addHandler\("(/[a-z]+)"',
                                         source("control/src/health_module.cpp")))
    assert out["health_paths"] >= {"/liveness", "/readiness"}, out["health_paths"]
    return out


def manifests():
    """kustomization.yaml's resources, every document of each, and the ConfigMap its generator
    makes: (docs by kind/name, configmap name, configmap data)."""
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    yamls = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == yamls, "every manifest is a kustomization resource"
    docs = {}
    for f in kust["resources"]:
        for d in yaml.safe_load_all((K8S / f).read_text()):
            assert d and {"apiVersion", "kind", "metadata"} <= set(d), (f, d)
            assert d["metadata"].get("name"), (f, d)
            docs[(d["kind"], d["metadata"]["name"])] = d
    (gen,) = kust["configMapGenerator"]
    data = {pathlib.Path(f).name: (K8S / f).read_text() for f in gen["files"]}
    return docs, gen["name"], data


def effective(node_json, defaults):
    """The node config's settings that the DaemonSet must agree with: the file's, else the
    daemon's defaults."""
    eff = {}
    for key in ("metrics", "health"):
        eff[key] = {**defaults[key], **node_json.get(key, {})}
    eff["memory_mb"] = node_json.get("eal", {}).get("memory_mb", defaults["memory_mb"])
    eff["api_socket"] = node_json.get("api_socket", defaults["api_socket"])
    eff["run_dir"] = node_json.get("run_dir", defaults["run_dir"])
    eff["state_dir"] = node_json.get("state_dir", defaults["state_dir"])
    return eff


def listens_on(host_cfg, probe_host):
    """Whether a listener configured with host_cfg answers on probe_host."""
    if host_cfg == "":
        return True
    if host_cfg == "localhost":
        return probe_host in ("127.0.0.1", "::1", "localhost")
    return host_cfg == probe_host


def mi(quantity):
    m = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert m, quantity
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


def mount_of(container, volumes, path):
    """(mount, volume) of the mount holding path in container."""
    best = None
    for m in container.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"]):
                best = m
    assert best, f"{container['name']}: nothing mounted at {path}"
    return best, volumes[best["name"]]


def test_manifests_agree_with_the_daemon(tmp_path):
    defaults = code_defaults()
    docs, cm_name, data = manifests()
    ds = docs[("DaemonSet", "dpdk-fwd-node")]
    pod = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= \
        ds["spec"]["template"]["metadata"]["labels"].items()
    assert pod["hostNetwork"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    (daemon,) = pod["containers"]
    (init,) = pod["initContainers"]
    used = {m["name"] for c in (daemon, init) for m in c.get("volumeMounts", [])}
    assert used == set(volumes), (used, set(volumes))
    assert daemon["securityContext"]["privileged"] is True

    # the ConfigMap: the generator's, holding the conflist of configs/cni unchanged
    assert volumes["config-template"]["configMap"]["name"] == cm_name
    conflist = json.loads(data["10-dpdk-fwd.conflist"])
    assert conflist == json.loads((ROOT / "configs/cni/10-dpdk-fwd.conflist").read_text())
    (plugin,) = conflist["plugins"]

    # node.json, rendered for a node as the init container does, passes the daemon's checks
    node = {"metadata": {"name": "worker-1", "labels": {"kubernetes.io/hostname": "worker-1",
                                                        "zone": "a"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"},
                                     {"type": "InternalIP", "address": "fd00::5"},
                                     {"type": "Hostname", "address": "worker-1"}]}}
    ifaddrs = [{"ifname": "eth0", "addr_info": [
        {"family": "inet", "local": "10.0.0.5", "prefixlen": 24},
        {"family": "inet6", "local": "fd00::5", "prefixlen": 64}]}]
    for name, value in (("template.json", json.loads(data["node.json"])), ("node.k8s", node),
                        ("ifaddrs.json", ifaddrs)):
        (tmp_path / name).write_text(json.dumps(value))
    (tmp_path / "render.py").write_text(data["render-config.py"])
    rendered = tmp_path / "node.json"
    r = subprocess.run(["python3", str(tmp_path / "render.py"), str(tmp_path / "template.json"),
                        str(rendered)], capture_output=True, text=True, timeout=30,
                       env={"NODE_NAME": "worker-1", "NODE_JSON": str(tmp_path / "node.k8s"),
                            "IFADDRS_JSON": str(tmp_path / "ifaddrs.json"),
                            "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    node_json = json.loads(rendered.read_text())
    assert node_json["node_name"] == "worker-1"
    assert node_json["node"]["ipv4"] == "10.0.0.5/24" and node_json["node"]["ipv6"] == "fd00::5/64"
    assert node_json["overlay"]["labels"]["zone"] == "a"
    r = subprocess.run([str(DAEMON), "--check-config", "--config", str(rendered)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    eff = effective(node_json, defaults)

    # health: on, and both probes where it listens, on its paths
    assert eff["health"]["enabled"] is True
    for probe, path in (("livenessProbe", "/liveness"), ("readinessProbe", "/readiness")):
        get = daemon[probe]["httpGet"]
        assert get["path"] == path and path in defaults["health_paths"], (probe, get)
        assert get["port"] == eff["health"]["port"], (probe, get, eff["health"])
        assert listens_on(eff["health"]["host"], get.get("host", "")), (probe, get, eff["health"])
    # metrics: on every address (Prometheus scrapes from elsewhere), its port declared
    assert eff["metrics"]["enabled"] is True and eff["metrics"]["host"] == ""
    ports = {p["name"]: p["containerPort"] for p in daemon["ports"]}
    assert ports == {"metrics": eff["metrics"]["port"], "health": eff["health"]["port"]}, ports
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == eff["metrics"]["port"]

    # hugepages: a resource covering eal.memory_mb, and mounted
    res = daemon["resources"]
    assert res["requests"]["hugepages-2Mi"] == res["limits"]["hugepages-2Mi"]
    assert mi(res["limits"]["hugepages-2Mi"]) >= eff["memory_mb"], (res, eff["memory_mb"])
    _, vol = mount_of(daemon, volumes, "/dev/hugepages")
    assert vol["emptyDir"]["medium"] == "HugePages"

    # the API socket: where the host's CNI plugin looks (the conflist), a host path at the same
    # place in the container; vhost-user sockets (run_dir) on the host too
    assert plugin["dpdk_fwd_socket"] == eff["api_socket"]
    for path in (eff["api_socket"], eff["run_dir"] + "/x.sock"):
        mount, vol = mount_of(daemon, volumes, posixpath.dirname(path))
        assert vol["hostPath"]["path"] == mount["mountPath"], (path, mount, vol)
    # the endpoint record: a host path, so a new container (a rolling update) takes the pods back
    mount, vol = mount_of(daemon, volumes, eff["state_dir"] + "/endpoints/pod.json")
    assert vol["hostPath"]["path"] == mount["mountPath"] == eff["state_dir"], (mount, vol)
    mount, vol = mount_of(daemon, volumes, "/var/run/netns/cni-1234")
    assert vol["hostPath"]["path"] == "/var/run/netns"
    assert mount.get("mountPropagation") == "HostToContainer"  # namespaces made later

    # the init container: the plugin under its conflist type into the host's bin dir, the
    # conflist into the host's net.d, the config rendered where the daemon reads it
    script = "\n".join(init["command"] + init.get("args", []))
    m = re.search(r"install -m 0755 \S+ (\S+)", script)
    assert m and posixpath.basename(m.group(1)) == plugin["type"], script
    mount, vol = mount_of(init, volumes, m.group(1))
    assert vol["hostPath"]["path"] == "/opt/cni/bin"
    m = re.search(r"install -m 0644 \S+ (\S+\.conflist)", script)
    assert m, script
    mount, vol = mount_of(init, volumes, m.group(1))
    assert vol["hostPath"]["path"] == "/etc/cni/net.d"
    m = re.search(r"render-config\.py (\S+) (\S+)", script)
    assert m, script
    config_path = daemon["command"][daemon["command"].index("--config") + 1]
    assert m.group(2) == config_path, (m.group(2), config_path)
    init_mount, vol = mount_of(init, volumes, config_path)
    daemon_mount, vol2 = mount_of(daemon, volumes, config_path)
    assert init_mount["name"] == daemon_mount["name"] and "emptyDir" in vol
    env = {e["name"]: e for e in init["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"

    # RBAC: the service account the pod runs as may get nodes (render-config.py), nothing more
    sa = pod["serviceAccountName"]
    assert ("ServiceAccount", sa) in docs
    binding = docs[("ClusterRoleBinding", sa)]
    assert {"kind": "ServiceAccount", "name": sa, "namespace": "kube-system"} in \
        binding["subjects"]
    role = docs[("ClusterRole", binding["roleRef"]["name"])]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
