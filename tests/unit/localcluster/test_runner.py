from __future__ import annotations

from typing import Any

from caldera.localcluster.runner import expand, image_kind, launches_for


def _pod(image: str, **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": image, **container}]},
        "status": {"phase": "Running", "podIP": "127.1.0.7"},
    }


def test_enginesim_image_runs_enginesim_on_pod_ip_and_container_port() -> None:
    pod = _pod("caldera/enginesim:latest", args=["--model", "m"], ports=[{"containerPort": 8100}])
    [launch] = launches_for(pod, python="/venv/bin/python")
    assert launch.argv == ("/venv/bin/python", "-m", "enginesim", "--model", "m", "--host", "127.1.0.7",
                           "--port", "8100")


def test_enginesim_without_ports_uses_8000() -> None:
    [launch] = launches_for(_pod("caldera/enginesim"), python="py")
    assert launch.argv[-2:] == ("--port", "8000")


def test_process_image_runs_command_with_pod_ip_expanded() -> None:
    pod = _pod("caldera/process", command=["python", "-m", "http.server"], args=["--bind", "$(POD_IP)", "9000"])
    [launch] = launches_for(pod, python="/venv/bin/python")
    assert launch.argv == ("python", "-m", "http.server", "--bind", "127.1.0.7", "9000")


def test_path_starts_with_the_interpreter_bin_dir() -> None:
    [launch] = launches_for(_pod("caldera/process", command=["python"]), python="/venv/bin/python")
    assert dict(launch.env)["PATH"].startswith("/venv/bin:")


def test_field_ref_env_resolves_pod_ip() -> None:
    pod = _pod("caldera/process", command=["x"],
               env=[{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])
    [launch] = launches_for(pod)
    assert dict(launch.env)["MY_IP"] == "127.1.0.7"


def test_other_images_are_not_run() -> None:
    assert launches_for(_pod("nginx:1.25")) == []


def test_pending_pod_has_no_process() -> None:
    pod = _pod("caldera/enginesim")
    pod["status"] = {"phase": "Pending"}
    assert launches_for(pod) == []


def test_terminating_pod_has_no_process() -> None:
    pod = _pod("caldera/enginesim")
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert launches_for(pod) == []


def test_image_kind_recognises_tagged_markers() -> None:
    assert (image_kind("caldera/enginesim:v1"), image_kind("caldera/process:x"), image_kind("vllm/vllm")) == (
        "enginesim", "process", None)


def test_expand_substitutes_known_vars_and_keeps_unknown_and_escapes() -> None:
    assert expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"
