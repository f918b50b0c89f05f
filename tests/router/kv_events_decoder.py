#!/usr/bin/python3
"""An independent decoder of kvstack's KV events, written from vLLM's schema.

It shares no code with kvstack: it reads the wire as a vLLM consumer would
(vllm/distributed/kv_events.py, msgspec array_like tagged structs) with
Debian's python3-zmq and python3-msgpack, against a real `kvstack serve`:

  frames      [topic, seq (8-byte big-endian), payload]; seq grows by one
  EventBatch  [ts: float, events: list, data_parallel_rank: int]
  BlockStored ["BlockStored", block_hashes, parent_block_hash, token_ids,
               block_size, lora_id, medium, priority (kvstack's extra field)]
  BlockRemoved ["BlockRemoved", block_hashes, medium]
  AllBlocksCleared ["AllBlocksCleared"]
  replay      DEALER sends [b"", start_seq]; gets [b"", seq, payload]... then
              [b"", -1, b""]

Checks every field of every event, the sequence numbers, a replay from 0, and
that the snapshot (GET /v1/cache/blocks) equals the events applied up to its
next_seq. With --host-tier, blocks the device pool evicts are offloaded into
host RAM: BlockStored/BlockRemoved with medium CPU (no token ids, no parent:
the tier knows a block by key) must name blocks the device pool stored first,
and the snapshot must list the CPU tier exactly as those events built it.
With --disk-tier-size too, the same for DISK (the writer's write-through).
Exit 0: pass; 1: a check failed; 77: a requirement is missing
(CTest's SKIP_RETURN_CODE; under CI=true that is a failure instead).
"""
import argparse
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

SKIP = 77


def skip_or_fail(why):
    if os.environ.get("CI") == "true":
        print(f"FAIL (CI=true, so no skip): {why}")
        sys.exit(1)
    print(f"SKIP: {why}")
    sys.exit(SKIP)


try:
    import msgpack
    import zmq
except ImportError as e:  # pragma: no cover
    skip_or_fail(f"python3-zmq and python3-msgpack are needed (scripts/install-deps): {e}")

END_SEQ = struct.pack(">q", -1)
BLOCK = 16


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def http_json(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def start_server(binary, model, log, host_tier, disk_dir=None, disk_size=None):
    args = [binary, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0", "--block-size", str(BLOCK),
            "--kv-memory", "200KiB", "--threads", "1", "--kv-events", "tcp://127.0.0.1:*",
            "--kv-events-replay", "tcp://127.0.0.1:*", "--kv-events-topic", "kvtest"]
    if host_tier:
        args += ["--host-tier", host_tier, "--offload-min-priority", "0"]
    if disk_dir:
        args += ["--disk-tier", disk_dir, "--disk-tier-size", disk_size]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(log.name) as f:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", f.read())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    with open(log.name) as f:
        raise Failure("kvstack serve did not start:\n" + f.read())


def check_hash(h, where):
    check(isinstance(h, bytes) and len(h) == 16, f"{where}: a block hash must be 16 bytes, got {h!r}")


def check_batch(payload, seq, tiers=False):
    batch = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    check(isinstance(batch, list) and len(batch) == 3, f"batch {seq}: EventBatch must be [ts, events, dp_rank]")
    ts, events, rank = batch
    check(isinstance(ts, float) and abs(ts - time.time()) < 600, f"batch {seq}: ts {ts!r} must be unix seconds")
    check(isinstance(events, list) and events, f"batch {seq}: events must be a non-empty list")
    check(rank == 0, f"batch {seq}: data_parallel_rank {rank!r} must be 0")
    for i, e in enumerate(events):
        where = f"batch {seq} event {i}"
        check(isinstance(e, list) and e and isinstance(e[0], str), f"{where}: must be a tagged array")
        tag = e[0]
        if tag == "BlockStored":
            check(len(e) == 8, f"{where}: BlockStored has {len(e)} fields, want 8")
            _, hashes, parent, tokens, block_size, lora_id, medium, priority = e
            check(isinstance(hashes, list) and hashes, f"{where}: block_hashes must be a non-empty list")
            for h in hashes:
                check_hash(h, where)
            if parent is not None:
                check_hash(parent, where + " parent")
            check(block_size == BLOCK, f"{where}: block_size {block_size} != {BLOCK}")
            check(lora_id is None, f"{where}: lora_id {lora_id!r} must be nil")
            check(medium in (("GPU", "CPU", "DISK") if tiers else ("GPU",)), f"{where}: medium {medium!r}")
            if medium != "GPU":
                check(tokens == [] and parent is None, f"{where}: a tier's BlockStored has no tokens or parent")
            else:
                check(isinstance(tokens, list) and len(tokens) == BLOCK * len(hashes)
                      and all(isinstance(t, int) for t in tokens),
                      f"{where}: token_ids must be block_size ints per hash")
            check(isinstance(priority, int) and 0 <= priority <= 100, f"{where}: priority {priority!r} not in 0..100")
        elif tag == "BlockRemoved":
            check(len(e) == 3, f"{where}: BlockRemoved has {len(e)} fields, want 3")
            for h in e[1]:
                check_hash(h, where)
            check(e[2] in (("GPU", "CPU", "DISK") if tiers else ("GPU",)), f"{where}: medium {e[2]!r}")
        elif tag == "AllBlocksCleared":
            check(len(e) == 1, f"{where}: the device pool's AllBlocksCleared has no fields")
        else:
            raise Failure(f"{where}: unknown tag {tag!r}")
    return events


SALT = "tenant-salt-7f3c9a1e5b2d4c6f"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvstack", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--host-tier", help="e.g. 64KiB: offload evicted blocks into host RAM and check CPU events")
    ap.add_argument("--disk-tier-size", help="with --host-tier: a disk tier this large; check DISK events too")
    a = ap.parse_args()
    if not os.path.exists(a.model):
        skip_or_fail(f"{a.model} is absent (../shared/models)")

    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    disk_dir = tempfile.mkdtemp(prefix="kvstack-decoder-disk-") if a.disk_tier_size else None
    proc, port = start_server(a.kvstack, a.model, log, a.host_tier, disk_dir, a.disk_tier_size)
    base = f"http://127.0.0.1:{port}"
    ctx = zmq.Context()
    try:
        info = http_json(base + "/v1/kv-events")
        check(info["topic"] == "kvtest" and info["block_size"] == BLOCK, f"GET /v1/kv-events: {info}")
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"kvtest")
        sub.connect(info["endpoint"])
        time.sleep(0.3)  # ZeroMQ's slow joiner: the subscription must reach the PUB first

        # Prompts as token ids, so the decoder knows every block's tokens.
        rng = random.Random(7)
        prompts = []
        for i in range(8):
            prompts.append([rng.randrange(3, 500) for _ in range(4 * BLOCK + 3)])
        durable = prompts[0]
        http_json(base + "/v1/completions", {"prompt": durable, "max_tokens": 4, "temperature": 0,
                                             "retention": {"ranges": [{"start": 0, "end": 2 * BLOCK,
                                                                       "priority": 90}]}})
        for p in prompts[1:] + [prompts[1]]:
            http_json(base + "/v1/completions", {"prompt": p, "max_tokens": 4, "temperature": 0})
        # A tenant's request: its salt is mixed into its block keys and must
        # never appear in an event or the snapshot (issue 17).
        http_json(base + "/v1/completions", {"prompt": prompts[2], "max_tokens": 4, "temperature": 0,
                                             "cache_salt": SALT})

        live = {}
        deadline = time.time() + 5
        snapshot = None
        while time.time() < deadline:
            if sub.poll(200):
                frames = sub.recv_multipart()
                check(len(frames) == 3, f"a message has {len(frames)} frames, want 3")
                check(frames[0] == b"kvtest", f"topic {frames[0]!r}")
                check(len(frames[1]) == 8, "seq must be 8 bytes")
                seq = struct.unpack(">q", frames[1])[0]
                live[seq] = frames[2]
            elif snapshot is None:
                snapshot = http_json(base + "/v1/cache/blocks")
                deadline = time.time() + 1  # the snapshot's own drain may publish one more batch
        check(snapshot is not None, "no snapshot")
        check(live, "no event batches arrived")
        seqs = sorted(live)
        check(seqs == list(range(seqs[0], seqs[-1] + 1)), f"live sequence numbers have gaps: {seqs}")

        # Replay from 0: the AllBlocksCleared sent before we subscribed, then
        # byte-for-byte what came live.
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(info["replay_endpoint"])
        dealer.send_multipart([b"", struct.pack(">q", 0)])
        replayed = {}
        while True:
            check(dealer.poll(5000), "replay: no answer in 5 s")
            frames = dealer.recv_multipart()
            check(len(frames) == 3 and frames[0] == b"", f"replay: frames {len(frames)}")
            if frames[1] == END_SEQ:
                check(frames[2] == b"", "replay: the end marker carries no payload")
                break
            replayed[struct.unpack(">q", frames[1])[0]] = frames[2]
        check(sorted(replayed) == list(range(0, max(replayed) + 1)), "replay: sequence numbers must run from 0")
        for s, payload in live.items():
            check(replayed.get(s) == payload, f"replay: batch {s} differs from the live one")
        for s, payload in replayed.items():
            check(SALT.encode() not in payload, f"batch {s} carries a tenant's cache_salt")
        check(SALT not in json.dumps(snapshot), "the snapshot carries a tenant's cache_salt")
        tiers = bool(a.host_tier)
        first = check_batch(replayed[0], 0, tiers)
        check(first == [["AllBlocksCleared"]], f"batch 0 must be AllBlocksCleared, got {first}")

        # Every event of every batch, and the index they build.
        held = {}  # hash -> priority
        stored_tokens = {}
        removed = 0
        below = {"CPU": {}, "DISK": {}}  # medium -> hash -> priority
        below_stored = {"CPU": 0, "DISK": 0}
        below_removed = {"CPU": 0, "DISK": 0}
        held_priority = {}
        ever_gpu = set()
        for s in sorted(replayed):
            if s >= snapshot["next_seq"]:
                break
            for e in check_batch(replayed[s], s, tiers):
                medium = None if e[0] == "AllBlocksCleared" else e[-1 if e[0] == "BlockRemoved" else 6]
                if medium in below:
                    tier = below[medium]
                    for h in e[1]:
                        if e[0] == "BlockStored":
                            check(h in ever_gpu, f"batch {s}: {medium} stored {h.hex()} the device pool never held")
                            check(h not in tier, f"batch {s}: {medium} stored {h.hex()} twice")
                            tier[h] = e[7]
                            below_stored[medium] += 1
                        else:
                            check(h in tier, f"batch {s}: {medium} removed {h.hex()} that was never stored")
                            del tier[h]
                            below_removed[medium] += 1
                    continue
                if e[0] == "BlockStored":
                    for h in e[1]:
                        ever_gpu.add(h)
                        held_priority[h] = e[7]
                    for i, h in enumerate(e[1]):
                        held[h] = e[7]
                        stored_tokens[h] = (e[2] if i == 0 else e[1][i - 1], e[3][i * BLOCK:(i + 1) * BLOCK])
                elif e[0] == "BlockRemoved":
                    for h in e[1]:
                        check(h in held, f"batch {s}: removed {h.hex()} that was never stored")
                        del held[h]
                        removed += 1
                else:
                    held.clear()
                    for tier in below.values():
                        tier.clear()
        check(removed > 0, "no BlockRemoved: the workload should have evicted blocks")

        # Chains: each prompt's full blocks were stored with its tokens, each
        # naming the previous block as parent (the first has none).
        by_tokens = {tuple(t): (h, parent) for h, (parent, t) in stored_tokens.items()}
        for p in prompts:
            parent = None
            for b in range(4):
                found = by_tokens.get(tuple(p[b * BLOCK:(b + 1) * BLOCK]))
                if found is None or found[1] != parent:
                    break
                parent = found[0]
            else:
                continue
            raise Failure("a prompt's blocks were not stored as a chain with its token ids")
        durable_hashes = [by_tokens[tuple(durable[b * BLOCK:(b + 1) * BLOCK])][0] for b in range(2)]
        for s in sorted(replayed):
            for e in check_batch(replayed[s], s, tiers):
                if e[0] == "BlockStored" and e[1][0] in durable_hashes:
                    check(e[7] == 90, f"the durable prompt's block has priority {e[7]}, want 90")

        snap = {bytes.fromhex(b["hash"]): b["priority"] for b in snapshot["tiers"]["GPU"]}
        check(set(snap) == set(held), f"snapshot holds {len(snap)} blocks, events say {len(held)}")
        if tiers:
            check(below_stored["CPU"] > 0, "no CPU BlockStored: evicted blocks should have been offloaded to host RAM")
            check(below_removed["CPU"] > 0, "no CPU BlockRemoved: the host tier should have evicted blocks")
            if disk_dir:
                check(below_stored["DISK"] > 0, "no DISK BlockStored: offloaded blocks should be written to disk")
            for medium, tier in below.items():
                listed = {bytes.fromhex(b["hash"]): b["priority"] for b in snapshot["tiers"].get(medium, [])}
                check(listed == tier, f"snapshot's {medium} tier holds {len(listed)} blocks, events say {len(tier)}")
                print(f"{medium} tier: {below_stored[medium]} stored, {below_removed[medium]} removed, "
                      f"{len(tier)} held")
        else:
            check(set(snapshot["tiers"]) == {"GPU"}, f"tiers {list(snapshot['tiers'])} without --host-tier")
        print(f"OK: {len(replayed)} batches, {len(held)} blocks held, {removed} removed, snapshot at "
              f"{snapshot['next_seq']}")
        return 0
    except Failure as e:
        print(f"FAIL: {e}")
        with open(log.name) as f:
            print(f.read()[-4000:])
        return 1
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        ctx.destroy(linger=0)
        os.unlink(log.name)
        if disk_dir:
            shutil.rmtree(disk_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
