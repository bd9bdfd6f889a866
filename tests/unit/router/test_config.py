import pytest

from router.config import load_config


def write(tmp_path, text):
    p = tmp_path / "router.yaml"
    p.write_text(text)
    return p


def test_static_config_loads_routes_servers_and_endpoints(tmp_path):
    cfg = load_config(write(tmp_path, """
port: 9000
modelServers:
- metadata: {name: s}
  spec: {model: real, workloadSelector: {matchLabels: {app: s}}}
modelRoutes:
- metadata: {name: r}
  spec: {modelName: chat, rules: [{targetModels: [{modelServerName: s}]}]}
endpoints:
- {name: pod-0, address: "127.0.0.1:8001", labels: {app: s}}
"""))
    assert cfg.port == 9000 and cfg.endpoints[0].address == "127.0.0.1:8001"


def test_unknown_profile_is_rejected_naming_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown profile 'fastest'.*default"):
        load_config(write(tmp_path, "profile: fastest\n"))


def test_unknown_scorer_is_rejected_naming_the_profile(tmp_path):
    with pytest.raises(ValueError, match=r"profiles\.mine\.scorers: unknown scorer 'magic'"):
        load_config(write(tmp_path, "profile: mine\nprofiles:\n  mine:\n    scorers: [{type: magic}]\n"))


def test_bad_field_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="metricsInterval"):
        load_config(write(tmp_path, "metricsInterval: -1\n"))


def test_custom_profile_with_weights_is_accepted(tmp_path):
    cfg = load_config(write(tmp_path, """
profile: mine
profiles:
  mine:
    filters: [{type: busy, params: {max_waiting: 4}}]
    scorers: [{type: kv-events, weight: 5}, {type: queue, weight: 1}]
    picker: {type: softmax, params: {temperature: 0.2}}
"""))
    assert cfg.all_profiles()["mine"].scorers[0].weight == 5


def test_cli_overrides_win_over_the_file(tmp_path):
    cfg = load_config(write(tmp_path, "port: 9000\n"), {"port": 9100, "profile": "random"})
    assert (cfg.port, cfg.profile) == (9100, "random")
