"""The threads that read upstream streams: reused for the next stream, ended when idle."""

from __future__ import annotations

import queue
import threading
import time

from app.proxy.streaming import ReaderPool


class Upstream:
    """A streamed response: its chunks, then the end (or an error); records the reading thread."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None):
        self.chunks = chunks
        self.error = error
        self.thread_id: int | None = None

    def iter_content(self, chunk_size=None):
        self.thread_id = threading.get_ident()
        yield from self.chunks
        if self.error is not None:
            raise self.error


def read_all(pool: ReaderPool, upstream: Upstream) -> list:
    chunks: queue.SimpleQueue = queue.SimpleQueue()
    done = pool.read(upstream, chunks)
    items = []
    while True:
        item = chunks.get(timeout=5)
        items.append(item)
        if item is None or isinstance(item, Exception):
            break
    assert done.wait(timeout=5)
    return items


def is_alive(thread_id: int) -> bool:
    return any(thread.ident == thread_id for thread in threading.enumerate())


def test_chunks_arrive_in_order_then_the_end():
    assert read_all(ReaderPool(), Upstream([b"a", b"b"])) == [b"a", b"b", None]


def test_a_broken_upstream_ends_with_its_exception():
    error = ConnectionError("reset")
    assert read_all(ReaderPool(), Upstream([b"a"], error)) == [b"a", error]


def test_the_next_stream_reuses_the_idle_thread():
    pool = ReaderPool()
    first, second = Upstream([b"a"]), Upstream([b"b"])
    read_all(pool, first)
    time.sleep(0.05)  # the thread puts itself back on the idle list after signalling done
    read_all(pool, second)
    assert first.thread_id == second.thread_id


def test_streams_at_once_get_threads_of_their_own():
    pool = ReaderPool()
    release = threading.Event()

    class Slow(Upstream):
        def iter_content(self, chunk_size=None):
            self.thread_id = threading.get_ident()
            release.wait(5)
            yield b"x"

    slow, fast = Slow([]), Upstream([b"y"])
    slow_chunks: queue.SimpleQueue = queue.SimpleQueue()
    pool.read(slow, slow_chunks)
    assert read_all(pool, fast) == [b"y", None]
    release.set()
    assert slow_chunks.get(timeout=5) == b"x"
    assert slow.thread_id != fast.thread_id


def test_an_idle_thread_ends():
    pool = ReaderPool(idle_seconds=0.05)
    upstream = Upstream([b"a"])
    read_all(pool, upstream)
    deadline = time.monotonic() + 5
    while is_alive(upstream.thread_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not is_alive(upstream.thread_id)
    assert read_all(pool, Upstream([b"b"])) == [b"b", None]  # a new thread serves the next
