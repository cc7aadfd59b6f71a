"""The seeded nemesis: a fault schedule drawn from the seed alone (printed before the run),
applied one fault at a time, each healed before the next.

Actions:
  kill        kill -9, restarted after the broker session timeout has passed (fenced)
  kill_fast   kill -9, restarted within the session timeout (a new incarnation that comes
              back before the controller noticed the old one died)
  pause       SIGSTOP, SIGCONT after the hold
  cut         the host's link down (nothing in or out), up after the hold
  cut_oneway  blackhole routes: `out` drops what the host sends (to every peer broker, to one
              peer, or to the clients' bridge address), `in` drops what every peer broker
              sends to the host
  kill_all    (only with --allow-kill-all) kill -9 of every broker at once, all restarted
              after the hold: the quorum is lost for a moment, and what was acknowledged
              must survive on disk
Targets: a broker drawn from the seed, the current controller (DescribeCluster), or the
current leader of a partition drawn from the seed (Metadata). With 4 or 5 brokers a fault
may hit two brokers at once, never two voters, so the metadata quorum always remains; when
the first is a partition's leader, the second is one of that partition's followers if the
voter rule allows (the leader and a follower down together).

The schedule is deterministic; what a target resolves to at run time (which broker is the
controller) depends on the run, and every resolution is logged.
"""

import random
import time
from collections import Counter

from kafkawire import describe_cluster, metadata

ACTIONS = ["kill", "kill_fast", "pause", "cut", "cut_oneway"]
# Hold times (seconds) per action: a kill is held past the session timeout, a fast kill
# comes back within it.
HOLD = {"kill": (2.5, 8.0), "kill_fast": (0.0, 1.0), "pause": (0.5, 6.0), "cut": (1.0, 8.0),
        "cut_oneway": (1.0, 8.0), "kill_all": (0.0, 3.0)}
GAP = (2.0, 6.0)


def make_schedule(seed, duration, warmup, settle, brokers, voters, partitions,
                  kill_all=False):
    rng = random.Random(seed)
    faults = []
    t = warmup
    end = duration - settle
    while True:
        action = rng.choice(ACTIONS)
        if kill_all and rng.random() < 0.15:
            action = "kill_all"
        hold = round(rng.uniform(*HOLD[action]), 2)
        r = rng.random()
        if r < 0.5:
            target = f"broker:{rng.randrange(brokers) + 1}"
        elif r < 0.75:
            target = "controller"
        else:
            target = f"leader:{rng.randrange(partitions)}"
        f = {"n": len(faults) + 1, "at": round(t, 2), "action": action, "target": target,
             "hold": hold}
        if action == "cut_oneway":
            f["direction"] = rng.choice(["out", "out", "in"])
            if f["direction"] == "out":
                f["to"] = rng.choice(["peers", "one_peer", "clients"])
        if action == "kill_all":
            target = "all"
            f["target"] = target
        elif brokers >= 4 and rng.random() < 0.25:
            second = rng.choice(ACTIONS)
            f["second"] = {"action": second, "hold": round(rng.uniform(*HOLD[second]), 2)}
            if second == "cut_oneway":
                f["second"]["direction"] = "out"
                f["second"]["to"] = "peers"
        if t + max(hold, f.get("second", {}).get("hold", 0)) > end:
            break
        faults.append(f)
        t += max(hold, f.get("second", {}).get("hold", 0)) + rng.uniform(*GAP)
    return faults


def describe(f):
    s = f"#{f['n']} t+{f['at']:.1f}s {f['action']} {f['target']} for {f['hold']}s"
    if "direction" in f:
        s += f" ({f['direction']}{' to ' + f['to'] if 'to' in f else ''})"
    if "second" in f:
        s += f" + {f['second']['action']} of a second broker for {f['second']['hold']}s"
    return s


class Nemesis:
    def __init__(self, seed, schedule, brokers, net, voters, topic, t0, log, stop):
        self.seed, self.schedule, self.brokers, self.net = seed, schedule, brokers, net
        self.voters, self.topic, self.t0, self.log, self.stop = voters, topic, t0, log, stop
        self.applied = []       # faults as applied, with their resolved targets
        self.crashes = []       # brokers that exited on their own
        self.kinds = Counter()

    def now(self):
        return time.monotonic() - self.t0

    def reachable(self):
        return [b for b in self.brokers if b.running() and not b.paused]

    def resolve(self, target, rng):
        """Broker index for a target; (index, how it was found)."""
        if target == "all":
            return 0, "every broker"
        if target.startswith("broker:"):
            return int(target.split(":")[1]) - 1, "fixed"
        votes = Counter()
        for b in self.reachable():
            try:
                if target == "controller":
                    c = describe_cluster(b.addr, timeout=1.5)["controller"]
                else:
                    p = int(target.split(":")[1])
                    m = metadata(b.addr, [self.topic], timeout=1.5)
                    c = m["topics"][self.topic]["partitions"][p]["leader"]
                if c > 0:
                    votes[c] += 1
            except Exception:
                continue
        if votes:
            bid, n = votes.most_common(1)[0]
            return bid - 1, f"{dict(votes)}"
        i = rng.randrange(len(self.brokers))
        return i, "unresolved (no broker answered): drawn from the seed"

    def followers(self, target):
        """Indexes of the other replicas of a `leader:p` target's partition (as a reachable
        broker sees it), or []."""
        if not target.startswith("leader:"):
            return []
        p = int(target.split(":")[1])
        for b in self.reachable():
            try:
                x = metadata(b.addr, [self.topic], timeout=1.5)["topics"][self.topic]
                part = x["partitions"][p]
                return sorted(r - 1 for r in part["isr"] if r != part["leader"])
            except Exception:
                continue
        return []

    def sleep(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stop.is_set():
            self.watch()
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def watch(self):
        """Records (and restarts) brokers that exited on their own."""
        for b in self.brokers:
            if b.proc is not None and not b.expect_down and not b.running():
                status = b.exit_status()
                self.crashes.append({"t": round(self.now(), 3), "broker": b.id,
                                     "exit": status})
                self.log(f"CRASH: broker {b.id} exited on its own with status {status} "
                         f"(negative: killed by that signal); restarting it")
                b.start(self.t0)

    def apply(self, action, i, f, rng):
        b = self.brokers[i]
        others = [j for j in range(len(self.brokers)) if j != i]
        if action in ("kill", "kill_fast"):
            b.kill9()
            return lambda: b.start(self.t0)
        if action == "kill_all":
            for x in self.brokers:
                x.kill9()
            return lambda: [x.start(self.t0) for x in self.brokers]
        if action == "pause":
            b.pause()
            return b.resume
        if action == "cut":
            self.net.cut(i)
            return lambda: self.net.uncut(i)
        if action == "cut_oneway":
            if f.get("direction") == "in":
                for j in others:
                    self.net.blackhole(j, [self.net.host(i)])
                return lambda: [self.net.unblackhole(j) for j in others]
            to = f.get("to", "peers")
            if to == "peers":
                addrs = [self.net.host(j) for j in others]
            elif to == "one_peer":
                addrs = [self.net.host(rng.choice(others))]
            else:
                addrs = [self.net.gateway()]
            f["blackholed"] = addrs
            self.net.blackhole(i, addrs)
            return lambda: self.net.unblackhole(i)
        raise ValueError(action)

    def run(self):
        for f in self.schedule:
            if self.stop.is_set():
                return
            wait = f["at"] - self.now()
            if wait > 0:
                self.sleep(wait)
            if self.stop.is_set():
                return
            self.watch()
            rng = random.Random(f"{self.seed}-{f['n']}")
            i, how = self.resolve(f["target"], rng)
            applied = dict(f, broker=i + 1, resolved=how, started=round(self.now(), 3))
            heals = []
            heals.append(self.apply(f["action"], i, applied, rng))
            self.kinds[f["action"]] += 1
            self.kinds["target:" + f["target"].split(":")[0]] += 1
            second_i = None
            if "second" in f:
                voter_hit = i < self.voters
                choices = [j for j in range(len(self.brokers))
                           if j != i and not (voter_hit and j < self.voters)]
                followers = [j for j in self.followers(f["target"]) if j in choices]
                second_i = rng.choice(followers or choices)
                applied["second"] = dict(f["second"], broker=second_i + 1)
                heals.append(self.apply(f["second"]["action"], second_i, applied["second"],
                                        rng))
                self.kinds[f["second"]["action"]] += 1
                self.kinds["double"] += 1
            self.log(f"FAULT {describe(f)} -> broker {i + 1}"
                     + (f" and broker {second_i + 1}" if second_i is not None else "")
                     + f" [target resolved: {how}]")
            holds = [(f["hold"], heals[0])]
            if len(heals) > 1:
                holds.append((f["second"]["hold"], heals[1]))
            start = time.monotonic()
            for hold, heal in sorted(holds, key=lambda h: h[0]):
                self.sleep(start + hold - time.monotonic())
                heal()
            applied["healed"] = round(self.now(), 3)
            self.log(f"HEAL #{f['n']}")
            self.applied.append(applied)

    def heal_all(self):
        """The final heal: every link up, every route gone, every broker running and
        resumed."""
        self.net.heal_all()
        for b in self.brokers:
            if b.paused:
                b.resume()
        self.watch()
        for b in self.brokers:
            if not b.running():
                b.start(self.t0)
        self.log("FINAL HEAL: all links up, no blackhole routes, every broker running")
