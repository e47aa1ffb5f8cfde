"""The I/O floor: dpdk-testpmd in io mode on the same device, one forwarding
core. It receives and sends back what it received: no header touched."""
from __future__ import annotations

import os
import shutil
from typing import Optional

from . import common
from .common import Counters, Ctx, Proc, Reference, Unavailable

TESTPMD = "dpdk-testpmd"


class Testpmd(Reference):
    key = "testpmd-io"
    label = "testpmd io (I/O floor)"

    def __init__(self):
        super().__init__()
        self.proc: Optional[Proc] = None
        self.prefix = f"pt{os.getpid() % 100000}t"

    def prepare(self, ctx: Ctx) -> None:
        if shutil.which(TESTPMD) is None:
            raise Unavailable(f"{TESTPMD} is missing (Debian package dpdk)")
        self.notes = ["testpmd: --forward-mode=io --port-topology=loop, 1 forwarding core, "
                      "burst 32, 1 RX and 1 TX queue"]

    def start(self, ctx: Ctx) -> None:
        argv = [shutil.which(TESTPMD), *common.eal_args(self.prefix, ctx.pcap), "-m", "512",
                "--", "--forward-mode=io", "--port-topology=loop", "--nb-cores=1",
                "--burst=32", "--auto-start", "--stats-period=3600", "--no-lsc-interrupt"]
        self.proc = Proc(argv, ctx.scratch / "testpmd.log")
        try:
            common.wait_telemetry(self.prefix, self.proc.p)
        except Unavailable as e:
            tail = self.proc.tail()
            self.stop()
            raise Unavailable(f"testpmd: {e}\n{tail}")

    def counters(self) -> Counters:
        return common.ethdev_counters(self.prefix, 0)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        common.remove_runtime_dir(self.prefix)
