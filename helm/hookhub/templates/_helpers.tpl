{{/* Names, labels and the pieces every workload shares. */}}

{{- define "hookhub.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "hub-api") */}}
{{- define "hookhub.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hookhub.labels" -}}
{{ include "hookhub.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* An image of ours: (dict "root" $ "name" "hookhub-api") */}}
{{- define "hookhub.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .name (.root.Values.image.tag | default .root.Chart.AppVersion | toString) -}}
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
  labels:
    {{- include "hookhub.labels" . | nindent 4 }}
spec:
  minAvailable: {{ .pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "hookhub.selectorLabels" . | nindent 6 }}
{{- end -}}
