#!/usr/bin/env bash
# Run one of Kafka's command-line classes against the local broker, from the jar cache that
# scripts/services.sh fills (like kafka-run-class.sh in a Kafka tarball). Examples:
#   services/kafka/run-class.sh org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:19092 --list
#   echo hi | services/kafka/run-class.sh org.apache.kafka.tools.ConsoleProducer --bootstrap-server 127.0.0.1:19092 --topic t
#   services/kafka/run-class.sh org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server 127.0.0.1:19092 \
#     --topic t --from-beginning --max-messages 1 --timeout-ms 20000
# Logs warnings and errors to stderr only.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"
(( $# >= 1 )) || { echo "usage: $0 <main class> [args...]" >&2; exit 2; }
[[ -d "$KAFKA_LIBS" ]] || die "no Kafka jars in $KAFKA_LIBS yet: run scripts/services.sh kafka first"
exec "${KAFKA_TOOL[@]}" "$@"
