"""The name rules files and folders are built from: anything a user wrote is checked against these first."""

from __future__ import annotations

import re

# A case id, a baseline name, an image file name: plain ASCII, no leading dot, so never a path of its own.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
# What a path component of the user's (a case file's folders) keeps as it is; the rest is replaced.
UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
# A sha256 in hex: the caches' keys.
SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
