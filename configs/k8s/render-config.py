#!/usr/bin/env python3
"""The node's dpdk-fwd config from the cluster-wide template (the ConfigMap's node.json):
the DaemonSet's init container runs it on each node.

Fills in what differs per node:
  node_name        the Node the pod runs on (NODE_NAME, from the downward API)
  node.ipv4/ipv6   the Node's InternalIP addresses, with the prefix length the host's
                   interface has them with (hostNetwork: `ip -j addr`)
  overlay.labels   the Node's labels (IP pools' nodeSelector, BGPPeer selectors)
  eal.file_prefix  "dpdk-fwd-<node>" unless the template sets one
Everything else is the template's. The Node is read from the API server with the pod's
service account (get on nodes: rbac.yaml).

Tests (tests/system/test_k8s_manifests.py) give NODE_JSON (a Node object) and IFADDRS_JSON
(`ip -j addr` output) files instead of the API and the host.

usage: render-config.py TEMPLATE OUTPUT"""
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import urllib.request

SA = "/var/run/secrets/kubernetes.io/serviceaccount"


def read_node(name):
    if os.environ.get("NODE_JSON"):
        with open(os.environ["NODE_JSON"]) as f:
            return json.load(f)
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    with open(f"{SA}/token") as f:
        token = f.read().strip()
    ctx = ssl.create_default_context(cafile=f"{SA}/ca.crt")
    url = f"https://{host}:{port}/api/v1/nodes/{name}"
    if ":" in host:
        url = f"https://[{host}]:{port}/api/v1/nodes/{name}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        return json.load(r)


def host_addresses():
    if os.environ.get("IFADDRS_JSON"):
        with open(os.environ["IFADDRS_JSON"]) as f:
            links = json.load(f)
    else:
        links = json.loads(subprocess.run(["ip", "-j", "addr"], check=True,
                                          capture_output=True, text=True).stdout)
    return [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
            for link in links for a in link.get("addr_info", [])]


def render(template, node, addrs):
    cfg = dict(template)
    name = node["metadata"]["name"]
    cfg["node_name"] = name
    cfg.setdefault("eal", {}).setdefault("file_prefix", f"dpdk-fwd-{name}"[:32])
    internal = [ipaddress.ip_address(a["address"]) for a in node.get("status", {})
                .get("addresses", []) if a.get("type") == "InternalIP"]
    node_addrs = dict(cfg.get("node", {}))
    for ip in internal:
        key = "ipv4" if ip.version == 4 else "ipv6"
        found = [a for a in addrs if a.ip == ip]
        if not found:
            sys.exit(f"render-config: the Node's InternalIP {ip} is on no interface of this host")
        node_addrs[key] = str(found[0])
    if "ipv4" not in node_addrs and "ipv6" not in node_addrs:
        sys.exit(f"render-config: Node {name} has no InternalIP address")
    cfg["node"] = node_addrs
    overlay = dict(cfg.get("overlay", {}))
    overlay["labels"] = dict(node["metadata"].get("labels", {}))
    cfg["overlay"] = overlay
    return cfg


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.splitlines()[-1])
    with open(sys.argv[1]) as f:
        template = json.load(f)
    node = read_node(os.environ["NODE_NAME"])
    out = render(template, node, host_addresses())
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
    os.replace(tmp, sys.argv[2])
    print(f"render-config: {sys.argv[2]} for node {out['node_name']}")


if __name__ == "__main__":
    main()
