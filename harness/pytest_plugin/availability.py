"""Before any item runs: the models the selected items need that are neither on disk nor downloadable.

Without this, a first run offline (or before the download) spends most of a minute in the hub's retries, then
names one model per run. Here every needed model is looked up on disk first; only when one is not there are the
hub and download.pytorch.org probed, once each, with a short timeout and no retries. The first item that needs
a missing model fails with one paragraph naming them all, later ones with one line.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.common.model_loading import MissingModelError, missing_model_message, missing_resnet_message
from harness.judging.clip import ClipJudge
from harness.judging.resnet import ResnetJudge

if TYPE_CHECKING:
    from harness.pytest_plugin.options import Settings

PLUGIN_NAME = "t2i-models"
HUB, TORCH = "the Hugging Face hub", "download.pytorch.org"
# Long enough for a slow link's TLS handshake, short enough that an offline first run still answers in seconds.
PROBE_TIMEOUT_S = 3.0
# Every missing model is explained in the one paragraph: one key for all of them.
AVAILABILITY_KEY = "t2i: models missing before the run"
# The fixture that holds each model; an item needs a model when it uses the fixture (case items: see item_needs).
ROLE_FIXTURES = {
    "pipeline": "t2i_pipeline",
    ClipJudge.section: ClipJudge.fixture,
    ResnetJudge.section: ResnetJudge.fixture,
}
# Where each of those fixtures is defined (a judge's, with its class): an override elsewhere brings its own model.
ROLE_MODULES = {
    "pipeline": "harness.pytest_plugin.fixtures",
    ClipJudge.section: ClipJudge.__module__,
    ResnetJudge.section: ResnetJudge.__module__,
}
_TRUE = {"1", "ON", "YES", "TRUE"}  # how huggingface_hub reads HF_HUB_OFFLINE


@dataclass(frozen=True)
class Probe:
    reachable: bool
    reason: str = ""  # why not, for "nor downloadable from here (...)"


@dataclass(frozen=True)
class ModelLocation:
    """Where a model is looked for, and whether it is there."""

    role: str  # "pipeline", "clip" or "resnet"
    name: str  # as the messages name it
    on_disk: bool
    source: str | None  # HUB or TORCH: what could download it; None: nothing can (a local path)
    url: str = ""  # what a probe asks for
    cache: Path | None = None  # where a download would go (ResNet weights)


def hub_offline_reason() -> str | None:
    """Why nothing may be downloaded from the hub (HF_HUB_OFFLINE), or None."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    return None


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """One HEAD request, no retries: any HTTP answer below 500 means the server is reachable."""
    import urllib.error
    import urllib.request  # here, not at import: the plugin loads in every pytest run

    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "t2i-harness"})
    # A new opener reads https_proxy / no_proxy now; urlopen's shared one keeps what it read first.
    opener = urllib.request.build_opener()
    try:
        with opener.open(request, timeout=timeout):
            return Probe(True)
    except urllib.error.HTTPError as exc:
        if exc.code < 500:
            return Probe(True)
        return Probe(False, f"{url} answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Probe(False, f"{url} did not answer: {_describe(exc, timeout)}")


def _describe(exc: BaseException, timeout: float) -> str:
    import socket

    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"its host name does not resolve ({reason.strerror})"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"{type(reason).__name__}: {reason}"


class Reachability:
    """Each download source probed at most once per session, the first time something needs it."""

    def __init__(self) -> None:
        self._probes: dict[str, Probe] = {}

    def of(self, sources: dict[str, str], timeout: float = PROBE_TIMEOUT_S) -> dict[str, Probe]:
        """``sources``: name -> URL to probe. Probed concurrently; a probe still waiting at the timeout
        (a name lookup can hang longer than any socket timeout) counts as unreachable."""
        pending = {name: url for name, url in sources.items() if name not in self._probes}
        if HUB in pending and (offline := hub_offline_reason()) is not None:
            self._probes[HUB] = Probe(False, offline)
            del pending[HUB]
        answers: dict[str, Probe] = {}

        def ask(name: str, url: str) -> None:
            answers[name] = probe(url, timeout)

        threads = [threading.Thread(target=ask, args=item, daemon=True) for item in pending.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout + 0.5)
        for name, url in pending.items():
            self._probes[name] = answers.get(name) or Probe(False, f"{url} did not answer within {timeout:g} s")
        return {name: self._probes[name] for name in sources}

    def hub_offline_reason(self) -> str | None:
        """Why the hub cannot be reached (probing it now if nothing has yet), or None when it can."""
        from huggingface_hub import constants

        hub = self.of({HUB: constants.ENDPOINT})[HUB]
        return None if hub.reachable else hub.reason


_REACHABILITY_KEY = pytest.StashKey[Reachability]()


def reachability(config: pytest.Config) -> Reachability:
    if _REACHABILITY_KEY not in config.stash:
        config.stash[_REACHABILITY_KEY] = Reachability()
    return config.stash[_REACHABILITY_KEY]


def offline_reason_for(config: pytest.Config, model_ref: str) -> str | None:
    """For loading ``model_ref``: why only the local cache may be read (the hub is unreachable), or None.

    A local directory needs no hub. A hub model is probed for: with the hub down, loading it from the cache
    alone avoids the hub client's retries, which would add most of a minute before falling back to the cache.
    """
    if Path(model_ref).is_dir():
        return None
    return reachability(config).hub_offline_reason()


# -- where each model is looked for ----------------------------------------------------------------------------

_PIPELINE = ("text-to-image model", "--t2i-model", "model_index.json")
_CLIP = ("CLIP model", "--t2i-clip-model", "config.json")


def _hub_location(role: str, ref: str, required: str) -> ModelLocation:
    local = Path(ref).expanduser()
    if local.is_dir():
        return ModelLocation(role, ref, (local / required).is_file(), None)
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(ref, required)
    except ValueError:  # neither an existing directory nor a valid repo id: nothing can download it
        return ModelLocation(role, ref, False, None)
    return ModelLocation(role, ref, isinstance(cached, str), HUB, constants.ENDPOINT)


def locate(role: str, settings: Settings) -> ModelLocation:
    if role == "pipeline":
        return _hub_location(role, settings.model, _PIPELINE[2])
    if role == "clip":
        return _hub_location(role, settings.clip_model, _CLIP[2])
    if Path(settings.resnet_weights).is_file():  # a state-dict file (checked to exist when parsing options)
        return ModelLocation(role, settings.resnet_weights, True, None)
    from harness.common.model_loading import resnet_cache_path, resnet_weights

    weights = resnet_weights(settings.resnet_weights)
    cache = resnet_cache_path(weights.url)
    return ModelLocation(role, str(weights), cache.is_file(), TORCH, weights.url, cache)


def explain(location: ModelLocation, reason: str) -> str:
    """One model's sentence of the paragraph: where it was looked for, why it is not downloadable, the fix."""
    if location.role == "resnet":
        assert location.cache is not None
        return missing_resnet_message(location.name, location.cache, location.url, reason)
    role, option, required = _PIPELINE if location.role == "pipeline" else _CLIP
    if location.source is None and not Path(location.name).expanduser().exists():
        reason = f"{location.name!r} is neither an existing directory nor a Hugging Face repo id"
    return missing_model_message(role, location.name, option, reason, required)


def find_missing(locations: Iterable[ModelLocation], sources: Reachability) -> dict[str, str]:
    """role -> the sentence explaining it, for every model that is neither on disk nor downloadable.

    Nothing is probed when every model is on disk.
    """
    absent = [location for location in locations if not location.on_disk]
    probes = sources.of({loc.source: loc.url for loc in absent if loc.source is not None}) if absent else {}
    missing = {}
    for location in absent:
        answer = probes.get(location.source) if location.source is not None else None
        if answer is None or not answer.reachable:
            missing[location.role] = explain(location, answer.reason if answer is not None else "")
    return missing


def paragraph(missing: dict[str, str]) -> str:
    lines = [missing[role] for role in ROLE_FIXTURES if role in missing]
    if len(lines) == 1:
        return lines[0]
    return "\n".join([f"{len(lines)} models this run needs are neither on this machine nor downloadable:", *lines])


# -- which models each item needs ------------------------------------------------------------------------------


def item_needs(item: pytest.Item) -> set[str]:
    """The roles of the models ``item`` will load through the plugin's own fixtures.

    A case item needs the built-in judges' models its case declares (CLIP always, ResNet-50 when it has a
    `resnet:` section; other judges' models are their plugins' to find), and the pipeline unless its
    image is cached; a missing pipeline's files are not on disk, so no image of it can be keyed, and every
    case item needs it then. A fixture that a conftest.py overrides brings its own model.
    """
    from harness.pytest_plugin.collect import CaseItem
    from harness.pytest_plugin.fixtures import loads_own_fixture

    if item.get_closest_marker("skip") is not None:
        return set()
    if isinstance(item, CaseItem):
        roles = {"pipeline"} | (set(item.case.checks) & set(ROLE_FIXTURES))
    else:
        used = set(getattr(item, "fixturenames", ()))
        roles = {role for role, fixture in ROLE_FIXTURES.items() if fixture in used}
    return {role for role in roles if loads_own_fixture(item, ROLE_FIXTURES[role], ROLE_MODULES[role])}


def _names(missing: list[str], locations: dict[str, ModelLocation]) -> str:
    return ", ".join(repr(locations[role].name) for role in missing)


class ModelCheck:
    """Registered for runs (not check mode): looks before the first item runs, fails the items that need a
    missing model at their setup, before any fixture loads anything."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.missing: dict[str, str] = {}  # role -> its sentence
        self._item_missing: dict[str, list[str]] = {}  # node id -> missing roles it needs
        self._locations: dict[str, ModelLocation] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        option = session.config.option
        if option.collectonly or (session.testsfailed and not option.continue_on_collection_errors):
            return  # nothing will run
        needs = {item.nodeid: item_needs(item) for item in session.items}
        roles = set().union(*needs.values()) if needs else set()
        if not roles:
            return
        from harness.pytest_plugin.session_state import get_state

        settings = get_state(self.config).settings
        self._locations = {role: locate(role, settings) for role in roles}
        self.missing = find_missing(self._locations.values(), reachability(self.config))
        for nodeid, item_roles in needs.items():
            missing = [role for role in ROLE_FIXTURES if role in item_roles and role in self.missing]
            if missing:
                self._item_missing[nodeid] = missing

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # After the skipping plugin's setup hook (tryfirst), so `skip:` still skips; before any fixture.
        missing = self._item_missing.get(item.nodeid)
        if not missing:
            return
        names = _names(missing, self._locations)
        summary = (
            f"model {names} is unavailable (explained at the first item that needed it)"
            if len(missing) == 1
            else f"models {names} are unavailable (explained at the first item that needed one)"
        )
        raise MissingModelError(paragraph(self.missing), model=names, key=AVAILABILITY_KEY, summary=summary)
