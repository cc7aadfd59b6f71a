#!/usr/bin/env python3
"""Rill chaos harness (issue 15): brokers on test hosts of their own (network namespaces on a
bridge), a seeded nemesis (kill -9, fast restart, SIGSTOP, network cuts both ways and one
way, of chosen brokers, the controller and partition leaders), idempotent acks=all
producers and continuous consumers, and a checker run after the final heal.

    sudo python3 benches/chaos/chaos.py --seed 7 --duration 120 --brokers 3

Prints the fault schedule first, the events as they happen, and a JSON summary last;
exits 0 when no violation was found, 1 on violations, 2 on bad usage, when the cluster
could not be set up, or (not root, no `ip`) when it cannot run; 3 when the run was
interrupted or overran its bound; 4 on an error of the harness itself. Everything it
makes (namespaces, links, broker processes) is removed on every exit; the run directory
(broker logs, data, events, acks, reads, summary.json) is kept. See benches/chaos/README.md.
"""

import argparse
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
REPO = os.path.dirname(os.path.dirname(HERE))

import checker  # noqa: E402
import replicas  # noqa: E402
import txnwork  # noqa: E402
from hosts import TestNet  # noqa: E402
from kafkawire import describe_cluster, metadata  # noqa: E402
from nemesis import Nemesis, describe, make_schedule  # noqa: E402

TOPIC = "chaos"
# What a broker's log shows when it dies of a bug: a Rust panic or runtime abort, glibc's
# heap checks, a fatal signal. Not the word "abort" alone: the broker logs transactions it
# aborts.
CRASH_PATTERN = re.compile(r"panicked|fatal runtime error|memory allocation of|double free|"
                           r"corrupted|malloc\(\)|free\(\)|abort\(\)|SIGABRT|SIGSEGV|"
                           r"segmentation fault", re.IGNORECASE)


def parse_args(argv):
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--duration", type=float, default=120,
                   help="seconds of workload, faults included (the faults stop --settle "
                        "seconds before the end)")
    a.add_argument("--brokers", type=int, default=3, choices=[3, 4, 5],
                   help="brokers; the first 3 are the metadata raft voters, others learners")
    a.add_argument("--partitions", type=int, default=6)
    a.add_argument("--producers", type=int, default=3)
    a.add_argument("--consumers", type=int, default=2)
    a.add_argument("--txn-workers", type=int, default=1,
                   help="consume-transform-produce workers with exactly-once (transactions "
                        "from the input topic to chaos-out); 0: none")
    a.add_argument("--rate", type=float, default=300, help="records/s over all producers")
    a.add_argument("--value-bytes", type=int, default=100)
    a.add_argument("--max-in-flight", type=int, default=5, choices=range(1, 6),
                   metavar="1-5", help="produce requests in flight per connection (librdkafka's "
                   "max.in.flight; 2-5 lets librdkafka 2.x re-send a possibly stored batch under "
                   "a new epoch after OUT_OF_ORDER_SEQUENCE_NUMBER: confluentinc/librdkafka#4953)")
    a.add_argument("--fetch-debug", action="store_true",
                   help="log every consumer fetch to clients.log (about 150 KB/s)")
    a.add_argument("--warmup", type=float, default=5)
    a.add_argument("--settle", type=float, default=15,
                   help="seconds of workload after the final heal")
    a.add_argument("--sync-bound", type=float, default=60,
                   help="after the final heal, every partition must have a leader and "
                        "ISR == replicas within this many seconds")
    a.add_argument("--binary", help="the rill binary (default: target/release/rill, then "
                                    "target/debug/rill)")
    a.add_argument("--run-dir", help="default: target/chaos/seed-<seed>-<time>")
    a.add_argument("--subnet", type=int, default=60,
                   help="the hosts' /24 is 10.201.<subnet>.0 (unique per concurrent run)")
    a.add_argument("--tag", default="cx",
                   help="1-3 letters naming the namespaces and links (unique per concurrent run)")
    a.add_argument("--keep-data", action="store_true",
                   help="keep the brokers' data directories of a run without violations")
    a.add_argument("--no-faults", action="store_true", help="the workload and checker only")
    a.add_argument("--allow-kill-all", action="store_true",
                   help="the nemesis may also kill -9 every broker at once (the metadata "
                        "quorum is lost until they restart)")
    a.add_argument("--self-test", action="store_true",
                   help="after the run, corrupt copies of what it recorded (one read, one "
                        "ack, one duplicate, one hole, one replica) and require the checker "
                        "to flag each")
    a.add_argument("--check-only", metavar="RUN_DIR",
                   help="run the checker again on a saved run directory")
    a.add_argument("--hard-limit", type=float, default=None,
                   help="seconds after which the run is aborted (default duration + 300)")
    args = a.parse_args(argv)
    if not 1 <= len(args.tag) <= 3 or not args.tag.isalpha():
        a.error("--tag: 1-3 letters")
    if not 1 <= args.subnet <= 254:
        a.error("--subnet: 1-254")
    if args.duration < args.warmup + args.settle:
        a.error("--duration must exceed --warmup + --settle")
    return args


def find_binary(given):
    if given:
        return os.path.abspath(given)
    for b in ("target/release/rill", "target/debug/rill"):
        p = os.path.join(REPO, b)
        if os.access(p, os.X_OK):
            return p
    return None


class Run:
    def __init__(self, args):
        self.args = args
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.events_fh = None
        self.brokers = []
        self.net = None
        self.lock = threading.Lock()
        self.placement = {}
        self.not_served = {}  # broker id -> Metadata answers without the topic (observer)

    # ---- logging -------------------------------------------------------------------------
    def now(self):
        return time.monotonic() - self.t0

    def log(self, msg):
        wall = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        line = f"[chaos t+{self.now():7.2f}s {wall}] {msg}"
        with self.lock:
            print(line, flush=True)
            if self.events_fh:
                self.events_fh.write(line + "\n")
                self.events_fh.flush()

    # ---- cluster -------------------------------------------------------------------------
    def setup(self):
        from hosts import Broker
        a = self.args
        os.makedirs(self.run_dir, exist_ok=True)
        self.events_fh = open(os.path.join(self.run_dir, "events.log"), "a")
        cfg = os.path.join(self.run_dir, "rill.toml")
        with open(cfg, "w") as fh:
            fh.write(
                "# The chaos harness's brokers: short sessions so faults resolve in a run.\n"
                "auto_create_topics = false\n"
                "broker_heartbeat_interval_ms = 200\n"
                "broker_session_timeout_ms = 2000\n"
                "replica_lag_time_max_ms = 3000\n"
                "offsets_topic_partitions = 3\n"
                "transaction_state_partitions = 3\n")
        self.net = TestNet(a.tag, a.subnet, a.brokers)
        self.net.create()
        voters = min(3, a.brokers)
        quorum = ",".join(f"{i + 1}@{self.net.host(i)}:9093" for i in range(voters))
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.brokers = [Broker(i, self.net, self.binary, self.run_dir, cfg, quorum, i < voters,
                               env=env) for i in range(a.brokers)]
        for b in self.brokers[:voters]:
            b.start(self.t0)
        self.wait_agreed(range(voters), 60)
        for b in self.brokers[voters:]:
            b.start(self.t0)
            self.wait_agreed(range(b.index + 1), 60)
        self.log(f"cluster formed: {a.brokers} brokers ({voters} voters), "
                 f"quorum {quorum}")
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": self.bootstrap()})
        topics = [TOPIC] + ([txnwork.OUT_TOPIC] if a.txn_workers else [])
        fut = admin.create_topics(
            [NewTopic(t, a.partitions, 3, config={"min.insync.replicas": "2",
                                                   "segment.bytes": "1048576"})
             for t in topics],
            request_timeout=30, operation_timeout=30)
        for t in topics:
            fut[t].result(timeout=60)
        synced = self.wait_in_sync(60)
        if synced is None:
            raise SetupError("the new topic did not get leaders and full ISRs within 60 s")
        self.log(f"topics {', '.join(topics)}: {a.partitions} partitions, RF 3, "
                 f"min.insync.replicas 2; {TOPIC} in sync after {synced:.1f}s")

    def bootstrap(self):
        return ",".join(b.bootstrap() for b in self.brokers)

    def wait_agreed(self, indexes, bound):
        want = sorted(self.brokers[i].id for i in indexes)
        end = time.monotonic() + bound
        last = None
        while time.monotonic() < end:
            views = []
            for i in indexes:
                try:
                    views.append(describe_cluster(self.brokers[i].addr, timeout=1.0))
                except Exception as e:
                    views.append({"error": str(e)})
            last = views
            c = views[0].get("controller", -1)
            if c > 0 and all(v.get("brokers") == want and v.get("controller") == c
                             for v in views):
                return c
            time.sleep(0.2)
        raise SetupError(f"brokers {want} did not agree on members and a controller within "
                         f"{bound}s: {last}")

    def cluster_view(self):
        """Every broker's Metadata of the topic: {broker id: metadata or error}."""
        out = {}
        for b in self.brokers:
            try:
                out[b.id] = metadata(b.addr, [TOPIC], timeout=1.5)
            except Exception as e:
                out[b.id] = {"error": f"{type(e).__name__}: {e}"}
        return out

    def in_sync(self, views):
        """Every broker answers and lists every broker; every partition has a leader and
        ISR == replicas, in every broker's view."""
        want = sorted(b.id for b in self.brokers)
        for v in views.values():
            if "topics" not in v or v["brokers"] != want:
                return False
            t = v["topics"].get(TOPIC)
            if t is None or len(t["partitions"]) != self.args.partitions:
                return False
            for p in t["partitions"].values():
                if p["leader"] < 0 or sorted(p["isr"]) != sorted(p["replicas"]):
                    return False
        return True

    def wait_in_sync(self, bound):
        end = time.monotonic() + bound
        start = time.monotonic()
        while time.monotonic() < end:
            self.last_view = self.cluster_view()
            if self.in_sync(self.last_view):
                return time.monotonic() - start
            time.sleep(0.25)
        return None

    # ---- an observer of the cluster, for the evidence -----------------------------------
    def observe(self):
        """Writes each broker's view (controller; per partition leader, epoch, ISR) to
        cluster.log whenever it changes."""
        last = {}
        with open(os.path.join(self.run_dir, "cluster.log"), "a") as fh:
            while not self.observer_stop.is_set():
                for b in self.brokers:
                    if not b.running() or b.paused:
                        view = "down" if not b.running() else "paused"
                    else:
                        try:
                            m = metadata(b.addr, [TOPIC], timeout=1.0)
                            t = m["topics"].get(TOPIC)
                            parts = (t or {}).get("partitions", {})
                            if t is None or t["error"] or len(parts) != self.args.partitions:
                                parts = {}
                                self.not_served[b.id] = self.not_served.get(b.id, 0) + 1
                                fh.write(f"t+{self.now():8.2f}s broker {b.id}: TOPIC NOT "
                                         f"SERVED: Metadata({TOPIC}) answered "
                                         f"{'no topic' if t is None else 'error %d' % t['error']}"
                                         f" with {len(parts)} partitions (cluster id "
                                         f"{m['cluster_id']}, controller {m['controller']})\n")
                            view = (f"controller {m['controller']} brokers {m['brokers']} | " +
                                    " ".join(f"p{p}:L{x['leader']}e{x['leader_epoch']}"
                                             f"isr{','.join(map(str, x['isr']))}"
                                             for p, x in sorted(parts.items())))
                        except Exception as e:
                            view = f"no answer ({type(e).__name__})"
                    if last.get(b.id) != view:
                        last[b.id] = view
                        fh.write(f"t+{self.now():8.2f}s broker {b.id}: {view}\n")
                        fh.flush()
                self.observer_stop.wait(0.5)

    # ---- the run -------------------------------------------------------------------------
    def execute(self):
        from workload import (ConsumerWorker, OffsetsWatcher, ProducerWorker, client_logger,
                              final_read)
        a = self.args
        self.binary = find_binary(a.binary)
        if not self.binary or not os.access(self.binary, os.X_OK):
            raise SetupError("no rill binary: build one (cargo build -p rill-broker) or pass "
                             "--binary")
        self.run_dir = os.path.abspath(a.run_dir or os.path.join(
            REPO, "target", "chaos", f"seed-{a.seed}-{time.strftime('%Y%m%d-%H%M%S')}"))
        if os.path.isdir(self.run_dir) and os.listdir(self.run_dir):
            raise SetupError(f"the run directory {self.run_dir} is not empty: the brokers "
                             "would start from its old data; remove it or pick another")
        voters = min(3, a.brokers)
        schedule = [] if a.no_faults else make_schedule(
            a.seed, a.duration, a.warmup, a.settle, a.brokers, voters, a.partitions,
            kill_all=a.allow_kill_all)
        print(f"chaos: seed {a.seed}, {a.duration:.0f}s, {a.brokers} brokers, binary "
              f"{self.binary}\nchaos: run directory {self.run_dir}\n"
              f"chaos: schedule of {len(schedule)} faults:", flush=True)
        for f in schedule:
            print("   " + describe(f), flush=True)
        self.setup()
        with open(os.path.join(self.run_dir, "schedule.json"), "w") as fh:
            json.dump(schedule, fh, indent=1)

        self.observer_stop = threading.Event()
        observer = threading.Thread(target=self.observe, name="observer", daemon=True)
        observer.start()
        logger = client_logger(os.path.join(self.run_dir, "clients.log"))
        # Time zero of the workload and of the schedule.
        self.t0 = time.monotonic()
        self.log("workload starts; the schedule's clock starts now")
        pstop, cstop = threading.Event(), threading.Event()
        producers = [ProducerWorker(k, self.bootstrap(), TOPIC, a.partitions,
                                    a.rate / a.producers, a.value_bytes, self.t0, pstop, logger,
                                    self.log, a.max_in_flight) for k in range(a.producers)]
        consumers = [ConsumerWorker(k, self.bootstrap(), TOPIC, a.partitions, self.t0, cstop,
                                    logger, self.log, rewind_s=20 if k == 0 else 0,
                                    debug="topic,metadata" + (",fetch" if a.fetch_debug else ""))
                     for k in range(a.consumers)]
        watcher = OffsetsWatcher(self.brokers, TOPIC, a.partitions, self.t0, cstop)
        tstop = threading.Event()
        txns = [txnwork.TxnWorker(k, self.bootstrap(), TOPIC, a.partitions, self.t0, tstop,
                                  logger, self.log) for k in range(a.txn_workers)]
        for w in consumers + producers + [watcher] + txns:
            w.start()
        nem = Nemesis(a.seed, schedule, self.brokers, self.net, voters, TOPIC, self.t0,
                      self.log, self.stop)
        self.nemesis = nem
        nem.run()
        if self.stop.is_set():
            raise Interrupted()
        nem.heal_all()
        healed_at = self.now()
        sync_s = self.wait_in_sync(a.sync_bound)
        if sync_s is None:
            self.log(f"NOT IN SYNC {a.sync_bound:.0f}s after the final heal")
        else:
            self.log(f"in sync {sync_s:.1f}s after the final heal")
        nem.sleep(max(0.0, a.duration - self.now()))
        nem.watch()
        self.log("stopping producers (flush, at most 30 s)")
        pstop.set()
        for w in producers:
            w.join(timeout=45)
        # Let the consumers reach the end, bounded, then stop them.
        highs = {}
        end = time.monotonic() + 30
        while time.monotonic() < end:
            view = self.cluster_view()
            if self.in_sync(view):
                break
            time.sleep(0.5)
        self.log("consumers catch up (at most 20 s)")
        from confluent_kafka import Consumer, TopicPartition
        probe = Consumer({"bootstrap.servers": self.bootstrap(), "group.id": "chaos-probe",
                          "logger": logger})
        try:
            for p in range(a.partitions):
                try:
                    highs[p] = probe.get_watermark_offsets(TopicPartition(TOPIC, p),
                                                           timeout=5, cached=False)[1]
                except Exception:
                    pass
        finally:
            probe.close()
        end = time.monotonic() + 20
        behind = []
        while time.monotonic() < end:
            behind = [(c.k, p, c.position.get(p, 0), h) for c in consumers
                      for p, h in highs.items() if c.position.get(p, 0) < h]
            if not behind:
                break
            time.sleep(0.5)
        self.consumers_behind = behind
        if behind:
            self.log("consumers still behind after 20 s (consumer, partition, position, high "
                     f"watermark): {behind}")
        cstop.set()
        for w in consumers + [watcher]:
            w.join(timeout=15)
        # The transactional workers consume the whole input (bounded), then stop.
        txn_drained = True
        if txns:
            self.log("transactional workers catch up (at most 60 s)")
            for w in txns:
                w.drain_to = dict(highs)
            end = time.monotonic() + 60
            for w in txns:
                w.drained.wait(max(0.0, end - time.monotonic()))
            txn_drained = all(w.drained.is_set() for w in txns)
            if not txn_drained:
                self.log("transactional workers not at the input's end after 60 s: "
                         f"{[dict(w.position) for w in txns]} of {highs}")
            tstop.set()
            for w in txns:
                w.join(timeout=45)
        nem.watch()
        self.log("final read: a fresh consumer reads every partition to its high watermark")
        final = final_read(self.bootstrap(), TOPIC, a.partitions, logger)
        txn_out, txn_unread, txn_committed = {}, [], {}
        if txns:
            self.log(f"final read of {txnwork.OUT_TOPIC} at read_committed, and the "
                     "transactional group's committed offsets")
            txn_out, txn_unread = txnwork.read_committed_all(
                self.bootstrap(), txnwork.OUT_TOPIC, a.partitions, logger)
            txn_committed = txnwork.group_committed(self.bootstrap(), TOPIC, a.partitions,
                                                    logger)
        final_view = self.cluster_view()
        self.observer_stop.set()
        observer.join(timeout=5)

        # Stop the brokers cleanly and compare the replicas' files.
        exits = {}
        for b in self.brokers:
            exits[b.id] = b.terminate(timeout=20)
        self.log(f"brokers stopped: exit statuses {exits}")

        acks = [(p, o, v) for w in producers for (p, o, v, _t) in w.acks]
        instances = {}
        for w in producers:
            instances.update(w.sent_by_instance)
        cons = [{"name": f"consumer-{c.k}", "seen": {k: v for k, (v, _t) in c.seen.items()},
                 "conflicts": c.conflicts} for c in consumers]
        ack_times = [t for w in producers for (_p, _o, _v, t) in w.acks]
        self.save(producers, consumers, final, watcher.samples)
        violations, figures = checker.check(acks, cons, final, instances, watcher.samples,
                                            ack_times)
        if txns:
            self.save_txn(txn_out, txn_committed, txn_unread)
            figures.update(txnwork.check({p: f["records"] for p, f in final.items()}, txn_out,
                                         txn_committed, violations))
            for p in txn_unread:
                violations.add("t_output_not_readable_to_end", partition=p)
            figures["txn_workers"] = [
                {"committed": w.committed_txns, "aborted": w.aborted_txns,
                 "instances": w.instances + 1, "errors": dict(sorted(w.errors.items())),
                 "error_samples": w.samples[:10], "drained": w.drained.is_set()}
                for w in txns]
        placement = {}
        ref = next((v for v in final_view.values() if "topics" in v), None)
        if ref is not None:
            placement = {p: x["replicas"] for p, x in ref["topics"][TOPIC]["partitions"].items()}
        self.placement = placement
        compared = 0
        if sync_s is None:
            violations.add("not_in_sync_within_bound", bound_s=a.sync_bound,
                           views={k: summarize_view(v) for k, v in self.last_view.items()})
        elif placement:
            compared = replicas.compare({b.id: b.data_dir for b in self.brokers}, TOPIC,
                                        placement, violations)
        for c in nem.crashes:
            violations.add("broker_crashed", **c)
        for bid, st in exits.items():
            if st not in (0, None):
                violations.add("broker_unclean_exit", broker=bid, status=st)
        dup_attribution = attribute_duplicates(self.run_dir, violations) \
            if violations.count.get("c_duplicate") else []
        crash_lines = self.grep_logs()
        for bid, lines in crash_lines.items():
            violations.add("broker_log_panic_or_abort", broker=bid, lines=lines[:20])

        summary = {
            "seed": a.seed,
            "duration_s": a.duration,
            "brokers": a.brokers,
            "partitions": a.partitions,
            "max_in_flight": a.max_in_flight,
            "tag_and_subnet": [a.tag, a.subnet],
            "client": "confluent-kafka %s (librdkafka %s)" % (
                __import__("confluent_kafka").version()[0],
                __import__("confluent_kafka").libversion()[0]),
            "binary": self.binary,
            "binary_commit": binary_commit(self.binary),
            "run_dir": self.run_dir,
            "command": " ".join(sys.argv),
            "faults_scheduled": len(schedule),
            "faults_applied": len(nem.applied),
            "faults_by_kind": dict(sorted(nem.kinds.items())),
            "faults": [describe(f) + f" -> broker {f['broker']}" +
                       (f" + broker {f['second']['broker']}" if "second" in f else "") +
                       f" [{f['started']:.1f}s-{f['healed']:.1f}s]" for f in nem.applied],
            "in_sync_after_heal_s": None if sync_s is None else round(sync_s, 2),
            "healed_at_s": round(healed_at, 2),
            "sent": sum(w.sent for w in producers),
            "acked": len(acks),
            "failed": sum(len(w.failed) for w in producers),
            "failed_by_error": dict(Counter(e for w in producers for (_v, e, _t) in w.failed)),
            "unresolved_at_close": sum(w.unresolved for w in producers),
            "producer_fatal_errors": [f for w in producers for f in w.fatal],
            "produce_refused_by_client": dict(sum((Counter(w.refused) for w in producers),
                                                  Counter())),
            "consumer_reads": sum(c.reads for c in consumers),
            "consumer_rewinds": sum(c.rewinds for c in consumers),
            "consumer_errors": dict(sum((Counter(c.errors) for c in consumers), Counter())),
            "latest_offset_errors": watcher.errors,
            "final_read": {p: f"offsets {f['low']}..{f['high']}, read {len(f['records'])}"
                           for p, f in sorted(final.items())},
            "partitions_replicas_compared": compared,
            "anomalies": self.anomalies(),
            "broker_crashes": nem.crashes,
            **figures,
            "violations_total": violations.total(),
            "violations": violations.summary(),
        }
        if dup_attribution:
            summary["duplicate_attribution"] = dup_attribution
        return summary, violations

    def anomalies(self):
        """What clients saw that is wrong but not a data-safety violation: brokers answering
        Metadata without the topic (a restarted broker that has not caught up), clients
        told two cluster ids, topics seen shrinking to no partitions."""
        counts = Counter()
        pattern = re.compile(r"reports different ClusterId|partition count changed from \d+ to 0")
        try:
            with open(os.path.join(self.run_dir, "clients.log"), errors="replace") as fh:
                for line in fh:
                    m = pattern.search(line)
                    if m:
                        counts["client log: " + re.sub(r"\d+ to 0", "N to 0", m.group(0))] += 1
        except OSError:
            pass
        out = {"metadata_without_topic_by_broker": dict(sorted(self.not_served.items())),
               **dict(sorted(counts.items()))}
        if getattr(self, "consumers_behind", None):
            out["consumers_not_at_high_watermark_20s_after_producers_stopped"] = [
                {"consumer": k, "partition": p, "position": pos, "high_watermark": h}
                for k, p, pos, h in self.consumers_behind]
        return out

    def grep_logs(self):
        out = {}
        for b in self.brokers:
            try:
                with open(b.log_path, errors="replace") as fh:
                    lines = [ln.rstrip() for ln in fh if CRASH_PATTERN.search(ln)]
            except OSError:
                continue
            if lines:
                out[b.id] = lines
        return out

    def save_txn(self, out, committed, unread):
        """The transactional workload's output and offsets, for `--check-only`."""
        def hx(v):
            return v.decode(errors="surrogateescape")
        with open(os.path.join(self.run_dir, "txn.json"), "w") as fh:
            json.dump({"committed": committed, "unread": unread,
                       "out": {p: {o: hx(v) for o, v in sorted(r.items())}
                               for p, r in out.items()}}, fh)

    def save(self, producers, consumers, final, latest):
        """What the checker reads, so `--check-only` can run it again on this directory."""
        def hx(v):
            return v.decode(errors="surrogateescape")
        with open(os.path.join(self.run_dir, "acks.jsonl"), "w") as fh:
            for w in producers:
                for p, o, v, t in w.acks:
                    fh.write(json.dumps([p, o, hx(v), round(t, 3)]) + "\n")
        with open(os.path.join(self.run_dir, "failed.jsonl"), "w") as fh:
            for w in producers:
                for v, e, t in w.failed:
                    fh.write(json.dumps([hx(v), e, round(t, 3)]) + "\n")
        with open(os.path.join(self.run_dir, "instances.json"), "w") as fh:
            json.dump({k: v for w in producers for k, v in w.sent_by_instance.items()}, fh)
        with open(os.path.join(self.run_dir, "latest-offsets.json"), "w") as fh:
            json.dump({"samples": latest}, fh)
        for c in consumers:
            with open(os.path.join(self.run_dir, f"reads-consumer-{c.k}.jsonl"), "w") as fh:
                for (p, o), (v, t) in sorted(c.seen.items()):
                    fh.write(json.dumps([p, o, hx(v), round(t, 3)]) + "\n")
                for p, o, v1, t1, v2, t2 in c.conflicts:
                    fh.write(json.dumps(["conflict", p, o, hx(v1), t1, hx(v2), t2]) + "\n")
        with open(os.path.join(self.run_dir, "final.json"), "w") as fh:
            json.dump({p: {"low": f["low"], "high": f["high"], "complete": f["complete"],
                           "error": f["error"],
                           "records": {o: hx(v) for o, v in sorted(f["records"].items())}}
                       for p, f in final.items()}, fh)

    def cleanup(self):
        """Every broker stopped, every namespace and link removed. Idempotent."""
        for b in self.brokers:
            b.force_stop()
        if self.net is not None and self.net.created:
            self.net.remove()
            self.net.created = False


def attribute_duplicates(run_dir, violations):
    """For each duplicate found, the producer id, epoch and sequence each copy was stored
    under (from the brokers' segment files) and what that says: copies under one producer
    epoch mean the broker stored a batch twice; a copy under a later epoch means the client
    re-sent the record after bumping its epoch (librdkafka does this after
    OUT_OF_ORDER_SEQUENCE_NUMBER: confluentinc/librdkafka#4953), with the client's own
    log lines about it."""
    import glob
    out = []
    headers = {}

    def header_at(p, o):
        if p not in headers:
            headers[p] = []
            for d in sorted(glob.glob(os.path.join(run_dir, "broker-*", f"{TOPIC}-{p}"))):
                headers[p] = replicas.headers(d)
                if headers[p]:
                    break
        for h in headers[p]:
            if h[2] <= o <= h[3]:
                return {"offset": o, "batch": [h[2], h[3]], "leader_epoch": h[4],
                        "producer_id": h[6], "producer_epoch": h[7], "base_sequence": h[8]}
        return {"offset": o, "batch": None}

    client_log = []
    try:
        with open(os.path.join(run_dir, "clients.log"), errors="replace") as fh:
            client_log = [ln.rstrip() for ln in fh
                          if "ERRSEQ" in ln or "bumped epoch" in ln or "epoch bump" in ln]
    except OSError:
        pass
    for ex in violations.details.get("c_duplicate", []):
        copies = [header_at(p, o) for p, o in ex["places"]]
        epochs = {(c.get("producer_id"), c.get("producer_epoch")) for c in copies}
        if any(c["batch"] is None for c in copies):
            cause = "unknown: the brokers' files are gone (kept only when a run fails)"
        elif len(epochs) == 1:
            cause = ("one producer epoch: the broker stored the same producer batch twice "
                     "(a broker defect: duplicates of an idempotent batch must be answered, "
                     "not appended)")
        else:
            cause = ("a later producer epoch: the client re-sent the record after bumping its "
                     "epoch; librdkafka does this after OUT_OF_ORDER_SEQUENCE_NUMBER "
                     "(confluentinc/librdkafka#4953) -- check that the broker's answers before "
                     "it were Kafka's")
        inst = (ex["value"] or "").split(":")[0]
        lines = [ln for ln in client_log if f"chaos-{inst}#" in ln][:8]
        out.append({"value": ex["value"], "copies": copies, "cause": cause,
                    "client_log": lines})
    return out


def binary_commit(path):
    """The commit a `<binary>.commit` file beside the binary names (None without one)."""
    try:
        with open(path + ".commit") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def summarize_view(v):
    if "topics" not in v:
        return v
    t = v["topics"].get(TOPIC, {"partitions": {}})
    return {"controller": v["controller"], "brokers": v["brokers"],
            "partitions": {p: f"leader {x['leader']} epoch {x['leader_epoch']} replicas "
                              f"{x['replicas']} isr {x['isr']}"
                           for p, x in sorted(t["partitions"].items())}}


class SetupError(Exception):
    pass


class Interrupted(Exception):
    pass


def load_run(run_dir):
    """The checker's inputs from a saved run directory."""
    def bx(s):
        return s.encode(errors="surrogateescape")
    acks, ack_times = [], []
    with open(os.path.join(run_dir, "acks.jsonl")) as fh:
        for line in fh:
            p, o, v, t = json.loads(line)
            acks.append((p, o, bx(v)))
            ack_times.append(t)
    consumers = []
    for name in sorted(os.listdir(run_dir)):
        if not name.startswith("reads-consumer-"):
            continue
        seen, conflicts = {}, []
        with open(os.path.join(run_dir, name)) as fh:
            for line in fh:
                r = json.loads(line)
                if r[0] == "conflict":
                    conflicts.append((r[1], r[2], bx(r[3]), r[4], bx(r[5]), r[6]))
                else:
                    seen[(r[0], r[1])] = bx(r[2])
        consumers.append({"name": name[len("reads-"):-len(".jsonl")], "seen": seen,
                          "conflicts": conflicts})
    with open(os.path.join(run_dir, "final.json")) as fh:
        raw = json.load(fh)
    final = {int(p): {"low": f["low"], "high": f["high"], "complete": f["complete"],
                      "error": f["error"],
                      "records": {int(o): bx(v) for o, v in f["records"].items()}}
             for p, f in raw.items()}
    with open(os.path.join(run_dir, "instances.json")) as fh:
        instances = json.load(fh)
    latest = None
    lp = os.path.join(run_dir, "latest-offsets.json")
    if os.path.exists(lp):
        with open(lp) as fh:
            raw = json.load(fh)
        latest = [tuple(x) for x in raw["samples"]]
    return acks, consumers, final, instances, {"latest": latest, "ack_times": ack_times}


def self_test(acks, consumers, final, instances, extra=None, run_dir=None, placement=None):
    """Corrupts copies of a run's data one way at a time and requires the checker to flag
    each with the right kind. Returns (corruptions tried, failures): no failure means the
    checker caught every one."""
    import copy
    extra = extra or {"latest": None, "ack_times": None}
    tried, failures = [], []
    base, _ = checker.check(acks, consumers, final, instances, **extra)
    parts = [p for p in sorted(final) if len(final[p]["records"]) >= 3]
    acked_in = {(p, o) for p, o, _v in acks if o is not None}
    if not parts or not acks:
        return tried, ["the run recorded too little to corrupt (no acks or records)"]
    p = max(parts, key=lambda q: len(final[q]["records"]))
    offs = sorted(final[p]["records"])
    acked_here = [o for o in offs if (p, o) in acked_in]

    def expect(name, kind, a=acks, c=consumers, f=final, x=extra):
        tried.append(name)
        v, _ = checker.check(a, c, f, instances, **x)
        if v.count.get(kind, 0) <= base.count.get(kind, 0):
            failures.append(f"{name}: the checker did not flag {kind} (got {dict(v.count)})")

    def consumers_copy():
        return copy.deepcopy(consumers) or [{"name": "synthetic", "seen": {}, "conflicts": []}]

    # (b) one consumer read of an offset returns another record than the final read.
    c = consumers_copy()
    c[0]["seen"][(p, offs[len(offs) // 2])] = final[p]["records"][offs[0]]
    expect("a read changed", "b_offset_read_two_ways", c=c)
    # (b) one consumer saw an offset give two records.
    c = consumers_copy()
    c[0]["conflicts"].append((p, offs[0], b"a", 1.0, b"b", 2.0))
    expect("a re-read differs", "b_offset_read_two_ways", c=c)
    # (b) a record a consumer read is gone from the log.
    c = consumers_copy()
    c[0]["seen"][(p, final[p]["high"] + 5)] = b"p0.0:999999:%d:" % p
    expect("a read record vanished", "b_read_record_vanished", c=c)
    if acked_here:
        o = acked_here[-1]
        # (a) an acknowledged record missing from the final read.
        f = copy.deepcopy(final)
        del f[p]["records"][o]
        expect("an ack lost", "a_acked_record_lost", f=f)
        # (c) and (a): another record's value written over an acked offset.
        f = copy.deepcopy(final)
        f[p]["records"][o] = final[p]["records"][offs[0] if o != offs[0] else offs[1]]
        expect("a duplicate", "c_duplicate", f=f)
        expect("an acked offset rewritten", "a_acked_record_lost", f=f)
    else:
        failures.append(f"no ack in the final read of partition {p}")
    # (c) a record nobody sent.
    f = copy.deepcopy(final)
    f[p]["records"][offs[-1]] = b"p9.9:0:%d:" % p
    expect("a record never sent", "c_record_never_sent", f=f)
    # (d) a hole.
    f = copy.deepcopy(final)
    del f[p]["records"][offs[1]]
    expect("a hole", "d_offset_hole", f=f)
    # (d) a record in another partition than it was sent to.
    q = next(x for x in sorted(final) if x != p)
    f = copy.deepcopy(final)
    f[p]["records"][offs[-1]] = next(iter(final[q]["records"].values()), b"p0.0:0:%d:" % q)
    expect("a record in the wrong partition", "d_wrong_partition", f=f)
    # (d) one producer's records swapped.
    same = {}
    for o in offs:
        parsed = checker.parse_value(final[p]["records"][o])
        if parsed:
            same.setdefault(parsed[0], []).append(o)
    pair = next((lst[:2] for lst in same.values() if len(lst) >= 2), None)
    if pair:
        f = copy.deepcopy(final)
        f[p]["records"][pair[0]], f[p]["records"][pair[1]] = (f[p]["records"][pair[1]],
                                                              f[p]["records"][pair[0]])
        expect("a producer's records reordered", "d_producer_order", f=f)
    # (f) the current leader answers a latest offset of 0 after an ack.
    if extra.get("ack_times"):
        t_last = max(extra["ack_times"]) + 0.5
        pf = next(pp for pp, oo, _v in reversed(acks) if oo is not None)
        x = dict(extra, latest=list(extra["latest"] or []) + [(t_last, pf, 0, 1, 0)])
        expect("the latest offset went back", "f_latest_offset_below_ack", x=x)
    # (e) one replica's copy differs: a copy of a partition's files, one batch's CRC flipped.
    if run_dir and placement:
        tried.append("a replica's file differs")
        tmp = os.path.join(run_dir, "self-test-replicas")
        shutil.rmtree(tmp, ignore_errors=True)
        dirs, rs = {}, placement.get(p, [])
        for r in rs:
            dirs[r] = os.path.join(tmp, f"broker-{r}")
            src = os.path.join(run_dir, f"broker-{r}", f"{TOPIC}-{p}")
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(dirs[r], f"{TOPIC}-{p}"))
        victim = os.path.join(tmp, f"broker-{rs[-1]}", f"{TOPIC}-{p}") if rs else None
        segs = sorted(x for x in os.listdir(victim) if x.endswith(".log")) \
            if victim and os.path.isdir(victim) else []
        seg = next((os.path.join(victim, x) for x in segs
                    if os.path.getsize(os.path.join(victim, x)) > 61), None)
        if seg is None:
            failures.append("a replica's file differs: no segment to corrupt")
        else:
            with open(seg, "r+b") as fh:
                fh.seek(17)  # the first batch's CRC
                b = fh.read(1)
                fh.seek(17)
                fh.write(bytes([b[0] ^ 0xFF]))
            v = checker.Violations()
            replicas.compare(dirs, TOPIC, {p: rs}, v)
            if not v.count.get("e_replicas_differ"):
                failures.append(f"a replica's file differs: not flagged ({dict(v.count)})")
        shutil.rmtree(tmp, ignore_errors=True)
    return tried, failures


def main(argv):
    args = parse_args(argv)
    if args.check_only:
        acks, consumers, final, instances, extra = load_run(args.check_only)
        v, figures = checker.check(acks, consumers, final, instances, **extra)
        tp = os.path.join(args.check_only, "txn.json")
        if os.path.exists(tp):
            with open(tp) as fh:
                t = json.load(fh)
            out = {int(p): {int(o): x.encode(errors="surrogateescape") for o, x in r.items()}
                   for p, r in t["out"].items()}
            figures.update(txnwork.check({p: f["records"] for p, f in final.items()}, out,
                                         {int(p): o for p, o in t["committed"].items()}, v))
            for p in t["unread"]:
                v.add("t_output_not_readable_to_end", partition=p)
        print(json.dumps({"run_dir": args.check_only, **figures,
                          "violations_total": v.total(), "violations": v.summary()},
                         indent=1, default=str))
        return 1 if v.total() else 0
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("chaos: SKIPPED: needs root and iproute2 (`ip netns`) to make test hosts",
              file=sys.stderr)
        return 2
    run = Run(args)
    hard = args.hard_limit or args.duration + 300

    def on_signal(signum, _frame):
        run.stop.set()
        raise Interrupted(f"signal {signum}")

    def watchdog():
        run.log(f"WATCHDOG: the run exceeded {hard:.0f}s; stopping everything")
        run.stop.set()
        run.cleanup()
        os._exit(3)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    timer = threading.Timer(hard, watchdog)
    timer.daemon = True
    timer.start()
    code = 0
    try:
        summary, violations = run.execute()
        if args.self_test:
            acks, consumers, final, instances, extra = load_run(run.run_dir)
            tried, fails = self_test(acks, consumers, final, instances, extra, run.run_dir,
                                     run.placement)
            summary["self_test"] = {"corruptions": tried, "not_flagged": fails,
                                    "passed": not fails}
            if fails:
                code = 1
                print(f"chaos: SELF-TEST FAILED: {fails}", file=sys.stderr)
        with open(os.path.join(run.run_dir, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=1, default=str)
        print(json.dumps(summary, indent=1, default=str))
        if violations.total():
            code = 1
            print(f"chaos: {violations.total()} VIOLATIONS (seed {args.seed}); evidence in "
                  f"{run.run_dir}", file=sys.stderr)
        elif not args.keep_data:
            for b in run.brokers:
                shutil.rmtree(b.data_dir, ignore_errors=True)
    except SetupError as e:
        print(f"chaos: setup failed: {e}", file=sys.stderr)
        code = 2
    except (Interrupted, KeyboardInterrupt) as e:
        print(f"chaos: interrupted ({e}); cleaning up", file=sys.stderr)
        code = 3
    except Exception:
        import traceback
        traceback.print_exc()
        print("chaos: HARNESS ERROR (not a verdict on the broker); cleaning up",
              file=sys.stderr)
        code = 4
    finally:
        run.stop.set()
        timer.cancel()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
