"""Label, annotation, environment and gate names shared with Kthena and Volcano.

Kthena users switch without edits only if these strings match exactly
(kthena `pkg/apis/workload/v1alpha1/labels.go`, Volcano scheduling/batch API constants).
"""

from __future__ import annotations

GROUP = "workload.serving.volcano.sh"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelServing"
PLURAL = "modelservings"

NAME_LABEL = "modelserving.volcano.sh/name"
GROUP_NAME_LABEL = "modelserving.volcano.sh/group-name"
ROLE_LABEL = "modelserving.volcano.sh/role"
ROLE_ID_LABEL = "modelserving.volcano.sh/role-id"
ENTRY_LABEL = "modelserving.volcano.sh/entry"
REVISION_LABEL = "modelserving.volcano.sh/revision"
ROLE_TEMPLATE_HASH_LABEL = "modelserving.volcano.sh/role-template-hash"
ENTRY_VALUE = "true"

# ControllerRevisions carry the owning ModelServing and the revision hash.
CONTROLLER_REVISION_NAME_LABEL = NAME_LABEL
CONTROLLER_REVISION_HASH_LABEL = "controller.kubernetes.io/hash"

POD_DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
QUEUE_NAME_ANNOTATION = "scheduling.volcano.sh/queue-name"
KUBE_GROUP_NAME_ANNOTATION = "scheduling.k8s.io/group-name"
TASK_SPEC_ANNOTATION = "volcano.sh/task-spec"

GROUP_SIZE_ENV = "GROUP_SIZE"
ENTRY_ADDRESS_ENV = "ENTRY_ADDRESS"
WORKER_INDEX_ENV = "WORKER_INDEX"

PLACEMENT_GATE = "caldera.dev/placement"
VOLCANO_SCHEDULER = "volcano"

PODGROUP_GROUP = "scheduling.volcano.sh"
PODGROUP_VERSION = "v1beta1"
PODGROUP_PLURAL = "podgroups"
