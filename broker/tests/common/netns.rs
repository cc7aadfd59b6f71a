//! Test hosts of our own: one network namespace per broker, each with a veth pair into a
//! bridge in the test's namespace, on a private /24. Cutting a host off the network is
//! taking its veth down: its processes keep running, nothing reaches them and nothing they
//! send arrives (a real partition, not a crash). Needs root (`ip netns`, `ip link`); every
//! namespace and link is removed when the [`TestNet`] is dropped, even on a failed test.

use std::process::{Command, Stdio};

/// A bridge and `n` namespaces on 10.201.<subnet>.0/24; host i is 10.201.<subnet>.(11+i).
pub struct TestNet {
    tag: String,
    subnet: u8,
    hosts: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TestNet {
    /// Creates the hosts, or returns why it cannot (not root, no `ip`).
    /// `tag`: 1-3 letters, unique among tests that run at the same time.
    pub fn create(tag: &str, subnet: u8, hosts: usize) -> Result<TestNet, String> {
        let net = TestNet {
            tag: tag.to_string(),
            subnet,
            hosts,
        };
        // Leftovers of a killed earlier run.
        net.remove();
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.201.{subnet}.1/24"),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..hosts {
            let ns = net.namespace(i);
            let (outer, inner) = (net.outer(i), format!("rp{tag}{i}"));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "master", &bridge, "up"])?;
            let addr = format!("{}/24", net.host(i));
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inner,
            ])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("rb{}", self.tag)
    }

    fn outer(&self, i: usize) -> String {
        format!("rv{}{i}", self.tag)
    }

    /// The namespace of host `i` (for `ip netns exec`).
    pub fn namespace(&self, i: usize) -> String {
        format!("rill-{}-{i}", self.tag)
    }

    /// Host `i`'s address.
    pub fn host(&self, i: usize) -> String {
        format!("10.201.{}.{}", self.subnet, 11 + i)
    }

    /// Cuts host `i` off: its link goes down.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.outer(i), "down"]).expect("cut a test host off");
    }

    /// Reconnects host `i`.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.outer(i), "up"]).expect("reconnect a test host");
    }

    fn remove(&self) {
        for i in 0..self.hosts {
            let _ = ip(&["netns", "del", &self.namespace(i)]);
            let _ = ip(&["link", "del", &self.outer(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The test hosts, or None after a loud notice (a failure under CI, which runs as root).
pub fn test_net_or_skip(tag: &str, subnet: u8, hosts: usize, unchecked: &str) -> Option<TestNet> {
    match TestNet::create(tag, subnet, hosts) {
        Ok(net) => Some(net),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("cannot create test hosts ({e}), and CI is set: run as root with iproute2")
        }
        Err(e) => {
            eprintln!("################################################################");
            eprintln!("## SKIPPED: cannot create network namespaces ({e});");
            eprintln!("## {unchecked} was NOT checked. Run the tests as root.");
            eprintln!("################################################################");
            None
        }
    }
}
