"""``$ref`` resolution inside one JSON Schema document.

The document is indexed once: every embedded resource (``$id``, or ``id`` in draft 4) under
its absolute URI, and every ``$anchor`` (or draft 6/7 ``$id: "#name"``) under its resource.
A reference is resolved against the base URI in force where it appears; a target outside the
document (another URL, the meta-schema) is a remote reference and is refused, a missing target
inside the document is a :class:`SchemaError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urldefrag, urljoin

from ..errors import SchemaError, UnsupportedSchemaError

# Base URI of a document without $id (the reserved .invalid TLD never collides).
DEFAULT_BASE = "https://root.invalid/schema.json"

# Keywords whose values are data, not subschemas: not searched for $id/$anchor.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "example"})


@dataclass(frozen=True, eq=False)
class Loc:
    """A subschema with where it lives: the JSON pointer (for messages and rule names) and the
    base URI its references resolve against. ``check`` is the schema the ``jsonschema``
    validator should use for the same constraint (differs only for synthesized schemas)."""

    node: object
    ptr: str
    base: str
    check: object = None

    def child(self, *keys) -> Loc:
        node = self.node
        ptr = self.ptr
        for k in keys:
            node = node[k]
            ptr = f"{ptr}/{_escape(str(k))}"
        if isinstance(node, Loc):
            return node
        base = self.base
        if isinstance(node, dict):
            base = _rebase(node, base)
        return Loc(node, ptr, base)

    @property
    def validation_schema(self):
        return self.node if self.check is None else self.check


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _rebase(node: dict, base: str) -> str:
    ident = node.get("$id")
    if not isinstance(ident, str):
        ident = node.get("id") if "$ref" not in node else None
        if not isinstance(ident, str):
            return base
    if ident.startswith("#"):
        return base
    return urldefrag(urljoin(base, ident))[0]


class SchemaIndex:
    """Resources and anchors of one schema document."""

    def __init__(self, root):
        self.root = root
        self.resources: dict[str, tuple[object, str]] = {}
        self.anchors: dict[tuple[str, str], Loc] = {}
        base = _rebase(root, DEFAULT_BASE) if isinstance(root, dict) else DEFAULT_BASE
        self.root_loc = Loc(root, "#", base)
        self.resources[DEFAULT_BASE] = (root, "#")
        self._walked = False  # the document is indexed on the first reference resolved

    def _walk(self, node, ptr: str, base: str) -> None:
        stack = [(node, ptr, base)]
        while stack:
            node, ptr, base = stack.pop()
            if isinstance(node, list):
                for i, item in enumerate(node):
                    stack.append((item, f"{ptr}/{i}", base))
                continue
            if not isinstance(node, dict):
                continue
            new_base = _rebase(node, base)
            if new_base != base or ptr == "#":
                self.resources.setdefault(new_base, (node, ptr))
            base = new_base
            for key in ("$anchor", "$dynamicAnchor"):
                name = node.get(key)
                if isinstance(name, str):
                    self.anchors.setdefault((base, name), Loc(node, ptr, base))
            ident = node.get("$id", node.get("id"))
            if isinstance(ident, str) and ident.startswith("#") and len(ident) > 1:
                self.anchors.setdefault((base, ident[1:]), Loc(node, ptr, base))
            elif isinstance(ident, str) and "#" in ident:
                frag = urldefrag(ident)[1]
                if frag and not frag.startswith("/"):
                    self.anchors.setdefault((base, frag), Loc(node, ptr, base))
            for key, value in node.items():
                if key in _DATA_KEYWORDS:
                    continue
                if isinstance(value, (dict, list)):
                    stack.append((value, f"{ptr}/{_escape(str(key))}", base))

    def resolve(self, ref: str, at: Loc) -> Loc:
        """The subschema ``ref`` (appearing in ``at``) points to."""
        if not isinstance(ref, str):
            raise SchemaError("$ref must be a string", at.ptr + "/$ref")
        if not self._walked:
            self._walked = True
            self._walk(self.root, "#", self.root_loc.base)
        target = urljoin(at.base, ref)
        url, frag = urldefrag(target)
        if url not in self.resources:
            raise UnsupportedSchemaError("$ref", at.ptr + "/$ref", f"remote reference {ref!r} (no network)")
        node, ptr = self.resources[url]
        base = url
        frag = unquote(frag)
        if not frag:
            return Loc(node, ptr, base)
        if frag.startswith("/"):
            try:
                return self._walk_pointer(node, ptr, base, frag)
            except KeyError:
                pass
            if url != self.root_loc.base:
                # a draft-4 style "id" that was only an ordinary word: try the document root
                try:
                    return self._walk_pointer(self.root, "#", self.root_loc.base, frag)
                except KeyError:
                    pass
            raise SchemaError(f"dangling $ref {ref!r}", at.ptr + "/$ref")
        loc = self.anchors.get((url, frag))
        if loc is None:
            raise SchemaError(f"dangling $ref {ref!r} (no anchor {frag!r})", at.ptr + "/$ref")
        return loc

    @staticmethod
    @staticmethod
    def _walk_pointer(node, ptr: str, base: str, frag: str) -> Loc:
        for token in frag[1:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise KeyError(token)
            ptr = f"{ptr}/{_escape(token)}"
            if isinstance(node, dict):
                base = _rebase(node, base)
        return Loc(node, ptr, base)
