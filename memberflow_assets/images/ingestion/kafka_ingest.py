"""Kafka ingestion: land the images of an image topic, at least once, idempotently. No Dagster.

Message: value = the image bytes; key = the producer's image id; headers `content-type`,
`source-application` (becomes the image's client), `event-time` (ISO 8601 or epoch milliseconds;
the message timestamp when absent).

Work is done in bounded batches of explicit offset ranges: `plan_ranges` gives, per partition with
unconsumed messages, [committed offset, committed offset + max_messages), and `KafkaIngestor.ingest`
consumes each range with `assign()` (no group membership: no rebalance waits, and no two consumers
in one range) until the range's end or the end of the partition, whichever comes first. Each fetched
batch is landed on a thread of its own while the next one is fetched; once every message of it is
durably landed or quarantined, and only then, its offsets are committed (in order). A crash before
the commit means the batch is delivered again: landing is idempotent (same client + same bytes = same
image id, see landing.py), so nothing is stored twice.

The end of a partition is taken from the consumer's end-of-partition event (the fetch response's high
watermark), not from a ListOffsets query: Tansu answers ListOffsets with the base offset of the last
record *batch* + 1 (10 messages produced as one batch: 1), which can be behind the committed offset.
So ListOffsets is believed only when it says a partition has more; any other partition is asked by a
fetch from its committed offset before the plan concludes it has nothing (`plan_ranges`).

A message that is not an acceptable image (or is over the size limit, or reuses a key for different
bytes) is written to quarantine/images/ with the reason (and, when configured, copied to a dead-letter
topic) and committed like any other: a bad message never blocks its partition. Errors of the platform
itself (database or storage down) stop the batch without committing, so it is retried later.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from memberflow_assets.images.ingestion.config import IngestSettings
from memberflow_assets.images.ingestion.content import ImageRejected
from memberflow_assets.images.ingestion.landing import Lander, LandingInProgress, Upload, open_lander
from memberflow_assets.zones import Zones

log = logging.getLogger(__name__)

HEADER_CONTENT_TYPE = "content-type"
HEADER_SOURCE = "source-application"
HEADER_EVENT_TIME = "event-time"
HEADER_REASON = "memberflow-quarantine-reason"  # added to messages copied to the dead-letter topic
UNKNOWN_SOURCE = "unknown"
# The client (source-application header) and the producer's key are stored as text in the registry: one
# PostgreSQL refuses (a NUL) or megabytes long would fail every landing of its batch, for ever.
MAX_IDENTITY_CHARACTERS = 256
FETCH_BATCH = 100
_NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group has not committed this partition yet


@dataclass(frozen=True)
class OffsetRange:
    partition: int
    start: int
    end: int  # exclusive upper bound; the partition's end may come first

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class IngestStats:
    landed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    bytes_landed: int = 0
    reasons: Counter = field(default_factory=Counter)
    committed: dict[int, int] = field(default_factory=dict)  # partition -> committed offset
    caught_up: bool = True  # every partition was consumed to its end (no range stopped at its bound)
    complete: bool = True  # False: stopped early for lack of progress (what was handled is committed)

    @property
    def messages(self) -> int:
        return self.landed + self.duplicates + self.quarantined


def consumer_config(bootstrap: str, group: str, extra: dict | None = None) -> dict:
    """The consumer's settings: `extra` (TLS, SASL, fetch sizes, ...) cannot change the ones correctness needs."""
    return {
        "auto.offset.reset": "earliest",
        **(extra or {}),
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,  # offsets are committed only after landing
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,  # how a range learns that its partition has nothing more
    }


def plan_ranges(consumer: Consumer, topic: str, max_messages: int, timeout: float = 10.0) -> list[OffsetRange]:
    """Per partition with unconsumed messages: [committed, committed + max_messages).

    ListOffsets is believed only when it says there is more: an answer at or behind the committed
    offset may be wrong (Tansu answers per record batch, see the module docstring), so such a partition
    is asked again by fetching from its committed offset (`partitions_with_messages`).
    """
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        problem = metadata.error if metadata is not None else "not found"
        raise KafkaException(f"topic {topic!r}: {problem}")
    partitions = [TopicPartition(topic, number) for number in sorted(metadata.partitions)]
    committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=timeout)}
    starts, unsure = {}, {}
    for tp in partitions:
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
        start = max(low, committed[tp.partition]) if committed[tp.partition] != _NO_OFFSET else low
        (starts if high > start else unsure)[tp.partition] = start
    starts |= {p: unsure[p] for p in partitions_with_messages(consumer, topic, unsure, timeout)}
    return [OffsetRange(partition, start, start + max_messages) for partition, start in sorted(starts.items())]


def partitions_with_messages(consumer: Consumer, topic: str, starts: dict[int, int], timeout: float = 10.0) -> set[int]:
    """The partitions that hold a message at or after their offset in `starts`, found by fetching.

    A fetch answers with a message, or with the end of the partition at that offset: both are the
    truth, whatever ListOffsets said. A partition that gives neither within `timeout` is left out
    with a warning (the next plan asks again).
    """
    if not starts:
        return set()
    consumer.assign([TopicPartition(topic, partition, offset) for partition, offset in starts.items()])
    found, undecided = set(), set(starts)
    deadline = time.monotonic() + timeout
    try:
        while undecided and time.monotonic() < deadline:
            for message in consumer.consume(FETCH_BATCH, timeout=0.5):
                partition = message.partition()
                if partition not in undecided:
                    continue
                if message.error() is None:
                    found.add(partition)
                    undecided.discard(partition)
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    undecided.discard(partition)
    finally:
        consumer.unassign()
    if undecided:
        log.warning("partitions %s of %s did not answer a fetch within %.0f s", sorted(undecided), topic, timeout)
    return found


def _header(headers: dict[str, bytes | None], name: str) -> str | None:
    value = headers.get(name)
    text = value.decode("utf-8", errors="replace").strip() if value else ""
    return text or None


def _shown(text: str | None) -> str | None:
    """A client, key or header value as a quarantine reason shows it: cut short, control characters escaped."""
    if text is None:
        return None
    cut = text[:MAX_IDENTITY_CHARACTERS]
    shown = cut if cut.isprintable() else cut.encode("unicode_escape").decode("ascii")
    return shown + ("…" if len(text) > MAX_IDENTITY_CHARACTERS else "")


def _event_time(header: str | None, message: Message) -> str | None:
    if header:
        try:
            if header.isdigit():
                return datetime.fromtimestamp(int(header) / 1000, UTC).isoformat()
            moment = datetime.fromisoformat(header.replace("Z", "+00:00"))
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
        except (ValueError, OverflowError, OSError):
            log.warning("unreadable %s header %r; using the message timestamp", HEADER_EVENT_TIME, header[:40])
    _, millis = message.timestamp()
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat() if millis > 0 else None


class KafkaIngestor:
    """Lands the messages of one topic through a `Lander`; see the module docstring for the guarantees."""

    def __init__(
        self,
        lander: Lander,
        consumer: Consumer,
        topic: str,
        max_upload_bytes: int,
        dlq: Producer | None = None,
        dlq_topic: str | None = None,
    ):
        self.lander = lander
        self.consumer = consumer
        self.topic = topic
        self.max_upload_bytes = max_upload_bytes
        self.dlq = dlq if dlq_topic else None
        self.dlq_topic = dlq_topic

    def ingest(
        self,
        ranges: list[OffsetRange],
        idle_timeout: float = 30.0,
    ) -> IngestStats:
        """Consume the given ranges; returns what happened. Committed offsets never go backwards."""
        stats = IngestStats()
        if not ranges:
            return stats
        ends = {r.partition: r.end for r in ranges}
        committed = {
            tp.partition: tp.offset
            for tp in self.consumer.committed([TopicPartition(self.topic, p) for p in ends], timeout=10)
        }
        # Someone may have committed further since the plan was made: never go back to it.
        starts = {r.partition: max(r.start, committed.get(r.partition, _NO_OFFSET)) for r in ranges}
        pending = {p for p in ends if starts[p] < ends[p]}
        self.consumer.assign([TopicPartition(self.topic, p, starts[p]) for p in pending])
        handled: dict[int, int] = {}  # partition -> next offset after the last handled message
        landing: Future | None = None  # the previous batch, landing while the next one is fetched
        to_commit: dict[int, int] = {}  # its offsets, committed once it has landed
        last_progress = time.monotonic()
        # One batch lands on this thread while the consumer fetches the next: the fetch waits on the
        # network and the landing on the disk, so they overlap. Commits stay in order, each only after
        # its batch (and every one before it) is durable.
        with ThreadPoolExecutor(1, thread_name_prefix="kafka-landing") as landing_thread:
            try:
                while pending or landing is not None:
                    batch = self._fetch(pending, ends, handled, stats) if pending else []
                    if landing is not None:
                        landing.result()  # a platform error stops here: nothing from it on is committed
                        self._commit(to_commit, stats)
                        landing, last_progress = None, time.monotonic()
                    if batch:
                        landing, to_commit, handled = landing_thread.submit(self._land, batch, stats), handled, {}
                    elif handled:  # ends of partitions, everything before them committed
                        self._commit(handled, stats)
                        handled, last_progress = {}, time.monotonic()
                    elif pending and time.monotonic() - last_progress > idle_timeout:
                        log.warning("no progress for %.0f s on partitions %s; stopping", idle_timeout, pending)
                        stats.complete = stats.caught_up = False
                        break
            finally:
                self.consumer.unassign()
        return stats

    def _fetch(
        self, pending: set[int], ends: dict[int, int], handled: dict[int, int], stats: IngestStats
    ) -> list[Message]:
        """The next fetched messages within the ranges; records them, and the ends of partitions, in
        `handled` and drops finished partitions from `pending`."""
        batch = []
        for message in self.consumer.consume(FETCH_BATCH, timeout=1.0):
            partition = message.partition()
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", message.error())
                elif partition in pending:
                    # Everything before this offset was delivered (and is in a batch); the partition is done.
                    handled[partition] = max(handled.get(partition, 0), min(message.offset(), ends[partition]))
                    pending.discard(partition)
                continue
            if partition not in pending:
                continue
            offset = message.offset()
            if offset >= ends[partition]:  # the range's bound: the next batch's work
                pending.discard(partition)
                stats.caught_up = False
                continue
            batch.append(message)
            handled[partition] = max(handled.get(partition, 0), offset + 1)
            if offset + 1 == ends[partition]:
                pending.discard(partition)
                stats.caught_up = False
        return batch

    def _commit(self, handled: dict[int, int], stats: IngestStats) -> None:
        """Commit the offsets of messages already landed or quarantined (and copied to the dead-letter topic)."""
        if self.dlq is not None and self.dlq.flush(30) > 0:
            raise KafkaException("dead-letter messages not delivered; not committing")
        offsets = [TopicPartition(self.topic, p, offset) for p, offset in handled.items()]
        for tp in self.consumer.commit(offsets=offsets, asynchronous=False):
            if tp.error:
                raise KafkaException(tp.error)
            stats.committed[tp.partition] = tp.offset

    def _land(self, batch: list[Message], stats: IngestStats) -> None:
        """Land (or quarantine) a fetched batch; when this returns, all of it is durable."""
        received = [_Received.of(message) for message in batch]
        rejected: list[tuple[_Received, ImageRejected]] = []
        uploads: list[tuple[_Received, Upload]] = []
        for item in received:
            if len(item.data) > self.max_upload_bytes:
                size = f"{len(item.data):,} bytes exceeds the limit of {self.max_upload_bytes:,}"
                rejected.append((item, ImageRejected(413, "too_large", size)))
            elif problem := item.identity_problem():
                rejected.append((item, ImageRejected(422, "bad_identity", problem)))
            else:
                uploads.append((item, item.upload()))
        for (item, _), result in zip(uploads, self.lander.land_many([u for _, u in uploads]), strict=True):
            if isinstance(result, LandingInProgress):
                raise result  # not landed yet: the batch is not committed, and lands again (idempotently)
            if isinstance(result, ImageRejected):
                rejected.append((item, result))
            elif result.duplicate:
                stats.duplicates += 1
            else:
                stats.landed += 1
                stats.bytes_landed += result.size_bytes
        records = []
        for item, rejection in rejected:
            records += self.lander.quarantine_files(
                item.data,
                rejection,
                source="kafka",
                client=_shown(item.client),
                # stable per message: a redelivery overwrites instead of adding a second record
                quarantine_id=f"kafka-{item.kafka['topic']}-{item.kafka['partition']}-{item.kafka['offset']}",
                details={
                    "kafka": {**item.kafka, "key": _shown(item.kafka["key"])},
                    "declared_content_type": _shown(_header(item.headers, HEADER_CONTENT_TYPE)),
                },
            )
            stats.quarantined += 1
            stats.reasons[rejection.code] += 1
            if self.dlq is not None:
                self.dlq.produce(
                    self.dlq_topic,
                    value=item.data,
                    key=item.message.key(),
                    headers=[*(item.message.headers() or []), (HEADER_REASON, rejection.code.encode())],
                )
                self.dlq.poll(0)
        if records:
            self.lander.store(records)


@dataclass(frozen=True)
class _Received:
    """A consumed message, read once."""

    message: Message
    data: bytes
    headers: dict[str, bytes | None]
    client: str
    kafka: dict

    @classmethod
    def of(cls, message: Message) -> _Received:
        headers = {name: value for name, value in (message.headers() or [])}
        key = message.key().decode("utf-8", errors="replace") if message.key() else None
        return cls(
            message=message,
            data=message.value() or b"",
            headers=headers,
            client=_header(headers, HEADER_SOURCE) or UNKNOWN_SOURCE,
            kafka={"topic": message.topic(), "partition": message.partition(), "offset": message.offset(), "key": key},
        )

    def identity_problem(self) -> str | None:
        """Why the message's client or key cannot be stored, or None."""
        for what, text in ((f"{HEADER_SOURCE} header", self.client), ("key", self.kafka["key"])):
            if text is not None and len(text) > MAX_IDENTITY_CHARACTERS:
                return f"its {what} has {len(text):,} characters (at most {MAX_IDENTITY_CHARACTERS})"
            if text is not None and not text.isprintable():
                return f"its {what} holds control or invisible characters"
        return None

    def upload(self) -> Upload:
        return Upload(
            self.data,
            source="kafka",
            client=self.client,
            event_time=_event_time(_header(self.headers, HEADER_EVENT_TIME), self.message),
            kafka=self.kafka,
            source_key=self.kafka["key"],
        )


@contextmanager
def open_consumer(bootstrap: str, group: str, extra: dict | None = None) -> Iterator[Consumer]:
    consumer = Consumer(consumer_config(bootstrap, group, extra))
    try:
        yield consumer
    finally:
        consumer.close()


@contextmanager
def open_ingestor(
    bootstrap: str, zones: Zones, dsn: str, settings: IngestSettings, topic: str, group: str, dlq_topic: str | None
) -> Iterator[KafkaIngestor]:
    """A ready KafkaIngestor (registry migrated, one database connection); closes everything after."""
    dlq_config = {**settings.kafka_client_config(bootstrap), "enable.idempotence": True}
    dlq = Producer(dlq_config) if dlq_topic else None
    try:
        with (
            open_lander(zones, dsn, settings, pool_size=1) as lander,
            open_consumer(bootstrap, group, settings.kafka_config) as consumer,
        ):
            yield KafkaIngestor(lander, consumer, topic, settings.max_upload_bytes, dlq, dlq_topic)
    finally:
        if dlq is not None:
            dlq.flush(30)
