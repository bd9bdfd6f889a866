"""The controller's patch of kopf's namespace observation (see caldera.controller):
a matching namespace that only the namespace watch's own listing shows is served."""

from __future__ import annotations

from kopf._cogs.structs import bodies, references
from kopf._core.reactor import observation

from caldera.controller import serve_namespaces_listed_by_the_watch


async def test_a_matching_namespace_found_only_by_the_namespace_watchs_own_listing_is_served() -> None:
    """The exact case, without a cluster: kopf's namespace watch starts with a listing (events of
    type None) and the namespace is in it, but was not in the observer's first listing."""
    serve_namespaces_listed_by_the_watch()
    insights = references.Insights()
    listed = bodies.RawEvent(type=None, object=bodies.RawBody(metadata={"name": "team-a-1"}))
    await observation.process_discovered_namespace_event(raw_event=listed, namespaces=["team-a-*"], insights=insights)
    assert insights.namespaces == {"team-a-1"}
