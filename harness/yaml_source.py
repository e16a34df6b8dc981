"""Safe YAML parsing that remembers the line of every value, so errors can point at it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

# Only plain YAML data: anything carrying an explicit tag (``!!python/object``, ``!!binary``,
# ``!custom``) is refused before a constructor could ever see it.
_IMPLICIT_TAGS = {None, "!"}
_MAX_NODES = 100_000  # guards against alias bombs ("billion laughs")


class YamlMap(dict):
    """A mapping that knows its own line and the line of each key (1-based)."""

    line: int
    key_lines: dict[str, int]


class YamlList(list):
    """A sequence that knows its own line and the line of each item (1-based)."""

    line: int
    item_lines: list[int]


@dataclass(frozen=True)
class YamlProblem:
    line: int
    message: str


class YamlSyntaxError(Exception):
    def __init__(self, problems: list[YamlProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


class _TagRefusingLoader(yaml.SafeLoader):
    """A SafeLoader whose composer records explicit tags instead of resolving them."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.tag_problems: list[YamlProblem] = []

    def _check_tag(self) -> None:
        event = self.peek_event()
        tag = getattr(event, "tag", None)
        if tag not in _IMPLICIT_TAGS:
            tag = tag.replace("tag:yaml.org,2002:", "!!")  # show it as the user wrote it
            self.tag_problems.append(
                YamlProblem(
                    event.start_mark.line + 1,
                    f"YAML tag {tag!r} is not allowed; case files hold plain data only "
                    "(remove the tag, and quote the value if it should be a string)",
                )
            )

    def compose_scalar_node(self, anchor):  # type: ignore[no-untyped-def]
        self._check_tag()
        return super().compose_scalar_node(anchor)

    def compose_sequence_node(self, anchor):  # type: ignore[no-untyped-def]
        self._check_tag()
        return super().compose_sequence_node(anchor)

    def compose_mapping_node(self, anchor):  # type: ignore[no-untyped-def]
        self._check_tag()
        return super().compose_mapping_node(anchor)


def parse_yaml(text: str) -> Any:
    """Parse ``text`` into YamlMap / YamlList / scalars; raise YamlSyntaxError on any problem.

    Returns None for an empty document.
    """
    loader = _TagRefusingLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        column = f", column {mark.column + 1}" if mark else ""
        what = " ".join(filter(None, [exc.context, exc.problem]))
        raise YamlSyntaxError([YamlProblem(line, f"YAML syntax error{column}: {what}")]) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError([YamlProblem(1, f"YAML syntax error: {exc}")]) from None
    finally:
        loader.dispose()
    if loader.tag_problems:
        raise YamlSyntaxError(loader.tag_problems)
    if node is None:
        return None
    return _Converter(loader).convert(node)


class _Converter:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self._loader = loader
        self._count = 0
        self.problems: list[YamlProblem] = []

    def convert(self, node: yaml.Node) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise YamlSyntaxError(
                [YamlProblem(node.start_mark.line + 1, "the document is too large (alias expansion?)")]
            )
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            self._loader.flatten_mapping(node)  # resolves '<<' merge keys, as safe_load does
            result = YamlMap()
            result.line = line
            result.key_lines = {}
            duplicates = []
            for key_node, value_node in node.value:
                key = self.convert(key_node)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise YamlSyntaxError(
                        [YamlProblem(key_node.start_mark.line + 1, "mapping keys must be plain strings")]
                    )
                key = str(key)
                if key in result:
                    duplicates.append(
                        YamlProblem(key_node.start_mark.line + 1, f"key {key!r} appears twice in the same mapping")
                    )
                result[key] = self.convert(value_node)
                result.key_lines[key] = key_node.start_mark.line + 1
            if duplicates:
                raise YamlSyntaxError(duplicates)
            return result
        if isinstance(node, yaml.SequenceNode):
            seq = YamlList(self.convert(item) for item in node.value)
            seq.line = line
            seq.item_lines = [item.start_mark.line + 1 for item in node.value]
            return seq
        # Scalars: the standard resolver already picked str/int/float/bool/null (or timestamp).
        return self._loader.construct_object(node, deep=True)
