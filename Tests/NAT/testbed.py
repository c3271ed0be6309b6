"""A NAT test bed of network namespaces (pion's vnet, with the kernel doing the work):

    host-X (192.168.N.2) ── nat-X (192.168.N.1 | 10.200.N.2) ── wan (10.200.N.1, coturn on 10.200.0.1)

Each NAT is nftables in its namespace: masquerade for the mapping (port-preserving =
endpoint-independent; `random` = address-and-port-dependent, i.e. symmetric) and DNAT
rules for the filtering (endpoint-independent: anyone may send to a mapped port;
address-dependent: any port of an address the host has sent to; address-and-port-
dependent: conntrack replies only). Nothing leaves these namespaces."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vptest import Namespaces, sh  # noqa: E402,F401  (bench_nat imports sh from here)

# Address-dependent mapping has no kernel equivalent (conntrack maps per connection or
# not at all); the bed covers the two ends of the range.
MAPPINGS = ("eim", "apdm")
FILTERINGS = ("eif", "adf", "apdf")


def nft_rules(mapping, filtering, host_ip, forwarded_tcp=()):
    masq = "masquerade random" if mapping == "apdm" else "masquerade"
    lines = [
        "table ip vpnat {",
        "  set contacted { type ipv4_addr; flags dynamic, timeout; timeout 120s; }",
        "  chain out { type filter hook postrouting priority 100; oifname \"wan0\" update @contacted { ip daddr }; }",
        # Unsolicited UDP to the router itself is dropped before its conntrack entry is
        # confirmed, as home routers do: the mapped port stays free for the host's own
        # packets (otherwise hole punching loses the port to the early arrival).
        "  chain in { type filter hook input priority 0; iifname \"wan0\" meta l4proto udp ct state new drop; }",
        "  chain pre { type nat hook prerouting priority -100;",
    ]
    for port in forwarded_tcp:  # a port forward for the callee's signalling, as on a home router
        lines.append(f"    iifname \"wan0\" tcp dport {port} dnat to {host_ip};")
    if filtering == "eif":
        lines.append(f"    iifname \"wan0\" udp dport 1024-65535 dnat to {host_ip};")
    elif filtering == "adf":
        lines.append(f"    iifname \"wan0\" ip saddr @contacted udp dport 1024-65535 dnat to {host_ip};")
    lines += ["  }", "  chain post { type nat hook postrouting priority 100;", f"    oifname \"wan0\" {masq};", "  }", "}"]
    return "\n".join(lines)


class TestBed(Namespaces):
    def __init__(self):
        super().__init__()
        self.wan = self.ns("wan")
        sh("ip", "-n", self.wan, "link", "set", "lo", "up")
        sh("ip", "-n", self.wan, "addr", "add", "10.200.0.1/32", "dev", "lo")
        sh("ip", "netns", "exec", self.wan, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # Like the internet, the WAN silently loses packets for private addresses it has no
        # route to: its default route leads into an empty namespace. (coturn closes an
        # allocation whose relay socket gets an error from sendto.)
        void = self.ns("void")
        sh("ip", "-n", self.wan, "link", "add", "void0", "type", "veth", "peer", "name", "void1", "netns", void)
        sh("ip", "-n", self.wan, "link", "set", "void0", "up")
        sh("ip", "-n", void, "link", "set", "void1", "up")
        sh("ip", "-n", self.wan, "route", "add", "default", "dev", "void0")

    def site(self, n, mapping, filtering, forwarded_tcp=()):
        """A host behind its own NAT; returns (host namespace, host address, NAT's public address)."""
        nat, host = self.ns(f"nat{n}"), self.ns(f"host{n}")
        public, lan_gw, host_ip = f"10.200.{n}.2", f"192.168.{n}.1", f"192.168.{n}.2"
        sh("ip", "-n", self.wan, "link", "add", f"w{n}", "type", "veth", "peer", "name", "wan0", "netns", nat)
        sh("ip", "-n", self.wan, "addr", "add", f"10.200.{n}.1/24", "dev", f"w{n}")
        sh("ip", "-n", self.wan, "link", "set", f"w{n}", "up")
        sh("ip", "-n", nat, "addr", "add", f"{public}/24", "dev", "wan0")
        sh("ip", "-n", nat, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", host)
        sh("ip", "-n", nat, "addr", "add", f"{lan_gw}/24", "dev", "lan0")
        for dev in ("lo", "wan0", "lan0"):
            sh("ip", "-n", nat, "link", "set", dev, "up")
        sh("ip", "-n", nat, "route", "add", "default", "via", f"10.200.{n}.1")
        sh("ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", host, "addr", "add", f"{host_ip}/24", "dev", "eth0")
        sh("ip", "-n", host, "link", "set", "lo", "up")
        sh("ip", "-n", host, "link", "set", "eth0", "up")
        sh("ip", "-n", host, "route", "add", "default", "via", lan_gw)
        sh("ip", "netns", "exec", nat, "nft", "-f", "-", input=nft_rules(mapping, filtering, host_ip, forwarded_tcp))
        return host, host_ip, public

    def block_udp(self, namespace):
        """Drops all UDP leaving the namespace; TCP still works (TURN over TCP/TLS)."""
        sh("ip", "netns", "exec", namespace, "nft", "-f", "-", input="""
table inet vpblock {
  chain out { type filter hook output priority 0; meta l4proto udp drop; }
}""")

    def impair(self, a=1, b=2, seed=1):
        """Routes the traffic between sites `a` and `b` through the user-space impairment
        relay (impair.py) on a TUN in the WAN; returns it, to be told what to do."""
        relay = Impairment(self.wan, seed)
        for dev in ("all", "default"):
            sh("ip", "netns", "exec", self.wan, "sysctl", "-qw", f"net.ipv4.conf.{dev}.rp_filter=0")
        sh("ip", "netns", "exec", self.wan, "sysctl", "-qw", "net.ipv4.conf.imp0.rp_filter=0")
        sh("ip", "-n", self.wan, "link", "set", "imp0", "up")
        sh("ip", "-n", self.wan, "route", "add", "default", "dev", "imp0", "table", "100")
        # Only what arrives from a site's own link is diverted: what the relay writes back
        # comes in on imp0 and takes the main table to its destination.
        sh("ip", "-n", self.wan, "rule", "add", "iif", f"w{a}", "to", f"10.200.{b}.0/24", "lookup", "100")
        sh("ip", "-n", self.wan, "rule", "add", "iif", f"w{b}", "to", f"10.200.{a}.0/24", "lookup", "100")
        return relay


class Impairment:
    """The relay process in the WAN: `set("loss=0.05 burst=5")`, `clear()`, `stats()`."""

    def __init__(self, wan, seed):
        import subprocess
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen(["ip", "netns", "exec", wan, sys.executable, os.path.join(here, "impair.py"), "imp0", str(seed)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("impairment relay did not start")

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer.startswith("error") or not answer:
            raise RuntimeError(f"impairment relay: {line!r}: {answer or 'no answer'}")
        return answer

    def set(self, settings):
        self.command(settings)

    def clear(self):
        self.command("clear")

    def stats(self):
        import json
        return json.loads(self.command("stats"))

    def close(self):
        self.proc.kill()
        self.proc.wait()
