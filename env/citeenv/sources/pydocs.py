"""The default corpus, built offline from the running Python's own documentation.

Two kinds of document:
- one per language-reference topic in `pydoc_data.topics` (what `help("assert")` shows):
  id `pydocs:topic:<key>`, url `https://docs.python.org/3/reference/topics.html#<key>`;
- one per public standard-library module (top-level names from `sys.stdlib_module_names` and
  their public submodules): the module docstring, then each public class, function and method
  with its signature and docstring. id `pydocs:module:<name>`, url
  `https://docs.python.org/3/library/<name lowercased>.html` (the real page for most modules).

Dotted names a page mentions that another page documents (`json.dumps`, `os.path`) become
Links to `<that page's url>#<qualified name>`.

The build is deterministic for a given Python: it runs in a fresh standard-library-only process
(see build_pydocs), names are visited in a fixed order, and signature defaults whose repr varies
between runs (memory addresses, set order, os.environ) are rewritten.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import pkgutil
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from citeenv.corpus import DEFAULT_CHUNK_CHARS, Corpus, CorpusError
from citeenv.documents import Document, Link

TOPIC_URL = "https://docs.python.org/3/reference/topics.html#{key}"
MODULE_URL = "https://docs.python.org/3/library/{page}.html"

# Modules never imported: they act on import (open a browser, print, touch the terminal's
# readline state), need a display, are the test suite or IDLE, or are removed/shimmed upstream.
SKIP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3",
    "distutils", "readline", "rlcompleter", "pydoc_data", "ensurepip",
}
SKIP_PARTS = {"test", "tests", "idle_test", "__main__"}
NO_SUBMODULES = {"encodings"}  # a hundred codec modules with boilerplate docstrings
# Documented names that are not found by walking packages (os is a module, not a package).
ALIASES = ["os.path"]


def build_pydocs(include_topics: bool = True, include_modules: bool = True, modules: list[str] | None = None,
                 chunk_chars: int = DEFAULT_CHUNK_CHARS, isolated: bool = True) -> Corpus:
    """The pydocs corpus. `modules` restricts the module pages (e.g. ["json"]) for quick tests.

    isolated=True reads the documentation in a fresh `python -I -S` process: third-party
    packages patch the standard library once imported (transformers adds methods to
    logging.Logger, for one), so reading it in this process would make the corpus depend on
    what happened to be imported first. It also keeps ~400 modules out of this process."""
    if isolated:
        docs = _documents_in_subprocess(include_topics, include_modules, modules)
    else:
        docs = pydocs_documents(include_topics, include_modules, modules)
    return Corpus(docs, name="pydocs", chunk_chars=chunk_chars)


def pydocs_documents(include_topics: bool = True, include_modules: bool = True,
                     modules: list[str] | None = None) -> list[Document]:
    docs = topic_documents() if include_topics else []
    if include_modules:
        docs += module_documents(modules)
    _add_links(docs)
    return docs


_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from citeenv.sources.pydocs import pydocs_documents
args = json.loads(sys.argv[2])
docs = pydocs_documents(args["topics"], args["modules"], args["names"])
with open(sys.argv[3], "w", encoding="utf-8") as f:
    json.dump([d.to_dict() for d in docs], f, ensure_ascii=False)
"""


def _documents_in_subprocess(include_topics, include_modules, modules) -> list[Document]:
    root = Path(__file__).resolve().parents[2]  # the directory holding the env package
    args = json.dumps({"topics": include_topics, "modules": include_modules, "names": modules})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "docs.json"
        # -I: ignore PYTHON* variables and user site; -S: no site-packages, so nothing but the
        # standard library (and env/, which only uses it) can be imported.
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD, str(root), args, str(out)],
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0 or not out.is_file():
            raise CorpusError("Building the pydocs corpus failed in its helper process:\n" + proc.stderr[-2000:])
        return [Document.from_dict(d) for d in json.loads(out.read_text(encoding="utf-8"))]


def topic_documents() -> list[Document]:
    from pydoc_data.topics import topics

    docs = []
    for key in sorted(topics):
        text = topics[key].strip("\n")
        title = next((line.strip() for line in text.splitlines() if line.strip()), key)
        docs.append(Document(id=f"pydocs:topic:{key}", title=title, url=TOPIC_URL.format(key=key), text=text,
                             meta={"kind": "topic", "topic": key}))
    return docs


def public_module_names() -> list[str]:
    """Importable public stdlib modules and their public submodules, sorted (parents first)."""
    names = []
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIP:
            continue
        mod = _import_quietly(top)
        if mod is None:
            continue
        names.append(top)
        if hasattr(mod, "__path__") and top not in NO_SUBMODULES:
            names.extend(_public_submodules(mod))
    names.extend(a for a in ALIASES if _import_quietly(a) is not None)
    return sorted(set(names))


def _public_submodules(pkg) -> list[str]:
    found = []
    for info in pkgutil.iter_modules(pkg.__path__, prefix=pkg.__name__ + "."):
        last = info.name.rsplit(".", 1)[1]
        if last.startswith("_") or last in SKIP_PARTS:
            continue
        sub = _import_quietly(info.name)
        if sub is None:
            continue
        found.append(info.name)
        if info.ispkg:
            found.extend(_public_submodules(sub))
    return found


def _import_quietly(name: str):
    """Import a module without letting it print, warn or abort the build; None if it fails."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except BaseException:  # ImportError on other platforms, SystemExit from odd modules
            return None


def module_documents(modules: list[str] | None = None) -> list[Document]:
    names = sorted(modules) if modules is not None else public_module_names()
    documented: set[int] = set()  # ids of objects already on an earlier (parent) page
    docs = []
    for name in names:
        mod = _import_quietly(name)
        if mod is None:
            continue
        doc = _module_document(mod, name, documented)
        if doc is not None:
            docs.append(doc)
    return docs


def _module_document(mod, name: str, documented: set[int]) -> Document | None:
    """`name` is how users spell the module (os.path), which may differ from mod.__name__ (posixpath)."""
    module_doc = _own_doc(mod).strip()
    summary = _first_sentence(module_doc)
    title = f"{name} — {summary}" if summary else name
    parts = [title]
    if module_doc:
        parts.append(module_doc)
    anchors: dict[str, int] = {}  # qualified name -> offset of its entry in the text
    pos = sum(len(p) + 2 for p in parts)  # parts are joined with blank lines

    def add(qual, obj):
        nonlocal pos
        anchors[qual] = pos
        parts.append(_entry(qual, obj))
        pos += len(parts[-1]) + 2

    for attr, obj in _public_members(mod):
        if id(obj) in documented:
            continue
        documented.add(id(obj))
        add(f"{name}.{attr}", obj)
        if inspect.isclass(obj):
            for mname, member in _class_members(obj):
                add(f"{name}.{attr}.{mname}", member)
    if not anchors and not module_doc:
        return None  # an implementation module whose API a parent page already covers
    return Document(id=f"pydocs:module:{name}", title=title, url=MODULE_URL.format(page=name.lower()),
                    text="\n\n".join(parts), meta={"kind": "module", "module": name, "anchors": anchors})


def _first_sentence(text: str, limit: int = 80) -> str:
    """The docstring's first sentence on one line, cut at a word near `limit` chars."""
    para = " ".join(text.split("\n\n", 1)[0].split())
    m = re.search(r"(?<=[.!?])\s", para)
    sentence = para[: m.start()] if m else para
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + " …"
    return sentence


def _public_members(mod):
    explicit = getattr(mod, "__all__", None)
    if isinstance(explicit, (list, tuple)) and all(isinstance(n, str) for n in explicit):
        names = list(dict.fromkeys(explicit))
    else:
        names = [n for n in vars(mod) if not n.startswith("_")]
        explicit = None
    out = []
    for attr in names:
        try:
            obj = getattr(mod, attr)
        except Exception:
            continue
        if inspect.ismodule(obj) or not _is_documentable(obj):
            continue
        # Without __all__, only what the module defines counts; imported helpers belong elsewhere.
        if explicit is None and getattr(obj, "__module__", None) != mod.__name__:
            continue
        out.append((attr, obj))
    return out


def _is_documentable(obj) -> bool:
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return True
    # Instances with a docstring of their own (typing.Union, functools.partial objects...).
    doc = getattr(obj, "__doc__", None)
    return isinstance(doc, str) and doc != type(obj).__doc__


def _class_members(cls):
    out = []
    for mname, member in vars(cls).items():
        if mname.startswith("_"):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isroutine(member) or isinstance(member, property):
            out.append((mname, member))
    return out


def _entry(qual: str, obj) -> str:
    if isinstance(obj, property):
        head = f"property {qual}"
    elif inspect.isclass(obj):
        head = f"class {qual}{_signature(obj)}"
    elif inspect.isroutine(obj):
        head = f"{qual}{_signature(obj)}"
    else:
        head = qual
    doc = _own_doc(obj)
    return f"{head}\n{doc}" if doc else head


def _own_doc(obj) -> str:
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


class _Shown:
    """Stands in for a default value so the signature prints a run-independent repr."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _stable_repr(value) -> str:
    if isinstance(value, (set, frozenset)):
        inner = ", ".join(sorted(_stable_repr(v) for v in value))
        return f"{type(value).__name__}({{{inner}}})" if value else f"{type(value).__name__}()"
    try:
        text = repr(value)
    except Exception:
        return "..."
    text = _ADDRESS.sub("", text)
    return text if len(text) <= 80 else "..."  # long reprs are data (os.environ), not documentation


def _signature(obj) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = [p.replace(default=_Shown(_stable_repr(p.default))) if p.default is not p.empty else p
              for p in sig.parameters.values()]
    try:
        return _ADDRESS.sub("", str(sig.replace(parameters=params)))
    except (TypeError, ValueError):
        return "(...)"


_DOTTED = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _add_links(docs: list[Document]) -> None:
    """Link dotted names (json.dumps, os.path) to the page that documents them."""
    targets: dict[str, tuple[str, str]] = {}  # qualified name -> (doc id, url with anchor)
    for doc in docs:
        if doc.meta.get("kind") != "module":
            continue
        module = doc.meta["module"]
        if "." in module:
            targets.setdefault(module, (doc.id, doc.url))
        for qual in doc.meta["anchors"]:
            targets.setdefault(qual, (doc.id, f"{doc.url}#{qual}"))
    for doc in docs:
        seen = set()
        for m in _DOTTED.finditer(doc.text):
            target = targets.get(m.group())
            if target is None or target[0] == doc.id or m.group() in seen:
                continue
            seen.add(m.group())  # link each name once per page, at its first mention
            doc.links.append(Link(text=m.group(), url=target[1], start=m.start(), end=m.end()))
