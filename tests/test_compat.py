"""
The fence around Twisted's (and h2's) private names: checked in the source,
and the shims' own behaviour, byte for byte.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Iterator

from twisted.trial.unittest import SynchronousTestCase

import twisted_stream
from twisted_stream._compat import BoundedChunkedDecoder, MalformedChunkedData

_FENCE = "twisted_stream._compat"
_FOREIGN = ("twisted.", "h2.")


def _modules() -> Iterator[str]:
    for info in pkgutil.walk_packages(twisted_stream.__path__, "twisted_stream."):
        if info.name != _FENCE:
            yield info.name


def _isPrivate(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _foreign(cls: type) -> bool:
    return cls.__module__.startswith(_FOREIGN)


def _privateNamesOf(cls: type) -> set[str]:
    """
    The private names a foreign class has: its attributes, and those its
    methods set on instances.
    """
    names = {name for name in dir(cls) if _isPrivate(name)}
    for klass in cls.__mro__:
        if _foreign(klass):
            try:
                source = inspect.getsource(klass)
            except (OSError, TypeError):
                continue
            names |= {"_" + name for name in re.findall(r"\bself\._([A-Za-z]\w*)", source)}
    return names


def _violations(module: str) -> list[str]:
    loaded = importlib.import_module(module)
    path = Path(inspect.getfile(loaded))
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(_FOREIGN):
            if any(_isPrivate(part) for part in (node.module or "").split(".")):
                found.append(f"{module}:{node.lineno} imports from {node.module}")
            found += [
                f"{module}:{node.lineno} imports {alias.name} from {node.module}"
                for alias in node.names
                if _isPrivate(alias.name)
            ]
    foreignPrivate: set[str] = set()
    for name, value in vars(loaded).items():
        if isinstance(value, type) and value.__module__ == module:
            bases = [klass for klass in value.__mro__[1:] if _foreign(klass)]
            if not bases:
                continue
            private = set().union(*(_privateNamesOf(klass) for klass in bases))
            foreignPrivate |= private
            classNode = next(
                n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name
            )
            for node in ast.walk(classNode):
                if isinstance(node, ast.FunctionDef) and node.name in private:
                    found.append(f"{module}:{node.lineno} {name} overrides {node.name}")
                if isinstance(node, ast.Attribute) and node.attr in private:
                    found.append(f"{module}:{node.lineno} {name} uses {node.attr}")
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name) and target.id in private:
                            found.append(f"{module}:{node.lineno} {name} sets {target.id}")
    return found


_TOUCHED = (
    "twisted.web.http.HTTPChannel",
    "twisted.web.http.Request",
    "twisted.web._http2.H2Connection",
    "twisted.web._http2.H2Stream",
    "twisted.internet.tcp.Connection",
    "h2.connection.H2Connection",
)


def _touchedPrivateNames() -> set[str]:
    names: set[str] = set()
    for dotted in _TOUCHED:
        module, _, name = dotted.rpartition(".")
        names |= _privateNamesOf(getattr(importlib.import_module(module), name))
    return names


class FenceTests(SynchronousTestCase):
    def test_privateNamesOnlyInTheFence(self) -> None:
        """
        Outside L{twisted_stream._compat}, no module imports a private name
        or module of Twisted's or h2's, and no class overrides, reads or
        sets a private name of the Twisted or h2 classes it derives from.
        """
        found = [line for module in _modules() for line in _violations(module)]
        self.assertEqual(found, [], "\n".join(found))

    def test_noPrivateNameOfAnotherObject(self) -> None:
        """
        Nor does any module reach into another object for a private name of
        the Twisted classes the gateway meets (a request's channel, a
        stream's connection, a transport).
        """
        touched = _touchedPrivateNames()
        found = []
        for module in _modules():
            path = Path(inspect.getfile(importlib.import_module(module)))
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in touched
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                ):
                    found.append(f"{module}:{node.lineno} {ast.unparse(node)}")
        self.assertEqual(found, [], "\n".join(found))

    def test_theCheckSeesAViolation(self) -> None:
        """
        The check finds what it looks for (in the fence itself, which is
        where such uses are meant to be).
        """
        self.assertIn(f"{_FENCE}:", "\n".join(_violations(_FENCE)))


class BoundedChunkedDecoderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data: list[bytes] = []
        self.ended: list[bytes] = []
        self.decoder = BoundedChunkedDecoder(self.data.append, self.ended.append)

    def test_decodes(self) -> None:
        """
        A chunked body is decoded as Twisted's decoder does.
        """
        self.decoder.dataReceived(b"5\r\nhello\r\n0000000000000000\r\n\r\nafter")
        self.assertEqual((self.data, self.ended), ([b"hello"], [b"after"]))

    def test_refusesTheSeventeenthDigit(self) -> None:
        """
        A chunk size of more than 16 hex digits is refused as its 17th digit
        arrives, not when its line ends.
        """
        self.decoder.dataReceived(b"0" * 16)
        with self.assertRaises(MalformedChunkedData):
            self.decoder.dataReceived(b"1")
