"""The reconcile plan: desired state minus observed state, as a list of writes.

`plan()` is pure. The kopf shell (`modelserving.controller`) executes the actions in order
and feeds their results back into its cache, so the next plan sees its own writes.
At steady state the plan is empty: no writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelserving import desired as D
from modelserving import labels as L
from modelserving.naming import group_name, role_id, service_name
from modelserving.observed import GroupState, Observed, RoleReplicaState
from modelserving.recovery import Action, decide
from modelserving.resources import same_resources
from modelserving.revision import (
    controller_revision,
    role_template_hash,
    template_from_revision,
    template_revision,
)
from modelserving.rollout import Unit, next_current_revision, plan_step
from modelserving.scaling import Candidate, missing_ordinals, scale_down
from modelserving.spec import Json, ModelServing, SpecError, Template, parse_template
from modelserving.status import GroupSummary, compute_status, status_changes

Kind = Literal["Pod", "Service", "PodGroup", "ControllerRevision"]


@dataclass(frozen=True)
class Create:
    kind: Kind
    body: Json


@dataclass(frozen=True)
class Patch:
    kind: Kind
    name: str
    patch: Json  # a JSON merge patch


@dataclass(frozen=True)
class Delete:
    kind: Kind
    name: str
    uid: str | None = None  # precondition, so a recreated namesake is never deleted


@dataclass(frozen=True)
class DeleteMatching:
    """Delete every pod carrying these labels (one DeleteCollection, which survives our own crash)."""

    kind: Kind
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"


WriteAction = Create | Patch | Delete | DeleteMatching


@dataclass
class Plan:
    actions: list[WriteAction] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status_patch: dict[str, Any] = field(default_factory=dict)
    requeue_after: float | None = None
    notes: list[str] = field(default_factory=list)  # why: one line per decision

    def wait(self, seconds: float) -> None:
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)

    @property
    def writes(self) -> int:
        return len(self.actions) + (1 if self.status_patch else 0)


@dataclass
class _Ctx:
    ms: ModelServing
    obs: Observed
    options: D.PodOptions
    now: float
    update_rev: str
    current_rev: str
    templates: dict[str, Template]
    plan: Plan
    partition: int = 0
    group_revisions: dict[int, str] = field(default_factory=dict)
    deleted_groups: set[int] = field(default_factory=set)
    deleted_roles: set[tuple[int, str, int]] = field(default_factory=set)
    # Role replicas this plan creates pods for: never also deleted by a rollout in the same plan.
    created_roles: set[tuple[int, str, int]] = field(default_factory=set)

    def template_for(self, revision: str) -> Template:
        """The template of `revision` with today's role replica counts (scaling is not an update)."""
        counts = {r.name: r.replicas for r in self.ms.template.roles}
        base = self.templates.get(revision, self.ms.template)
        base = base.with_role_replicas(counts)
        # Roles added by the update only exist in the new template.
        return base


def _revision_templates(ms: ModelServing, obs: Observed, plan: Plan) -> dict[str, Template]:
    out: dict[str, Template] = {}
    for obj in obs.revisions.values():
        rev = ((obj.get("metadata") or {}).get("labels") or {}).get(L.CONTROLLER_REVISION_HASH_LABEL)
        raw = template_from_revision(obj)
        if not rev or raw is None:
            continue
        try:
            out[str(rev)] = parse_template(raw)
        except SpecError as exc:
            plan.notes.append(f"ControllerRevision for {rev} unreadable ({exc}); using the current template")
    return out


def _group_ready(group: GroupState, template: Template) -> bool:
    for role in template.roles:
        replicas = group.roles.get(role.name, {})
        if len(replicas) != role.replicas:
            return False
        for rr in replicas.values():
            if len(rr.pods) != role.pods_per_replica or not all(p.running_ready for p in rr.pods.values()):
                return False
    return bool(template.roles)


def _role_ready(rr: RoleReplicaState, pods_per_replica: int) -> bool:
    return len(rr.pods) == pods_per_replica and all(p.running_ready for p in rr.pods.values())


def _group_updated(ctx: _Ctx, group: GroupState) -> bool:
    pods = group.pods()
    if not pods:
        return False
    if all(p.revision == ctx.update_rev for p in pods):
        return True
    if ctx.ms.rollout_type == "RoleRollingUpdate":
        hashes = {r.name: role_template_hash(r) for r in ctx.ms.template.roles}
        return all(hashes.get(p.role) == p.role_hash for p in pods)
    return False


def _group_revision(ctx: _Ctx, group: GroupState) -> str:
    cached = ctx.group_revisions.get(group.ordinal)
    if cached is None:
        cached = group.revision() or (ctx.current_rev if group.ordinal < ctx.partition else ctx.update_rev)
        ctx.group_revisions[group.ordinal] = cached
    return cached


def _delete_group(ctx: _Ctx, group: GroupState, reason: str) -> None:
    if group.ordinal in ctx.deleted_groups:
        return
    ctx.deleted_groups.add(group.ordinal)
    ctx.plan.notes.append(f"delete ServingGroup {group.name}: {reason}")
    ctx.plan.actions.append(DeleteMatching("Pod", {L.NAME_LABEL: ctx.ms.name, L.GROUP_NAME_LABEL: group.name}))
    for name, svc in ctx.obs.services.items():
        if ((svc.get("metadata") or {}).get("labels") or {}).get(L.GROUP_NAME_LABEL) == group.name:
            ctx.plan.actions.append(Delete("Service", name))
    if group.podgroup is not None:
        ctx.plan.actions.append(Delete("PodGroup", group.name))
    ctx.plan.events.append(Event("ServingGroupDeleting", f"ServingGroup {group.name} is being deleted: {reason}"))


def _delete_role_replica(ctx: _Ctx, group: GroupState, rr: RoleReplicaState, reason: str) -> None:
    key = (group.ordinal, rr.role, rr.index)
    if key in ctx.deleted_roles or group.ordinal in ctx.deleted_groups:
        return
    ctx.deleted_roles.add(key)
    rid = role_id(rr.role, rr.index)
    ctx.plan.notes.append(f"delete role replica {group.name}/{rid}: {reason}")
    ctx.plan.actions.append(DeleteMatching("Pod", {L.NAME_LABEL: ctx.ms.name, L.GROUP_NAME_LABEL: group.name,
                                                   L.ROLE_ID_LABEL: rid}))
    svc = service_name(group.name, rid)
    if svc in ctx.obs.services:
        ctx.plan.actions.append(Delete("Service", svc))
    ctx.plan.events.append(Event("RoleDeleting", f"Role {rr.role}/{rid} in ServingGroup {group.name} is now Deleting: {reason}"))


def _create_role_replica(ctx: _Ctx, ordinal: int, template: Template, role_name: str, index: int,
                         revision: str, only: tuple[int, ...] | None = None) -> None:
    role = template.role(role_name)
    if role is None:
        return
    ctx.created_roles.add((ordinal, role_name, index))
    for k, pod in enumerate(D.role_replica_pods(ctx.ms, ordinal, role, index, revision, ctx.options)):
        if only is None or k in only:
            ctx.plan.actions.append(Create("Pod", pod))
    if only is None:
        rid = role_id(role.name, index)
        ctx.plan.events.append(Event("RoleCreating",
                                     f"Role {role.name}/{rid} in ServingGroup {group_name(ctx.ms.name, ordinal)} is now Creating"))


def _ensure_podgroup(ctx: _Ctx, ordinal: int, template: Template, existing: Mapping[str, Any] | None) -> None:
    if not (ctx.options.podgroups and ctx.ms.uses_podgroups):
        return
    want = D.podgroup(ctx.ms, template, ordinal, ctx.options.subgroups)
    if existing is None:
        ctx.plan.actions.append(Create("PodGroup", want))
        return
    patch = podgroup_spec_patch(existing.get("spec") or {}, want["spec"])
    if patch:
        ctx.plan.actions.append(Patch("PodGroup", want["metadata"]["name"], {"spec": patch}))


def _topology_equal(have: Any, want: Any) -> bool:
    have = dict(have or {})
    want = dict(want or {})
    # Volcano defaults mode to hard.
    if have and "mode" not in have:
        have["mode"] = "hard"
    if want and "mode" not in want:
        want["mode"] = "hard"
    return have == want


def _subgroups_equal(have: Any, want: Any) -> bool:
    have = list(have or [])
    want = list(want or [])
    if len(have) != len(want):
        return False
    for h, w in zip(have, want, strict=True):
        for key in ("name", "labelSelector", "matchLabelKeys", "subGroupSize", "minSubGroups"):
            if (h.get(key) or None) != (w.get(key) or None):
                return False
        if not _topology_equal(h.get("networkTopology"), w.get("networkTopology")):
            return False
    return True


def podgroup_spec_patch(have: Mapping[str, Any], want: Mapping[str, Any]) -> Json:
    """Fields of `want` that differ semantically from `have` (Volcano's defaults are not differences)."""
    patch: Json = {}
    if have.get("minMember") != want.get("minMember"):
        patch["minMember"] = want.get("minMember")
    if not same_resources(have.get("minResources"), want.get("minResources")):
        patch["minResources"] = want.get("minResources")
    want_queue = want.get("queue")
    if want_queue and have.get("queue") != want_queue:
        patch["queue"] = want_queue
    if not _topology_equal(have.get("networkTopology"), want.get("networkTopology")):
        patch["networkTopology"] = want.get("networkTopology")
    if "subGroupPolicy" in want and not _subgroups_equal(have.get("subGroupPolicy"), want.get("subGroupPolicy")):
        patch["subGroupPolicy"] = want.get("subGroupPolicy")
    return patch


def _service_patch(have: Mapping[str, Any], want: Mapping[str, Any]) -> Json:
    hs, ws = have.get("spec") or {}, want["spec"]
    if hs.get("selector") != ws["selector"] or bool(hs.get("publishNotReadyAddresses")) != ws["publishNotReadyAddresses"]:
        return {"spec": {"selector": ws["selector"], "publishNotReadyAddresses": ws["publishNotReadyAddresses"]}}
    return {}


def _manage_group(ctx: _Ctx, group: GroupState) -> None:
    """Recovery, role scaling, PodGroup and Services of one existing ServingGroup."""
    ms = ctx.ms
    grev = _group_revision(ctx, group)
    gtemplate = ctx.template_for(grev if ms.rollout_type == "ServingGroupRollingUpdate" else ctx.update_rev)
    # 1. Recovery of existing role replicas.
    for role_name, replicas in sorted(group.roles.items()):
        role = gtemplate.role(role_name)
        if role is None:
            for rr in replicas.values():
                _delete_role_replica(ctx, group, rr, f"role {role_name} is not in the template")
            continue
        for rr in sorted(replicas.values(), key=lambda r: r.index):
            if (group.ordinal, role_name, rr.index) in ctx.obs.deleting_roles:
                ctx.plan.wait(5.0)
                continue
            d = decide(ms.recovery_policy, role.pods_per_replica, rr.pods,
                       gtemplate.restart_grace_period_seconds, ctx.now)
            if d.action is Action.WAIT:
                ctx.plan.wait(d.wait_seconds if d.wait_seconds is not None else 5.0)
            elif d.action is Action.DELETE_POD:
                ctx.plan.notes.append(f"{group.name}/{rr.role}-{rr.index}: delete {list(d.pods)}: {d.reason}")
                for name, uid in zip(d.pods, d.uids, strict=True):
                    ctx.plan.actions.append(Delete("Pod", name, uid))
            elif d.action is Action.CREATE_MISSING:
                rev = rr.revision() or grev
                ctx.plan.notes.append(f"{group.name}/{rr.role}-{rr.index}: create pods {list(d.missing)}: {d.reason}")
                _create_role_replica(ctx, group.ordinal, ctx.template_for(rev), role_name, rr.index, rev, d.missing)
            elif d.action is Action.RECREATE_ROLE:
                _delete_role_replica(ctx, group, rr, d.reason)
            elif d.action is Action.RECREATE_GROUP:
                _delete_group(ctx, group, d.reason)
                return
    # 2. Role replica scaling.
    for role in gtemplate.roles:
        replicas = group.roles.get(role.name, {})
        partition = ms.role_partition(role) if ms.rollout_type == "RoleRollingUpdate" else 0
        doomed = scale_down([Candidate(i, _role_ready(rr, role.pods_per_replica), rr.deletion_cost)
                             for i, rr in replicas.items()], role.replicas, partition)
        for i in doomed:
            rr = replicas[i]
            if not rr.terminating:
                _delete_role_replica(ctx, group, rr, f"scale {role.name} down to {role.replicas}")
        for i in missing_ordinals(role.replicas, replicas.keys()):
            if ms.rollout_type == "RoleRollingUpdate" and i < partition:
                rev = ctx.current_rev
            elif ms.rollout_type == "ServingGroupRollingUpdate":
                rev = grev
            else:
                rev = ctx.update_rev
            ctx.plan.notes.append(f"{group.name}: create {role.name}-{i} at {rev}")
            _create_role_replica(ctx, group.ordinal, ctx.template_for(rev), role.name, i, rev)
        # 3. Headless Services of the role replicas that stay.
        keep = (set(replicas) - set(doomed)) | set(missing_ordinals(role.replicas, replicas.keys()))
        for i in sorted(keep):
            want = D.headless_service(ms, group.ordinal, role, i)
            if want is None:
                continue
            have = ctx.obs.services.get(want["metadata"]["name"])
            if have is None:
                ctx.plan.actions.append(Create("Service", want))
            else:
                patch = _service_patch(have, want)
                if patch:
                    ctx.plan.actions.append(Patch("Service", want["metadata"]["name"], patch))
    # 4. The PodGroup follows the group's template.
    _ensure_podgroup(ctx, group.ordinal, gtemplate, group.podgroup)


def _expected_services(ctx: _Ctx, groups: Mapping[int, GroupState]) -> set[str]:
    names: set[str] = set()
    for ordinal, group in groups.items():
        if ordinal in ctx.deleted_groups:
            continue
        grev = _group_revision(ctx, group)
        gtemplate = ctx.template_for(grev if ctx.ms.rollout_type == "ServingGroupRollingUpdate" else ctx.update_rev)
        for role in gtemplate.roles:
            if role.worker_template is None:
                continue
            for i in set(group.roles.get(role.name, {})) | set(range(role.replicas)):
                names.add(service_name(group.name, role_id(role.name, i)))
    return names


def plan(ms: ModelServing, obs: Observed, options: D.PodOptions, now: float) -> Plan:
    """Everything to write so that the cluster converges on `ms` (empty at steady state)."""
    result = Plan()
    update_rev = template_revision(ms.template)
    templates = _revision_templates(ms, obs, result)
    templates[update_rev] = ms.template
    current_rev = ms.current_revision or update_rev
    partition = ms.resolved_partition()
    ctx = _Ctx(ms, obs, options, now, update_rev, current_rev, templates, result, partition)

    # ControllerRevision of the update revision exists before any object refers to it.
    rev_name = f"{ms.name}-{update_rev}"
    if rev_name not in obs.revisions:
        numbers = [int(o.get("revision") or 0) for o in obs.revisions.values()]
        result.actions.append(Create("ControllerRevision", controller_revision(ms, update_rev, max(numbers, default=0) + 1)))

    groups = obs.groups(ms.name)
    summaries_templates = {o: ctx.template_for(_group_revision(ctx, g)) for o, g in groups.items()}

    # ServingGroup scale down.
    doomed = scale_down([Candidate(o, _group_ready(g, summaries_templates[o]), g.deletion_cost)
                         for o, g in groups.items()], ms.replicas, partition)
    # Groups whose deletion we issued earlier stay out of every decision until they are gone;
    # look again soon, since a deletion that never shows up in the watch is forgotten after a while.
    ctx.deleted_groups |= {o for o in groups if o in obs.deleting_groups}
    if obs.deleting_groups or obs.deleting_roles:
        result.wait(5.0)
    for o in doomed:
        if not groups[o].terminating and o not in ctx.deleted_groups:
            _delete_group(ctx, groups[o], f"scale down to {ms.replicas} ServingGroups")
        else:
            ctx.deleted_groups.add(o)

    # Existing groups: wait for terminating ones, manage the rest.
    for o in sorted(groups):
        group = groups[o]
        if o in ctx.deleted_groups:
            continue
        if group.terminating and ms.recovery_policy == "ServingGroupRecreate":
            result.wait(5.0)
            continue
        _manage_group(ctx, group)

    # Rollout.
    if ms.rollout_type == "ServingGroupRollingUpdate":
        # Groups still being created (no pods yet, or pods created by this plan) are not rolled:
        # they come up at the revision they are created with and count as unavailable meanwhile.
        creating = {o for o, _, _ in ctx.created_roles}
        units = [Unit(o, _group_updated(ctx, g), _group_ready(g, summaries_templates[o]))
                 for o, g in groups.items() if o not in ctx.deleted_groups and o not in creating and g.pods()]
        # Groups still to be created count as unavailable, so they are part of the budget.
        step = plan_step(units, ms.replicas, ms.resolved_max_unavailable(), partition)
        for o in step.replace:
            if not groups[o].terminating:
                _delete_group(ctx, groups[o], f"rolling update to {update_rev}: {step.reason}")
    else:
        _role_rollout(ctx, groups, partition)

    # ServingGroup scale up: fill the lowest missing ordinals.
    existing = set(groups)
    for o in missing_ordinals(ms.replicas, existing):
        rev = current_rev if o < partition else update_rev
        template = ctx.template_for(rev)
        result.notes.append(f"create ServingGroup {group_name(ms.name, o)} at {rev}")
        _ensure_podgroup(ctx, o, template, obs.podgroups.get(group_name(ms.name, o)))
        for role in template.roles:
            for i in range(role.replicas):
                svc = D.headless_service(ms, o, role, i)
                if svc is not None and svc["metadata"]["name"] not in obs.services:
                    result.actions.append(Create("Service", svc))
                _create_role_replica(ctx, o, template, role.name, i, rev)

    # Services nobody wants any more.
    wanted = _expected_services(ctx, groups) | {
        service_name(group_name(ms.name, o), role_id(r.name, i))
        for o in missing_ordinals(ms.replicas, existing)
        for r in ctx.template_for(current_rev if o < partition else update_rev).roles if r.worker_template
        for i in range(r.replicas)
    }
    for name in sorted(set(obs.services) - wanted):
        if not any(isinstance(a, Delete) and a.kind == "Service" and a.name == name for a in result.actions):
            result.actions.append(Delete("Service", name))

    # Status.
    summaries = [GroupSummary(o, _group_revision(ctx, g), _group_updated(ctx, g), _group_ready(g, summaries_templates[o]))
                 for o, g in sorted(groups.items())]
    updated_ready = sum(1 for s in summaries if s.updated and s.ready)
    new_current = next_current_revision(ms.current_revision, update_rev, ms.replicas,
                                        updated_ready if len(summaries) == ms.replicas else -1)
    status = compute_status(generation=ms.generation, groups=summaries, replicas=ms.replicas, partition=partition,
                            current_revision=new_current, update_revision=update_rev,
                            label_selector=D.label_selector(ms), previous=ms.status, now=now)
    result.status_patch = status_changes(ms.status, status)

    # ControllerRevisions no pod and no status field refers to.
    referenced = {new_current, update_rev} | {p.revision for g in groups.values() for p in g.pods()}
    for name, obj in obs.revisions.items():
        hash_label = ((obj.get("metadata") or {}).get("labels") or {}).get(L.CONTROLLER_REVISION_HASH_LABEL)
        if hash_label not in referenced:
            result.actions.append(Delete("ControllerRevision", name))
    return result


def _role_rollout(ctx: _Ctx, groups: Mapping[int, GroupState], partition: int) -> None:
    ms = ctx.ms
    hashes = {r.name: role_template_hash(r) for r in ms.template.roles}
    for position, o in enumerate(sorted(groups)):
        if position < partition or o in ctx.deleted_groups:
            continue
        group = groups[o]
        for role in ms.template.roles:
            replicas = group.roles.get(role.name, {})
            units = [Unit(i, all(p.role_hash == hashes[role.name] for p in rr.pods.values()),
                          _role_ready(rr, role.pods_per_replica)) for i, rr in replicas.items()
                     if (o, role.name, i) not in ctx.created_roles and (o, role.name, i) not in ctx.deleted_roles]
            step = plan_step(units, role.replicas, ms.role_max_unavailable(role), ms.role_partition(role))
            for i in step.replace:
                rr = replicas[i]
                if not rr.terminating:
                    _delete_role_replica(ctx, group, rr, f"role rolling update: {step.reason}")
