#!/usr/bin/env python3
"""Partition reassignment through kafka-python's admin client (used by cluster_reassign.rs).

Usage:
  kafka_python_reassign.py alter  BOOTSTRAP TOPIC PARTITION BROKER,BROKER,...
  kafka_python_reassign.py cancel BOOTSTRAP TOPIC PARTITION
  kafka_python_reassign.py list   BOOTSTRAP

alter and cancel send AlterPartitionReassignments (to the controller, as the client
does) and print the partition's result: "ok" or "error CODE NAME". list sends
ListPartitionReassignments for every partition and prints one line per ongoing
reassignment: "TOPIC PARTITION replicas=1,2 adding=3 removing=1". Exits 1 with a
message when the client cannot do it at all.
"""
import sys

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient


def ids(xs):
    return ",".join(str(x) for x in xs)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, bootstrap = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    if not hasattr(admin, "alter_partition_reassignments"):
        print("this kafka-python has no partition reassignment api; pip install -U kafka-python",
              file=sys.stderr)
        sys.exit(1)
    try:
        if cmd in ("alter", "cancel"):
            tp = TopicPartition(sys.argv[3], int(sys.argv[4]))
            target = [int(b) for b in sys.argv[5].split(",")] if cmd == "alter" else None
            result = admin.alter_partition_reassignments({tp: target}, timeout_ms=20000)
            if tp not in result:
                print(f"no result for {tp}: {result}", file=sys.stderr)
                sys.exit(1)
            err = result[tp]
            print("ok" if err is None else f"error {err.errno} {err.__name__}")
        elif cmd == "list":
            ongoing = admin.list_partition_reassignments(timeout_ms=20000)
            for tp, r in sorted(ongoing.items()):
                print(f"{tp.topic} {tp.partition} replicas={ids(r['replicas'])} "
                      f"adding={ids(r['adding_replicas'])} removing={ids(r['removing_replicas'])}")
        else:
            print(__doc__, file=sys.stderr)
            sys.exit(2)
    finally:
        admin.close()


if __name__ == "__main__":
    main()
