"""The PodSpec models are generated from the Kubernetes client's OpenAPI metadata."""

from caldera.k8s import codegen


def test_generated_podspec_requires_containers() -> None:
    assert '    containers: list[Container] = Field(alias="containers")' in codegen.render()


def test_resource_limits_are_generated_as_quantities() -> None:
    assert 'limits: dict[str, Quantity] | None = Field(default=None, alias="limits")' in codegen.render()


def test_probe_ports_are_int_or_string() -> None:
    assert 'port: IntOrString = Field(alias="port")' in codegen.render()
