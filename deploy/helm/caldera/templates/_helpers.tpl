{{/* Names, labels and images shared by every template. */}}

{{- define "caldera.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "caldera.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "caldera.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "caldera.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: caldera
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "router"). */}}
{{- define "caldera.selectorLabels" -}}
app.kubernetes.io/name: {{ include "caldera.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "caldera.componentLabels" -}}
{{ include "caldera.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "caldera.image" -}}
{{- printf "%s-%s:%s" .root.Values.image.repository .component (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{- define "caldera.controller.serviceAccountName" -}}
{{- default (printf "%s-controller" (include "caldera.fullname" .)) .Values.controller.serviceAccount.name -}}
{{- end -}}

{{- define "caldera.router.serviceAccountName" -}}
{{- default (printf "%s-router" (include "caldera.fullname" .)) .Values.router.serviceAccount.name -}}
{{- end -}}

{{- define "caldera.webhook.secretName" -}}
{{- default (printf "%s-webhook-tls" (include "caldera.fullname" .)) .Values.webhooks.certificate.secretName -}}
{{- end -}}

{{- define "caldera.webhook.serviceName" -}}
{{- printf "%s-webhook" (include "caldera.fullname" .) -}}
{{- end -}}

{{/*
RBAC rules of one component and scope from files/permissions.yaml:
(dict "root" $ "component" "controller" "scope" "cluster"). Prints nothing when empty.
*/}}
{{- define "caldera.rules" -}}
{{- $all := .root.Files.Get "files/permissions.yaml" | fromYaml -}}
{{- $gw := .root.Values.router.gatewayAPI -}}
{{- $gatewayMode := or $gw.enabled $gw.inferenceExtension -}}
{{- $conditions := dict "controllerManagedWebhooks" (and .root.Values.webhooks.enabled (eq .root.Values.webhooks.certificate.mode "controller")) "leaderWorkerSet" .root.Values.controller.leaderWorkerSet.enabled "controllerWatchesNamespaces" (not (empty .root.Values.controller.watchNamespaces)) "routerExternalModelProviders" .root.Values.router.externalModelProviders.enabled "routerGatewayAPI" $gatewayMode "routerGatewayAPIInferenceExtension" $gw.inferenceExtension "routerDefaultGateway" (and $gatewayMode $gw.createDefaultGateway) "routerGatewayTLS" (and $gatewayMode $gw.tls) -}}
{{- range (index $all .component) -}}
{{- if and (eq .scope $.scope) (or (not .when) (index $conditions .when)) }}
- apiGroups: {{ toJson .apiGroups }}
  resources: {{ toJson .resources }}
  {{- with .resourceNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
  verbs: {{ toJson .verbs }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
ClusterRole(+Binding) and, when the component watches a list of namespaces, a Role(+Binding)
per namespace: (dict "root" $ "component" "router" "namespaces" (list) "serviceAccount" "sa").
*/}}
{{- define "caldera.rbac" -}}
{{- $root := .root -}}
{{- $name := printf "%s-%s" (include "caldera.fullname" $root) .component -}}
{{- $labels := include "caldera.componentLabels" (dict "root" $root "component" .component) -}}
{{- $clusterRules := include "caldera.rules" (dict "root" $root "component" .component "scope" "cluster") -}}
{{- $nsRules := include "caldera.rules" (dict "root" $root "component" .component "scope" "namespaced") -}}
{{- $allNamespaces := empty .namespaces -}}
{{- if or $clusterRules (and $allNamespaces $nsRules) }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $name }}
  labels: {{- $labels | nindent 4 }}
rules:
{{- $clusterRules }}
{{- if $allNamespaces }}{{ $nsRules }}{{ end }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  labels: {{- $labels | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ .serviceAccount }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- if and (not $allNamespaces) $nsRules }}
{{- range .namespaces }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}
  namespace: {{ . }}
  labels: {{- $labels | nindent 4 }}
rules:
{{- $nsRules }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ . }}
  labels: {{- $labels | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $.serviceAccount }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The Validating- and MutatingWebhookConfiguration for the handlers of files/webhooks.yaml:
(dict "root" $ "caBundle" "<base64 PEM>"). An empty caBundle means cert-manager injects it.
*/}}
{{- define "caldera.webhookConfigurations" -}}
{{- $root := .root -}}
{{- $caBundle := .caBundle -}}
{{- $hooks := $root.Files.Get "files/webhooks.yaml" | fromYaml -}}
{{- $fullname := include "caldera.fullname" $root -}}
{{- range $kind := list "mutating" "validating" }}
---
apiVersion: admissionregistration.k8s.io/v1
kind: {{ ternary "MutatingWebhookConfiguration" "ValidatingWebhookConfiguration" (eq $kind "mutating") }}
metadata:
  name: {{ $fullname }}-{{ $kind }}
  labels: {{- include "caldera.componentLabels" (dict "root" $root "component" "webhook") | nindent 4 }}
  {{- if not $caBundle }}
  annotations:
    cert-manager.io/inject-ca-from: {{ $root.Release.Namespace }}/{{ $fullname }}-webhook
  {{- end }}
webhooks:
  {{- range (index $hooks $kind) }}
  - name: {{ .id }}.caldera.dev
    admissionReviewVersions: [v1]
    sideEffects: None
    failurePolicy: {{ $root.Values.webhooks.failurePolicy }}
    matchPolicy: Equivalent
    timeoutSeconds: {{ $root.Values.webhooks.timeoutSeconds }}
    clientConfig:
      service:
        name: {{ include "caldera.webhook.serviceName" $root }}
        namespace: {{ $root.Release.Namespace }}
        path: /{{ .id }}
        port: 443
      {{- if $caBundle }}
      caBundle: {{ $caBundle }}
      {{- end }}
    rules:
      - apiGroups: [{{ .apiGroup | quote }}]
        apiVersions: [v1alpha1]
        resources: {{ toJson .resources }}
        operations: [CREATE, UPDATE]
        scope: Namespaced
  {{- end }}
{{- end }}
{{- end -}}

{{/* "true" when the chart (not the controller) owns the webhook certificate and configurations. */}}
{{- define "caldera.webhook.chartOwned" -}}
{{- if and .Values.controller.enabled .Values.webhooks.enabled (ne .Values.webhooks.certificate.mode "controller") -}}true{{- end -}}
{{- end -}}
