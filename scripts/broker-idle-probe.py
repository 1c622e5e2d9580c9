#!/usr/bin/env python3
"""Reproduces the broker's CPU cost of idle consumers, without the fleet.

Starts a nisshi broker of its own (memory or SQLite engine) in a temporary folder, creates
one topic, and for each fetch wait starts N idle confluent-kafka consumers (one group each,
all partitions assigned, nothing ever produced) and reads the broker's CPU use from /proc
over a window. Prints one line per fetch wait: broker CPU as % of one core.

nisshi 0.8.1 answers a fetch that finds no data by reading every requested partition again
after sleeping half of the remaining wait (rounds at 0, W/2, 3W/4, ...), with no wake-up on
produce; an idle consumer therefore costs storage reads continuously, and more the shorter
its fetch.wait.max.ms. See docs/broker-conformance.md.

Usage (from the project root):
  $(bash scripts/python-env.sh) scripts/broker-idle-probe.py \
      --engine sqlite --consumers 10 --partitions 12 --wait-ms 20 100 500 --seconds 15
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

TICKS = os.sysconf("SC_CLK_TCK")


def broker_binary():
    if os.environ.get("NISSHI_BIN"):
        return os.environ["NISSHI_BIN"]
    cache = os.environ.get("STOREFLEET_CACHE", os.path.expanduser("~/.cache/storefleet"))
    return os.path.join(cache, "nisshi-0.8.1", "bin", "nisshi")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the ")".
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_for_port(port, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"broker did not listen on {port} within {seconds} s")


def idle_consumers(bootstrap, topic, count, wait_ms, stop):
    threads = []
    for n in range(count):

        def run(n=n):
            c = Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": f"idle-probe-{wait_ms}-{n}",
                    "auto.offset.reset": "latest",
                    "fetch.wait.max.ms": wait_ms,
                    "enable.auto.commit": False,
                }
            )
            c.subscribe([topic])
            while not stop.is_set():
                c.poll(0.2)
            c.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
    return threads


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=["memory", "sqlite"], default="sqlite")
    ap.add_argument("--consumers", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--wait-ms", type=int, nargs="+", default=[20, 100, 500])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--settle", type=float, default=8.0, help="seconds before measuring")
    args = ap.parse_args()

    binary = broker_binary()
    if not os.path.exists(binary):
        sys.exit(f"{binary} is missing: run scripts/install-broker.sh (or set NISSHI_BIN)")
    folder = tempfile.mkdtemp(prefix="broker-idle-probe-")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    storage = (
        "memory://nisshi/"
        if args.engine == "memory"
        else "sqlite://nisshi.db?maintenance_interval=15s"
    )
    log = open(os.path.join(folder, "broker.log"), "w")
    broker = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", storage, "--group-initial-rebalance-delay", "1s"],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        bootstrap = f"127.0.0.1:{port}"
        topic = "idle-probe"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic(topic, args.partitions, 1)]).values():
            f.result()
        print(f"nisshi {args.engine}, {args.consumers} idle consumers, "
              f"{args.partitions} partitions, {args.seconds:.0f} s windows; logs in {folder}")
        time.sleep(2)
        before = cpu_seconds(broker.pid)
        time.sleep(args.seconds)
        idle = (cpu_seconds(broker.pid) - before) / args.seconds * 100
        print(f"  no consumers                 broker CPU {idle:6.1f}% of a core")
        for wait_ms in args.wait_ms:
            stop = threading.Event()
            threads = idle_consumers(bootstrap, topic, args.consumers, wait_ms, stop)
            time.sleep(args.settle)
            before = cpu_seconds(broker.pid)
            time.sleep(args.seconds)
            used = (cpu_seconds(broker.pid) - before) / args.seconds * 100
            print(f"  fetch.wait.max.ms {wait_ms:5d}      broker CPU {used:6.1f}% of a core")
            stop.set()
            for t in threads:
                t.join(timeout=10)
    finally:
        broker.kill()
        broker.wait()


if __name__ == "__main__":
    main()
