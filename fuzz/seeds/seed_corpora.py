#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ (run by
`scripts/fuzz.sh seed`; `scripts/fuzz.sh cmin` then keeps what adds coverage).

Seeds: the example and bad configuration files of config/examples/, the extender's wire cases
(the request bodies of scheduler-plugin/tests/), node reports and job specs written as protobuf
text beside this file (encoded with protoc), control-socket requests, and virtio-blk guests
holding one request of each kind.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path

FUZZ = Path(__file__).resolve().parent.parent
ROOT = FUZZ.parent
EXAMPLES = ROOT / "config" / "examples"
PROTO = ROOT / "proto" / "proto"


def put(target: str, data: bytes) -> None:
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def encode(message: str, proto: str, text: Path) -> bytes:
    return subprocess.run(
        ["protoc", f"-I{PROTO}", f"--encode={message}", f"colo/{proto}"],
        stdin=text.open("rb"),
        check=True,
        capture_output=True,
    ).stdout


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def yaml_seeds() -> None:
    policy = (EXAMPLES / "policy.yaml").read_bytes()
    put("policy_yaml", policy)
    for f in sorted((EXAMPLES / "bad").glob("*.yaml")):
        put("policy_yaml", f.read_bytes())
    layered = [f.read_bytes() for f in sorted((EXAMPLES / "policy.d").glob("*.yaml"))]
    for layer in layered:
        put("policy_yaml", layer)
    # Multi-file merges: the target splits its input at NUL bytes.
    put("policy_yaml", b"\0".join(layered))
    put("policy_yaml", b"\0".join([policy, *layered]))
    put("agent_yaml", (EXAMPLES / "agent.yaml").read_bytes())
    for f in sorted((EXAMPLES / "bad-agent").glob("*.yaml")):
        put("agent_yaml", f.read_bytes())


BATCH_POD = '{"metadata":{"name":"job-1","namespace":"etl","uid":"p-1"},"spec":{"containers":[{"name":"main","resources":{"requests":{"colo.io/batch-cpu":"1000","colo.io/batch-memory":"2Gi"},"limits":{"colo.io/batch-cpu":"1000","colo.io/batch-memory":"2Gi"}}}]}}'
ONLINE_POD = '{"metadata":{"name":"web-1","namespace":"shop","labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","resources":{"requests":{"cpu":"2","memory":"1Gi"}}}]}}'
FOLDED_POD = '{"METADATA":{"Name":"job-1","NAMESPACE":"etl","uId":"p-1"},"Spec":{"CONTAINERS":[{"NAME":"main","Resources":{"REQUESTS":{"colo.io/batch-cpu":"1000m","colo.io/batch-memory":"2Gi"}}}]}}'
NAMES = '["n1","n2","node-a","a\\u003cb\\u0026c","n\\u00e9e","ghost"]'
NODE = '{"metadata":{"name":"n1","uid":"uid-n1","labels":{"zone":"a&b"}},"spec":{"podCIDR":"10.0.0.0/24"},"status":{"capacity":{"cpu":"16","memory":"64Gi"}}}'


def extender_seeds() -> None:
    bodies = [
        f'{{"Pod":{BATCH_POD},"Nodes":null,"NodeNames":{NAMES}}}',
        f'{{"pod":{FOLDED_POD},"nodenames":{NAMES},"unknownField":[1,{{"x":null}}]}}',
        f'{{"Pod":{ONLINE_POD},"NodeNames":{NAMES}}}',
        f'{{"Pod":{BATCH_POD},"Nodes":{{"kind":"NodeList","apiVersion":"v1","metadata":{{"resourceVersion":"42"}},"items":[{NODE}]}},"NodeNames":null}}',
        '{"NodeNames":["a"]}',
    ]
    for verb in (0, 1):
        for b in bodies:
            put("extender", bytes([verb]) + b.encode())
    victims = '"n1":{"Pods":[{"UID":"v-1"}],"NumPDBViolations":0},"node-a":{"Pods":[],"NumPDBViolations":2}'
    full = '"n2":{"pods":[' + BATCH_POD + '],"numPDBViolations":0}'
    for b in [
        f'{{"Pod":{BATCH_POD},"NodeNameToMetaVictims":{{{victims}}}}}',
        f'{{"pod":{BATCH_POD},"nodeNameToVictims":{{{full}}}}}',
        f'{{"Pod":{ONLINE_POD},"NodeNameToMetaVictims":{{}}}}',
    ]:
        put("extender", bytes([2]) + b.encode())


def quantity_seeds() -> None:
    for q in ["500m", "2", "1.5Gi", "1e3", "-0", "+1k", "0.001", "1E-3", "12Ei", "1.5", ".5",
              "5.", "100M", "9223372036854775807", "1e-40", "3Pi"]:
        put("k8s_quantity", q.encode())


def proto_seeds() -> None:
    seeds = FUZZ / "seeds"
    for f in sorted(seeds.glob("job_spec*.txtpb")):
        put("job_spec", encode("colo.agent.v1.JobSpec", "agent.proto", f))
    reports = [encode("colo.report.v1.NodeReport", "report.proto", f)
               for f in sorted(seeds.glob("report*.txtpb"))]
    delimited = [varint(len(r)) + r for r in reports]
    for d in delimited:
        put("report_ingest", d)
        put("report_ingest", d + d)  # the same report twice: a duplicate
    put("report_ingest", b"".join(delimited))


def control_seeds() -> None:
    lines = [b"pause\n", b"resume\n", b"stats\n", b"shutdown\n",
             b"set_io_limit 0 bw=8388608 iops=100\n", b"set_io_limit /srv/d.img iops=5\n",
             b"set_io_limit 0\n", b"frobnicate\n", b"  stats  \r\n"]
    for line in lines:
        put("control_protocol", bytes([len(line)]) + line)
    # Requests split across reads, then a line too long.
    both = b"pause\nsta"
    put("control_protocol", bytes([len(both)]) + both + b"\x03ts\n")


def guest(descs, extra, flags=0, size=16) -> bytes:
    """A virtio_blk input: a queue of `size` at 0x100/0x200/0x300 with one chain available."""
    mem = bytearray(0x2000)
    for i, (addr, length, fl, nxt) in enumerate(descs):
        struct.pack_into("<QIHH", mem, 0x100 + 16 * i, addr, length, fl, nxt)
    struct.pack_into("<HH", mem, 0x200, 0, 1)
    for at, data in extra:
        mem[at:at + len(data)] = data
    # Guest memory past the input reads as zeros.
    return struct.pack("<HHHHB", size, 0x100, 0x200, 0x300, flags) + bytes(mem).rstrip(b"\0")


def virtio_seeds() -> None:
    def header(kind: int, sector: int) -> bytes:
        return struct.pack("<IIQ", kind, 0, sector)

    status = (0x500, 1, 2, 0)
    h = 0x400
    put("virtio_blk", guest([(h, 16, 1, 1), (0x1000, 512, 3, 2), status],
                            [(h, header(0, 1))]))  # read, aligned buffer
    put("virtio_blk", guest([(h, 16, 1, 1), (0x1000, 4096, 1, 2), status],
                            [(h, header(1, 8)), (0x1fff, b"\1")]))  # write, all aligned
    put("virtio_blk", guest([(h, 16, 1, 1), (0x1100, 512, 1, 2), status],
                            [(h, header(1, 3))], flags=2))  # unaligned, throttled
    put("virtio_blk", guest([(h, 16, 1, 1), (0x600, 512, 0, 0)],
                            [(h, header(1, 3))], flags=1))  # no status byte, read-only
    put("virtio_blk", guest([(h, 16, 1, 1), status], [(h, header(4, 0))]))  # flush
    put("virtio_blk", guest([(h, 16, 1, 1), (0x600, 20, 3, 2), status],
                            [(h, header(8, 0))]))  # get id
    put("virtio_blk", guest([(0x600, 16 * 3, 4, 0)], []))  # indirect


def console(rx, tx, steps, extra=()) -> bytes:
    """A virtio_console input: 8-entry queues (receive at 0x100/0x200/0x300, transmit at
    0x400/0x500/0x600), the given chains available, `steps` bits (1 deliver, 0 collect)."""
    mem = bytearray(0x2000)
    for table, avail, descs in ((0x100, 0x200, rx), (0x400, 0x500, tx)):
        for i, (addr, length, fl, nxt) in enumerate(descs):
            struct.pack_into("<QIHH", mem, table + 16 * i, addr, length, fl, nxt)
        struct.pack_into("<HH", mem, avail, 0, 1 if descs else 0)
    for at, data in extra:
        mem[at:at + len(data)] = data
    head = struct.pack("<8H", 8, 0x100, 0x200, 0x300, 8, 0x400, 0x500, 0x600)
    return head + bytes([steps]) + bytes(mem).rstrip(b"\0")


def console_seeds() -> None:
    put("virtio_console", console([(0x1000, 64, 2, 0)], [(0x1800, 5, 0, 0)], 0b01,
                                  [(0x1800, b"hello")]))  # one buffer each way
    put("virtio_console", console([(0x1000, 8, 3, 1), (0x1100, 8, 2, 0)], [], 0xff))  # chained
    put("virtio_console", console([], [(0x1800, 3, 1, 1), (0x1900, 4, 0, 0)], 0x00,
                                  [(0x1800, b"abc"), (0x1900, b"defg")]))  # chained output
    put("virtio_console", console([(0x1000, 64, 0, 0)], [], 0x01))  # receive, not writable
    put("virtio_console", console([], [(0x1000, 64, 2, 0)], 0x00))  # transmit, writable
    put("virtio_console", console([(0x1000, 16 * 2, 4, 0)], [], 0x01))  # indirect


def main() -> None:
    yaml_seeds()
    extender_seeds()
    quantity_seeds()
    proto_seeds()
    control_seeds()
    virtio_seeds()
    console_seeds()
    for d in sorted((FUZZ / "corpus").iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main()
