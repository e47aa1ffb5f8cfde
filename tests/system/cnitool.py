"""The runtime side of CNI, done the way libcni (containernetworking/cni, spec 1.1.0) and the
kubelet's runtimes (containerd, CRI-O, through go-cni / ocicni) drive plugins, so a test sees
a plugin exactly as a Kubernetes node would run it.

    nl = NetworkList(conflist, ["/usr/lib/cni"], cache_dir, host_netns="fwdt...h")
    res = nl.add(cid, pod.path, cni_args=kubelet_args("default", "web-0", cid))
    nl.check(cid, pod.path)
    nl.delete(cid, pod.path)

What libcni does and this module does too (libcni/api.go, libcni/conf.go, pkg/invoke):
- Each plugin of a list gets its own entry of "plugins" with "name" and "cniVersion"
  overwritten by the list's, "prevResult" (ADD: the previous plugin's result, none for the
  first; CHECK and DEL: the cached final result of the last ADD), and "runtimeConfig" holding
  only the runtime's capability arguments that the plugin declared in "capabilities" (a
  declared capability the runtime did not send is left out; when nothing is left, a
  "runtimeConfig" written in the plugin's own config stays as it is).
- ADD runs the plugins in order and stops at the first failure without undoing the ones
  that succeeded: cleaning up is the runtime's DEL, as with the kubelet. The final result is
  cached in <cache_dir>/results/<network>-<containerID>-<ifname> in libcni's cniCacheV1
  format (so a real libcni could read it). DEL runs the plugins in reverse order with that
  cached result and removes it on success; a missing cache entry is no error (prevResult is
  left out). CHECK runs them in order with the cached result.
- CHECK is an error for cniVersion < 0.4.0 and a no-op with "disableCheck"; DEL passes a
  cached result only from 0.4.0 on. STATUS and the plugin half of GC exist from 1.1.0 on;
  below that STATUS returns at once and GC only does libcni's own half: a DEL for every
  cached attachment of this network that is not in the valid list.
- "cniVersions" in a list: the highest entry (with "cniVersion") not above 1.1.0 wins, without
  asking the plugins whether they support it.
- ADD checks the container ID, network name and interface name like libcni before running a
  plugin (CniError with plugin None). A plugin's ADD output must be a JSON object (null counts
  as {}); an empty or missing "cniVersion" in it is taken to be the config's.

Where this module differs from libcni, on purpose:
- The environment is built from scratch: libcni appends the CNI_* variables to the runtime's
  whole environment; here a plugin sees only them and PATH, so a plugin cannot depend on
  something a real runtime may not have.
- ADD, CHECK and DEL get all six CNI_* variables (CNI_ARGS and, on DEL, CNI_NETNS may be
  empty, as libcni sends them). VERSION, STATUS and GC get what the spec lists for them and
  nothing else: VERSION only CNI_COMMAND (libcni adds CNI_NETNS, CNI_IFNAME and CNI_PATH set
  to "dummy" for very old plugins), STATUS and GC CNI_COMMAND and CNI_PATH (libcni adds the
  other four, empty).
- Results and cached results are passed on verbatim. libcni parses them into its typed Result
  (dropping keys it does not know) and converts a cached result to the config's version; here
  a cached result of another version is an error for CHECK, and DEL goes on without it (what
  libcni does when it cannot read the cache).
- Error JSON ({"code": ..., "msg": ...}) on stdout is an error even when the plugin exits 0;
  libcni would ignore it (DEL, CHECK) or take it for an empty result (ADD).
"""
import base64
import errno
import json
import os
import re
import shutil
import subprocess
import time
import uuid

# The spec version this runtime implements (libcni's version.Current()).
SPEC_VERSION = "1.1.0"
# Result versions libcni can decode (pkg/types/create): anything else in an ADD result fails.
RESULT_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CACHE_KIND = "cniCacheV1"
IP = shutil.which("ip") or "/usr/sbin/ip"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# libcni utils: container IDs and network names.
_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_IFNAME_MAX = 15  # IFNAMSIZ - 1


class CniError(Exception):
    """A failed CNI operation. From a plugin: code/msg/details from its error JSON (code None
    when stdout held none), plugin = its type, rc/stdout/stderr of the run. From the runtime
    side (bad container ID, missing plugin, unreadable cache, ...): plugin and rc are None."""

    def __init__(self, msg, code=None, details="", plugin=None, rc=None, stdout="", stderr="",
                 verb=None):
        self.code = code
        self.msg = msg
        self.details = details
        self.plugin = plugin
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.verb = verb
        text = msg if code is None else f"[{code}] {msg}"
        if details:
            text += f": {details}"
        if plugin is not None:
            text = f"plugin type={plugin!r} failed ({verb or '?'}): {text}"
            if stderr.strip():
                text += f"\n--- stderr ---\n{stderr.strip()}"
        super().__init__(text)


def kubelet_args(namespace, pod, container_id, uid=None):
    """CNI_ARGS as containerd and CRI-O pass them for a Kubernetes pod. A pod always has a UID;
    without one, a stable one is derived from the pod's identity so ADD and DEL agree."""
    if uid is None:
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"k8s-pod:{namespace}/{pod}/{container_id}"))
    return {
        "IgnoreUnknown": "1",
        "K8S_POD_NAMESPACE": namespace,
        "K8S_POD_NAME": pod,
        "K8S_POD_INFRA_CONTAINER_ID": container_id,
        "K8S_POD_UID": uid,
    }


def cni_args_string(cni_args):
    """{k: v} -> "k=v;k=v" (libcni's stringify). The format has no escaping, so a ';' anywhere
    or a '=' in a key cannot be passed."""
    parts = []
    for k, v in (cni_args or {}).items():
        k, v = str(k), str(v)
        if not k or "=" in k or ";" in k or ";" in v:
            raise ValueError(f"CNI_ARGS cannot carry {k!r}={v!r}")
        parts.append(f"{k}={v}")
    return ";".join(parts)


def invoke(plugin_path, env, stdin, host_netns=None, timeout=60):
    """Runs one plugin binary once and returns the CompletedProcess (text stdout/stderr); it
    does not interpret the outcome. env: the CNI_* variables (None values are left out); PATH
    is added unless given. stdin: bytes, str or None (empty). host_netns: the name of a
    network namespace to run the plugin in (ip netns exec), so whatever it creates on the
    host side lands there. A timeout raises subprocess.TimeoutExpired (the plugin is killed).
    Like libcni, a "text file busy" exec (a plugin being written) is retried for 5 seconds."""
    full_env = {k: str(v) for k, v in env.items() if v is not None}
    full_env.setdefault("PATH", os.environ.get("PATH") or DEFAULT_PATH)
    if stdin is None:
        data = b""
    elif isinstance(stdin, str):
        data = stdin.encode()
    else:
        data = bytes(stdin)
    argv = [str(plugin_path)]
    if host_netns:
        # ip execs the plugin in place: same process, so the timeout kills the plugin itself
        argv = [IP, "netns", "exec", host_netns, *argv]
    for attempt in range(6):
        try:
            r = subprocess.run(argv, input=data, env=full_env, capture_output=True,
                               timeout=timeout)
            break
        except OSError as e:
            if e.errno != errno.ETXTBSY or attempt == 5:
                raise
            time.sleep(1)
    return subprocess.CompletedProcess(r.args, r.returncode,
                                       r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


def parse_version(v):
    """"1.0.0" -> (1, 0, 0); like libcni's version.ParseVersion, missing minor or micro parts
    are 0 and anything else is an error."""
    if not isinstance(v, str) or not v:
        raise CniError(f"invalid version {v!r}")
    parts = v.split(".", 2)
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise CniError(f"invalid version {v!r}") from None
    if any(n < 0 for n in nums):
        raise CniError(f"invalid version {v!r}")
    return tuple(nums + [0] * (3 - len(nums)))


def version_at_least(v, minimum):
    return parse_version(v) >= parse_version(minimum)


def _plugin_error(verb, plugin_type, r):
    """A CniError for a plugin run that exited non-zero (libcni's pluginErr), or None."""
    if r.returncode == 0:
        return None
    out = r.stdout.strip()
    if not out:
        msg = "netplugin failed" + (f": {r.stderr.strip()!r}" if r.stderr.strip() else
                                    " with no error message")
        return CniError(msg, plugin=plugin_type, rc=r.returncode, stdout=r.stdout,
                        stderr=r.stderr, verb=verb)
    try:
        doc = json.loads(out)
    except ValueError as e:
        return CniError(f"netplugin failed but error parsing its diagnostic message {out!r}: {e}",
                        plugin=plugin_type, rc=r.returncode, stdout=r.stdout, stderr=r.stderr,
                        verb=verb)
    if not isinstance(doc, dict):
        doc = {}
    return CniError(str(doc.get("msg", "")), code=doc.get("code"),
                    details=str(doc.get("details", "") or ""), plugin=plugin_type,
                    rc=r.returncode, stdout=r.stdout, stderr=r.stderr, verb=verb)


def _error_json_on_success(verb, plugin_type, r):
    """Error JSON printed by a plugin that exited 0 (see the module docstring), or None."""
    try:
        doc = json.loads(r.stdout) if r.stdout.strip() else None
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("code"), int) and "msg" in doc:
        return CniError(str(doc["msg"]), code=doc["code"],
                        details=str(doc.get("details", "") or ""), plugin=plugin_type,
                        rc=r.returncode, stdout=r.stdout, stderr=r.stderr, verb=verb)
    return None


class NetworkList:
    """One network (a conflist, or a single network config wrapped into one as libcni does)
    and the runtime state for it: plugin directories, result cache, host namespace.

    last_elapsed: wall-clock seconds of the last verb, whole chain, cache I/O included (and
    the `ip netns exec` per plugin run when host_netns is set), set even when it failed."""

    timeout = 60  # seconds per plugin run

    def __init__(self, conflist, plugin_dirs, cache_dir, host_netns=None):
        conflist = json.loads(json.dumps(conflist))  # a private deep copy, JSON types only
        if "plugins" not in conflist and "type" in conflist:
            # libcni's ConfListFromConf: a single config becomes a one-plugin list with its
            # name and cniVersion
            conflist = {"name": conflist.get("name"), "cniVersion": conflist.get("cniVersion", ""),
                        "plugins": [conflist]}
        self.raw = conflist
        self.name = conflist.get("name")
        if not isinstance(self.name, str):
            raise CniError("error parsing configuration list: no name")
        self.cni_version = self._negotiate_version(conflist)
        self.disable_check = self._read_bool("disableCheck")
        self.disable_gc = self._read_bool("disableGC")
        plugins = conflist.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise CniError("error parsing configuration list: no plugins in list")
        for i, p in enumerate(plugins):
            if not isinstance(p, dict) or not p.get("type"):
                raise CniError(f"failed to parse plugin config {i}: missing 'type'")
        self.plugins = plugins
        self.plugin_dirs = [str(d) for d in plugin_dirs]
        self.cache_dir = str(cache_dir)
        self.host_netns = host_netns
        self.last_elapsed = None

    # --- configuration -------------------------------------------------------------------

    @staticmethod
    def _negotiate_version(conflist):
        """libcni: cniVersion, or with cniVersions the highest of all those listed (and
        cniVersion) that is not above SPEC_VERSION; the plugins are not asked."""
        version = conflist.get("cniVersion", "")
        if not isinstance(version, str):
            raise CniError("error parsing configuration list: invalid cniVersion type")
        versions = conflist.get("cniVersions")
        if versions is None:
            return version
        if not isinstance(versions, list):
            raise CniError("error parsing configuration list: invalid type for cniVersions")
        candidates = [v for v in versions + ([version] if version else [])
                      if parse_version(v) <= parse_version(SPEC_VERSION)]
        return max(candidates, key=parse_version) if candidates else version

    def _read_bool(self, key):
        v = self.raw.get(key, False)
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        raise CniError(f"error parsing configuration list: invalid value {v!r} for {key}")

    def plugin_config(self, plugin, prev_result=None, runtime_config=None):
        """The stdin of one plugin (libcni's buildOneConfig): its config from the list with
        name and cniVersion of the list, prevResult when there is one, and runtimeConfig
        filtered by the plugin's declared capabilities."""
        conf = json.loads(json.dumps(plugin))
        conf["name"] = self.name
        conf["cniVersion"] = self.cni_version
        if prev_result is not None:
            conf["prevResult"] = prev_result
        caps = plugin.get("capabilities") or {}
        rc = {cap: (runtime_config or {})[cap] for cap, on in caps.items()
              if on and cap in (runtime_config or {})}
        if rc:
            conf["runtimeConfig"] = rc
        return conf

    def find_plugin(self, plugin_type):
        """libcni's FindInPath: the first executable file named plugin_type."""
        if "/" in plugin_type:
            raise CniError(f"invalid plugin name: {plugin_type}")
        for d in self.plugin_dirs:
            p = os.path.join(d, plugin_type)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
        raise CniError(f"failed to find plugin {plugin_type!r} in path {self.plugin_dirs}")

    # --- running plugins -----------------------------------------------------------------

    def _env(self, verb, container_id, netns_path, ifname, cni_args):
        return {
            "CNI_COMMAND": verb,
            "CNI_CONTAINERID": container_id or "",
            "CNI_NETNS": netns_path or "",
            "CNI_ARGS": cni_args_string(cni_args),
            "CNI_IFNAME": ifname or "",
            "CNI_PATH": ":".join(self.plugin_dirs),
        }

    def _run(self, verb, plugin, conf, env):
        """One plugin run; returns the CompletedProcess or raises CniError."""
        path = self.find_plugin(plugin["type"])
        try:
            r = invoke(path, env, json.dumps(conf), host_netns=self.host_netns,
                       timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise CniError(f"plugin did not finish within {self.timeout}s", plugin=plugin["type"],
                           verb=verb,
                           stderr=(e.stderr or b"").decode(errors="replace")) from None
        err = _plugin_error(verb, plugin["type"], r) or \
            _error_json_on_success(verb, plugin["type"], r)
        if err is not None:
            raise err
        return r

    def _add_one(self, plugin, prev_result, env, runtime_config):
        conf = self.plugin_config(plugin, prev_result, runtime_config)
        r = self._run("ADD", plugin, conf, env)
        try:
            result = json.loads(r.stdout)
        except ValueError as e:
            raise CniError(f"failed to unmarshal raw result: {e}", plugin=plugin["type"],
                           rc=r.returncode, stdout=r.stdout, stderr=r.stderr, verb="ADD") from None
        if result is None:
            result = {}
        if not isinstance(result, dict):
            raise CniError("failed to unmarshal raw result: not a JSON object",
                           plugin=plugin["type"], rc=r.returncode, stdout=r.stdout,
                           stderr=r.stderr, verb="ADD")
        # libcni's fixupResultVersion: no (or an empty) cniVersion means the config's
        if not isinstance(result.get("cniVersion"), str) or not result["cniVersion"]:
            result["cniVersion"] = self.cni_version
        if result["cniVersion"] not in RESULT_VERSIONS:
            raise CniError(f"unsupported CNI result version {result['cniVersion']!r}",
                           plugin=plugin["type"], rc=r.returncode, stdout=r.stdout,
                           stderr=r.stderr, verb="ADD")
        return result

    @staticmethod
    def _validate_attachment(container_id, ifname, network):
        # libcni's utils.Validate*: the codes are the spec's (3 unknown container,
        # 4 invalid environment, 7 invalid network config)
        if not container_id:
            raise CniError("missing containerID", code=3)
        if not _ID_RE.match(container_id):
            raise CniError("invalid characters in containerID", code=4, details=container_id)
        if not network:
            raise CniError("missing network name", code=7)
        if not _ID_RE.match(network):
            raise CniError("invalid characters found in network name", code=7, details=network)
        if not ifname:
            raise CniError("interface name is empty", code=4)
        if len(ifname) > _IFNAME_MAX:
            raise CniError("interface name is too long", code=4, details="interface name "
                           f"should be less than {_IFNAME_MAX + 1} characters")
        if ifname in (".", ".."):
            raise CniError("interface name is . or ..", code=4)
        if any(c in "/:" or c.isspace() for c in ifname):
            raise CniError("interface name contains / or : or whitespace characters", code=4)

    # --- the result cache (libcni's cniCacheV1) ------------------------------------------

    def cache_path(self, container_id, ifname):
        return os.path.join(self.cache_dir, "results", f"{self.name}-{container_id}-{ifname}")

    def _cache_add(self, result, container_id, netns_path, ifname, cni_args, runtime_config):
        entry = {
            "kind": CACHE_KIND,
            "containerId": container_id,
            # Go marshals []byte as base64: this is the list as the runtime had it
            "config": base64.b64encode(json.dumps(self.raw).encode()).decode(),
            "ifName": ifname,
            "networkName": self.name,
        }
        if netns_path:
            entry["netns"] = netns_path
        if cni_args:
            entry["cniArgs"] = [[str(k), str(v)] for k, v in cni_args.items()]
        if runtime_config:
            entry["capabilityArgs"] = runtime_config
        entry["result"] = result
        path = self.cache_path(container_id, ifname)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)

    def cached_entry(self, container_id, ifname):
        """The cache entry of an attachment as a dict, or None when there is none. Raises
        CniError when the file exists but is not a cniCacheV1 entry."""
        try:
            with open(self.cache_path(container_id, ifname)) as f:
                text = f.read()
        except OSError:
            return None  # libcni ignores read errors: the entry may not exist
        try:
            entry = json.loads(text)
        except ValueError as e:
            raise CniError(f"failed to unmarshal cached network {self.name!r} result: {e}")
        if not isinstance(entry, dict) or entry.get("kind") != CACHE_KIND:
            raise CniError(f"cached network {self.name!r} result has the wrong kind")
        return entry

    def cached_result(self, container_id, ifname):
        """The cached ADD result as the list's version would see it, or None."""
        entry = self.cached_entry(container_id, ifname)
        if entry is None or entry.get("result") is None:
            return None
        result = entry["result"]
        if result.get("cniVersion") != self.cni_version:
            raise CniError(f"failed to convert cached result version "
                           f"{result.get('cniVersion')!r} to config version {self.cni_version!r}"
                           " (conversion is not implemented here)")
        return result

    def _cache_del(self, container_id, ifname):
        try:
            os.unlink(self.cache_path(container_id, ifname))
        except FileNotFoundError:
            pass

    # --- verbs ---------------------------------------------------------------------------

    def add(self, container_id, netns_path, ifname="eth0", cni_args=None, runtime_config=None):
        t0 = time.monotonic()
        try:
            self._validate_attachment(container_id, ifname, self.name)
            env = self._env("ADD", container_id, netns_path, ifname, cni_args)
            result = None
            for plugin in self.plugins:
                result = self._add_one(plugin, result, env, runtime_config)
            self._cache_add(result, container_id, netns_path, ifname, cni_args, runtime_config)
            return result
        finally:
            self.last_elapsed = time.monotonic() - t0

    def check(self, container_id, netns_path, ifname="eth0", cni_args=None, runtime_config=None):
        t0 = time.monotonic()
        try:
            if not version_at_least(self.cni_version, "0.4.0"):
                raise CniError(f"configuration version {self.cni_version!r} does not support "
                               "the CHECK command")
            if self.disable_check:
                return
            # a missing cache entry is not an error for libcni: the plugins get no
            # prevResult (and should complain about it)
            prev = self.cached_result(container_id, ifname)
            env = self._env("CHECK", container_id, netns_path, ifname, cni_args)
            for plugin in self.plugins:
                self._run("CHECK", plugin, self.plugin_config(plugin, prev, runtime_config), env)
        finally:
            self.last_elapsed = time.monotonic() - t0

    def delete(self, container_id, netns_path, ifname="eth0", cni_args=None,
               runtime_config=None):
        t0 = time.monotonic()
        try:
            self._delete(container_id, netns_path, ifname, cni_args, runtime_config)
        finally:
            self.last_elapsed = time.monotonic() - t0

    def _delete(self, container_id, netns_path, ifname, cni_args, runtime_config):
        prev = None
        if version_at_least(self.cni_version, "0.4.0"):
            try:
                prev = self.cached_result(container_id, ifname)
            except CniError:
                # libcni: an unreadable cache entry is dropped and DEL goes on without it
                self._cache_del(container_id, ifname)
                prev = None
        env = self._env("DEL", container_id, netns_path, ifname, cni_args)
        for plugin in reversed(self.plugins):
            self._run("DEL", plugin, self.plugin_config(plugin, prev, runtime_config), env)
        self._cache_del(container_id, ifname)

    def status(self):
        t0 = time.monotonic()
        try:
            if not self._is_1_1():
                return  # libcni: no STATUS below 1.1.0, the network counts as ready
            env = {"CNI_COMMAND": "STATUS", "CNI_PATH": ":".join(self.plugin_dirs)}
            for plugin in self.plugins:
                conf = json.loads(json.dumps(plugin))
                conf["name"], conf["cniVersion"] = self.name, self.cni_version
                self._run("STATUS", plugin, conf, env)  # the first failure is the answer
        finally:
            self.last_elapsed = time.monotonic() - t0

    def gc(self, valid_attachments):
        """libcni's GCNetworkList: first a DEL (with the cached netns, CNI_ARGS and capability
        arguments) for every cached attachment of this network not in valid_attachments, then,
        from 1.1.0 on, GC to every plugin with cni.dev/valid-attachments. Every step runs;
        the errors are raised together at the end (code: the first one's)."""
        t0 = time.monotonic()
        try:
            if self.disable_gc:
                return
            valid = {(a["containerID"], a["ifname"]) for a in valid_attachments}
            errors = []
            for entry in self._cached_attachments():
                if (entry["containerId"], entry["ifName"]) in valid:
                    continue
                try:
                    self._delete(entry["containerId"], entry.get("netns", ""), entry["ifName"],
                                 dict(entry.get("cniArgs") or []), entry.get("capabilityArgs"))
                except CniError as e:
                    errors.append(e)
            if self._is_1_1():
                env = {"CNI_COMMAND": "GC", "CNI_PATH": ":".join(self.plugin_dirs)}
                for plugin in self.plugins:
                    conf = json.loads(json.dumps(plugin))
                    conf["name"], conf["cniVersion"] = self.name, self.cni_version
                    conf["cni.dev/valid-attachments"] = list(valid_attachments)
                    try:
                        self._run("GC", plugin, conf, env)
                    except CniError as e:
                        errors.append(e)
            if len(errors) == 1:
                raise errors[0]
            if errors:
                raise CniError("; ".join(str(e) for e in errors), code=errors[0].code,
                               plugin=None, verb="GC")
        finally:
            self.last_elapsed = time.monotonic() - t0

    def _cached_attachments(self):
        """libcni's GetCachedAttachments filtered to this network, in file name order."""
        d = os.path.join(self.cache_dir, "results")
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            return []
        entries = []
        for n in names:
            try:
                with open(os.path.join(d, n)) as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            if not isinstance(entry, dict) or entry.get("kind") != CACHE_KIND:
                continue
            if not entry.get("ifName") or entry.get("networkName") != self.name:
                continue
            entries.append(entry)
        return entries

    def _is_1_1(self):
        try:
            return version_at_least(self.cni_version, "1.1.0")
        except CniError:
            return False  # libcni ignores the parse error here

    def version(self, plugin_type):
        """VERSION of one plugin: {"cniVersion": ..., "supportedVersions": [...]}. stdin is
        {"cniVersion": SPEC_VERSION}, as libcni sends it."""
        t0 = time.monotonic()
        try:
            plugin = {"type": plugin_type}
            r = self._run("VERSION", plugin, {"cniVersion": SPEC_VERSION},
                          {"CNI_COMMAND": "VERSION"})
            try:
                info = json.loads(r.stdout)
            except ValueError as e:
                raise CniError(f"decoding version info: {e}", plugin=plugin_type, rc=r.returncode,
                               stdout=r.stdout, stderr=r.stderr, verb="VERSION") from None
            if not isinstance(info, dict) or not info.get("cniVersion"):
                raise CniError("decoding version info: missing field cniVersion",
                               plugin=plugin_type, rc=r.returncode, stdout=r.stdout,
                               stderr=r.stderr, verb="VERSION")
            if not info.get("supportedVersions"):
                # libcni's PluginDecoder: a 0.2.0 plugin without the list supports 0.1.0 too
                if info["cniVersion"] != "0.2.0":
                    raise CniError("decoding version info: missing field supportedVersions",
                                   plugin=plugin_type, rc=r.returncode, stdout=r.stdout,
                                   stderr=r.stderr, verb="VERSION")
                info["supportedVersions"] = ["0.1.0", "0.2.0"]
            return info
        finally:
            self.last_elapsed = time.monotonic() - t0
