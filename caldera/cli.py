"""The `caldera` console script.

Sub-commands live in the package that owns them and are imported only when invoked,
so `caldera sim` does not pay for OR-Tools and `caldera plan` does not pay for zmq.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from caldera.logging import configure_logging

# name -> "module:attribute" of a click command or group.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("caldera.validate", "Validate manifests offline with the admission models."),
    "crds": ("caldera.crdgen", "Generate the CustomResourceDefinition YAML from the API models."),
    "cluster": ("caldera.localcluster.cli", "Build, start, stop and inspect the embedded local cluster."),
    "sim": ("enginesim.cli", "Run the vLLM/SGLang-compatible engine simulator."),
    "controller": ("caldera.controller", "Run the Caldera controller (ModelServing, placement, autoscaler)."),
    "router": ("router.cli", "Run the OpenAI-compatible router."),
    "plan": ("placement.cli", "Dry-run topology-aware placement of a ModelServing."),
    "placement": ("placement.cli", "Placement services (the Volcano extender)."),
    "up": ("caldera.walkthrough", "Bring up the local cluster, controller, router and a sample model."),
    "down": ("caldera.walkthrough", "Stop everything `caldera up --detach` started."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, _ = COMMANDS[cmd_name]
        module = importlib.import_module(module_name)
        command: Any = getattr(module, f"{cmd_name}_command")
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}.{cmd_name}_command is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.option("--log-level", default="INFO", show_default=True, envvar="CALDERA_LOG_LEVEL")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="CALDERA_LOG_FORMAT")
@click.version_option(package_name="caldera")
def cli(log_level: str, log_format: str) -> None:
    """Caldera: Kthena-compatible LLM serving on Kubernetes and Volcano."""
    configure_logging(log_level, log_format)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
