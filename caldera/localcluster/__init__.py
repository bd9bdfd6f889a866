"""The embedded local cluster: real etcd, kube-apiserver, kube-controller-manager, Volcano
(vc-scheduler, vc-controller-manager) and KWOK GPU nodes on a HyperNode topology, with
process-backed pods and Prometheus. CLI: `caldera cluster build|up|down|status`.

Modules: `versions` (pins), `build` (Go builds into ~/.cache/caldera/bin), `topology`
(spec → Nodes + HyperNodes), `pki`, `kubeconfig`, `ports`, `processes`, `resources`,
`prometheus`, `runner` (the process runner), `cluster` (up/down/status), `session` (sharing
one cluster between test sessions).

The pytest session fixture `local_cluster` (tests/conftest.py) is a
`caldera.localcluster.session.LocalCluster` with:

- `.dir: Path` — the cluster directory (default ~/.cache/caldera/test-cluster,
  override with CALDERA_TEST_CLUSTER_DIR); logs in `.dir/logs/<component>.log`;
- `.kubeconfig: Path` — admin kubeconfig (client certificate, group system:masters);
- `.server: str` — https://127.0.0.1:<port>;
- `.prometheus_url: str` — http://127.0.0.1:<port> of the cluster's Prometheus, which
  scrapes pods annotated `prometheus.io/scrape: "true"` (+ `prometheus.io/port`, `/path`);
- `.topology: str` — "small": node-0..node-7 (8 x `nvidia.com/gpu`, label
  `nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3`), HyperNodes leaf-0 (node-0..3) and
  leaf-1 (node-4..7) at tier 1 under spine-0 at tier 2; nodes also carry labels
  `caldera.dev/leaf`, `caldera.dev/spine`;
- `.pod_network: str` — its loopback pod network, "127.<n>.0.0/16" (n = 1 for the first
  cluster running on the machine; each running cluster gets its own n, see `network`);
- `.api_client()` — a new kubernetes `ApiClient` for it;
- `.pod_log(ns, pod, container)` / `.pod_pid_file(uid, container)` — the process
  runner's output and pid files of process-backed containers.

Also `cluster_namespace` (function scope): a fresh namespace, deleted afterwards.
Tests marked `@pytest.mark.cluster` get the cluster automatically. The shared cluster is
used by every area's tests at once: a test that needs most of the GPUs should bring up a
private one (`Cluster(tmp_dir).up("small")` ... `.down()`, ~30 s; see
tests/integration/cluster/conftest.py `private_cluster`).

Acquiring the fixture runs `cluster up` (a few seconds on a healthy cluster): changed CRDs
in crds/ are applied, and a daemon whose config or code changed (KWOK stages, scheduler
config, runner) is restarted.

Pods: vc-scheduler serves both `schedulerName: volcano` and `default-scheduler` (there is
no kube-scheduler). Pod IPs come from the node's
`127.<n>.<node index>.0/24`; images starting `caldera/enginesim` run
`<python> -m enginesim <args> --host <podIP> --port <containerPort>`, images starting
`caldera/process` run their command/args (see `runner`). Such pods start Running but not
Ready; the runner sets Ready once the process accepts connections on its container port
(like a readiness probe), so Ready means reachable. Other pods are Running/Ready at once. Caldera's CRDs in `crds/*.yaml`
are applied at `cluster up`. The API server accepts loopback pod IPs, but Endpoints and
EndpointSlices do not (kube-controller-manager logs `endpoints[0].addresses[0]: Invalid
value: "127.1.2.2": may not be in the loopback range (127.0.0.0/8, ::1/128)`), so Services
over these pods get no endpoints: read pod IPs from the pods themselves.

Prometheus: Debian's prometheus 2.42 has no `kubernetes_sd_configs` (its config parser says
`field kubernetes_sd_configs not found in type config.ScrapeConfig`), so the runner writes
the annotated pods as a `file_sd_configs` target file (`caldera.localcluster.scrape`); the
target labels are `namespace`, `pod`, `node` and the pod's labels.
"""
