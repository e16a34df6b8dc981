"""Session fixtures holding the models: loaded lazily, once per session, overridable in conftest.py."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest

from harness.common import model_loading
from harness.common.model_loading import ModelInfo, hub_revision
from harness.generation.fingerprint import files_fingerprint
from harness.generation.pipeline_handle import PipelineHandle, is_pristine, loaded_fingerprint
from harness.pytest_plugin.availability import offline_reason_for
from harness.pytest_plugin.options import Settings
from harness.pytest_plugin.session_state import get_state, note_model


@pytest.fixture(scope="session")
def t2i_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved --t2i-* options: model refs, device, dtype, report dir."""
    return get_state(pytestconfig).settings


@pytest.fixture(scope="session")
def t2i_pipeline(pytestconfig: pytest.Config, t2i_settings: Settings) -> Any:
    """The diffusers text-to-image pipeline (--t2i-model), on the chosen device and dtype.

    Example::

        def test_lighthouse(t2i_pipeline):
            image = t2i_pipeline("a lighthouse at dusk", num_inference_steps=25).images[0]
            assert image.size == (512, 512)
    """
    pipeline, info = model_loading.load_pipeline(t2i_settings, offline_reason_for(pytestconfig, t2i_settings.model))
    note_model(pytestconfig, info)
    state = get_state(pytestconfig)
    state.loaded_pipeline = pipeline
    # Loading may have fetched a newer hub revision: key images by the files now on disk.
    state.files_fingerprint.clear()
    return pipeline


@pytest.fixture
def _t2i_pipeline_handle(request: pytest.FixtureRequest, t2i_settings: Settings) -> PipelineHandle:
    """How case items reach `t2i_pipeline`: loaded at setup when an image must be generated, else not.

    Loading at setup (not mid-test) keeps a missing model an error of the item's setup.
    """
    state = get_state(request.config)

    def load() -> Any:
        return request.getfixturevalue("t2i_pipeline")

    handle = PipelineHandle(fingerprint=None, model_ref=t2i_settings.model, _load=load)
    if state.images.cache is None or not is_own_fixture(request, "t2i_pipeline"):
        # No cache to spare a load, or a pipeline from the user's conftest.py: load it now, at setup (a
        # missing model is an error of setup, and a time limit on the test call alone does not count
        # the load), and key it by what it is.
        pipeline = handle.get()
        handle.fingerprint = loaded_fingerprint(pipeline) if state.images.cache is not None else None
        return handle
    if state.loaded_pipeline is not None:
        handle.pipeline = state.loaded_pipeline
        if not is_pristine(handle.pipeline, t2i_settings.model, t2i_settings.dtype_name, t2i_settings.device):
            # Changed after loading (e.g. an autouse fixture swapped the scheduler).
            handle.fingerprint = loaded_fingerprint(handle.pipeline)
            return handle
    handle.fingerprint = _files_fingerprint(state, t2i_settings)
    node = request.node
    context = state.images.context_of(node.case_key, node.seed) if hasattr(node, "case_key") else None
    if handle.pipeline is None and (
        handle.fingerprint is None or state.images.needs_generation(handle.fingerprint, context)
    ):
        # Not on disk yet (loading downloads it), or images to make: load, then key by the files now there.
        handle.get()
        handle.fingerprint = _files_fingerprint(state, t2i_settings) or loaded_fingerprint(handle.get())
    if handle.pipeline is None:
        # Not loaded (every image is cached): the report still names the model that made them.
        note_model(
            request.config,
            ModelInfo("pipeline", t2i_settings.model, hub_revision(t2i_settings.model, "model_index.json")),
        )
    return handle


def _files_fingerprint(state: Any, settings: Settings) -> dict[str, str] | None:
    if not state.files_fingerprint:
        state.files_fingerprint.append(files_fingerprint(settings.model, settings.dtype_name, settings.device))
    return state.files_fingerprint[0]


# This module's fixtures. A test that uses one needs the resolved options; and their definitions, as an
# item sees them, decide its images beyond the case itself. Judges' model fixtures count too (see
# harness_fixtures).
PIPELINE_FIXTURES = frozenset({"t2i_settings", "t2i_pipeline", "_t2i_pipeline_handle"})


def harness_fixtures(config: pytest.Config) -> frozenset[str]:
    """The pipeline's fixtures and every known judge's model fixture."""
    return PIPELINE_FIXTURES | get_state(config).judges.fixtures(config)


def fixture_context(item: pytest.Item, fallback: Hashable) -> Hashable:
    """The fixture definitions ``item`` sees, comparable between items of one session.

    conftest.py files apply per directory, so cases in two folders may see different pipelines or
    judges (or autouse fixtures that change them); only items with equal contexts share a pipeline
    call or a judge's forward. ``fallback`` (the item's case) is returned where pytest's private
    fixture lookup is unavailable: batching then stays within a case, which is always safe.
    """
    try:
        manager = item.session._fixturemanager
        names = sorted(set(getattr(item, "fixturenames", ())) | harness_fixtures(item.config))
        return tuple((name, tuple(map(id, manager.getfixturedefs(name, item) or ()))) for name in names)
    except Exception:
        return fallback


def is_own_fixture(request: pytest.FixtureRequest, name: str, module: str = __name__) -> bool:
    """Whether fixture ``name``, as this item sees it, is the one defined in ``module`` (not a conftest override)."""
    try:
        # pytest has no public API for "which fixture would this name resolve to"; when this private
        # one is missing, answer as for an override, which is always safe (nothing cached is reused).
        definitions = request._fixturemanager.getfixturedefs(name, request.node)
    except Exception:
        return False
    if not definitions:
        return False
    return getattr(definitions[-1].func, "__module__", None) == module


def loads_own_fixture(item: pytest.Item, name: str, module: str = __name__) -> bool:
    """Whether fixture ``name``, as ``item`` sees it, runs the plugin's own definition.

    True for the plugin's own fixture, and for a conftest.py override that wraps it (requests the fixture it
    overrides, as in `def t2i_pipeline(t2i_pipeline)`): the plugin's model is loaded either way.
    """
    try:
        definitions = item.session._fixturemanager.getfixturedefs(name, item)  # private: see is_own_fixture
    except Exception:
        return False
    for definition in reversed(definitions or ()):
        if getattr(definition.func, "__module__", None) == module:
            return True
        if name not in definition.argnames:  # an override that brings its own
            return False
    return False
