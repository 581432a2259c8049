"""The Spark peer of the tidewatch passthrough: the reference online observer, reduced.

A Structured Streaming query reads the input topic and, in foreachBatch (as the
reference does, so that it can observe what it wrote), writes every record of the
micro-batch to the output topic -- key, value, headers, and the partition it was read
from -- and then computes the reference's data-quality figures over the same batch:
all_events and invalid_<field> (the field missing, null or "") for event_time, user_id
and page, written as one JSON line to stderr. The reference's lag and ydata-profiling
parts are left out (they would only slow Spark down). At least once, like the others.

    passthrough.py --bootstrap B --input IN --output OUT --expect N [--checkpoint DIR]

With --expect N > 0 it stops once the output topic holds N records and N records have
been observed, and prints {"records":N,"seconds":S} on stdout, S from just before the
query starts until then (Spark's start-up is not counted). With --expect 0 it runs until
it is ended. A line {"event":"start"} on stdout marks the start of the timed span.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

IMPORTANT_FIELDS = ["event_time", "user_id", "page"]
VISIT_SCHEMA = StructType([StructField(f, StringType()) for f in IMPORTANT_FIELDS])


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--checkpoint")
    parser.add_argument("--jars", required=True, help="comma-separated jars of Spark's Kafka connector")
    return parser.parse_args()


def main():
    args = parse_args()
    checkpoint = args.checkpoint or tempfile.mkdtemp(prefix="tidewatch-spark-")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("tidewatch-spark-peer")
        .config("spark.jars", args.jars)
        .config("spark.driver.extraClassPath", args.jars.replace(",", os.pathsep))
        .config("spark.driver.memory", "1g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")

    visits = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap)
        .option("subscribe", args.input)
        .option("startingOffsets", "earliest")
        .option("includeHeaders", "true")
        .load()
    )

    observed = [0]  # records whose batch has been written and observed (foreachBatch runs in this process)

    def write_and_observe(batch, batch_id):
        batch.persist()
        (
            batch.select("key", "value", "headers", "partition")
            .write.format("kafka")
            .option("kafka.bootstrap.servers", args.bootstrap)
            .option("topic", args.output)
            # The producer as every contender's: linger 5 ms, 1 MB batches, idempotent, acks=all.
            .option("kafka.linger.ms", "5")
            .option("kafka.batch.size", "1000000")
            .option("kafka.enable.idempotence", "true")
            .option("kafka.acks", "all")
            .save()
        )
        visit = batch.select(F.from_json(F.col("value").cast("string"), VISIT_SCHEMA).alias("v")).select("v.*")
        empty = lambda f: F.sum(F.when(F.col(f).isNull() | (F.col(f) == ""), 1).otherwise(0)).alias(f"invalid_{f}")
        stats = visit.agg(F.count(F.lit(1)).alias("all_events"), *[empty(f) for f in IMPORTANT_FIELDS]).collect()[0].asDict()
        stats["batch"] = batch_id
        stats["@timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(json.dumps({k: (v or 0) if k != "@timestamp" else v for k, v in stats.items()}), file=sys.stderr, flush=True)
        batch.unpersist()
        observed[0] += stats["all_events"]

    jvm = spark.sparkContext._jvm
    props = jvm.java.util.Properties()
    props.setProperty("bootstrap.servers", args.bootstrap)
    props.setProperty("key.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer")
    props.setProperty("value.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer")
    watcher = jvm.org.apache.kafka.clients.consumer.KafkaConsumer(props)
    partitions = jvm.java.util.ArrayList()
    for info in watcher.partitionsFor(args.output):
        partitions.add(jvm.org.apache.kafka.common.TopicPartition(args.output, info.partition()))

    def output_records():
        ends = watcher.endOffsets(partitions)
        return sum(ends.get(tp) for tp in partitions)

    print(json.dumps({"event": "start"}), flush=True)
    start = time.monotonic()
    query = (
        visits.writeStream.foreachBatch(write_and_observe)
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime="0 seconds")
        .start()
    )
    try:
        if args.expect <= 0:
            query.awaitTermination()
            return
        copied = 0
        while copied < args.expect or observed[0] < args.expect:
            if query.exception() is not None:
                raise RuntimeError(f"the query failed: {query.exception()}")
            time.sleep(0.05)
            copied = output_records()
        seconds = time.monotonic() - start
        print(json.dumps({"records": copied, "seconds": round(seconds, 3)}), flush=True)
    finally:
        query.stop()
        watcher.close()
        spark.stop()
        if not args.checkpoint:
            shutil.rmtree(checkpoint, ignore_errors=True)


if __name__ == "__main__":
    main()
