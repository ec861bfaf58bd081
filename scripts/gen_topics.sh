#!/usr/bin/env bash
# Turns proto/topics.tsv into a C table (X-macro), so that the code reads
# topic names, partition counts and each topic's consumers from the same file
# as the broker, docker-compose and the Kubernetes manifests.
set -euo pipefail
src=${1:?usage: gen_topics.sh topics.tsv}
echo "/* generated from $src by scripts/gen_topics.sh: do not edit */"
echo "#ifndef AS_TOPICS_H"
echo "#define AS_TOPICS_H"
echo "/* AS_TOPIC(ident, \"name\", partitions, \"consumer,consumer\") */"
echo "#define AS_TOPICS(AS_TOPIC) \\"
awk '
  /^[[:space:]]*(#|$)/ { next }
  {
    name = $1; parts = $2; consumers = $4
    if (name !~ /^[A-Za-z0-9._-]+$/ || parts !~ /^[0-9]+$/ || consumers !~ /^([a-z][a-z0-9_]*(,[a-z][a-z0-9_]*)*|-)$/) {
      printf "gen_topics: bad line %d: %s\n", NR, $0 > "/dev/stderr"; exit 1
    }
    if (consumers == "-") consumers = ""
    id = name; sub(/^aftersales\./, "", id); sub(/\.v[0-9]+$/, "", id)
    gsub(/[.-]/, "_", id); id = toupper(id)
    printf "  AS_TOPIC(%s, \"%s\", %d, \"%s\") \\\n", id, name, parts, consumers
  }' "$src"
echo ""
echo "#define AS_TOPIC_ENUM(id, name, parts, consumers) AS_TOPIC_##id,"
echo "enum as_topic_id { AS_TOPICS(AS_TOPIC_ENUM) AS_TOPIC__COUNT };"
awk '
  /^[[:space:]]*(#|$)/ { next }
  {
    id = $1; sub(/^aftersales\./, "", id); sub(/\.v[0-9]+$/, "", id)
    gsub(/[.-]/, "_", id); id = toupper(id)
    printf "#define AS_TOPIC_NAME_%s \"%s\"\n", id, $1
  }' "$src"
echo "#endif"
