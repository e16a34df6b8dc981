"""--t2i-ray: which Ray cluster generates and judges the images, reached (or refused) before any item runs.

pytest stays the one driver: it collects, reports and writes every file. Only the batches of planned images
go to Ray actors (harness.pytest_plugin.ray_actor), dispatched by harness.pytest_plugin.ray_images.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import pytest

from harness.pytest_plugin.options import OptionSpec, add_option, given

RAY_OPTION = OptionSpec(
    "--t2i-ray",
    "t2i_ray",
    "",
    "generate and judge on Ray actors, one per GPU (or CPU slot): a cluster address (HOST:PORT, ray://HOST:PORT), "
    "auto (RAY_ADDRESS, or this process's own ray.init) or local (start a local Ray instance); empty: off",
    "ADDRESS",
)
# A cluster that does not answer is a usage error in seconds: Ray's own connect retries for a minute or more.
CONNECT_TIMEOUT_S = 3.0
_GCS_PORT = 6379  # `ray start --head`'s default
_CLIENT_PORT = 10001  # Ray Client's default


def add_options(parser: pytest.Parser) -> None:
    add_option(parser, RAY_OPTION)


def requested(config: pytest.Config) -> tuple[str, str] | None:
    """(the value, how messages name the option) when --t2i-ray (or ini t2i_ray) is given, else None."""
    value, where, _ = given(config, RAY_OPTION.ini, RAY_OPTION.flag)
    value = str(value or "").strip()
    return (value, where) if value else None


@dataclass
class RayCluster:
    """A connection this run made (and closes), or one this process already had (left open)."""

    shown: str  # how the report names it: the address, "local" or "this process's connection"
    owned: bool  # ray.init was called here: ray.shutdown at the end of the run
    gpus: int
    cpus: int

    @property
    def slots(self) -> int:
        """Actors the cluster can hold at once: one per GPU, or one per CPU when it has no GPU."""
        return self.gpus or max(1, self.cpus)

    @property
    def actor_resources(self) -> dict[str, float]:
        # A GPU actor asks for its GPU only: the CPUs stay free for the cluster's other work (and the driver).
        return {"num_gpus": 1, "num_cpus": 0} if self.gpus else {"num_cpus": 1}

    def describe(self, actors: int) -> str:
        unit = "GPU" if self.gpus else "CPU slot"
        return f"{self.shown}, {actors} actor(s), one per {unit}"

    def close(self) -> None:
        if self.owned:
            import ray

            ray.shutdown()


def connect(value: str, where: str) -> RayCluster:
    """Connect to (or start) the cluster ``value`` names; any problem is one UsageError naming the option."""
    try:
        import ray
    except ImportError:
        raise pytest.UsageError(
            f'{where}={value!r} needs Ray, which is not installed here: pip install "t2i-harness[ray]" '
            '(or pip install "ray>=2.9"), or leave the option out to run without Ray.'
        ) from None
    if value == "auto" and ray.is_initialized():
        # A conftest.py (or the caller) connected already: use that connection, and leave it open.
        return _resources(ray, "this process's Ray connection", owned=False)
    address: str | None
    if value == "local":
        address = None
    elif value == "auto":
        address = os.environ.get("RAY_ADDRESS", "").strip()
        if not address:
            raise pytest.UsageError(
                f"{where}=auto takes the cluster's address from RAY_ADDRESS, which is not set: set it "
                "(RAY_ADDRESS=HOST:6379, or ray://HOST:10001 for Ray Client), give the address itself, or use "
                "local to start a Ray instance on this machine."
            )
    else:
        address = value
    if address is not None:
        problem = unreachable(address)
        if problem is not None:
            raise pytest.UsageError(
                f"{where}={value!r}: the Ray cluster at {address} cannot be reached ({problem}). Check that it is "
                "running (`ray status` on its head node) and the address: HOST:PORT of its GCS (port 6379 unless "
                "`ray start --head --port` said otherwise), or ray://HOST:10001 for Ray Client. Or leave the option "
                "out to run on this machine without Ray."
            )
    try:
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        elif address.startswith("ray://"):
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError or its own errors here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise pytest.UsageError(
            f"{where}={value!r}: Ray could not {'start' if address is None else 'connect'} "
            f"({type(exc).__name__}: {first}). Leave the option out to run without Ray."
        ) from None
    return _resources(ray, address or "local", owned=True)


def _resources(ray: Any, shown: str, owned: bool) -> RayCluster:
    resources = ray.cluster_resources()
    return RayCluster(shown, owned, int(resources.get("GPU", 0)), int(resources.get("CPU", 0)))


def unreachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why nothing answers at ``address`` (one TCP connect, no retries), or None when something does."""
    host, port = split_address(address)
    if port is None:
        return "not HOST:PORT or ray://HOST:PORT"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return f"connection to port {port} refused"
    except socket.gaierror as exc:
        return f"its host name does not resolve ({exc.strerror})"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def split_address(address: str) -> tuple[str, int | None]:
    """(host, port) of HOST, HOST:PORT or ray://HOST[:PORT], with Ray's default ports; port None if malformed."""
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://").rstrip("/")
    host, colon, port = rest.rpartition(":")
    if not colon:
        return rest, _CLIENT_PORT if client else _GCS_PORT
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        return rest, None
    return host.strip("[]"), int(port)
