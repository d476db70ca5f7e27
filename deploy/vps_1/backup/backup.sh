#!/bin/bash
# Every BACKUP_INTERVAL_SECONDS: pg_dump (custom format) of the OLTP and the Dagster database to
# s3://$BACKUP_BUCKET/postgres/<name>/<UTC timestamp>.dump, keeping the newest BACKUP_KEEP per database.
# A round counts as a success (the stamp the healthcheck reads) only when every dump and upload succeeded; a failed
# dump leaves no object behind, so it never pushes a good one out of BACKUP_KEEP. BACKUP_ONCE=1: one round, then
# exit with its status (a backup on demand: `docker compose run --rm -e BACKUP_ONCE=1 postgres-backup`).
# Restore: aws s3 cp ... - | pg_restore --clean --if-exists -d <url>
set -euo pipefail
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=us-east-1
s3() { aws --endpoint-url "$S3_ENDPOINT_URL" s3 "$@"; }
stamp_file=${BACKUP_STAMP_FILE:-/tmp/last-success}
# healthy while the container's first round runs: `docker compose up --wait` must not wait for a large database's
# first dump (backup-healthy); the round's end removes it, so a failed first round turns unhealthy at once
first_round=$stamp_file.first-round

prune() {  # name: keep the newest BACKUP_KEEP dumps
  local name=$1 old listing
  listing=$(s3 ls "s3://$BACKUP_BUCKET/postgres/$name/") || return 1
  for old in $(awk '{print $4}' <<<"$listing" | sort | head -n "-$BACKUP_KEEP"); do
    s3 rm "s3://$BACKUP_BUCKET/postgres/$name/$old" || return 1
  done
}

dump() {  # name url password: succeeds only when pg_dump and the upload both did
  local name=$1 url=$2 key
  key="postgres/$name/$(date -u +%Y%m%dT%H%M%SZ).dump"
  # `if !` turns errexit off inside, so the pipeline's status (pipefail: pg_dump's too) is checked here
  if ! PGPASSWORD=$3 pg_dump --format=custom --no-owner "$url" | s3 cp - "s3://$BACKUP_BUCKET/$key"; then
    echo "[backup] $name: dump or upload FAILED" >&2
    s3 rm "s3://$BACKUP_BUCKET/$key" >/dev/null 2>&1 || true  # what was uploaded of it is not a backup
    return 1
  fi
  echo "[backup] $name -> s3://$BACKUP_BUCKET/$key"
  prune "$name" || echo "[backup] $name: pruning old dumps failed (the new dump is kept)" >&2
}

round() {
  s3 ls "s3://$BACKUP_BUCKET" >/dev/null 2>&1 || s3 mb "s3://$BACKUP_BUCKET" || return 1
  dump oltp "$OLTP_URL" "$OLTP_BACKUP_PASSWORD" || return 1  # platform_backup: pg_read_all_data
  dump dagster "$DAGSTER_PG_URL" "$DAGSTER_PG_PASSWORD" || return 1
  date +%s > "$stamp_file"
}

[ -f "$stamp_file" ] || date +%s > "$first_round"
while true; do
  status=0
  round || status=$?
  rm -f "$first_round"
  if [ "$status" = 0 ]; then
    [ "${BACKUP_ONCE:-0}" = 1 ] && exit 0
  else
    [ "${BACKUP_ONCE:-0}" = 1 ] && exit 1
    echo "[backup] FAILED; retrying in 10 minutes" >&2
    sleep 600
    continue
  fi
  sleep "$BACKUP_INTERVAL_SECONDS"
done
