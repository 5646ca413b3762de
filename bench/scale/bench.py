#!/usr/bin/env python3
"""Scale benchmark driver (started by bench/scale/run.sh inside a loopback-only netns, against a
cluster that tests/cluster/up.sh started). Standard library only.

Phases, all against the same robots in the same run:
  1. operator: 20 InferenceServices (each selects a distinct 5% of robots, label
     bench.robofleet.io/group=<0..19>) and one SafetyPolicy on all robots, applied at once; time
     until every pod is created and bound, and until every resource is converged
     (observedGeneration == generation and status counts equal the truth from pods and nodes);
     then a steady window with the operator's request counter and the audit log by user.
  2. daemonset: the operator's objects are deleted and the operator stopped; 21 DaemonSets with
     the same node selectors (kube-controller-manager places them); time until every pod is
     created and bound and every DaemonSet's status says so.

Writes one JSON document (--out) with timings, the operator's peak RSS (VmHWM), request counts
by verb and resource (its own counter) and writes by user (the API server's audit log).
"""
import argparse
import datetime
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

GROUPS = 20
GROUP_LABEL = "bench.robofleet.io/group"
OP_NS = "robofleet-bench"
DS_NS = "robofleet-bench-ds"
OP_USER = "robofleet-bench-operator"
OWNER = "robofleet.io/owner"
OWNER_KIND = "robofleet.io/owner-kind"
DS_LABEL = "bench.robofleet.io/ds"
MANAGED = "app.kubernetes.io/managed-by=robofleet-operator"


# Seconds between convergence and the start of the steady window.
SETTLE_S = 5


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def now_iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ---------------------------------------------------------------- a minimal Kubernetes client


class Kube:
    def __init__(self, state):
        kc = open(os.path.join(state, "kubeconfig")).read()
        server = re.search(r"server: https://([^\s]+)", kc).group(1)
        self.host, port = server.rsplit(":", 1)
        self.port = int(port)
        pki = os.path.join(state, "pki")
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))

    def conn(self, timeout=60):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def get(self, path):
        c = self.conn()
        try:
            c.request("GET", path, headers={"Accept": "application/json"})
            r = c.getresponse()
            body = r.read()
            if r.status == 404:
                return None
            if r.status >= 300:
                raise RuntimeError(f"GET {path}: {r.status} {body[:300]!r}")
            return json.loads(body)
        finally:
            c.close()

    def list_all(self, path, params=None):
        params = dict(params or {})
        params["limit"] = "500"
        items, rv = [], None
        while True:
            doc = self.get(path + "?" + urllib.parse.urlencode(params))
            items += doc.get("items", [])
            rv = doc["metadata"]["resourceVersion"]
            cont = doc["metadata"].get("continue")
            if not cont:
                return items, rv
            params["continue"] = cont


class Watched:
    """A list+watch mirror of one collection: name -> object, with the time each event arrived."""

    def __init__(self, kube, path, params=None, on_event=None):
        self.kube, self.path, self.params = kube, path, dict(params or {})
        self.objs, self.lock = {}, threading.Lock()
        self.ready = threading.Event()
        self.stop = False
        self.events = 0
        self.on_event = on_event
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def key(o):
        m = o["metadata"]
        return (m.get("namespace", ""), m["name"])

    def _run(self):
        while not self.stop:
            try:
                items, rv = self.kube.list_all(self.path, self.params)
                with self.lock:
                    self.objs = {self.key(o): o for o in items}
                self.ready.set()
                if self.on_event:
                    self.on_event()
                self._watch(rv)
            except Exception as e:  # relist on any error (expired resourceVersion, timeout)
                if not self.stop:
                    log(f"watch {self.path}: {e}; relisting")
                    time.sleep(1)

    def _watch(self, rv):
        while not self.stop:
            p = dict(self.params, watch="true", resourceVersion=rv, allowWatchBookmarks="true",
                     timeoutSeconds="240")
            c = self.kube.conn(timeout=300)
            c.request("GET", self.path + "?" + urllib.parse.urlencode(p),
                      headers={"Accept": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                raise RuntimeError(f"watch {self.path}: {r.status}")
            while not self.stop:
                line = r.readline()
                if not line:
                    break
                ev = json.loads(line)
                t, o = ev["type"], ev["object"]
                if t == "ERROR":
                    raise RuntimeError(f"watch error {o.get('message')}")
                rv = o["metadata"]["resourceVersion"]
                if t == "BOOKMARK":
                    continue
                with self.lock:
                    self.events += 1
                    if t == "DELETED":
                        self.objs.pop(self.key(o), None)
                    else:
                        self.objs[self.key(o)] = o
                if self.on_event:
                    self.on_event()
            c.close()

    def snapshot(self):
        with self.lock:
            return list(self.objs.values())


# ---------------------------------------------------------------- helpers


def kubectl(state, *args, stdin=None, check=True):
    kc = os.path.join(state, "kubeconfig")
    bin_dir = open(os.path.join(state, "env")).read()
    bin_dir = re.search(r"ROBOFLEET_CLUSTER_BIN=(\S+)", bin_dir).group(1)
    r = subprocess.run([os.path.join(bin_dir, "kubectl"), f"--kubeconfig={kc}", *args],
                       input=stdin, text=True, capture_output=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def operator_kubeconfig(state):
    """A client certificate of its own for the operator (still in system:masters, like the admin
    one) so the audit log tells its writes from kwok's, the scheduler's and the controller
    manager's, which all use the admin kubeconfig and its user robofleet-test-admin."""
    pki = os.path.join(state, "pki")
    key, csr, crt = (os.path.join(pki, f"bench-operator.{x}") for x in ("key", "csr", "crt"))
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", f"/O=system:masters/CN={OP_USER}"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(pki, "ca.crt"),
                    "-CAkey", os.path.join(pki, "ca.key"), "-CAcreateserial", "-out", crt,
                    "-days", "30", "-extfile", os.path.join(pki, "client.ext")],
                   check=True, capture_output=True)
    kc = open(os.path.join(state, "kubeconfig")).read()
    b64 = lambda p: __import__("base64").b64encode(open(p, "rb").read()).decode()
    kc = re.sub(r"client-certificate-data: \S+", f"client-certificate-data: {b64(crt)}", kc)
    kc = re.sub(r"client-key-data: \S+", f"client-key-data: {b64(key)}", kc)
    path = os.path.join(state, "operator-kubeconfig")
    with open(path, "w") as f:
        f.write(kc)
    os.chmod(path, 0o600)
    return path


def scrape_requests(port):
    """robofleet_operator_api_requests_total by (verb, resource)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'robofleet_operator_api_requests_total\{(.*)\} (\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out[f"{labels.get('verb')} {labels.get('resource')}"] = int(float(m.group(2)))
    return out


def delta(a, b):
    d = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
    return {k: v for k, v in sorted(d.items()) if v}


def by_verb(d):
    out = {}
    for k, v in d.items():
        verb = k.split(" ", 1)[0]
        out[verb] = out.get(verb, 0) + v
    return dict(sorted(out.items()))


WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def audit_counts(state, t_from, t_to, user=None):
    """Audit events (writes only: the policy logs no reads and no Lease) in [t_from, t_to):
    by user, and for `user` by verb and resource."""
    logs = os.path.join(state, "logs")
    files = sorted(f for f in os.listdir(logs) if f.startswith("audit"))
    users, detail = {}, {}
    for f in files:
        with open(os.path.join(logs, f)) as fh:
            for line in fh:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                ts = ev.get("requestReceivedTimestamp", "")
                t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                if not (t_from <= t < t_to):
                    continue
                if ev.get("stage") != "ResponseComplete":
                    continue
                u = ev.get("user", {}).get("username", "?")
                users[u] = users.get(u, 0) + 1
                if u == user:
                    ref = ev.get("objectRef", {})
                    res = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                    k = f"{ev.get('verb')} {res}"
                    detail[k] = detail.get(k, 0) + 1
    return dict(sorted(users.items(), key=lambda kv: -kv[1])), dict(sorted(detail.items()))


class Sampler:
    """VmRSS/VmHWM and CPU seconds of one process, and the load average, every second."""

    def __init__(self, pid):
        self.pid, self.stop = pid, False
        self.hwm_kib = self.max_rss_kib = 0
        self.cpu_s = 0.0
        self.load = []
        self.series = []
        self.t0 = time.time()
        threading.Thread(target=self._run, daemon=True).start()

    def read(self):
        try:
            st = open(f"/proc/{self.pid}/status").read()
            rss = int(re.search(r"VmRSS:\s+(\d+)", st).group(1))
            hwm = int(re.search(r"VmHWM:\s+(\d+)", st).group(1))
            fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, AttributeError):
            return
        self.max_rss_kib = max(self.max_rss_kib, rss)
        self.hwm_kib = max(self.hwm_kib, hwm)
        self.cpu_s = cpu
        return rss

    def _run(self):
        i = 0
        while not self.stop:
            rss = self.read()
            la = loadavg()
            self.load.append(la[0])
            if rss is not None and i % 5 == 0:
                self.series.append([round(time.time() - self.t0, 1), round(rss / 1024, 1), la[0]])
            i += 1
            time.sleep(1)


# ---------------------------------------------------------------- the truth and convergence


def robots(kube):
    nodes, _ = kube.list_all("/api/v1/nodes", {"labelSelector": "robofleet.io/robot=true"})
    out = {}
    for n in nodes:
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", []))
        out[n["metadata"]["name"]] = (n["metadata"].get("labels", {}), ready)
    return out


def selected_by(robots_, selector):
    return {n for n, (labels, _) in robots_.items()
            if all(labels.get(k) == v for k, v in selector.items())}


def pod_ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in p.get("status", {}).get("conditions", []))


def pods_by_owner(pods, owner_of):
    """owner -> {node: pod} of live pods; and how many live pods are not bound yet."""
    out, unbound = {}, 0
    for p in pods:
        if p["metadata"].get("deletionTimestamp"):
            continue
        owner = owner_of(p)
        if owner is None:
            continue
        node = p.get("spec", {}).get("nodeName")
        if not node:
            unbound += 1
            continue
        out.setdefault(owner, {})[node] = p
    return out, unbound


def pinned_robot(p):
    """The robot a pod is pinned to by its nodeAffinity (matchFields metadata.name), if any."""
    try:
        terms = p["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        return terms[0]["matchFields"][0]["values"][0]
    except (KeyError, IndexError, TypeError):
        return None


def placement_done(expected, placed, unbound):
    """Every expected (owner, robot) has a bound pod and there is no other pod."""
    if unbound:
        return False
    for owner, nodes in expected.items():
        if set(placed.get(owner, {})) != nodes:
            return False
    return set(placed) <= set(expected)


def wait_for(cond, timeout, what, dirty):
    """Evaluates `cond` whenever a watch event arrived (at most every 0.1 s); returns when true."""
    end = time.time() + timeout
    while time.time() < end:
        dirty.wait(timeout=1)
        dirty.clear()
        t = time.time()
        if cond():
            return t
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not reached within {timeout} s")


# ---------------------------------------------------------------- the workload


def operator_workload():
    docs = []
    for g in range(GROUPS):
        docs.append({
            "apiVersion": "robofleet.io/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": f"detector-{g:02d}", "namespace": OP_NS},
            "spec": {
                "model": {"uri": "file:///models/detector.onnx", "sha256": "a" * 64, "version": "v1"},
                "robotSelector": {"matchLabels": {GROUP_LABEL: str(g)}},
                "rollout": {"strategy": "AllAtOnce"},
            },
        })
    docs.append({
        "apiVersion": "robofleet.io/v1alpha1", "kind": "SafetyPolicy",
        "metadata": {"name": "fleet-safety", "namespace": OP_NS},
        "spec": {
            "robotSelector": {"matchLabels": {"robofleet.io/robot": "true"}},
            "source": {"topic": "/scan", "sourceTimeout": "500ms", "frame": "laser"},
            "zones": [{"name": "front", "shape": "sector", "action": "stop",
                       "minAngleDeg": -30, "maxAngleDeg": 30, "range": 0.5}],
        },
    })
    return docs


def daemonset_workload():
    selectors = [(f"detector-{g:02d}", {GROUP_LABEL: str(g)}) for g in range(GROUPS)]
    selectors.append(("fleet-safety", {"robofleet.io/robot": "true"}))
    docs = []
    for name, sel in selectors:
        docs.append({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": DS_NS},
            "spec": {
                "selector": {"matchLabels": {DS_LABEL: name}},
                "template": {
                    "metadata": {"labels": {DS_LABEL: name}},
                    "spec": {
                        "nodeSelector": sel,
                        "hostNetwork": True,
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{"name": "main", "image": "robofleet/inference-sidecar:dev"}],
                    },
                },
            },
        })
    return docs


def as_yaml_stream(docs):
    # JSON is YAML; kubectl takes a stream of documents.
    return "\n---\n".join(json.dumps(d) for d in docs)


# ---------------------------------------------------------------- phases


def prepare(a, kube):
    log("labelling robots into 20 groups, namespaces, PriorityClass, CRDs")
    # Group g = robots whose ros-domain-id is 5g+1..5g+5 (robot i has i mod 100 + 1): 5% each.
    for g in range(GROUPS):
        ids = ",".join(str(5 * g + k) for k in range(1, 6))
        kubectl(a.state, "label", "nodes", "--overwrite", "-l",
                f"robofleet.io/robot=true,robofleet.io/ros-domain-id in ({ids})", f"{GROUP_LABEL}={g}")
    ns = [{"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": OP_NS, "labels": {"robofleet.io/robot-workloads": "true"}}},
          {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DS_NS}},
          {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
           "metadata": {"name": "robofleet-safety-critical"}, "value": 1000000}]
    kubectl(a.state, "apply", "--server-side", "--field-manager=robofleet-bench", "-f", "-",
            stdin=as_yaml_stream(ns))
    kubectl(a.state, "apply", "--server-side", "--field-manager=robofleet-bench",
            "-f", os.path.join(a.repo, "deploy/crds"))
    kubectl(a.state, "wait", "--for=condition=Established", "--timeout=60s",
            "crd/inferenceservices.robofleet.io", "crd/safetypolicies.robofleet.io",
            "crd/sensorsims.robofleet.io")
    # Pods need the namespace's default ServiceAccount (the controller manager creates it).
    for n in (OP_NS, DS_NS):
        end = time.time() + 60
        while kube.get(f"/api/v1/namespaces/{n}/serviceaccounts/default") is None:
            if time.time() > end:
                raise TimeoutError(f"no default ServiceAccount in {n}")
            time.sleep(0.5)


def start_operator(a, kubeconfig):
    logf = open(os.path.join(a.state, "logs", "operator.log"), "w")
    env = dict(os.environ, KUBECONFIG=kubeconfig, RUST_LOG="info,kube=warn")
    proc = subprocess.Popen([
        a.operator_bin,
        "--lease-name", "robofleet-operator-bench", "--lease-namespace", "default",
        "--identity", "bench",
        "--metrics-addr", f"127.0.0.1:{a.metrics_port}",
        "--image", "default=robofleet/inference-sidecar:dev",
        "--bridge-image", "bridge=robofleet/ros2-bridge:dev",
    ], stdout=logf, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    with open(os.path.join(a.state, "pids", "bench-operator.pid"), "w") as f:
        f.write(str(proc.pid))
    end = time.time() + 120
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("the operator exited; see logs/operator.log")
        if "became leader" in open(os.path.join(a.state, "logs", "operator.log")).read():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{a.metrics_port}/readyz", timeout=2)
                return proc
            except OSError:
                pass
        time.sleep(0.5)
    raise TimeoutError("the operator did not lead and get ready within 120 s")


def resource_versions(isvcs, sps):
    out = {("InferenceService", o["metadata"]["name"]): o["metadata"]["resourceVersion"]
           for o in isvcs.snapshot()}
    out.update({("SafetyPolicy", o["metadata"]["name"]): o["metadata"]["resourceVersion"]
                for o in sps.snapshot()})
    return out


def operator_phase(a, kube, robots_, result):
    kubeconfig = operator_kubeconfig(a.state)
    proc = start_operator(a, kubeconfig)
    sampler = Sampler(proc.pid)
    dirty = threading.Event()
    on = dirty.set
    pods = Watched(kube, f"/api/v1/namespaces/{OP_NS}/pods", {"labelSelector": MANAGED}, on)
    isvcs = Watched(kube, f"/apis/robofleet.io/v1alpha1/namespaces/{OP_NS}/inferenceservices", None, on)
    sps = Watched(kube, f"/apis/robofleet.io/v1alpha1/namespaces/{OP_NS}/safetypolicies", None, on)
    for w in (pods, isvcs, sps):
        w.ready.wait(60)
    workload = operator_workload()
    expected = {}
    for d in workload:
        sel = d["spec"]["robotSelector"]["matchLabels"]
        expected[(d["kind"], d["metadata"]["name"])] = selected_by(robots_, sel)
    owner_of = lambda p: ((p["metadata"].get("labels", {}).get(OWNER_KIND),
                           p["metadata"].get("labels", {}).get(OWNER))
                          if p["metadata"].get("labels", {}).get(OWNER) else None)

    seen = set()  # (owner, robot) pairs that ever had a pod, unbound and terminating ones included

    def placed():
        snap = pods.snapshot()
        for p in snap:
            node, owner = p.get("spec", {}).get("nodeName") or pinned_robot(p), owner_of(p)
            if node and owner:
                seen.add((owner, node))
        placed_, unbound = pods_by_owner(snap, owner_of)
        return placement_done(expected, placed_, unbound), placed_

    want = {(o, n) for o, nodes in expected.items() for n in nodes}

    def first_pass():
        placed()
        return want <= seen

    def statuses_ok(placed_):
        objs = {("InferenceService", o["metadata"]["name"]): o for o in isvcs.snapshot()}
        objs.update({("SafetyPolicy", o["metadata"]["name"]): o for o in sps.snapshot()})
        bad = []
        for key, sel in expected.items():
            o = objs.get(key)
            st = (o or {}).get("status") or {}
            if o is None or st.get("observedGeneration") != o["metadata"].get("generation"):
                bad.append(f"{key[1]}: observedGeneration")
                continue
            present = placed_.get(key, {})
            c = st.get("robots", {})
            truth = {
                "total": len(sel),
                "offline": sum(1 for n in sel if not robots_[n][1]),
                "ready": sum(1 for p in present.values() if pod_ready(p)),
                "failed": sum(1 for p in present.values() if p.get("status", {}).get("phase") == "Failed"),
            }
            if key[0] == "InferenceService":
                truth["updated"] = len(present)
            for k, v in truth.items():
                if c.get(k, 0) != v:
                    bad.append(f"{key[1]}: robots.{k} {c.get(k, 0)} != {v}")
        return bad

    def converged():
        ok, placed_ = placed()
        return ok and not statuses_ok(placed_)

    r = result["operator"] = {"pods": sum(len(v) for v in expected.values())}

    def progress():
        placed_, unbound = pods_by_owner(pods.snapshot(), owner_of)
        r["progress"] = {"bound_pods": sum(len(v) for v in placed_.values()), "unbound_pods": unbound,
                         "status_mismatches": statuses_ok(placed_)[:20]}
        r["peak_rss_mib"] = round(sampler.hwm_kib / 1024, 1)
        r["cpu_s_total"] = round(sampler.cpu_s, 1)
        r["rss_series_s_mib_load1"] = sampler.series
    try:
        operator_run(a, proc, sampler, pods, isvcs, sps, workload, placed, statuses_ok, converged, r,
                     result, dirty, first_pass)
    except BaseException:
        progress()
        raise
    finally:
        sampler.stop = True
        for w in (pods, isvcs, sps):
            w.stop = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def operator_run(a, proc, sampler, pods, isvcs, sps, workload, placed, statuses_ok, converged, r,
                 result, dirty, first_pass):
    m0 = scrape_requests(a.metrics_port)
    base_rss = sampler.read() or 0
    log(f"operator ready (RSS {base_rss / 1024:.1f} MiB before the workload); applying 20 InferenceServices + 1 SafetyPolicy")
    t0 = time.time()
    kubectl(a.state, "apply", "--server-side", "--field-manager=robofleet-bench", "-f", "-",
            stdin=as_yaml_stream(workload))
    t_first = wait_for(first_pass, a.timeout, "operator first pass", dirty)
    r["all_created_once_s"] = round(t_first - t0, 2)
    log(f"operator: a pod had been created for every robot after {t_first - t0:.1f} s")
    dirty.set()
    t_place = wait_for(lambda: placed()[0], a.timeout, "operator placement", dirty)
    log(f"operator: every pod created and bound after {t_place - t0:.1f} s")
    dirty.set()
    try:
        t_conv = wait_for(converged, a.timeout, "operator convergence", dirty)
    except TimeoutError:
        log("not converged: " + "; ".join(statuses_ok(placed()[1])[:10]))
        raise
    log(f"operator: converged after {t_conv - t0:.1f} s")
    # The steady window opens a few seconds after convergence: the Events of the status change
    # that made it converge are sent just after that status, and belong to convergence.
    time.sleep(SETTLE_S)
    t_steady = time.time()
    m1 = scrape_requests(a.metrics_port)
    rv_at_conv = resource_versions(isvcs, sps)
    pod_events_at_conv = pods.events
    log(f"steady window: {a.steady} s")
    time.sleep(a.steady)
    t_end = time.time()
    m2 = scrape_requests(a.metrics_port)
    still = converged()
    rv_end = resource_versions(isvcs, sps)
    changed = sorted(f"{k[0]}/{k[1]}" for k in rv_end if rv_end[k] != rv_at_conv.get(k))
    sampler.read()
    hwm = sampler.hwm_kib
    audit_apply = audit_counts(a.state, t0, t_steady, OP_USER)
    audit_steady = audit_counts(a.state, t_steady, t_end, OP_USER)
    steady_delta = delta(m1, m2)
    oplog = open(os.path.join(a.state, "logs", "operator.log"), errors="replace").read()
    r.update({
        "stray_pod_deletes_logged": oplog.count("deleting a stray or failed pod"),
        "placement_s": round(t_place - t0, 2),
        "converged_s": round(t_conv - t0, 2),
        "peak_rss_mib": round(hwm / 1024, 1),
        "rss_before_workload_mib": round(base_rss / 1024, 1),
        "cpu_s_total": round(sampler.cpu_s, 1),
        "requests_until_converged": {"by_verb": by_verb(delta(m0, m1)), "by_resource": delta(m0, m1)},
        "audit_writes_until_converged": {"by_user": audit_apply[0], "operator": audit_apply[1]},
        "steady": {
            "seconds": round(t_end - t_steady, 1),
            "opened_after_convergence_s": round(t_steady - t_conv, 1),
            "still_converged": still,
            "requests_by_verb": by_verb(steady_delta),
            "requests_by_resource": steady_delta,
            "writes_other_than_lease": {k: v for k, v in steady_delta.items()
                                        if k.split(" ")[0] in WRITE_VERBS and not k.endswith(" leases")},
            "audit_writes_by_user": audit_steady[0],
            "audit_operator_writes": audit_steady[1],
            "resources_whose_resourceVersion_changed": changed,
            "pod_watch_events": pods.events - pod_events_at_conv,
        },
        "rss_series_s_mib_load1": sampler.series,
    })
    # ---- tear down the operator's objects before the DaemonSet phase
    log("deleting the operator's objects and stopping the operator")
    kubectl(a.state, "delete", "-n", OP_NS, "inferenceservices,safetypolicies", "--all", "--wait=false")
    end = time.time() + 300
    while pods.snapshot() and time.time() < end:
        kubectl(a.state, "delete", "pods", "-n", OP_NS, "-l", MANAGED, "--grace-period=0", "--force",
                "--wait=false", check=False)
        time.sleep(3)
    sampler.read()
    r["peak_rss_mib"] = round(sampler.hwm_kib / 1024, 1)
    result["load1_during_operator_phase"] = {
        "min": min(sampler.load), "max": max(sampler.load),
        "mean": round(sum(sampler.load) / len(sampler.load), 2)}


def daemonset_phase(a, kube, robots_, result):
    dirty = threading.Event()
    pods = Watched(kube, f"/api/v1/namespaces/{DS_NS}/pods", None, dirty.set)
    dss = Watched(kube, f"/apis/apps/v1/namespaces/{DS_NS}/daemonsets", None, dirty.set)
    for w in (pods, dss):
        w.ready.wait(60)
    workload = daemonset_workload()
    expected = {d["metadata"]["name"]: selected_by(robots_, d["spec"]["template"]["spec"]["nodeSelector"])
                for d in workload}
    owner_of = lambda p: p["metadata"].get("labels", {}).get(DS_LABEL)

    def placed():
        placed_, unbound = pods_by_owner(pods.snapshot(), owner_of)
        return placement_done(expected, placed_, unbound)

    def statuses_ok():
        objs = {o["metadata"]["name"]: o for o in dss.snapshot()}
        for name, sel in expected.items():
            o = objs.get(name)
            st = (o or {}).get("status") or {}
            if o is None or st.get("observedGeneration") != o["metadata"].get("generation"):
                return False
            if not (st.get("desiredNumberScheduled") == st.get("currentNumberScheduled") == len(sel)):
                return False
        return True

    load = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            load.append(loadavg()[0])
            time.sleep(1)
    threading.Thread(target=sample, daemon=True).start()
    log("applying 21 DaemonSets")
    t0 = time.time()
    kubectl(a.state, "apply", "--server-side", "--field-manager=robofleet-bench", "-f", "-",
            stdin=as_yaml_stream(workload))
    t_place = wait_for(placed, a.timeout, "DaemonSet placement", dirty)
    log(f"DaemonSets: every pod created and bound after {t_place - t0:.1f} s")
    dirty.set()
    t_conv = wait_for(lambda: placed() and statuses_ok(), a.timeout, "DaemonSet status", dirty)
    log(f"DaemonSets: status says so after {t_conv - t0:.1f} s")
    stop.set()
    users, _ = audit_counts(a.state, t0, t_conv)
    result["daemonset"] = {
        "placement_s": round(t_place - t0, 2),
        "converged_s": round(t_conv - t0, 2),
        "pods": sum(len(v) for v in expected.values()),
        "audit_writes_until_converged_by_user": users,
    }
    result["load1_during_daemonset_phase"] = {
        "min": min(load), "max": max(load), "mean": round(sum(load) / len(load), 2)}
    for w in (pods, dss):
        w.stop = True


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--operator-bin", required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--steady", type=int, default=330)
    p.add_argument("--timeout", type=int, default=1200)
    p.add_argument("--out", required=True)
    p.add_argument("--cluster-up-s", type=float, default=None)
    p.add_argument("--source", default=None, help="the commit the operator was built from")
    a = p.parse_args()
    kube = Kube(a.state)
    result = {
        "started_at": now_iso(time.time()),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": loadavg(),
                    "mem_total_mib": int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1)) // 1024},
        "cluster_up_s": a.cluster_up_s,
        "operator_source": a.source,
    }
    def on_term(*_):
        raise TimeoutError("the run's deadline (DEADLINE) passed")
    signal.signal(signal.SIGTERM, on_term)
    prepare(a, kube)
    robots_ = robots(kube)
    result["robots"] = len(robots_)
    result["robots_ready"] = sum(1 for _, r in robots_.values() if r)
    result["workload"] = {"inference_services": GROUPS, "robots_per_service": len(robots_) // GROUPS,
                          "safety_policies": 1, "rollout": "AllAtOnce"}
    ok = False
    try:
        operator_phase(a, kube, robots_, result)
        daemonset_phase(a, kube, robots_, result)
        op, ds = result["operator"], result["daemonset"]
        result["ratio_placement_operator_over_daemonset"] = round(op["placement_s"] / ds["placement_s"], 2)
        result["ratio_converged_operator_over_daemonset"] = round(op["converged_s"] / ds["converged_s"], 2)
        ok = True
    except (Exception, TimeoutError) as e:
        result["error"] = f"{type(e).__name__}: {e}"
        log(result["error"])
    result["loadavg_at_end"] = loadavg()
    result["finished_at"] = now_iso(time.time())
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    log(f"results in {a.out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
