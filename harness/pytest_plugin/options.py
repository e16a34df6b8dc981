"""Command-line options, their ini twins, and the validated settings they resolve to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_RESNET_WEIGHTS = "IMAGENET1K_V2"
DEFAULT_REPORT_DIR = "reports"
DTYPES = ("auto", "float16", "bfloat16", "float32")
_DEVICE_PATTERN = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)\Z")


@dataclass(frozen=True)
class OptionSpec:
    flag: str
    ini: str
    default: str
    help: str
    metavar: str
    is_path: bool = False  # relative ini values resolve against the ini file's directory


OPTIONS = (
    OptionSpec(
        "--t2i-model",
        "t2i_model",
        DEFAULT_MODEL,
        "diffusers text-to-image model: hub repo id or local dir",
        "ID_OR_DIR",
        True,
    ),
    OptionSpec(
        "--t2i-clip-model",
        "t2i_clip_model",
        DEFAULT_CLIP_MODEL,
        "CLIP model for zero-shot label checks: hub repo id or local dir",
        "ID_OR_DIR",
        True,
    ),
    OptionSpec(
        "--t2i-resnet-weights",
        "t2i_resnet_weights",
        DEFAULT_RESNET_WEIGHTS,
        "ResNet-50 weights: a torchvision ResNet50_Weights name, or a state-dict file (.safetensors, .pt, .pth)",
        "NAME_OR_FILE",
        True,
    ),
    OptionSpec(
        "--t2i-device",
        "t2i_device",
        "auto",
        "device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps",
        "DEVICE",
    ),
    OptionSpec(
        "--t2i-dtype",
        "t2i_dtype",
        "auto",
        "dtype: auto (float16 on cuda, float32 elsewhere), float16, bfloat16 or float32",
        "DTYPE",
    ),
    OptionSpec(
        "--t2i-report-dir", "t2i_report_dir", DEFAULT_REPORT_DIR, "where results.json and the images go", "DIR", True
    ),
    OptionSpec(
        "--t2i-cache-dir",
        "t2i_cache_dir",
        "",
        "image cache directory (e.g. a shared volume); empty means t2i-images under pytest's cache dir",
        "DIR",
        True,
    ),
    OptionSpec(
        "--t2i-batch-size",
        "t2i_batch_size",
        "auto",
        "images per pipeline call, across cases with equal steps/guidance/size; auto fits the device's memory",
        "N",
    ),
)
FLAGS = (
    ("--t2i-no-cache", "t2i_no_cache", "neither read nor write the image cache"),
    ("--t2i-refresh", "t2i_refresh", "regenerate every image and overwrite its cache entry"),
)


GROUP = ("t2i", "t2i-harness: text-to-image prompt regression tests")


def add_option(parser: pytest.Parser, spec: OptionSpec) -> None:
    """One option with its ini twin in the harness's group; also for plugins that add their own (a judge's model)."""
    parser.getgroup(*GROUP).addoption(
        spec.flag,
        dest=spec.ini,
        default=None,
        metavar=spec.metavar,
        help=f"{spec.help}. Ini: {spec.ini}. Default: {spec.default!r}",
    )
    parser.addini(spec.ini, help=f"{spec.help} (same as {spec.flag})", type="string", default=spec.default)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(*GROUP)
    for spec in OPTIONS:
        add_option(parser, spec)
    for flag, ini, text in FLAGS:
        group.addoption(flag, dest=ini, action="store_true", default=None, help=f"{text}. Ini: {ini}. Default: False")
        parser.addini(ini, help=f"{text} (same as {flag})", type="bool", default=False)


@dataclass(frozen=True)
class Settings:
    """What the options resolved to. ``model`` and ``clip_model`` are repo ids or local dirs."""

    model: str
    clip_model: str
    resnet_weights: str  # an enum name, or an absolute path to a state-dict file
    device: str
    dtype_name: str
    report_dir: Path
    cache_dir: Path | None = None  # None: no image cache
    refresh: bool = False
    batch_size: int | None = None  # None: auto

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype_name)


def given(config: pytest.Config, ini: str, flag: str) -> tuple[Any, str, bool]:
    """(value, how a message names the option, whether the command line gave it).

    The one precedence rule of every option: the command line wins over its ini twin (``ini`` is both the
    ini name and the command-line option's dest); the ini value is read only when the command line is silent.
    """
    cli = config.getoption(ini)
    if cli is not None:
        return cli, flag, True
    return config.getini(ini), f"{flag} (ini option {ini})", False


def _raw_value(config: pytest.Config, spec: OptionSpec) -> tuple[str, Path]:
    """The option's value and the directory a relative path in it is relative to."""
    value, _, from_cli = given(config, spec.ini, spec.flag)
    if from_cli:
        return value, Path.cwd()
    base = config.inipath.parent if config.inipath else config.invocation_params.dir
    return value or spec.default, base


def _model_ref(value: str, base: Path) -> str:
    # A value that names an existing directory is a local model; anything else is a hub repo id
    # (which also looks like a relative path, so only an existing directory decides).
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    return str(candidate.resolve()) if candidate.is_dir() else value


def _worker_device(config: pytest.Config, device: str) -> str:
    """Under pytest-xdist with several GPUs, worker gwN takes GPU N (modulo the GPU count)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count()
    index = int(str(workerinput.get("workerid", "gw0"))[2:] or 0)
    return f"cuda:{index % count}" if count > 1 else device


def _mps_available() -> bool:
    import torch

    return bool(torch.backends.mps.is_available())


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@dataclass(frozen=True)
class CheckedOptions:
    """The option values after the checks that need neither torch nor torchvision."""

    values: dict[str, tuple[str, Path]]  # ini name -> (value, directory a relative path is relative to)
    where: dict[str, str]  # ini name -> how to name the option in a message
    device: str  # as given: auto, cpu, cuda, cuda:N or mps
    dtype_name: str  # as given: may be auto
    report_dir: Path
    batch_size: int | None  # None: auto
    resnet_file: Path | None  # --t2i-resnet-weights as a state-dict file; None when it is a weights name
    cache_dir: Path | None  # --t2i-cache-dir as given; None: the default under pytest's cache dir


def check_options(config: pytest.Config) -> CheckedOptions:
    """Validate what can be checked without importing torch; a bad value is a UsageError naming the option.

    Runs at pytest_configure, so a mistyped option stops any run at once, while a run that collects no
    case (the project's other tests, with this plugin installed) never pays for importing torch.
    resolve_settings does the rest once cases are collected.
    """
    values = {spec.ini: _raw_value(config, spec) for spec in OPTIONS}
    where = {spec.ini: given(config, spec.ini, spec.flag)[1] for spec in OPTIONS}

    for ini, (value, _) in values.items():
        if not value.strip() and ini != "t2i_cache_dir":
            raise pytest.UsageError(f"{where[ini]} is empty; give a value or leave the option out.")

    device, _ = values["t2i_device"]
    if not _DEVICE_PATTERN.match(device):
        raise pytest.UsageError(
            f"{where['t2i_device']}={device!r} is not a device; use auto, cpu, cuda, cuda:N or mps."
        )
    dtype_name, _ = values["t2i_dtype"]
    if dtype_name not in DTYPES:
        raise pytest.UsageError(f"{where['t2i_dtype']}={dtype_name!r} is not a dtype; use one of {', '.join(DTYPES)}.")

    resnet_file = _resnet_weights_file(*values["t2i_resnet_weights"], where["t2i_resnet_weights"])
    if resnet_file is None:
        _check_resnet_weights_name(values["t2i_resnet_weights"][0], where["t2i_resnet_weights"])
    report_value, report_base = values["t2i_report_dir"]
    report_dir = (report_base / Path(report_value).expanduser()).resolve()
    if report_dir.exists() and not report_dir.is_dir():
        raise pytest.UsageError(f"{where['t2i_report_dir']}={report_value!r} exists and is not a directory.")
    cache_dir = _given_cache_dir(*values["t2i_cache_dir"], where["t2i_cache_dir"])

    for ini in ("t2i_no_cache", "t2i_refresh"):
        _flag(config, ini)  # a bad ini value is a usage error now, not a traceback later

    batch_value, _ = values["t2i_batch_size"]
    batch_size = None
    if batch_value != "auto":
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses.
        if not re.fullmatch(r"[0-9]{1,4}", batch_value) or not 1 <= int(batch_value) <= 256:
            raise pytest.UsageError(
                f"{where['t2i_batch_size']}={batch_value!r} is not a batch size; "
                "use auto or a whole number from 1 to 256."
            )
        batch_size = int(batch_value)
    return CheckedOptions(values, where, device, dtype_name, report_dir, batch_size, resnet_file, cache_dir)


def resolve_settings(config: pytest.Config, checked: CheckedOptions | None = None) -> Settings:
    """Every option validated and resolved (auto device and dtype): imports torch."""
    checked = checked or check_options(config)
    values, where = checked.values, checked.where
    resnet_weights = str(checked.resnet_file) if checked.resnet_file is not None else values["t2i_resnet_weights"][0]

    device = checked.device
    resolved_device = resolve_device(device)
    resolved_device = _worker_device(config, resolved_device)
    # Checking a cuda or mps device imports torch; an explicit cpu needs nothing (an xdist controller on
    # a CPU runner then never imports it: its workers load the models).
    # On Ray the device is the actors' (resolved on their nodes): this machine need not have it.
    on_ray = config.pluginmanager.has_plugin("t2i-ray")
    if resolved_device.startswith("cuda") and not on_ray:
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError(
                f"{where['t2i_device']}={device!r}, but CUDA is not available on this machine; use --t2i-device=cpu."
            )
        index = int(resolved_device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise pytest.UsageError(
                f"{where['t2i_device']}={device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
    if resolved_device == "mps" and not on_ray and not _mps_available():
        raise pytest.UsageError(
            f"{where['t2i_device']}='mps', but MPS is not available on this machine; use --t2i-device=cpu."
        )
    dtype_name = checked.dtype_name
    if dtype_name == "auto":
        dtype_name = "float16" if resolved_device.startswith("cuda") else "float32"

    return Settings(
        model=_model_ref(*values["t2i_model"]),
        clip_model=_model_ref(*values["t2i_clip_model"]),
        resnet_weights=resnet_weights,
        device=resolved_device,
        dtype_name=dtype_name,
        report_dir=checked.report_dir,
        cache_dir=_cache_dir(config, checked.cache_dir),
        refresh=_flag(config, "t2i_refresh"),
        batch_size=checked.batch_size,
    )


def model_ref(config: pytest.Config, ini: str | OptionSpec = "t2i_model") -> str:
    """--t2i-model (or another model option, by its ini name or, for a plugin's own option, its OptionSpec) as
    resolve_settings resolves it, without torch."""
    spec = ini if isinstance(ini, OptionSpec) else next(spec for spec in OPTIONS if spec.ini == ini)
    return _model_ref(*_raw_value(config, spec))


def _flag(config: pytest.Config, ini: str) -> bool:
    flag = next(flag for flag, name, _ in FLAGS if name == ini)
    try:
        return bool(given(config, ini, flag)[0])
    except (ValueError, pytest.UsageError) as exc:
        # pytest's own message ("invalid truth value 'maybe'") names neither the option nor the fix
        # (pytest < 9 raises ValueError, pytest 9 a UsageError of that text).
        found = re.search(r"invalid truth value (.+)\Z", str(exc))
        shown = f"={found.group(1)}" if found else ""
        raise pytest.UsageError(
            f"{flag} (ini option {ini}){shown} is not a boolean: use true or false (also accepted: "
            "yes/no, on/off, 1/0), or leave it out."
        ) from None


def _given_cache_dir(value: str, base: Path, where: str) -> Path | None:
    if not value.strip():
        return None
    path = (base / Path(value).expanduser()).resolve()
    if path.exists() and not path.is_dir():
        raise pytest.UsageError(f"{where}={value!r} exists and is not a directory.")
    return path


def _cache_dir(config: pytest.Config, given: Path | None) -> Path | None:
    if _flag(config, "t2i_no_cache"):
        return None
    if given is not None:
        return given
    # Default: inside pytest's cache dir, so `pytest --cache-clear` clears it too. With
    # `-p no:cacheprovider` there is no such dir and, unless --t2i-cache-dir is given, no cache.
    cache = getattr(config, "cache", None)
    return cache.mkdir("t2i-images") if cache is not None else None


_STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth")


def _resnet_weights_file(value: str, base: Path, where: str) -> Path | None:
    """A state-dict file named by --t2i-resnet-weights (which must exist), or None for a weights name."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.suffix not in _STATE_DICT_SUFFIXES:
        return None
    if not path.is_file():
        raise pytest.UsageError(f"{where}={value!r}: no such file ({path}).")
    return path.resolve()


def _check_resnet_weights_name(value: str, where: str) -> None:
    from harness.judging.imagenet import RESNET50_WEIGHTS_NAMES

    if value in RESNET50_WEIGHTS_NAMES:
        return
    names = ", ".join(RESNET50_WEIGHTS_NAMES)
    raise pytest.UsageError(
        f"{where}={value!r} is neither a torchvision ResNet50_Weights name ({names}) "
        "nor a state-dict file ending in .safetensors, .pt or .pth."
    )


def run_environment(settings: Settings) -> dict[str, str]:
    """Device, dtype and library versions, for the report's environment section and results.json."""
    from harness.common.versions import package_version

    environment = {"t2i device": settings.device, "t2i dtype": settings.dtype_name}
    for package in ("torch", "torchvision", "diffusers", "transformers"):
        environment[package] = package_version(package)
    return environment
