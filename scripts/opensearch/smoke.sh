#!/usr/bin/env bash
# Smoke test of a running node (scripts/opensearch.sh start): creates an index with an
# explicit mapping, bulk-indexes 3 documents, searches them back and runs a terms and a
# date_histogram aggregation. Needs curl and jq.
#
#   scripts/opensearch/smoke.sh [URL] [INDEX]     (http://127.0.0.1:9200, tidewatch-smoke)
#   scripts/opensearch/smoke.sh URL INDEX check   only check that INDEX still holds the
#                                                 3 documents (e.g. after kill9 and a
#                                                 restart with TIDEWATCH_OPENSEARCH_KEEP_DATA=1)
set -euo pipefail

url="${1:-http://127.0.0.1:${TIDEWATCH_OPENSEARCH_PORT:-9200}}"
index="${2:-tidewatch-smoke}"
mode="${3:-full}"

die() { echo "smoke.sh: $*" >&2; exit 1; }
for tool in curl jq; do command -v "$tool" >/dev/null || die "'$tool' is required"; done

# req METHOD PATH [BODY] [CONTENT-TYPE]: prints the response body; fails on HTTP >= 400.
req() {
  local out code
  out="$(mktemp)"
  code="$(curl -s -o "$out" -w '%{http_code}' -X "$1" "$url$2" \
    -H "Content-Type: ${4:-application/json}" ${3:+--data-binary "$3"})"
  if [ "$code" -ge 400 ] || [ "$code" = 000 ]; then
    cat "$out" >&2; rm -f "$out"; die "$1 $2 answered HTTP $code"
  fi
  cat "$out"; rm -f "$out"
}

# expect JQ_FILTER JSON: the filter must yield true.
expect() {
  [ "$(jq -r "$1" <<<"$2")" = true ] || { jq . <<<"$2" >&2; die "expected: $1"; }
}

check_docs() {
  local r
  r="$(req GET "/$index/_search" '{"query":{"match_all":{}},"sort":[{"@timestamp":"asc"}]}')"
  expect '.hits.total.value == 3' "$r"
  expect '[.hits.hits[]._id] == ["1","2","3"]' "$r"
  expect '.hits.hits[1]._source.offsets.high == 20' "$r"
  echo "smoke.sh: $index holds the 3 documents"
}

if [ "$mode" = check ]; then
  check_docs
  exit 0
fi

req DELETE "/$index?ignore_unavailable=true" >/dev/null
# One shard, no replica: green on a single node (the default of 1 replica stays yellow).
req PUT "/$index" '{
  "settings": {"number_of_shards": 1, "number_of_replicas": 0},
  "mappings": {
    "dynamic": "strict",
    "properties": {
      "@timestamp": {"type": "date"},
      "topic": {"type": "keyword"},
      "lag": {"type": "long"},
      "offsets": {"properties": {"low": {"type": "long"}, "high": {"type": "long"}}}
    }
  }
}' >/dev/null
r="$(req GET "/$index/_mapping")"
expect ".\"$index\".mappings.properties[\"@timestamp\"].type == \"date\"" "$r"
expect ".\"$index\".mappings.properties.offsets.properties.high.type == \"long\"" "$r"

r="$(req POST "/_bulk?refresh=false" "{\"index\":{\"_index\":\"$index\",\"_id\":\"1\"}}
{\"@timestamp\":\"2024-05-01T10:00:00Z\",\"topic\":\"orders\",\"lag\":5,\"offsets\":{\"low\":0,\"high\":10}}
{\"index\":{\"_index\":\"$index\",\"_id\":\"2\"}}
{\"@timestamp\":\"2024-05-01T10:00:30Z\",\"topic\":\"orders\",\"lag\":7,\"offsets\":{\"low\":0,\"high\":20}}
{\"index\":{\"_index\":\"$index\",\"_id\":\"3\"}}
{\"@timestamp\":\"2024-05-01T10:01:10Z\",\"topic\":\"payments\",\"lag\":1,\"offsets\":{\"low\":3,\"high\":4}}
" application/x-ndjson)"
expect '.errors == false and (.items | length) == 3' "$r"
req POST "/$index/_refresh" >/dev/null

check_docs

r="$(req GET "/$index/_search" '{"query":{"term":{"topic":"orders"}}}')"
expect '.hits.total.value == 2' "$r"

r="$(req GET "/$index/_search" '{
  "size": 0,
  "aggs": {
    "by_topic": {"terms": {"field": "topic"}, "aggs": {"max_lag": {"max": {"field": "lag"}}}},
    "per_minute": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"},
                   "aggs": {"high": {"max": {"field": "offsets.high"}}}}
  }
}')"
expect '[.aggregations.by_topic.buckets[] | [.key, .doc_count, .max_lag.value]] == [["orders",2,7],["payments",1,1]]' "$r"
expect '[.aggregations.per_minute.buckets[] | [.key_as_string, .doc_count, .high.value]] == [["2024-05-01T10:00:00.000Z",2,20],["2024-05-01T10:01:00.000Z",1,4]]' "$r"
echo "smoke.sh: mapping, bulk, search, terms and date_histogram aggregations OK on $url/$index"
