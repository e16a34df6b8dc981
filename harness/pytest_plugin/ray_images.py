"""The driver's side of --t2i-ray: planned items in batches, spread over Ray actors, handed out in pytest's order.

Batches are formed as without Ray (the same settings, the same fixture context, up to the batch size) and sent
to the actors as soon as the run starts, a few per actor at a time; each item still runs, and reports, in
pytest's order, waiting for its own batch only. An actor that dies (a lost node, the OOM killer) has its
batches tried again on the others, each batch at most MAX_ATTEMPTS times in all; then only that batch's items
fail, saying so. Without a cache on shared storage the driver keeps the image cache: cached entries travel
with their batch, new images travel back and are stored here, verified as any read is.
"""

from __future__ import annotations

import functools
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from harness.common.errors import describe_error
from harness.pytest_plugin.ray_actor import ActorOptions, Batch, BatchActor, BatchItem, BatchResult, ItemResult
from harness.pytest_plugin.scored_images import (
    CacheWriteWarning,
    CaseKey,
    ItemKey,
    JudgeUse,
    PlannedItem,
    ScoredImage,
    ScoredImages,
    image_path,
)

if TYPE_CHECKING:
    from harness.cases.case_file import Case
    from harness.generation.pipeline_handle import PipelineHandle
    from harness.judging.judge import Judge
    from harness.pytest_plugin.ray_cluster import RayCluster

# A batch whose actor dies is tried this many times in all (so retried twice), each time on a live actor.
MAX_ATTEMPTS = 3
# Batches sent to one actor before it answers: one running, one waiting, so that it never idles.
IN_FLIGHT_PER_ACTOR = 2
# Finished batches whose items have not run yet, per actor, before no more are sent (their PNGs are held here).
HELD_PER_ACTOR = 4
# Replacement actors started for dead ones, per actor of the pool, before the run stops replacing them.
REPLACEMENTS_PER_ACTOR = 4
_WAIT_S = 0.5  # ray.wait in slices, so that Ctrl-C lands between them

_F = TypeVar("_F", bound=Callable[..., Any])


def _interrupt_from_python(function: _F) -> _F:
    """A Ctrl-C that lands inside one of Ray's compiled calls carries traceback entries without a line number, and
    pytest's own report of the interrupt then crashes (exit status 3, INTERNAL_ERROR, instead of 2, INTERRUPTED:
    seen in CI). Raised again here, the KeyboardInterrupt's traceback holds Python frames only."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None

    return wrapper  # type: ignore[return-value]


def actor_death_errors() -> tuple[type[BaseException], ...]:
    """Ray's exceptions for a batch lost with its actor, worker or node (as opposed to one our code raised)."""
    import ray.exceptions as errors

    names = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OutOfMemoryError")
    return tuple(getattr(errors, name) for name in names if hasattr(errors, name))


@dataclass
class _Actor:
    number: int
    handle: Any
    # Its batches not yet collected, (batch, ObjectRef) in the order it runs them: one at a time, in that order.
    sent: list[tuple[int, Any]] = field(default_factory=list)
    running: int | None = None  # once it died: the batch it was running (the others only waited behind it)

    @property
    def in_flight(self) -> int:
        return len(self.sent)

    def collected(self, index: int) -> None:
        self.sent = [(i, ref) for i, ref in self.sent if i != index]


@dataclass
class RayScoredImages(ScoredImages):
    """ScoredImages whose batches run on Ray actors; ``cache`` is the driver's own, when not shared."""

    options: ActorOptions | None = None
    cluster: RayCluster | None = None
    deaths: list[str] = field(default_factory=list)  # one line per actor that died, for the run's summary
    retried: int = 0
    _batches: list[Batch] = field(default_factory=list)
    _batch_of: dict[ItemKey, int] = field(default_factory=dict)
    _queue: deque[int] = field(default_factory=deque)
    _in_flight: dict[Any, tuple[int, _Actor]] = field(default_factory=dict)  # ObjectRef -> (batch, actor)
    _actors: list[_Actor] = field(default_factory=list)
    _started: int = 0  # actors started, replacements included
    _finished: set[int] = field(default_factory=set)
    _results: dict[ItemKey, ItemResult] = field(default_factory=dict)
    _attempts: dict[int, int] = field(default_factory=dict)
    _fingerprint: dict[str, str] | None = None
    _remote: Any = None
    _actor_cache_problem: str | None = None
    _actor_cache_warned: bool = False
    environment: dict[str, str] = field(default_factory=dict)  # the actors' models, device and dtype

    # -- starting -----------------------------------------------------------------------------------------

    def start(self, cluster: RayCluster, options: ActorOptions, judges: dict[str, Judge[Any, Any]]) -> int:
        """Form the batches, start the actors and send the first batches; returns the number of actors."""
        import ray

        self.cluster, self.options = cluster, options
        size = self.batch_size or 4
        self._form_batches(size, judges)
        count = min(cluster.slots, len(self._batches))
        if count == 0:
            return 0
        self._remote = ray.remote(BatchActor)
        for _ in range(count):
            self._start_actor()
        first = self._actors[0].handle
        if self.batch_size is None and cluster.gpus:
            # `auto` on a GPU: the first actor measures its free memory (the others' GPUs are alike).
            size = self._ask(first.auto_batch_size.remote(), default=4)
            if size != 4:
                self._form_batches(size, judges)
        if self.cache is not None and not self.refresh:
            # The driver looks its cache up by the key the actors compute: their model's files, on their node.
            self._fingerprint = self._ask(first.fingerprint.remote(), default=None)
        self._queue = deque(range(len(self._batches)))
        self._fill(None)
        return count

    def _form_batches(self, size: int, judges: dict[str, Judge[Any, Any]]) -> None:
        """As ScoredImages._group forms them: the next planned items of equal settings and context, in order."""
        self._batches, self._batch_of = [], {}
        open_batches: dict[tuple[Any, ...], Batch] = {}
        for item in self._plan:
            if item.case.skip is not None:
                continue  # never runs
            group = (item.request.batch_key, item.context)
            batch = open_batches.get(group)
            if batch is None or len(batch.items) >= size:
                batch = open_batches[group] = Batch(len(self._batches), [], {})
                self._batches.append(batch)
            self._add(batch, item, judges)

    def _add(self, batch: Batch, item: PlannedItem, judges: dict[str, Judge[Any, Any]]) -> None:
        batch.items.append(BatchItem(item.key, item.case, item.seed))
        batch.judges.update({section: judges[section] for section in item.case.checks if section in judges})
        self._batch_of[(item.key, item.seed)] = batch.index

    def _start_actor(self) -> None:
        assert self.cluster is not None and self.options is not None
        remote = self._remote.options(**self.cluster.actor_resources)
        self._started += 1
        self._actors.append(_Actor(self._started, remote.remote(self.options)))

    @_interrupt_from_python
    def _ask(self, ref: Any, default: Any) -> Any:
        import ray

        try:
            return ray.get(ref)
        except actor_death_errors():
            return default  # the actor's death is seen, and handled, when its first batch comes back

    # -- handing out ------------------------------------------------------------------------------------

    @_interrupt_from_python
    def scored(
        self, key: CaseKey, case: Case, seed: int, handle: PipelineHandle | None, judges: dict[str, JudgeUse]
    ) -> ScoredImage:
        item_key = (key, seed)
        if item_key not in self._batch_of:  # not planned (or a skipped case run anyway): a batch of its own
            batch = Batch(len(self._batches), [], {})
            self._batches.append(batch)
            self._add(batch, PlannedItem(key, case, seed), {s: use.judge for s, use in judges.items()})
            self._queue.appendleft(batch.index)
        self._wait_for(self._batch_of[item_key])
        result = self._results.pop(item_key)
        self._done.add(item_key)
        if result.missing is not None:
            raise result.missing.error()
        assert result.scored is not None
        scored = result.scored
        if result.png is not None:
            path = image_path(self.report_dir, key[0], case.id, seed)
            assert self.output is not None
            if self.output.write(path, result.png):
                scored.image_path = path
        if scored.notes and key not in self._warned_cases:
            from harness.generation.prompt_length import warn_truncated

            self._warned_cases.add(key)
            warn_truncated(case, scored.notes)
        self._warn_if_cache_unwritable()
        if self._actor_cache_problem is not None and not self._actor_cache_warned:
            self._actor_cache_warned = True
            warnings.warn(CacheWriteWarning(self._actor_cache_problem), stacklevel=2)
        return scored

    def _wait_for(self, index: int) -> None:
        import ray

        while index not in self._finished:
            self._fill(index)
            if not self._in_flight:
                break  # every batch failed (no actor left): its items have their results
            ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=_WAIT_S)
            for ref in ready:
                self._collect(ref)
        # Finished batches of later items, collected while this one waited or after it: keep the actors busy.
        if self._in_flight:
            ready, _ = ray.wait(list(self._in_flight), num_returns=len(self._in_flight), timeout=0)
            for ref in ready:
                self._collect(ref)
        self._fill(None)

    def _fill(self, needed: int | None) -> None:
        """Send queued batches while the actors have room and not too many finished ones wait for their items."""
        alive = len(self._actors)
        if alive == 0:
            while self._queue:
                self._fail(self._queue.popleft(), self._no_actor_left())
            return
        if needed is not None and needed in self._queue and needed not in self._finished:
            self._queue.remove(needed)
            self._send(needed)  # whatever the limits: the next item waits for it
        held = len({self._batch_of[key] for key in self._results})
        while (
            self._queue
            and len(self._in_flight) < IN_FLIGHT_PER_ACTOR * alive
            and held + len(self._in_flight) < HELD_PER_ACTOR * alive
        ):
            self._send(self._queue.popleft())

    def _send(self, index: int) -> None:
        actor = min(self._actors, key=lambda a: (a.in_flight, a.number))
        batch = self._batches[index]
        entries = self._entries(batch) if self.cache is not None else {}
        ref = actor.handle.run.remote(Batch(batch.index, batch.items, batch.judges, entries))
        actor.sent.append((index, ref))
        self._in_flight[ref] = (index, actor)

    def _entries(self, batch: Batch) -> dict[str, bytes]:
        """The driver's cached entries for a batch's items (the actors keep no cache of their own)."""
        from harness.generation.image_cache import cache_key
        from harness.pytest_plugin.scored_images import request_for

        if self._fingerprint is None or self.refresh or self.cache is None:
            return {}
        entries = {}
        for item in batch.items:
            key = cache_key(self._fingerprint, request_for(item.case, item.seed))
            data = self.cache.entry_bytes(key)
            if data is not None:
                entries[key] = data
        return entries

    # -- answers ----------------------------------------------------------------------------------------

    def _collect(self, ref: Any) -> None:
        import ray

        index, actor = self._in_flight.pop(ref)
        try:
            result: BatchResult = ray.get(ref)
        except actor_death_errors() as exc:
            self._actor_died(actor, exc)
            actor.collected(index)
            if index != actor.running:
                self._queue.appendleft(index)  # it only waited behind the batch that died: no try is counted
                return
            self._attempts[index] = self._attempts.get(index, 1) + 1
            if self._attempts[index] <= MAX_ATTEMPTS:
                self.retried += 1
                self._queue.appendleft(index)  # before later batches: its items run next
            else:
                self._fail(index, self._gave_up(exc))
            return
        except Exception as exc:  # raised by the batch's own code on the actor: the same again on any other
            actor.collected(index)
            self._fail(index, f"the Ray actor running this batch raised {describe_error(_cause(exc))}")
            return
        actor.collected(index)
        self._accept(result)

    def _accept(self, result: BatchResult) -> None:
        self.environment.update(result.environment)
        if result.cache_problem is not None and self._actor_cache_problem is None:
            self._actor_cache_problem = result.cache_problem
        for item in result.items:
            scored = item.scored
            if (
                self.cache is not None
                and scored is not None
                and not scored.cached
                and scored.cache_key is not None
                and item.png is not None
            ):
                self.cache.put_entry(scored.cache_key, item.png)  # a complete entry, verified before it is stored
            self._results[(item.key, item.seed)] = item
        self._finished.add(result.index)

    def _fail(self, index: int, message: str) -> None:
        for item in self._batches[index].items:
            self._results[(item.key, item.seed)] = ItemResult(item.key, item.seed, ScoredImage(None, message, {}, {}))
        self._finished.add(index)

    def _actor_died(self, actor: _Actor, exc: BaseException) -> None:
        if actor not in self._actors:
            return  # its other batches come back failed too: one death
        import ray

        # An actor runs its calls one at a time, in the order they were sent: the first one that did not answer
        # was running when it died (one that answered just before may not have been collected yet).
        actor.running = None
        for index, ref in actor.sent:
            if ray.wait([ref], timeout=0)[0]:
                try:
                    ray.get(ref)
                    continue
                except Exception:
                    pass
            actor.running = index
            break
        self._actors.remove(actor)
        self.deaths.append(_first_line(exc))
        try:
            ray.kill(actor.handle, no_restart=True)
        except Exception:
            pass  # gone already
        assert self.cluster is not None
        pool = min(self.cluster.slots, len(self._batches))
        if self._started < pool * (1 + REPLACEMENTS_PER_ACTOR):
            self._start_actor()  # a node may come back, or the OOM killer's victim was one of many

    def _gave_up(self, exc: BaseException) -> str:
        return (
            f"the Ray actor running this batch died {MAX_ATTEMPTS} times (the batch was tried on {MAX_ATTEMPTS} "
            f"actors, the most --t2i-ray tries), last: {_first_line(exc)}. Look for the cause in the cluster's "
            "logs (`ray logs`): a lost node, or a process killed for memory (lower --t2i-batch-size)"
        )

    def _no_actor_left(self) -> str:
        return (
            f"no Ray actor left to run this batch: {len(self.deaths)} died (last: "
            f"{self.deaths[-1] if self.deaths else 'unknown'}), and no more are started"
        )

    # -- the end ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the actors (and the connection, when this run made it): after the last item, or on Ctrl-C."""
        if self._actors or self._in_flight:
            import ray

            for actor in self._actors:
                try:
                    ray.kill(actor.handle, no_restart=True)
                except Exception:
                    pass
            self._actors.clear()
            self._in_flight.clear()
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    @property
    def actor_count(self) -> int:
        return len(self._actors)


def _cause(exc: BaseException) -> BaseException:
    # A RayTaskError carries the actor's own exception as its cause.
    return getattr(exc, "cause", None) or exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
