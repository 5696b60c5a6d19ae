"""A test host in its own network namespace, joined to this one by a veth pair.

Processes started with ``host.cmd(...)`` reach this machine only through the pair, so
the test can cut the link (``partition()``) or lose a share of the packets
(``lose(5)``) with nftables inside the namespace, without touching anything else.
Needs root (CAP_NET_ADMIN); ``TestHost.available()`` says whether it can be made here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class TestHost:
    """``with TestHost() as host``: ``host.addr`` is the host, ``host.gateway`` is us."""

    __test__ = False  # not a test class

    def __init__(self, tag: int | None = None) -> None:
        n = (os.getpid() if tag is None else tag) % 250 + 1
        self.name = f"ioc-test-{os.getpid()}-{n}"
        self.outer = f"iocv{os.getpid() % 100000}o"
        self.inner = f"iocv{os.getpid() % 100000}i"
        self.gateway = f"10.213.{n}.1"  # this namespace's end of the pair
        self.addr = f"10.213.{n}.2"

    @staticmethod
    def available() -> bool:
        if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
            return False
        probe = f"ioc-probe-{os.getpid()}"
        try:
            _ip("netns", "add", probe)
        except (subprocess.CalledProcessError, OSError):
            return False
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", probe)
        return True

    def __enter__(self) -> TestHost:
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
            _ip("link", "set", self.inner, "netns", self.name)
            _ip("addr", "add", f"{self.gateway}/30", "dev", self.outer)
            _ip("link", "set", self.outer, "up")
            self._in("ip", "addr", "add", f"{self.addr}/30", "dev", self.inner)
            self._in("ip", "link", "set", self.inner, "up")
            self._in("ip", "link", "set", "lo", "up")
            self._in("nft", "add", "table", "inet", "chaos")
            self._in(
                "nft", "add", "chain", "inet", "chaos", "out",
                "{ type filter hook output priority 0; }",
            )  # fmt: skip
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", self.name)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self.outer)

    def _in(self, *args: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, *args], check=True, capture_output=True)

    def cmd(self, *args: str) -> list[str]:
        """``args`` as a command line that runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def heal(self) -> None:
        """Every packet passes again."""
        self._in("nft", "flush", "chain", "inet", "chaos", "out")

    def partition(self, port: int | None = None) -> None:
        """Nothing the host sends leaves it (to ``port`` only, when given)."""
        self.heal()
        match = ["tcp", "dport", str(port)] if port is not None else []
        self._in(
            "nft", "add", "rule", "inet", "chaos", "out", "oifname", self.inner, *match, "drop"
        )

    def lose(self, percent: int) -> None:
        """Drop ``percent`` % of the packets the host sends, at random."""
        self.heal()
        self._in(
            "nft", "add", "rule", "inet", "chaos", "out", "oifname", self.inner,
            "numgen", "random", "mod", "100", "<", str(percent), "drop",
        )  # fmt: skip
