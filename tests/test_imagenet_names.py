"""The ImageNet class names shipped with the package are torchvision's, and reading them imports no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.judging.imagenet import CATEGORIES_FILE, RESNET50_WEIGHTS_NAMES, imagenet_categories

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_names_equal_torchvision_weights_metadata() -> None:
    from torchvision.models import ResNet50_Weights

    assert imagenet_categories() == tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
    assert len(imagenet_categories()) == 1000


def test_shipped_weights_names_equal_torchvisions() -> None:
    from torchvision.models import ResNet50_Weights

    assert RESNET50_WEIGHTS_NAMES == tuple(ResNet50_Weights.__members__)  # DEFAULT is an alias member


def test_the_names_file_is_package_data() -> None:
    # tomllib is Python 3.11+, and the package supports 3.10: read the one table as text.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    table = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert f'"harness.judging" = ["{CATEGORIES_FILE}"]' in table
    assert (ROOT / "harness" / "judging" / CATEGORIES_FILE).is_file()


def test_reading_the_names_imports_neither_torch_nor_torchvision() -> None:
    code = (
        "import sys; from harness.judging.imagenet import imagenet_categories; names = imagenet_categories(); "
        "print(len(names), 'torch' in sys.modules, 'torchvision' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["1000", "False", "False"]
