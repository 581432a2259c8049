"""Starts and times the Bytewax peer: WORKERS worker processes of flow.py (one Bytewax
worker each, joined into one cluster over 127.0.0.1), as Bytewax scales past Python's
global interpreter lock.

    driver.py BOOTSTRAP INPUT OUTPUT WORKERS EXPECT passthrough|observe

stdout: {"event":"start"} once every process has built its flow, then, with EXPECT > 0,
{"records":N,"seconds":S,"observed":...} once every process has reached the end of its
partitions and flushed its producer (N: the records in the output topic, S from the
start line; observed: the sum of the windows the processes reported, with "observe").
With EXPECT 0 the processes follow the input until they are ended. The processes'
window reports and logs go to stderr.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, TopicPartition

FIELDS = ("event_time", "user_id", "page")


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def output_records(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tidewatch-bench-bytewax-driver"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def main(argv):
    if len(argv) != 6 or argv[5] not in ("passthrough", "observe"):
        sys.exit("usage: driver.py BOOTSTRAP INPUT OUTPUT WORKERS EXPECT passthrough|observe")
    bootstrap, input_topic, output_topic, workers, expect, mode = argv
    workers, expect = int(workers), int(expect)
    flow = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flow.py")
    base = [sys.executable, flow, bootstrap, input_topic, output_topic, mode, "0" if expect > 0 else "1"]
    if workers == 1:
        commands = [base]
    else:
        addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(workers))
        commands = [base + [str(i), addresses] for i in range(workers)]

    ready = threading.Semaphore(0)
    windows = []
    lock = threading.Lock()

    def read(proc):
        for line in proc.stdout:
            line = line.strip()
            if line == "ready":
                ready.release()
            elif line.startswith("{"):
                print(line, file=sys.stderr, flush=True)
                with lock:
                    windows.append(json.loads(line))

    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in commands]
    readers = [threading.Thread(target=read, args=(p,), daemon=True) for p in procs]
    for r in readers:
        r.start()
    for _ in procs:
        ready.acquire()
    print(json.dumps({"event": "start"}), flush=True)
    start = time.monotonic()
    codes = [p.wait() for p in procs]
    seconds = time.monotonic() - start
    for r in readers:
        r.join(timeout=10)
    if any(codes):
        sys.exit(f"bytewax peer: a worker process failed: exit codes {codes}")
    if expect <= 0:
        return
    observed = None
    if mode == "observe":
        observed = {
            "records": sum(w["records"] for w in windows),
            "unparseable": sum(w["unparseable"] for w in windows),
            "invalid": {f: sum(w["invalid"][f] for w in windows) for f in FIELDS},
        }
    result = {"records": output_records(bootstrap, output_topic), "seconds": round(seconds, 3), "workers": workers}
    if observed is not None:
        result["observed"] = observed
        result["windows"] = len({w["window"] for w in windows})
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
