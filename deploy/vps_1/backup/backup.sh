#!/bin/bash
# Every BACKUP_INTERVAL_SECONDS: pg_dump (custom format) of the OLTP and the Dagster database to
# s3://$BACKUP_BUCKET/postgres/<name>/<UTC timestamp>.dump, keeping the newest BACKUP_KEEP per database.
# Restore: aws s3 cp ... - | pg_restore --clean --if-exists -d <url>
set -euo pipefail
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=us-east-1
s3() { aws --endpoint-url "$S3_ENDPOINT_URL" s3 "$@"; }
stamp_file=/tmp/last-success

dump() {  # name url password
  local name=$1 url=$2 key
  key="postgres/$name/$(date -u +%Y%m%dT%H%M%SZ).dump"
  PGPASSWORD=$3 pg_dump --format=custom --no-owner "$url" | s3 cp - "s3://$BACKUP_BUCKET/$key"
  echo "[backup] $name -> s3://$BACKUP_BUCKET/$key"
  s3 ls "s3://$BACKUP_BUCKET/postgres/$name/" | awk '{print $4}' | sort | head -n "-$BACKUP_KEEP" \
    | while read -r old; do s3 rm "s3://$BACKUP_BUCKET/postgres/$name/$old"; done
}

while true; do
  s3 ls "s3://$BACKUP_BUCKET" >/dev/null 2>&1 || s3 mb "s3://$BACKUP_BUCKET"
  if dump oltp "$OLTP_URL" "$OLTP_PASSWORD" && dump dagster "$DAGSTER_PG_URL" "$DAGSTER_PG_PASSWORD"; then
    date +%s > "$stamp_file"
  else
    echo "[backup] FAILED; retrying in 10 minutes" >&2
    sleep 600
    continue
  fi
  sleep "$BACKUP_INTERVAL_SECONDS"
done
