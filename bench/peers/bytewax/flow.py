"""The Bytewax peer's dataflow: one worker process of it (driver.py starts them).

Bytewax 0.21.1's KafkaSource reads every partition of the input (each partition is
read by one worker, with its own confluent-kafka consumer) and a KafkaSink writes every
record to the same partition of the output, with its key, value, headers and
timestamp, at least once. With ``observe`` a second branch does what tidewatch's
quality observer does: it parses each value as JSON and counts, per 10 s window of
system time (``fold_window`` with a ``SystemClock`` and a ``TumblingWindower``), the
records and, per field, those whose event_time, user_id or page is missing, null or "",
keyed by input partition; each closed window is printed on stdout as one JSON line.

    flow.py BOOTSTRAP INPUT OUTPUT passthrough|observe TAIL [PROCESS_ID ADDRESSES]

TAIL 0 stops at the end of every partition (the input's end when it started), 1 runs
until ended. A line "ready" on stdout says the flow is built and about to run.
"""

import json
import sys
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import SystemClock, TumblingWindower, fold_window
from bytewax.outputs import StatelessSinkPartition
from bytewax.run import cli_main

FIELDS = ("event_time", "user_id", "page")

# The producer as every contender's: linger 5 ms, 1 MB batches, idempotent, acks=all,
# uncompressed (librdkafka keys, passed through by KafkaSink's add_config).
PRODUCER = {
    "linger.ms": "5",
    "batch.size": "1000000",
    "enable.idempotence": "true",
    "acks": "all",
    "compression.type": "none",
}


class SamePartitionKafkaSink(KafkaSink):
    """KafkaSink, writing each message to the partition it names.

    Bytewax 0.21.1's KafkaSink leaves KafkaSinkMessage.partition unused (its producer
    picks the partition from the key). This is its build and write_batch with the
    partition passed on; everything else, the flush after every batch included, is the
    connector's own.
    """

    def build(self, step_id, worker_index, worker_count):
        from confluent_kafka import Producer

        config = {"bootstrap.servers": ",".join(self._brokers)}
        config.update(self._add_config)
        return _SamePartition(Producer(config), self._topic)


class _SamePartition(StatelessSinkPartition):
    def __init__(self, producer, topic):
        self._producer = producer
        self._topic = topic

    def write_batch(self, items):
        for msg in items:
            self._producer.produce(
                value=msg.value,
                key=msg.key,
                headers=msg.headers,
                topic=self._topic,
                partition=msg.partition,
                timestamp=msg.timestamp,
            )
            self._producer.poll(0)
        self._producer.flush()

    def close(self):
        self._producer.flush()


def to_sink(msg):
    # msg.timestamp is (type, ms); type 0 means none.
    kind, ms = msg.timestamp if msg.timestamp else (0, 0)
    return KafkaSinkMessage(msg.key, msg.value, headers=msg.headers, partition=msg.partition, timestamp=ms if kind else 0)


def new_counts():
    # records, unparseable, then one count per field of FIELDS
    return [0, 0] + [0] * len(FIELDS)


def count(counts, msg):
    counts[0] += 1
    try:
        doc = json.loads(msg.value)
    except (ValueError, TypeError):
        counts[1] += 1
        return counts
    if not isinstance(doc, dict):
        doc = {}
    for i, field in enumerate(FIELDS):
        value = doc.get(field)
        if value is None or value == "":
            counts[2 + i] += 1
    return counts


def merge(a, b):
    return [x + y for x, y in zip(a, b)]


def report(step_id, item):
    partition, (window, counts) = item
    line = {
        "window": window,
        "partition": int(partition),
        "records": counts[0],
        "unparseable": counts[1],
        "invalid": dict(zip(FIELDS, counts[2:])),
    }
    print(json.dumps(line), flush=True)


def build(bootstrap, input_topic, output_topic, mode, tail):
    flow = Dataflow("tidewatch-peer")
    brokers = bootstrap.split(",")
    # Bytewax's own consumer settings (no group; assign and read from the oldest offset).
    records = op.input("in", flow, KafkaSource(brokers, [input_topic], tail=tail))
    op.output("out", op.map("to_sink", records, to_sink), SamePartitionKafkaSink(brokers, output_topic, add_config=PRODUCER))
    if mode == "observe":
        keyed = op.key_on("by_partition", records, lambda m: str(m.partition))
        align = datetime(2024, 1, 1, tzinfo=timezone.utc)
        windows = fold_window("quality", keyed, SystemClock(), TumblingWindower(length=timedelta(seconds=10), align_to=align), new_counts, count, merge)
        op.inspect("report", windows.down, report)
    return flow


def main(argv):
    bootstrap, input_topic, output_topic, mode, tail = argv[:5]
    flow = build(bootstrap, input_topic, output_topic, mode, tail == "1")
    print("ready", flush=True)
    if len(argv) > 5:
        cli_main(flow, workers_per_process=1, process_id=int(argv[5]), addresses=argv[6].split(";"))
    else:
        cli_main(flow, workers_per_process=1)


if __name__ == "__main__":
    main(sys.argv[1:])
