{{/* Names, labels and the pieces every workload shares. */}}

{{- define "hookhub.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* Every resource's name prefix. 50 characters at most: "-notifications" must still fit in 63. */}}
{{- define "hookhub.fullname" -}}
{{- $name := include "hookhub.name" . -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "hub-api") */}}
{{- define "hookhub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookhub.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hookhub.labels" -}}
{{ include "hookhub.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* An image of ours: (dict "root" $ "name" "hookhub-api"), by its digest when one is given. */}}
{{- define "hookhub.image" -}}
{{- $digest := get (.root.Values.image.digest | default dict) .name -}}
{{- if $digest -}}
{{- printf "%s/%s@%s" .root.Values.image.registry .name $digest -}}
{{- else -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .name (.root.Values.image.tag | default .root.Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{- define "hookhub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "hookhub.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* One environment variable from the Secret: (dict "root" $ "name" ENV "key" KEY "secret" NAME "optional" BOOL) */}}
{{- define "hookhub.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret | default .root.Values.existingSecret }}
      key: {{ .key | default .name }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* What every Hookhub process reads: the broker URL and the common settings. */}}
{{- define "hookhub.commonEnv" -}}
{{ include "hookhub.secretEnv" (dict "root" . "name" "HOOKHUB_AMQP_URL" "key" .Values.rabbitmq.urlSecret.key "secret" .Values.rabbitmq.urlSecret.name) }}
- name: HOOKHUB_RETRY_DELAYS
  value: {{ .Values.settings.retryDelays | quote }}
- name: HOOKHUB_LOG_JSON
  value: {{ .Values.settings.logJson | quote }}
{{- end -}}

{{/* The providers, read from the Kong routes (/webhooks/<provider>), which the tests keep equal
     to hub-api's provider table. */}}
{{- define "hookhub.providers" -}}
{{- $providers := list -}}
{{- range $service := (fromYaml (.Files.Get "files/kong.yml")).services -}}
{{- range $route := $service.routes -}}
{{- range $path := $route.paths -}}
{{- if hasPrefix "~/webhooks/" $path -}}
{{- $providers = append $providers ($path | trimPrefix "~/webhooks/" | trimSuffix "$") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $providers | uniq | toJson -}}
{{- end -}}

{{/* The providers whose platform checks the URL with a GET handshake (their Kong route allows
     GET): hub-api also reads their verify token. */}}
{{- define "hookhub.handshakeProviders" -}}
{{- $providers := list -}}
{{- range $service := (fromYaml (.Files.Get "files/kong.yml")).services -}}
{{- range $route := $service.routes -}}
{{- if has "GET" ($route.methods | default list) -}}
{{- range $path := $route.paths -}}
{{- if hasPrefix "~/webhooks/" $path -}}
{{- $providers = append $providers ($path | trimPrefix "~/webhooks/" | trimSuffix "$") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $providers | uniq | toJson -}}
{{- end -}}

{{/* The DECK_ variables gateway/kong.yml refers to, as gateway/render.py finds them. */}}
{{- define "hookhub.kongVariables" -}}
{{- $names := list -}}
{{- range $placeholder := regexFindAll "\\$\\{\\{\\s*env\\s+\"DECK_[A-Za-z0-9_]+\"\\s*\\}\\}" (.Files.Get "files/kong.yml") -1 -}}
{{- $names = append $names (regexFind "DECK_[A-Za-z0-9_]+" $placeholder) -}}
{{- end -}}
{{- $names | uniq | toJson -}}
{{- end -}}

{{- define "hookhub.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "hookhub.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* A HorizontalPodAutoscaler: (dict "root" $ "component" NAME "autoscaling" VALUES) */}}
{{- define "hookhub.hpa" -}}
{{- if .autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "hookhub.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "hookhub.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "hookhub.fullname" .root }}-{{ .component }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget: (dict "root" $ "component" NAME "pdb" VALUES) */}}
{{- define "hookhub.pdb" -}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "hookhub.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "hookhub.labels" . | nindent 4 }}
spec:
  minAvailable: {{ .pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "hookhub.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* Where a pod may run: (dict "root" $ "component" NAME "values" .Values.hubApi). A spread
     constraint given without a labelSelector spreads this component's own pods. */}}
{{- define "hookhub.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
{{- $own := dict "labelSelector" (dict "matchLabels" (include "hookhub.selectorLabels" $ | fromYaml)) }}
{{- $constraints := list }}
{{- range . }}
{{- $constraints = append $constraints (merge (deepCopy .) $own) }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The OpenTelemetry exporter's settings, when tracing is on (tracing.otlpEndpoint). */}}
{{- define "hookhub.tracingEnv" -}}
{{- if .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.tracing.otlpEndpoint | quote }}
{{- range $name, $value := .Values.tracing.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Whether a consumer scales on its queue depth: KEDA asked for and its CRDs installed. */}}
{{- define "hookhub.kedaActive" -}}
{{- if and .Values.consumers.keda.enabled (.Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject") -}}
true
{{- end -}}
{{- end -}}

{{/* NetworkPolicy pieces. An egress rule to some peers on TCP ports: (dict "to" PEERS "ports"
     PORTS); no peers means any address (a broker or database outside the cluster). */}}
{{- define "hookhub.egressTo" -}}
- ports:
    {{- range .ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The egress every Hookhub pod needs: DNS, and the OTLP collector when tracing is on. */}}
{{- define "hookhub.egressBase" -}}
- ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
  {{- with .Values.networkPolicy.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- if .Values.tracing.otlpEndpoint }}
{{ include "hookhub.egressTo" .Values.networkPolicy.otlp }}
{{- end }}
{{- end -}}

{{/* Ingress for the metrics scrapers (networkPolicy.metricsFrom) on one port: (dict "root" $
     "port" PORT); nothing when no scraper is named. */}}
{{- define "hookhub.metricsIngress" -}}
{{- with .root.Values.networkPolicy.metricsFrom }}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ $.port }}}
{{- end }}
{{- end -}}

{{/* The metadata every resource of ours starts with: (dict "root" $ "component" NAME "name" SUFFIX) */}}
{{- define "hookhub.metadata" -}}
name: {{ include "hookhub.fullname" .root }}-{{ .name | default .component }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "hookhub.labels" . | nindent 2 }}
{{- end -}}
