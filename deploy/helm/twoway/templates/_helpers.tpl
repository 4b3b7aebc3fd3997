{{/* Names, labels, the image, the shared pod settings and each service's environment. */}}

{{- define "twoway.name" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<service> */}}
{{- define "twoway.component" -}}
{{- printf "%s-%s" (include "twoway.name" .root) .service -}}
{{- end -}}

{{- define "twoway.labels" -}}
app.kubernetes.io/name: twoway
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: twoway
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- if .service }}
app.kubernetes.io/component: {{ .service }}
{{- end }}
{{- end -}}

{{- define "twoway.selectorLabels" -}}
app.kubernetes.io/name: twoway
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{/* The contract's topics, and each service's topics, user and ACLs (generated). */}}
{{- define "twoway.access" -}}
{{- .Files.Get "files/kafka-access.json" -}}
{{- end -}}

{{/* repository@digest, or repository:tag (the chart's appVersion by default). */}}
{{- define "twoway.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- $tag := $image.tag | default .Chart.AppVersion -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag must be an immutable version or give image.digest; latest is refused" -}}
{{- end -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "twoway.pullPolicy" -}}
{{- .Values.image.pullPolicy | default (ternary "IfNotPresent" "Always" (not (empty .Values.image.digest))) -}}
{{- end -}}

{{/* Pod Security Standard "restricted". */}}
{{- define "twoway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "twoway.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "twoway.kafkaUsesSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}

{{- define "twoway.kafkaUsesTls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{/* Kafka and database settings every process of a service needs (docs/contract.md 7). */}}
{{- define "twoway.kafkaEnv" -}}
{{- $root := .root -}}
{{- $access := include "twoway.access" $root | fromJson -}}
{{- $user := (get $access.services .service).user -}}
- name: TWOWAY_KAFKA_BOOTSTRAP_SERVERS
  value: {{ $root.Values.kafka.bootstrapServers | quote }}
- name: TWOWAY_KAFKA_SECURITY_PROTOCOL
  value: {{ $root.Values.kafka.securityProtocol | quote }}
{{- if include "twoway.kafkaUsesSasl" $root }}
- name: TWOWAY_KAFKA_SASL_MECHANISM
  value: {{ $root.Values.kafka.saslMechanism | quote }}
- name: TWOWAY_KAFKA_SASL_USERNAME
  value: {{ $user | quote }}
- name: TWOWAY_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ printf "%s%s" $root.Values.kafka.userSecretPrefix $user }}
      key: {{ $root.Values.kafka.userPasswordKey }}
{{- end }}
{{- if include "twoway.kafkaUsesTls" $root }}
- name: TWOWAY_KAFKA_SSL_CAFILE
  value: /etc/twoway/kafka-ca/ca.crt
{{- end }}
- name: TWOWAY_TOPIC_PREFIX
  value: {{ $root.Values.topicPrefix | quote }}
- name: TWOWAY_TOPIC_PARTITIONS
  value: {{ $root.Values.kafka.partitions | quote }}
- name: TWOWAY_TOPIC_REPLICATION_FACTOR
  value: {{ $root.Values.kafka.replicationFactor | quote }}
- name: TWOWAY_LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end -}}

{{- define "twoway.databaseEnv" -}}
- name: TWOWAY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ printf "%s%s" .root.Values.database.secretPrefix .service }}
      key: {{ if .migration }}{{ .root.Values.database.migrationUrlKey }}{{ else }}{{ .root.Values.database.urlKey }}{{ end }}
{{- end -}}

{{/* Everything `twoway-<service> run` reads. */}}
{{- define "twoway.runEnv" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $svc := get $v.services .service -}}
{{ include "twoway.kafkaEnv" . }}
{{ include "twoway.databaseEnv" (dict "root" $root "service" .service "migration" false) }}
- name: TWOWAY_HTTP_HOST
  value: {{ $v.httpHost | quote }}
- name: TWOWAY_HTTP_PORT
  value: {{ $svc.port | quote }}
- name: TWOWAY_PORTAL_URL
  value: {{ $v.portalUrl | quote }}
{{- if $v.oidc.issuer }}
- name: TWOWAY_OIDC_ISSUER
  value: {{ $v.oidc.issuer | quote }}
{{- end }}
- name: TWOWAY_OIDC_AUDIENCE
  value: {{ $v.oidc.audience | quote }}
- name: TWOWAY_OIDC_ROLES_CLAIM
  value: {{ $v.oidc.rolesClaim | quote }}
{{- if has .service (list "scheduling" "notifications") }}
- name: TWOWAY_CALENDAR_BASE_URL
  value: {{ $v.calendar.baseUrl | quote }}
- name: TWOWAY_CALENDAR_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $v.calendar.keysSecret.name }}
      key: {{ $v.calendar.keysSecret.key }}
{{- end }}
{{- if eq .service "notifications" }}
- name: TWOWAY_SMTP_HOST
  value: {{ $v.smtp.host | quote }}
- name: TWOWAY_SMTP_PORT
  value: {{ $v.smtp.port | quote }}
- name: TWOWAY_SMTP_TLS
  value: {{ $v.smtp.tls | quote }}
- name: TWOWAY_MAIL_FROM
  value: {{ $v.smtp.mailFrom | quote }}
{{- if $v.smtp.calendarOrganizer }}
- name: TWOWAY_CALENDAR_ORGANIZER
  value: {{ $v.smtp.calendarOrganizer | quote }}
{{- end }}
{{- if $v.smtp.existingSecret }}
- name: TWOWAY_SMTP_USERNAME
  valueFrom: {secretKeyRef: {name: {{ $v.smtp.existingSecret }}, key: username}}
- name: TWOWAY_SMTP_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $v.smtp.existingSecret }}, key: password}}
{{- end }}
{{- end }}
{{- if and (eq .service "progress") $v.xapi.endpoint }}
- name: TWOWAY_XAPI_ENDPOINT
  value: {{ $v.xapi.endpoint | quote }}
{{- if $v.xapi.existingSecret }}
- name: TWOWAY_XAPI_USERNAME
  valueFrom: {secretKeyRef: {name: {{ $v.xapi.existingSecret }}, key: username}}
- name: TWOWAY_XAPI_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $v.xapi.existingSecret }}, key: password}}
{{- end }}
{{- end }}
{{- if $v.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.tracing.otlpEndpoint | quote }}
{{- end }}
{{- with $svc.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes: a writable /tmp (the root filesystem is read-only) and the Kafka CA. */}}
{{- define "twoway.volumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
{{- if include "twoway.kafkaUsesTls" .root }}
- name: kafka-ca
  secret:
    secretName: {{ .root.Values.kafka.caSecret.name }}
    items: [{key: {{ .root.Values.kafka.caSecret.key }}, path: ca.crt}]
{{- end }}
{{- end -}}

{{- define "twoway.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "twoway.kafkaUsesTls" .root }}
- name: kafka-ca
  mountPath: /etc/twoway/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Replicas beyond the partitions of the input topics would be idle consumers. */}}
{{- define "twoway.maxReplicas" -}}
{{- $svc := get .root.Values.services .service -}}
{{- min $svc.autoscaling.maxReplicas .root.Values.kafka.partitions -}}
{{- end -}}

{{/* One egress rule: {to: [peers], ports: [numbers]} over TCP. */}}
{{- define "twoway.egressRule" -}}
- to:
    {{- toYaml .rule.to | nindent 4 }}
  ports:
    {{- range .rule.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end -}}

{{- define "twoway.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: kube-system}
      podSelector:
        matchLabels: {k8s-app: kube-dns}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}
