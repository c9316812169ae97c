"""Gather a patient's resources: prefetched data as sent, the rest by parallel FHIR queries.

`gather_patient_data` classifies every prefetch key with the decision table in
`fhir_mappings.prefetch`, queries the keys that need it in parallel under one overall deadline,
and returns plain dicts. At the deadline (or at the first failure) every query still running is
stopped, so no query thread outlives its hook. It raises `DataUnavailable` (the web layer
answers 412) when required data cannot be obtained, and `ValueError` (400) for a malformed
prefetch value or context id.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from fhir_mappings.client import (
    CallGuard,
    FhirBadResponse,
    FhirCancelled,
    FhirClient,
    FhirError,
    FhirNotFound,
    FhirReplyTooDeep,
    FhirReplyTooLarge,
    FhirTimeout,
    FhirUnauthorized,
    FhirUnavailable,
    ReplyLimits,
    entry_resources,
    thread_session,
)
from fhir_mappings.config import FhirSettings
from fhir_mappings.limits import LimitSettings
from fhir_mappings.prefetch import (
    MalformedPrefetch,
    PrefetchState,
    classify,
    fill_template,
    is_search,
    log_operation_outcome,
    template_resource_type,
)

logger = logging.getLogger(__name__)

Resource = dict[str, Any]
Job = Callable[[FhirClient], list[Resource]]
INCOMPLETE = ":incomplete"  # appended to a source when a next page was left unread
STOP_GRACE_SECONDS = 0.1  # how long stopped queries get to finish before their pool is retired

_SOURCES = {
    PrefetchState.ABSENT: "query",
    PrefetchState.OPERATION_OUTCOME: "query:after-operation-outcome",
    PrefetchState.NULL: "prefetch:null",
    PrefetchState.EMPTY_BUNDLE: "prefetch:empty",
    PrefetchState.PAGED: "prefetch+query:next-pages",
    PrefetchState.BUNDLE: "prefetch",
    PrefetchState.RESOURCE: "prefetch",
}

_REASONS: tuple[tuple[type[FhirError], str], ...] = (
    (FhirUnauthorized, "the FHIR server refused the access token"),
    (FhirTimeout, "the FHIR server did not answer in time"),
    (FhirUnavailable, "the FHIR server is unavailable"),
    (FhirNotFound, "the FHIR server does not support the search"),
    (FhirReplyTooLarge, "the FHIR server's reply was larger than this service accepts"),
    (FhirReplyTooDeep, "the FHIR server's reply was nested too deeply"),
    (FhirBadResponse, "the FHIR server answered with unusable data"),
)


@dataclass(frozen=True)
class FhirAccess:
    """Where and how we may query the EHR's FHIR server (both fhirServer and fhirAuthorization)."""

    base_url: str
    access_token: str | None = field(repr=False)


@dataclass(frozen=True)
class PatientData:
    """The patient's resources, and where each prefetch key's data came from."""

    patient: Resource | None
    # identical copies merged; copies sharing an id but differing in content are all kept, so
    # that the mapping can exclude them as conflicting
    observations: tuple[Resource, ...]
    # prefetch key -> "prefetch", "prefetch:null", "prefetch:empty", "prefetch+query:next-pages",
    # "query", "query:after-operation-outcome", "query:not-found"; "…:incomplete" when a next
    # page was left unread (max_pages reached, a next link outside the FHIR base URL, or a next
    # page larger than the reply cap)
    sources: Mapping[str, str]
    # time.monotonic() by which the hook must have mapped this data, when the FHIR server was
    # queried (the query deadline also covers parsing and mapping); None for prefetch only
    deadline: float | None = None
    fhir_calls: int = 0  # FHIR calls made for this hook
    fhir_seconds: float = 0.0  # their total duration (they run in parallel)
    # every other searched resource by type ("Encounter", "Location", "ServiceRequest", ...),
    # included resources (Encounter:location, Location:partof) among them; each once
    others: Mapping[str, tuple[Resource, ...]] = field(default_factory=dict)

    def of_type(self, resource_type: str) -> tuple[Resource, ...]:
        """The gathered resources of one type other than Patient and Observation."""
        return tuple(self.others.get(resource_type, ()))


@dataclass(frozen=True)
class Fetched:
    """What one key's FHIR calls returned, and whether every next page was read."""

    resources: list[Resource]
    complete: bool
    calls: int = 0
    seconds: float = 0.0


class DataUnavailable(Exception):
    """Required data could not be obtained; `reason` and `keys` are safe to show the EHR."""

    def __init__(self, keys: tuple[str, ...], reason: str) -> None:
        self.keys = keys
        self.reason = reason
        super().__init__(f"{reason} (data: {', '.join(keys)})")


def gather_patient_data(
    prefetch: Mapping[str, Any] | None,
    context: Mapping[str, Any],
    templates: Mapping[str, str],
    access: FhirAccess | None,
    fhir: FhirSettings,
    *,
    limits: LimitSettings | None = None,
    client_factory: Callable[..., FhirClient] = FhirClient,
    hooks_in_flight: int = 1,
    waiting: Callable[[], AbstractContextManager[object]] = nullcontext,
    query_params: Mapping[str, str] | None = None,
) -> PatientData:
    """The patient and panel Observations from prefetch, querying what prefetch lacks.

    `hooks_in_flight` is how many hooks this process may be answering at once: the query threads
    are sized so that each can run `fhir.max_workers` queries without waiting for another's.
    The calling thread waits for the queries inside `waiting()` (the web layer gives its turn
    away there). `query_params` adds search parameters (`date=ge…`) to a key's query when this
    service makes it; prefetched data and the pages after a prefetched page are used as sent.
    """
    states = {key: classify(prefetch, key) for key in templates}
    values = {key: (prefetch or {}).get(key) for key in templates}
    prefetched = {
        key: _prefetched_resources(key, values[key], templates[key], state, context)
        for key, state in states.items()
    }
    extra = query_params or {}
    jobs = {
        key: _job(templates[key], state, values[key], context, extra.get(key))
        for key, state in states.items()
        if state.needs_query or state is PrefetchState.PAGED
    }
    deadline = time.monotonic() + fhir.deadline_seconds if jobs else None
    fetched = (
        _run_jobs(
            jobs,
            access,
            fhir,
            limits or LimitSettings(),
            deadline,
            client_factory,
            hooks_in_flight,
            waiting,
        )
        if deadline is not None
        else {}
    )
    by_key = {key: [*prefetched[key], *_resources(fetched.get(key))] for key in templates}
    sources = _sources(states, templates, by_key)
    for key in (key for key, result in fetched.items() if not result.complete):
        sources[key] += INCOMPLETE
    data = _patient_data(templates, by_key, sources, deadline)
    return replace(
        data,
        fhir_calls=sum(result.calls for result in fetched.values()),
        fhir_seconds=sum(result.seconds for result in fetched.values()),
    )


def add_search(
    data: PatientData,
    key: str,
    template: str,
    query_params: str,
    context: Mapping[str, Any],
    access: FhirAccess | None,
    fhir: FhirSettings,
    *,
    limits: LimitSettings | None = None,
    client_factory: Callable[..., FhirClient] = FhirClient,
    hooks_in_flight: int = 1,
    waiting: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> PatientData:
    """`data` with the Observations of one more search for `key` (its template with
    `query_params`), made within the deadline of the data's first queries."""
    if template_resource_type(template) != "Observation" or not is_search(template):
        raise ValueError(f"{key!r}: only an Observation search can be added")
    deadline = data.deadline or time.monotonic() + fhir.deadline_seconds
    jobs = {key: _job(template, PrefetchState.ABSENT, None, context, query_params)}
    fetched = _run_jobs(
        jobs,
        access,
        fhir,
        limits or LimitSettings(),
        deadline,
        client_factory,
        hooks_in_flight,
        waiting,
    )[key]
    merged = _patient_data(
        {key: template}, {key: [*data.observations, *fetched.resources]}, {}, None
    )
    earlier = data.sources.get(key, "query").removesuffix(INCOMPLETE)
    incomplete = data.sources.get(key, "").endswith(INCOMPLETE) or not fetched.complete
    sources = {**data.sources, key: f"{earlier}+query:older" + (INCOMPLETE if incomplete else "")}
    return replace(
        data,
        observations=merged.observations,
        sources=sources,
        deadline=deadline,
        fhir_calls=data.fhir_calls + fetched.calls,
        fhir_seconds=data.fhir_seconds + fetched.seconds,
    )


def _resources(fetched: Fetched | None) -> list[Resource]:
    return fetched.resources if fetched is not None else []


def _prefetched_resources(
    key: str, value: Any, template: str, state: PrefetchState, context: Mapping[str, Any]
) -> list[Resource]:
    """The usable resources a prefetch value holds, after checking it fits its template."""
    if state is PrefetchState.OPERATION_OUTCOME:
        log_operation_outcome(key, value)
    if not state.has_data:
        return []
    if state is PrefetchState.RESOURCE:
        if is_search(template):
            raise MalformedPrefetch(key, "a search template needs a Bundle")
        resources = [dict(value)]
    else:
        resources = list(entry_resources(value))
    if not is_search(template):
        _check_read_identity(key, template, resources, context)
    return resources


def _check_read_identity(
    key: str, template: str, resources: list[Resource], context: Mapping[str, Any]
) -> None:
    """A prefetched read must hold the resource the template names (an id, if sent, must match)."""
    resource_type, _, resource_id = fill_template(template, context).partition("/")
    for resource in resources:
        sent_id = resource.get("id", resource_id)
        if resource.get("resourceType") != resource_type or sent_id != resource_id:
            raise MalformedPrefetch(key, f"does not hold the {resource_type} in context")


def _job(
    template: str,
    state: PrefetchState,
    value: Any,
    context: Mapping[str, Any],
    extra: str | None = None,
) -> Job:
    """The FHIR call one key needs: the pages after a prefetched page, or the filled template
    (a search with the `extra` parameters, if any)."""
    if state is PrefetchState.PAGED:
        page = dict(value)
        return lambda client: client.follow(page)
    query = fill_template(template, context)
    if is_search(template):
        query = f"{query}&{extra}" if extra else query
        return lambda client: client.search(query)
    return lambda client: [resource for resource in [client.read(query)] if resource is not None]


class _QueryThreads:
    """This process's FHIR query threads, kept between hooks so their connections stay open.

    The pool has room for every hook in flight to run its widest lane at once; threads start
    only when needed, so a process answering one hook at a time keeps only a few.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executors: dict[int, ThreadPoolExecutor] = {}

    def executor(self, max_workers: int) -> ThreadPoolExecutor:
        """The pool of `max_workers` threads, started on first use."""
        with self._lock:
            executor = self._executors.get(max_workers)
            if executor is None:
                executor = ThreadPoolExecutor(max_workers, thread_name_prefix="fhir-query")
                self._executors[max_workers] = executor
            return executor

    def discard(self, executor: ThreadPoolExecutor) -> None:
        """Retire a pool whose threads are still busy past a deadline; the next hook gets anew.

        Lanes other hooks have queued on it still run: its idle threads take them.
        """
        with self._lock:
            for size, held in list(self._executors.items()):
                if held is executor:
                    del self._executors[size]
        executor.shutdown(wait=False)

    def reset_after_fork(self) -> None:
        """A forked child inherits no threads: forget the parent's pools (and its lock)."""
        self._lock = threading.Lock()
        self._executors = {}


_QUERY_THREADS = _QueryThreads()
os.register_at_fork(after_in_child=_QUERY_THREADS.reset_after_fork)


def _submit_in_lanes(
    executor: ThreadPoolExecutor, work: Mapping[str, Callable[[], Fetched]], width: int
) -> dict[Future[Fetched], str]:
    """Run `work` on at most `width` pool threads at once; one future per key.

    Each of the `width` lanes takes the next waiting item until none is left, so one hook never
    holds more than `width` threads however many keys it queries. A future cancelled before its
    lane reaches it never runs.
    """
    futures: dict[Future[Fetched], str] = {Future(): key for key in work}
    waiting = deque(futures.items())

    def lane() -> None:
        while True:
            try:
                future, key = waiting.popleft()
            except IndexError:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work[key]())
            except BaseException as error:  # handed to the waiting hook, as an executor would
                future.set_exception(error)

    for _ in range(min(width, len(work))):
        executor.submit(lane)
    return futures


def _run_jobs(
    jobs: Mapping[str, Job],
    access: FhirAccess | None,
    fhir: FhirSettings,
    limits: LimitSettings,
    deadline: float,
    client_factory: Callable[..., FhirClient],
    hooks_in_flight: int,
    waiting: Callable[[], AbstractContextManager[object]],
) -> dict[str, Fetched]:
    """Run every key's FHIR call in parallel under one deadline; DataUnavailable on any failure."""
    if access is None:
        raise DataUnavailable(tuple(jobs), "no FHIR server access for data not in prefetch")
    base_url, token = access.base_url, access.access_token
    guard = CallGuard(deadline)
    reply_limits = ReplyLimits(limits.max_reply_bytes, limits.max_json_depth)

    def run(job: Job) -> Fetched:
        """One job on a client over this thread's own pooled session (never shared by threads)."""
        with client_factory(
            base_url,
            token,
            timeout=fhir.timeout_seconds,
            max_pages=fhir.max_pages,
            deadline=deadline,
            session=thread_session(),
            limits=reply_limits,
            guard=guard,
        ) as client:
            resources = job(client)
            return Fetched(
                resources,
                complete=client.pages_not_followed == 0,
                calls=client.calls,
                seconds=client.call_seconds,
            )

    executor = _QUERY_THREADS.executor(fhir.max_workers * hooks_in_flight)
    work = {key: functools.partial(run, job) for key, job in jobs.items()}
    futures = _submit_in_lanes(executor, work, fhir.max_workers)
    with waiting():
        left = max(0.0, deadline - time.monotonic())
        done, pending = wait(futures, timeout=left, return_when=FIRST_EXCEPTION)
        _stop(guard, executor, pending)
    _raise_for_failures(futures, done, pending)
    return {futures[future]: future.result() for future in done}


def _stop(guard: CallGuard, executor: ThreadPoolExecutor, pending: set[Future[Fetched]]) -> None:
    """Stop the queries still queued or running; retire the pool if one does not stop at once."""
    guard.cancel()
    still_running = [future for future in pending if not future.cancel()]
    if not still_running:
        return
    _, unfinished = wait(still_running, timeout=STOP_GRACE_SECONDS)
    if unfinished:
        logger.warning(
            "%d FHIR queries did not stop at once; their threads are retired", len(unfinished)
        )
        _QUERY_THREADS.discard(executor)


def _raise_for_failures(
    futures: Mapping[Future[Fetched], str],
    done: set[Future[Fetched]],
    pending: set[Future[Fetched]],
) -> None:
    """DataUnavailable naming the keys not obtained; a non-FHIR error propagates unchanged."""
    errors = {futures[f]: f.exception() for f in done if f.exception() is not None}
    for key, error in errors.items():
        if not isinstance(error, FhirError):
            raise error  # type: ignore[misc]
        logger.warning("FHIR query for %s failed: %s", key, error)
    if not errors and not pending:
        return
    keys = tuple(sorted({*errors, *(futures[f] for f in pending)}))
    causes = [error for error in errors.values() if not isinstance(error, FhirCancelled)]
    first = next(iter(causes or errors.values()), None)
    raise DataUnavailable(keys, _reason(first))  # type: ignore[arg-type]


def _reason(error: FhirError | None) -> str:
    """A short, patient-free reason for the 412 OperationOutcome."""
    if error is None:
        return "the FHIR server did not answer in time (overall deadline)"
    for error_type, reason in _REASONS:
        if isinstance(error, error_type):
            return f"{reason} (HTTP {error.status})" if error.status else reason
    return "the FHIR server could not be queried"


def _sources(
    states: Mapping[str, PrefetchState],
    templates: Mapping[str, str],
    by_key: Mapping[str, list[Resource]],
) -> dict[str, str]:
    """Where each key's data came from, for the audit log and the card."""
    sources = {key: _SOURCES[state] for key, state in states.items()}
    for key, state in states.items():
        if state.needs_query and not is_search(templates[key]) and not by_key[key]:
            sources[key] += ":not-found"
    return sources


def _patient_data(
    templates: Mapping[str, str],
    by_key: Mapping[str, list[Resource]],
    sources: Mapping[str, str],
    deadline: float | None,
) -> PatientData:
    """The patient read, the Observation searches, and every other search's resources by type.

    An Observation search keeps only Observations; other searches keep what they include too
    (an Encounter search's Locations), never OperationOutcomes.
    """
    patient: Resource | None = None
    observations: dict[str, list[Resource]] = {}  # identity -> its distinct copies
    others: dict[str, dict[str, Resource]] = {}
    for key, template in templates.items():
        resource_type = template_resource_type(template)
        if resource_type == "Patient" and not is_search(template):
            patient = next((r for r in by_key[key] if r.get("resourceType") == "Patient"), patient)
        elif resource_type == "Observation":
            wanted = [r for r in by_key[key] if r.get("resourceType") == resource_type]
            if len(wanted) < len(by_key[key]):
                logger.debug("%s: skipped %d other resources", key, len(by_key[key]) - len(wanted))
            for resource in wanted:
                copies = observations.setdefault(_identity(resource), [])
                if resource not in copies:  # identical copies (prefetch and query) merge
                    copies.append(resource)
        else:
            for resource in by_key[key]:
                kind = resource.get("resourceType")
                if isinstance(kind, str) and kind != "OperationOutcome":
                    others.setdefault(kind, {})[_identity(resource)] = resource
    logger.debug("gathered data: %s", ", ".join(f"{k}={v}" for k, v in sources.items()))
    merged = tuple(resource for copies in observations.values() for resource in copies)
    found = {kind: tuple(items.values()) for kind, items in others.items()}
    return PatientData(patient, merged, dict(sources), deadline, others=found)


def _identity(resource: Resource) -> str:
    """The resource id, or its canonical JSON when it has none."""
    resource_id = resource.get("id")
    if isinstance(resource_id, str) and resource_id:
        return f"id:{resource_id}"
    return "json:" + json.dumps(resource, sort_keys=True, default=str)
