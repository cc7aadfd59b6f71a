"""Test hosts and the brokers on them.

Each broker runs in a network namespace of its own, joined to a bridge in the harness's
namespace by a veth pair, on a private /24 (as broker/tests/common/netns.rs does): host i
is 10.201.<subnet>.(11+i), the bridge is .1, and the harness's clients reach every broker
over the bridge. A network fault is real: the process keeps running, packets stop.

- cut both ways: the host's veth goes down (nothing in or out);
- cut one way: blackhole routes inside the host's namespace to chosen peers, so what the
  host sends to them is dropped while what they send still arrives.

Everything made here (namespaces, links, broker processes) is recorded and removed by
`cleanup()`, which the harness calls on every exit path.
"""

import os
import signal
import subprocess
import time

from kafkawire import describe_cluster


def ip(*args, check=True):
    r = subprocess.run(["ip", *args], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


class TestNet:
    def __init__(self, tag, subnet, hosts):
        self.tag, self.subnet, self.hosts = tag, subnet, hosts
        self.created = False

    def bridge(self):
        return f"rb{self.tag}"

    def outer(self, i):
        return f"rv{self.tag}{i}"

    def namespace(self, i):
        return f"rill-{self.tag}-{i}"

    def host(self, i):
        return f"10.201.{self.subnet}.{11 + i}"

    def gateway(self):
        return f"10.201.{self.subnet}.1"

    def create(self):
        self.remove()  # leftovers of a killed earlier run
        self.created = True
        br = self.bridge()
        ip("link", "add", br, "type", "bridge")
        ip("addr", "add", f"{self.gateway()}/24", "dev", br)
        ip("link", "set", br, "up")
        for i in range(self.hosts):
            ns, outer, inner = self.namespace(i), self.outer(i), f"rp{self.tag}{i}"
            ip("netns", "add", ns)
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", ns)
            ip("link", "set", outer, "master", br, "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{self.host(i)}/24", "dev", inner)
            ip("netns", "exec", ns, "ip", "link", "set", inner, "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")

    # Faults. Each returns what it did, for the event log.
    def cut(self, i):
        ip("link", "set", self.outer(i), "down")

    def uncut(self, i):
        ip("link", "set", self.outer(i), "up")

    def blackhole(self, i, addrs):
        """Drops what host i sends to each address (a /32 each)."""
        for a in addrs:
            ip("netns", "exec", self.namespace(i), "ip", "route", "add", "blackhole", f"{a}/32")

    def unblackhole(self, i):
        """Removes every blackhole route in host i (whatever added them)."""
        r = ip("netns", "exec", self.namespace(i), "ip", "route", "show", "type", "blackhole",
               check=False)
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "blackhole":
                ip("netns", "exec", self.namespace(i), "ip", "route", "del", "blackhole",
                   parts[1], check=False)

    def heal_all(self):
        for i in range(self.hosts):
            self.uncut(i)
            self.unblackhole(i)

    def remove(self):
        for i in range(self.hosts):
            ip("netns", "del", self.namespace(i), check=False)
            ip("link", "del", self.outer(i), check=False)
        ip("link", "del", self.bridge(), check=False)


class Broker:
    """One `rill broker` process (node id = index + 1) in its host's namespace. The log of
    every incarnation is appended to run_dir/broker-N.log, each start marked."""

    def __init__(self, index, net, binary, run_dir, config_path, quorum, voter, port=9092,
                 raft_port=9093, env=None):
        self.index, self.id = index, index + 1
        self.net, self.binary = net, binary
        self.host = net.host(index)
        self.port = port
        self.addr = (self.host, port)
        self.data_dir = os.path.join(run_dir, f"broker-{self.id}")
        self.log_path = os.path.join(run_dir, f"broker-{self.id}.log")
        self.config_path, self.quorum, self.voter = config_path, quorum, voter
        self.raft_port = raft_port
        self.env = env
        self.proc = None
        self.paused = False
        self.expect_down = False  # the harness stopped it: not a crash
        self.starts = 0

    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def command(self):
        cmd = ["ip", "netns", "exec", self.net.namespace(self.index), self.binary, "broker",
               "--config", self.config_path, "--node-id", str(self.id),
               "--controller-quorum", self.quorum, "--listen", self.bootstrap(),
               "--data-dir", self.data_dir, "--shards", "1", "--metrics-listen", ""]
        if not self.voter:
            cmd += ["--raft-listen", f"{self.host}:{self.raft_port}"]
        return cmd

    def start(self, t0):
        assert not self.running(), f"broker {self.id} already runs"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            wall = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + \
                f".{int(time.time() * 1e6) % 1000000:06d}Z"
            log.write(f"\n===== chaos harness: start #{self.starts} of broker {self.id} at "
                      f"t={time.monotonic() - t0:.3f}s ({wall}) =====\n".encode())
            log.flush()
            # `ip netns exec` execs the broker in place: the child's pid is the broker's.
            # A session of its own, so a Ctrl-C at the terminal reaches only the harness,
            # which then stops the brokers itself.
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=self.env)
        self.paused = False
        self.expect_down = False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def exit_status(self):
        return None if self.proc is None else self.proc.poll()

    def kill9(self):
        self.expect_down = True
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)
        self.paused = False

    def pause(self):
        if self.running():
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self):
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def terminate(self, timeout=20):
        """SIGTERM (the broker flushes and seals its logs), SIGKILL after `timeout`.
        Returns the exit status."""
        self.expect_down = True
        if not self.running():
            return self.exit_status()
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)
            return "killed after SIGTERM timeout"

    def force_stop(self):
        self.expect_down = True
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
            except Exception:
                pass

    def listening(self):
        try:
            describe_cluster(self.addr, timeout=1.0)
            return True
        except Exception:
            return False
