//! Hosts apart on one machine: Linux network namespaces joined by a bridge, as separate
//! hosts on one network would be.
//!
//! [`NetHosts::create`] makes a bridge in this (the root) namespace with the subnet's
//! first address — where a broker of the test's own listens, reached by every host — and
//! one namespace per host, each with a veth pair into the bridge, its own address and
//! loopback, and a default route through the bridge. A process started through
//! [`NetHosts::wrapper`] (`ip netns exec <ns>`) sees only its namespace's addresses.
//! Everything is removed on drop. Needs root (CAP_NET_ADMIN) and iproute2's `ip`.

use std::process::Command;

use anyhow::{bail, Context as _};

/// A bridge and its namespaces, removed when dropped.
#[derive(Debug)]
pub struct NetHosts {
    bridge: String,
    namespaces: Vec<String>,
    subnet: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running `ip` (Debian: apt-get install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl NetHosts {
    /// Creates `hosts` namespaces on a /24 chosen from this process's id, or says why not.
    pub fn create(hosts: usize) -> anyhow::Result<NetHosts> {
        let id = std::process::id() % 10_000;
        // 10.77.0.0/16 split into /24s; the id spreads concurrent test processes over them.
        let subnet = format!("10.77.{}", 1 + id % 250);
        let mut net = NetHosts { bridge: format!("twbr{id}"), namespaces: Vec::new(), subnet };
        net.build(hosts, id)?;
        Ok(net)
    }

    fn build(&mut self, hosts: usize, id: u32) -> anyhow::Result<()> {
        let bridge = self.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", self.bridge_address()), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for h in 0..hosts {
            let ns = format!("tw{id}h{h}");
            let (outer, inner) = (format!("twv{id}h{h}"), format!("twv{id}h{h}i"));
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "master", &bridge, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.address(h)), "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "route", "add", "default", "via", &self.bridge_address()])?;
        }
        Ok(())
    }

    /// The bridge's address in this namespace, reached from every host.
    pub fn bridge_address(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// Host `h`'s address (inside its namespace only).
    pub fn address(&self, h: usize) -> String {
        format!("{}.{}", self.subnet, 2 + h)
    }

    /// The command prefix that runs a program on host `h`.
    pub fn wrapper(&self, h: usize) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.namespaces[h]]
    }
}

impl Drop for NetHosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and so the pair.
        for ns in &self.namespaces {
            if let Err(error) = ip(&["netns", "delete", ns]) {
                eprintln!("removing namespace {ns}: {error:#}");
            }
        }
        if let Err(error) = ip(&["link", "delete", &self.bridge]) {
            eprintln!("removing bridge {}: {error:#}", self.bridge);
        }
    }
}
