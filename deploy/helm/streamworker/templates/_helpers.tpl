{{/*
The chart's name: app.kubernetes.io/name.
*/}}
{{- define "streamworker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' name: the release name, followed by the chart's name unless it
already contains it. A release named streamworker gives the kustomize base's
names (streamworker, streamworker-metrics, ...).
*/}}
{{- define "streamworker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels that select the worker pods: those of the kustomize base, and the
release, so two releases in one namespace do not select each other's pods.
*/}}
{{- define "streamworker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamworker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "streamworker.labels" -}}
{{ include "streamworker.selectorLabels" . }}
app.kubernetes.io/part-of: streamworker
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "streamworker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamworker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the name of an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "streamworker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Where the Secret redis.tls.secretName is mounted.
*/}}
{{- define "streamworker.tlsDir" -}}
/etc/streamworker/redis-tls
{{- end }}

{{/*
Seconds in a Go duration (1h2m3.5s, 250ms), rounded up. The schema has
checked its form.
*/}}
{{- define "streamworker.seconds" -}}
{{- $ms := 0.0 }}
{{- range regexFindAll "[0-9.]+(ns|us|µs|ms|s|m|h)" . -1 }}
{{- $n := regexFind "^[0-9.]+" . | float64 }}
{{- $unit := trimPrefix (regexFind "^[0-9.]+" .) . }}
{{- $scale := get (dict "ns" 0.000001 "us" 0.001 "µs" 0.001 "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0) $unit }}
{{- $ms = addf $ms (mulf $n $scale) }}
{{- end }}
{{- ceil (divf $ms 1000) | int }}
{{- end }}

{{/*
Cross-field rules the schema cannot state, each with what to change.
*/}}
{{- define "streamworker.validate" -}}
{{- if eq .Values.image.tag "latest" }}
{{- fail "image.tag latest moves under running pods: pin a release (or image.digest)" }}
{{- end }}
{{- $w := .Values.worker }}
{{- $shutdown := include "streamworker.seconds" $w.shutdownTimeout | int }}
{{- if hasKey .Values "terminationGracePeriodSeconds" }}
{{- $grace := .Values.terminationGracePeriodSeconds | int }}
{{- if lt $grace (add $shutdown 10 | int) }}
{{- fail (printf "terminationGracePeriodSeconds=%d is below worker.shutdownTimeout (%s) + 10s: SIGKILL would cut the hand-over of unfinished work and the last acknowledgements; raise it to %d or leave it null" $grace $w.shutdownTimeout (add $shutdown 10)) }}
{{- end }}
{{- end }}
{{- $r := .Values.redis }}
{{- if and $r.clusterAddrs $r.sentinel.addrs }}
{{- fail "redis.clusterAddrs and redis.sentinel.addrs are both set: a Redis is either a Cluster or behind Sentinel; keep one" }}
{{- end }}
{{- if and $r.sentinel.addrs (not $r.sentinel.master) }}
{{- fail "redis.sentinel.addrs is set without redis.sentinel.master: name the primary as the Sentinels monitor it (sentinel monitor <name> ...)" }}
{{- end }}
{{- if and $r.sentinel.master (not $r.sentinel.addrs) }}
{{- fail "redis.sentinel.master is set without redis.sentinel.addrs: list the Sentinels (host:port)" }}
{{- end }}
{{- if and $r.sentinel.password.secretName (not $r.sentinel.addrs) }}
{{- fail "redis.sentinel.password is set without redis.sentinel.addrs: it is the Sentinels' password" }}
{{- end }}
{{- if ne (empty $r.tls.cert) (empty $r.tls.key) }}
{{- fail "redis.tls.cert and redis.tls.key go together: a client certificate needs its private key" }}
{{- end }}
{{- if and $r.tls.cert (not $r.tls.secretName) }}
{{- fail "redis.tls.cert and key name keys of the Secret redis.tls.secretName, which is empty" }}
{{- end }}
{{- if and (has "users" .Values.plugins.enabled) (not .Values.plugins.database.secretName) }}
{{- fail "plugins.enabled includes users, which stores users in PostgreSQL: set plugins.database.secretName to the Secret holding DATABASE_URL (postgres://...), or remove users" }}
{{- end }}
{{- if and .Values.plugins.database.secretName (not (has "users" .Values.plugins.enabled)) }}
{{- fail "plugins.database is set but plugins.enabled does not include users, its only reader" }}
{{- end }}
{{- $k := .Values.keda }}
{{- if $k.enabled }}
{{- if lt (int $k.maxReplicas) (int $k.minReplicas) }}
{{- fail (printf "keda.maxReplicas=%d is below keda.minReplicas=%d" (int $k.maxReplicas) (int $k.minReplicas)) }}
{{- end }}
{{- if and (hasKey $k "pendingEntriesCount") (gt (int $k.pendingEntriesCount) (int $w.concurrency)) }}
{{- fail (printf "keda.pendingEntriesCount=%d is above worker.concurrency=%d: a replica never holds more pending entries than it runs handlers, so this trigger would never add one" (int $k.pendingEntriesCount) (int $w.concurrency)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The worker settings left null in values.yaml are not rendered, so the worker
uses its own defaults: values key -> variable.
*/}}
{{- define "streamworker.optionalSettings" -}}
{{- toYaml (dict
  "groupStart" "WORKER_GROUP_START"
  "partitions" "WORKER_PARTITIONS"
  "partitionLease" "WORKER_PARTITION_LEASE"
  "fetchCount" "WORKER_FETCH_COUNT"
  "readAhead" "WORKER_READ_AHEAD"
  "block" "WORKER_BLOCK"
  "priority" "WORKER_PRIORITY"
  "maxMessageBytes" "WORKER_MAX_MESSAGE_BYTES"
  "maxAttempts" "WORKER_MAX_ATTEMPTS"
  "retryBase" "WORKER_RETRY_BASE"
  "retryMax" "WORKER_RETRY_MAX"
  "retryInPlaceMax" "WORKER_RETRY_IN_PLACE_MAX"
  "handlerTimeout" "WORKER_HANDLER_TIMEOUT"
  "promoteInterval" "WORKER_PROMOTE_INTERVAL"
  "reclaimMinIdle" "WORKER_RECLAIM_MIN_IDLE"
  "reclaimInterval" "WORKER_RECLAIM_INTERVAL"
  "reclaimCount" "WORKER_RECLAIM_COUNT"
  "consumerGoneAfter" "WORKER_CONSUMER_GONE_AFTER"
  "dedupeWindow" "WORKER_DEDUPE_WINDOW"
  "schedule" "WORKER_SCHEDULE"
  "scheduleStream" "WORKER_SCHEDULE_STREAM"
  "scheduleTZ" "WORKER_SCHEDULE_TZ"
  "scheduleMissed" "WORKER_SCHEDULE_MISSED"
  "retention" "WORKER_RETENTION"
  "trimInterval" "WORKER_TRIM_INTERVAL"
  "dlqMaxLen" "WORKER_DLQ_MAXLEN"
  "dlqRetention" "WORKER_DLQ_RETENTION"
  "delayedWarn" "WORKER_DELAYED_WARN"
  "pprof" "WORKER_PPROF") }}
{{- end }}

{{/*
The ConfigMap's data: every setting that is not a secret.
*/}}
{{- define "streamworker.config" -}}
{{- $w := .Values.worker }}
WORKER_STREAMS: {{ join "," $w.streams | quote }}
WORKER_GROUP: {{ $w.group | quote }}
WORKER_CONCURRENCY: {{ $w.concurrency | int64 | quote }}
WORKER_SHUTDOWN_TIMEOUT: {{ $w.shutdownTimeout | quote }}
WORKER_HTTP_ADDR: {{ printf ":%d" ($w.httpPort | int) | quote }}
{{- range $key, $name := include "streamworker.optionalSettings" . | fromYaml }}
{{- if hasKey $w $key }}
{{- $v := index $w $key }}
{{- if not (or (kindIs "string" $v) (kindIs "bool" $v)) }}
{{- $v = $v | int64 }}
{{- end }}
{{ $name }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}
LOG_LEVEL: {{ .Values.log.level | quote }}
LOG_FORMAT: {{ .Values.log.format | quote }}
{{- $r := .Values.redis }}
{{- if $r.tls.secretName }}
{{- if $r.tls.ca }}
REDIS_TLS_CA: {{ printf "%s/%s" (include "streamworker.tlsDir" .) $r.tls.ca | quote }}
{{- end }}
{{- if $r.tls.cert }}
REDIS_TLS_CERT: {{ printf "%s/%s" (include "streamworker.tlsDir" .) $r.tls.cert | quote }}
REDIS_TLS_KEY: {{ printf "%s/%s" (include "streamworker.tlsDir" .) $r.tls.key | quote }}
{{- end }}
{{- end }}
{{- with $r.clusterAddrs }}
REDIS_CLUSTER_ADDRS: {{ join "," . | quote }}
{{- end }}
{{- with $r.sentinel.addrs }}
REDIS_SENTINEL_ADDRS: {{ join "," . | quote }}
REDIS_SENTINEL_MASTER: {{ $r.sentinel.master | quote }}
{{- end }}
REDIS_SCRIPTS: {{ $r.scripts | quote }}
WORKER_PLUGINS: {{ .Values.plugins.enabled | default (list "none") | join "," | quote }}
{{- if hasKey .Values.plugins "prefix" }}
WORKER_PLUGINS_PREFIX: {{ .Values.plugins.prefix | quote }}
{{- end }}
{{- end }}

{{/*
The streams KEDA watches: each stream, or each of its partitions.
*/}}
{{- define "streamworker.kedaStreams" -}}
{{- $n := 1 }}
{{- if hasKey .Values.worker "partitions" }}
{{- $n = .Values.worker.partitions | int }}
{{- end }}
{{- $out := list }}
{{- range .Values.worker.streams }}
{{- $s := regexReplaceAll "=[0-9]+$" . "" }}{{/* sw:critical=6: the weight is not part of the name */}}
{{- if gt $n 1 }}
{{- range until $n }}
{{- $out = append $out (printf "{%s:%d}" $s .) }}
{{- end }}
{{- else }}
{{- $out = append $out $s }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}
