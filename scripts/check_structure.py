#!/usr/bin/env python3
"""Checks the shape of colo's source tree; run by scripts/check-structure.sh (and so by CI).

1. No import circle between subsystems. A subsystem is a top-level module of a crate
   (`agent/src/jobs/` and `agent/src/jobs.rs` are both the agent's `jobs`). Every `crate::x`
   path in a file (in `use` lines and inline) and every `super::` path that climbs to the crate
   root and down into another module is an edge from the file's subsystem to `x`. The crate
   root (lib.rs, main.rs) wires subsystems together and is not one. Files of one subsystem may
   import each other freely; a circle between two or more subsystems is an error, printed with
   one file:line per edge. Test-only code (`#[cfg(test)]` modules) is left out: a unit test may
   drive a subsystem through the ones above it.
2. No hand-written Rust file over MAX_LINES lines.
3. No comment or doc that points outside the repository (absolute paths into the build
   machine, issue numbers of the tracker).

Usage: scripts/check_structure.py [--graph]   (--graph prints every crate's subsystem edges)
Exit status 0 when the tree passes, 1 with a list of what failed.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600
SKIP_DIRS = {"target", ".git", "node_modules"}

# Text that means nothing to a reader of the repository.
OUTSIDE = [
    (re.compile(r"(?:^|[\s`'\"(])/work/"), "an absolute path on a development machine"),
    (re.compile(r"HOST-NOTES"), "a notes file that is not in the repository"),
    (re.compile(r"\.\./shared"), "a folder outside the repository"),
    (re.compile(r"\b[Ii]ssues? #?\d+\b"), "an issue number of the tracker"),
    (re.compile(r"(?<![A-Za-z0-9&#])#\d{1,3}\b(?!\])"), "an issue number of the tracker"),
]
OUTSIDE_SUFFIXES = {".rs", ".md", ".sh", ".py", ".toml", ".yaml", ".yml", ".service", ".proto"}
# Rust `#N` outside comments is code (e.g. raw strings r#"..."#); only comments are checked in .rs.
RUST_COMMENT = re.compile(r"//.*$")


def tracked_files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS for part in rel.parts) or not path.is_file():
            continue
        out.append(path)
    return sorted(out)


def crates(files: list[Path]) -> list[Path]:
    return sorted({f.parent for f in files if f.name == "Cargo.toml" and (f.parent / "src").is_dir()})


def module_path(src: Path, file: Path) -> list[str] | None:
    """The module path of a file under a crate's src/, or None for separate roots (bins)."""
    rel = file.relative_to(src)
    parts = list(rel.parts)
    if parts[0] == "bin":
        return None
    if parts == ["lib.rs"] or parts == ["main.rs"]:
        return []
    last = parts[-1][:-3]
    parts = parts[:-1] + ([] if last == "mod" else [last])
    return parts


def brace_heads(text: str, start: int) -> list[str]:
    """First identifiers of each item inside a `{...}` group opening at text[start]."""
    heads, depth, i, expect = [], 0, start, True
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
            expect = depth == 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        elif c == "," and depth == 1:
            expect = True
        elif expect and depth == 1 and (c.isalpha() or c == "_"):
            m = re.match(r"\w+", text[i:])
            heads.append(m.group(0))
            i += len(m.group(0))
            expect = False
            continue
        elif not c.isspace():
            expect = False if depth == 1 else expect
        i += 1
    return heads


PATH_RE = re.compile(r"\b(crate|(?:super::)+)(?:::)?(\{|\w+)")


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def strip_strings(text: str) -> str:
    return re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', text)


TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([\w:]+\))?\s+)?mod\s+(\w+)\s*([;{])")


def strip_test_modules(text: str) -> str:
    """Blanks inline `#[cfg(test)] mod x { ... }` blocks, keeping line numbers."""
    out, pos = [], 0
    for m in TEST_MOD.finditer(text):
        if m.group(2) != "{" or m.start() < pos:
            continue
        depth, i = 0, m.end() - 1
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        out.append(text[pos : m.start()])
        out.append(re.sub(r"[^\n]", " ", text[m.start() : i + 1]))
        pos = i + 1
    out.append(text[pos:])
    return "".join(out)


def test_only_modules(root_file: Path) -> set[str]:
    """Top-level modules the crate root declares under `#[cfg(test)]`."""
    if not root_file.is_file():
        return set()
    text = strip_comments(root_file.read_text(errors="replace"))
    return {m.group(1) for m in TEST_MOD.finditer(text) if m.group(2) == ";"}


def edges_of(file: Path, modpath: list[str]) -> list[tuple[str, int]]:
    """(target top-level module, line) for every path out of this file to the crate's modules."""
    text = strip_test_modules(strip_strings(strip_comments(file.read_text(errors="replace"))))
    out = []
    for m in PATH_RE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        kind, head = m.group(1), m.group(2)
        if kind == "crate":
            base: list[str] = []
        else:
            ups = kind.count("super")
            # `super` inside an inline `mod tests` of a file refers to the file itself; a file's
            # own module path is the floor, so climbing from it is what matters here.
            if ups > len(modpath):
                continue
            base = modpath[: len(modpath) - ups]
        if base:
            continue  # still inside the file's own top-level module
        heads = brace_heads(text, m.start(2)) if head == "{" else [head]
        for h in heads:
            if h in ("self", "super", "crate"):
                continue
            out.append((h, line))
    return out


def tarjan(nodes: set[str], graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sccs


def check_circles(files: list[Path], show_graph: bool) -> list[str]:
    problems = []
    for crate in crates(files):
        src = crate / "src"
        mods: dict[Path, list[str]] = {}
        for f in files:
            if f.suffix == ".rs" and src in f.parents:
                mp = module_path(src, f)
                if mp is not None:
                    mods[f] = mp
        tests_only = test_only_modules(src / "lib.rs") | test_only_modules(src / "main.rs")
        mods = {f: mp for f, mp in mods.items() if not mp or mp[0] not in tests_only}
        top = {mp[0] for mp in mods.values() if mp}
        graph: dict[str, set[str]] = defaultdict(set)
        where: dict[tuple[str, str], str] = {}
        for f, mp in mods.items():
            if not mp:
                continue
            for target, line in edges_of(f, mp):
                if target in top and target != mp[0]:
                    graph[mp[0]].add(target)
                    where.setdefault((mp[0], target), f"{f.relative_to(ROOT)}:{line}")
        name = crate.relative_to(ROOT)
        if show_graph:
            for a in sorted(graph):
                print(f"{name}: {a} -> {', '.join(sorted(graph[a]))}")
        for comp in tarjan(top, graph):
            lines = [f"{name}: import circle between subsystems {', '.join(comp)}:"]
            for a in comp:
                for b in sorted(graph[a]):
                    if b in comp:
                        lines.append(f"    {a} -> {b}  ({where[(a, b)]})")
            problems.append("\n".join(lines))
    return problems


def check_lengths(files: list[Path]) -> list[str]:
    problems = []
    for f in files:
        if f.suffix == ".rs":
            n = sum(1 for _ in f.open(errors="replace"))
            if n > MAX_LINES:
                problems.append(f"{f.relative_to(ROOT)}: {n} lines (at most {MAX_LINES}): split it by concept")
    return problems


def check_outside(files: list[Path]) -> list[str]:
    problems = []
    me = Path(__file__).resolve()
    for f in files:
        if f.suffix not in OUTSIDE_SUFFIXES or f.resolve() == me or f.name == "Cargo.lock":
            continue
        for no, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            text = line
            if f.suffix == ".rs":
                m = RUST_COMMENT.search(line)
                if not m:
                    continue
                text = m.group(0)
            for rx, why in OUTSIDE:
                hit = rx.search(text)
                if hit:
                    problems.append(f"{f.relative_to(ROOT)}:{no}: '{hit.group(0)}' is {why}; state the fact itself")
                    break
    return problems


def main() -> int:
    files = tracked_files()
    problems = check_circles(files, "--graph" in sys.argv) + check_lengths(files) + check_outside(files)
    for p in problems:
        print(p)
    if problems:
        print(f"check_structure: {len(problems)} problem(s)")
        return 1
    print("check_structure: no circle between subsystems, no file over "
          f"{MAX_LINES} lines, nothing points outside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
