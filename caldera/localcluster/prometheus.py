"""Our own Prometheus instance (Debian's `prometheus` package) for the local cluster.

Debian's build has no Kubernetes service discovery; pod targets come from a file the process
runner writes (see `scrape`). The Debian service is never used: the package is installed with service start-up blocked
and the cluster runs its own instance on a loopback port with the config rendered here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "local" / "prometheus.yaml.tmpl"
BINARY = "/usr/bin/prometheus"


class PrometheusError(RuntimeError):
    pass


def render(targets_file: Path, vc_scheduler_metrics: str, scrape_interval: str = "5s") -> str:
    return Template(TEMPLATE.read_text()).substitute(
        targets_file=str(targets_file), vc_scheduler_metrics=vc_scheduler_metrics, scrape_interval=scrape_interval)


def binary() -> str:
    found = shutil.which("prometheus") or (BINARY if os.access(BINARY, os.X_OK) else None)
    if found is None:
        raise PrometheusError("prometheus is not installed")
    return found


def ensure_installed(progress: object = print) -> str:
    """Install Debian's prometheus if missing, without letting its service start; return the binary."""
    try:
        return binary()
    except PrometheusError:
        pass
    if shutil.which("apt-get") is None:
        raise PrometheusError("prometheus is missing and apt-get is not available to install it")
    if callable(progress):
        progress("prometheus: installing Debian package (service start-up disabled)")
    policy = Path("/usr/sbin/policy-rc.d")
    had_policy = policy.exists()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    try:
        if not had_policy:
            # invoke-rc.d honours exit 101 as "do not start services" during package install.
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "prometheus"]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise PrometheusError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    finally:
        if not had_policy:
            policy.unlink(missing_ok=True)
    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "disable", "--now", "prometheus"], capture_output=True, check=False)
    return binary()


def argv(binary_path: str, config: Path, data_dir: Path, port: int) -> list[str]:
    return [
        binary_path,
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=1d",
        "--web.enable-lifecycle",
    ]
