"""Conformance of the embedded broker (noida-db) for each Kafka behaviour the platform relies on.

noida-db is a young single-node server, not Kafka (docs/ARCHITECTURE.md, "Kafka here and in
production"):
if an upgrade breaks topics, keyed partitioning, offsets, groups, commits or restart, one of
these fails loudly instead of the pipeline going quietly wrong. All run against the real binary
through kafka-python, the client the platform uses.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from stock_assets.resources import broker as broker_module
from stock_assets.resources.broker import (
    BrokerStartError,
    EmbeddedBroker,
    bounded_client_kwargs,
    ensure_topic,
    free_port,
)

TIMEOUT_S = 10.0


def _producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",  # acks=0 lost ~30% of messages on every broker tried (docs/ARCHITECTURE.md)
        linger_ms=5,
        max_block_ms=int(TIMEOUT_S * 1000),
        **bounded_client_kwargs(TIMEOUT_S),
    )


def _consumer(bootstrap: str, **overrides) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **bounded_client_kwargs(TIMEOUT_S),
        **overrides,
    )


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, int | None]]):
    """Send (key, value, partition or None) records and return their acked RecordMetadata."""
    producer = _producer(bootstrap)
    try:
        futures = [producer.send(topic, key=k, value=v, partition=p) for k, v, p in records]
        producer.flush(timeout=TIMEOUT_S)
        return [f.get(timeout=TIMEOUT_S) for f in futures]
    finally:
        producer.close(timeout=5)


def _drain(consumer: KafkaConsumer, ends: dict[TopicPartition, int]) -> list:
    """Poll the assigned partitions until each position reaches its end; bounded."""
    records = []
    deadline = time.monotonic() + TIMEOUT_S
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        assert time.monotonic() < deadline, f"positions stuck below {ends}"
        for tp, batch in consumer.poll(timeout_ms=200).items():
            records += [r for r in batch if r.offset < ends[tp]]
    return records


def _read_range(consumer: KafkaConsumer, tp: TopicPartition, start: int, end: int) -> list:
    """Records of `tp` with start <= offset < end: seek, then poll until position >= end."""
    consumer.assign([tp])
    consumer.seek(tp, start)
    return _drain(consumer, {tp: end})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_members(pgid: int) -> list[int]:
    """Pids whose process group is `pgid` (field 5 of /proc/PID/stat)."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:  # exited meanwhile
            continue
        if not stat:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
            members.append(int(entry.name))
    return members


def test_create_topic_has_exactly_the_requested_partitions(kafka_bootstrap, fresh_topic):
    topic = fresh_topic(5)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, **bounded_client_kwargs(TIMEOUT_S))
    try:
        (described,) = admin.describe_topics([topic])
        assert described["error_code"] == 0
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2, 3, 4]
        assert all(p["leader_id"] >= 0 for p in described["partitions"])
        with pytest.raises(TopicAlreadyExistsError):  # what ensure_topic relies on in a race
            admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    finally:
        admin.close()
    assert ensure_topic(kafka_bootstrap, topic, 2) == 5  # idempotent: never recreates
    consumer = _consumer(kafka_bootstrap)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2, 3, 4}
    finally:
        consumer.close()


def test_keyed_messages_stick_to_a_partition_and_come_back_exactly_once(
    kafka_bootstrap, fresh_topic
):
    topic, n = fresh_topic(4), 2000
    sent = [(f"ticker-{i % 37}".encode(), str(i).encode(), None) for i in range(n)]
    acks = _produce(kafka_bootstrap, topic, sent)

    partitions_of_key = defaultdict(set)
    for (key, _, _), ack in zip(sent, acks, strict=True):
        partitions_of_key[key].add(ack.partition)
    assert all(len(parts) == 1 for parts in partitions_of_key.values())
    assert len(set().union(*partitions_of_key.values())) == 4  # keys really spread out

    tps = [TopicPartition(topic, p) for p in range(4)]
    per_partition = Counter(ack.partition for ack in acks)
    consumer = _consumer(kafka_bootstrap)
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning()
        got = _drain(consumer, {tp: per_partition[tp.partition] for tp in tps})
        assert consumer.poll(timeout_ms=300) == {}  # nothing past the acked end
    finally:
        consumer.close()

    assert sorted(int(r.value) for r in got) == list(range(n))  # every message, exactly once
    for r in got:
        i = int(r.value)
        assert (r.key, r.partition, r.offset) == (sent[i][0], acks[i].partition, acks[i].offset)
    by_partition = defaultdict(list)
    for r in got:
        by_partition[r.partition].append(r)
    for records in by_partition.values():
        assert [r.offset for r in records] == list(range(len(records)))  # dense, in order
        values = [int(r.value) for r in records]
        assert values == sorted(values)  # produce order kept within a partition


def test_end_and_beginning_offsets_count_the_messages_per_partition(kafka_bootstrap, fresh_topic):
    topic = fresh_topic(4)
    per_round = {0: 0, 1: 1, 2: 7, 3: 150}  # an empty partition, a single record, batches
    for _round in range(3):  # several multi-record batches: "last batch base + 1" would show
        _produce(kafka_bootstrap, topic, [(None, b"x" * 50, p) for p, c in per_round.items()
                                          for _ in range(c)])  # fmt: skip
    expected = {p: 3 * c for p, c in per_round.items()}
    tps = [TopicPartition(topic, p) for p in per_round]
    consumer = _consumer(kafka_bootstrap)
    try:
        assert consumer.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert consumer.end_offsets(tps) == {tp: expected[tp.partition] for tp in tps}
        _produce(kafka_bootstrap, topic, [(None, b"late", 0)] * 5)
        assert consumer.end_offsets([tps[0]]) == {tps[0]: 5}
    finally:
        consumer.close()


def test_seek_reads_from_that_offset_and_bounded_ranges_are_exact(kafka_bootstrap, fresh_topic):
    topic = fresh_topic(1)
    _produce(kafka_bootstrap, topic, [(None, str(i).encode(), 0) for i in range(200)])
    tp = TopicPartition(topic, 0)
    consumer = _consumer(kafka_bootstrap)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 137)
        deadline, first = time.monotonic() + TIMEOUT_S, []
        while not first and time.monotonic() < deadline:
            first = consumer.poll(timeout_ms=200).get(tp, [])
        assert (first[0].offset, first[0].value) == (137, b"137")

        window = _read_range(consumer, tp, 20, 45)
        assert [r.offset for r in window] == list(range(20, 45))
        assert [r.value for r in window] == [str(i).encode() for i in range(20, 45)]
        assert consumer.position(tp) >= 45
        assert _read_range(consumer, tp, 200, 200) == []  # empty range at the end
        consumer.seek_to_end(tp)
        assert consumer.position(tp) == 200
    finally:
        consumer.close()


def test_two_group_members_split_partitions_and_commit_their_offsets(kafka_bootstrap, fresh_topic):
    # Each member polls in its own thread, as separate processes would: one thread alternating
    # poll() between two members never completed the rebalance with kafka-python 3.0.12.
    topic, group = fresh_topic(4), f"split-{time.time_ns()}"
    assignments: dict[str, set[int]] = {}
    committed_by: dict[str, set[int]] = {}
    commit_now, stop, errors = threading.Event(), threading.Event(), []

    def member(name: str) -> None:
        consumer = _consumer(kafka_bootstrap, group_id=group, heartbeat_interval_ms=300)
        try:
            consumer.subscribe([topic])
            while not stop.is_set():
                consumer.poll(timeout_ms=100)
                assignments[name] = {tp.partition for tp in consumer.assignment()}
                if commit_now.is_set() and name not in committed_by:
                    offsets = {tp: OffsetAndMetadata(10 + tp.partition, "", -1)
                               for tp in consumer.assignment()}  # fmt: skip
                    consumer.commit(offsets)
                    committed_by[name] = {tp.partition for tp in offsets}
        except Exception as exc:  # surfaced by the assertions below
            errors.append(exc)
        finally:
            consumer.close(autocommit=False)

    threads = [threading.Thread(target=member, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            a, b = assignments.get("a", set()), assignments.get("b", set())
            if a and b and not a & b and a | b == {0, 1, 2, 3}:
                break
            time.sleep(0.05)
        commit_now.set()
        while len(committed_by) < 2 and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=TIMEOUT_S)
    assert not errors, errors
    a, b = assignments["a"], assignments["b"]
    assert a and b and not a & b and a | b == {0, 1, 2, 3}, assignments
    assert committed_by["a"] | committed_by["b"] == {0, 1, 2, 3}

    reader = _consumer(kafka_bootstrap, group_id=group)
    try:
        for p in range(4):
            assert reader.committed(TopicPartition(topic, p)) == 10 + p
    finally:
        reader.close(autocommit=False)


def test_explicit_commits_read_back_and_a_new_member_resumes_there(kafka_bootstrap, fresh_topic):
    # The ingest pattern: assign + seek, then commit explicit offsets under a group id.
    topic, group = fresh_topic(3), f"resume-{time.time_ns()}"
    _produce(kafka_bootstrap, topic, [(None, b"v", p) for p in range(3) for _ in range(30)])
    wanted = {TopicPartition(topic, p): 5 + 7 * p for p in range(3)}
    committer = _consumer(kafka_bootstrap, group_id=group)
    try:
        committer.assign(list(wanted))
        committer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in wanted.items()})
        assert {tp: committer.committed(tp) for tp in wanted} == wanted
    finally:
        committer.close(autocommit=False)

    member = _consumer(kafka_bootstrap, group_id=group)
    try:
        member.subscribe([topic])
        first: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + TIMEOUT_S
        while len(first) < 3 and time.monotonic() < deadline:
            for tp, batch in member.poll(timeout_ms=200).items():
                first.setdefault(tp, batch[0].offset)
        assert first == wanted  # not 0 (auto_offset_reset): the committed offsets
    finally:
        member.close(autocommit=False)


def test_restart_keeps_messages_end_offsets_and_commits(tmp_path):
    data_dir, port, topic = tmp_path / "broker", free_port(), "restart"
    tps = [TopicPartition(topic, p) for p in range(3)]
    sent = [(f"k{i % 11}".encode(), str(i).encode(), None) for i in range(300)]
    with EmbeddedBroker(data_dir, port=port) as broker:
        ensure_topic(broker.bootstrap, topic, 3)
        acks = _produce(broker.bootstrap, topic, sent)
        consumer = _consumer(broker.bootstrap, group_id="g")
        consumer.assign(tps)
        consumer.commit({tp: OffsetAndMetadata(2, "", -1) for tp in tps})
        ends_before = consumer.end_offsets(tps)
        consumer.close(autocommit=False)
        first_pid = broker.pid
    # Stopped right after the last write: the SIGTERM path must flush it to disk.
    assert not _alive(first_pid)
    assert sum(ends_before.values()) == 300

    with EmbeddedBroker(data_dir, port=port) as broker:
        consumer = _consumer(broker.bootstrap, group_id="g")
        try:
            assert consumer.end_offsets(tps) == ends_before
            assert {tp: consumer.committed(tp) for tp in tps} == {tp: 2 for tp in tps}
            consumer.assign(tps)
            consumer.seek_to_beginning()
            got = _drain(consumer, ends_before)
        finally:
            consumer.close(autocommit=False)
        assert sorted((r.partition, r.offset, r.value) for r in got) == sorted(
            (a.partition, a.offset, str(i).encode()) for i, a in enumerate(acks)
        )
        (late,) = _produce(broker.bootstrap, topic, [(None, b"after", 0)])
        assert late.offset == ends_before[tps[0]]  # offsets continue, not reset


def test_stop_leaves_no_process_even_when_sigterm_is_ignored(tmp_path):
    broker = EmbeddedBroker(tmp_path / "a").start()
    pid = broker.pid
    assert _alive(pid) and broker.is_running()
    broker.stop()
    assert not _alive(pid) and _group_members(pid) == []
    broker.stop()  # idempotent

    stubborn = EmbeddedBroker(tmp_path / "b").start()
    pid = stubborn.pid
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM: forces SIGKILL
    started = time.monotonic()
    stubborn.stop(grace_s=0.5)
    assert 0.5 <= time.monotonic() - started < 3
    assert not _alive(pid) and _group_members(pid) == []


def test_interpreter_exit_stops_a_forgotten_broker(tmp_path):
    script = (
        "import sys; from pathlib import Path\n"
        "from stock_assets.resources.broker import EmbeddedBroker\n"
        "print(EmbeddedBroker(Path(sys.argv[1])).start().pid)\n"  # never stopped explicitly
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "b")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    pid = int(out.stdout.split()[-1])
    try:
        assert not _alive(pid), "atexit hook did not stop the broker"
    finally:
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_a_parent_killed_outright_takes_its_broker_with_it(tmp_path):
    script = (
        "import os, signal, sys; from pathlib import Path\n"
        "from stock_assets.resources.broker import EmbeddedBroker\n"
        "print(EmbeddedBroker(Path(sys.argv[1])).start().pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"  # no atexit, no finally: as a CI timeout would
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "b")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == -signal.SIGKILL
    pid = int(out.stdout.split()[-1])
    try:
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the broker outlived its killed parent"
    finally:
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_start_on_a_busy_port_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        started = time.monotonic()
        with pytest.raises(BrokerStartError, match=f"127.0.0.1:{port} is already in use"):
            EmbeddedBroker(tmp_path / "a", port=port).start()
        assert time.monotonic() - started < 2

        # Lose the race after the pre-check: noida-db itself must fail, not hang or linger.
        monkeypatch.setattr(broker_module, "_port_free", lambda host, port: True)
        broker = EmbeddedBroker(tmp_path / "b", port=port)
        started = time.monotonic()
        with pytest.raises(BrokerStartError) as failure:
            broker.start()
        assert time.monotonic() - started < 5
    message = str(failure.value)
    assert "exited with 1" in message and f"port {port} is already in use" in message
    assert "GLIBC" not in message  # the harmless loader warning is filtered out
    assert not broker.is_running()


def test_bounded_client_kwargs_fail_fast_when_nothing_listens():
    bootstrap = f"127.0.0.1:{free_port()}"
    kwargs = bounded_client_kwargs(1.0)
    assert "api_version" not in kwargs  # with it, clients skip the probe and hang later
    makers = {
        "admin": lambda: KafkaAdminClient(bootstrap_servers=bootstrap, **kwargs),
        "consumer": lambda: KafkaConsumer(bootstrap_servers=bootstrap, **kwargs),
        "producer": lambda: KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=1000, **kwargs),
    }
    for name, make in makers.items():
        started = time.monotonic()
        with pytest.raises(KafkaTimeoutError):
            make()
        assert time.monotonic() - started < 3, name


def test_bounded_clients_fail_fast_after_the_broker_dies(tmp_path):
    broker = EmbeddedBroker(tmp_path / "b").start()
    try:
        ensure_topic(broker.bootstrap, "t", 2)
        tp = TopicPartition("t", 0)
        kwargs = bounded_client_kwargs(1.0)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, **kwargs)
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, **kwargs)
        assert consumer.end_offsets([tp]) == {tp: 0}
        # Tiny timeouts still make a valid consumer (request_timeout must exceed 500 ms).
        KafkaConsumer(bootstrap_servers=broker.bootstrap, **bounded_client_kwargs(0.1)).close()
    finally:
        broker.stop()
    try:
        for name, call in {
            "admin.list_topics": admin.list_topics,
            "consumer.end_offsets": lambda: consumer.end_offsets([tp]),
        }.items():
            started = time.monotonic()
            with pytest.raises(KafkaError):
                call()
            assert time.monotonic() - started < 3, name
    finally:
        admin.close()
        consumer.close()
