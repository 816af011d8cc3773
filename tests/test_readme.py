"""The README cannot drift from the code: its API tour runs as written, its API reference lists exactly
the public names (each with a docstring), its layout names what exists, and nothing in the repository
points outside it."""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gpuconv

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title) -> str:
    """The text of the README's `## title` section, up to the next `## ` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def python_blocks(text) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


# ----------------------------------------------------------------------------- the tour runs


def test_tour_runs_as_written(tmp_path):
    """The tour's blocks, concatenated, in a fresh interpreter (its global settings, such as the workspace
    limit, stay out of this process). The PyTorch block needs torch; without it only the NumPy one runs."""
    blocks = python_blocks(section("API tour"))
    assert len(blocks) == 2 and "import torch" in blocks[1] and "import torch" not in blocks[0]
    try:
        import torch  # noqa: F401
    except ImportError:
        blocks = blocks[:1]
    script = tmp_path / "tour.py"
    script.write_text("\n".join(blocks) + "\nprint('tour ran')\n")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=900,
                       env=dict(os.environ, GPUCONV_AUTOTUNE="0"))
    assert p.returncode == 0 and p.stdout.endswith("tour ran\n"), p.stderr[-3000:]


def test_tour_names_are_defined_before_use():
    """Every name the tour reads is bound earlier in it (a static check: the bug was `dp`, `feat`, `fc_w`,
    `fc_b`, `gy`, `w2` used but never defined), so a skipped torch block cannot hide one."""
    import ast
    import builtins

    bound = set(dir(builtins))
    for block in python_blocks(section("API tour")):
        for node in ast.parse(block).body:
            loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            assert loads <= bound, f"{sorted(loads - bound)} used before definition in: {ast.unparse(node)[:80]}"
            for n in ast.walk(node):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    bound.add(n.id)
                elif isinstance(n, (ast.Import, ast.ImportFrom)):
                    bound.update((a.asname or a.name).split(".")[0] for a in n.names)


# ----------------------------------------------------------------------------- the API reference


def _public_modules():
    mods = [gpuconv]
    for name in ("gpuconv.torch", "gpuconv.dask"):
        try:
            mods.append(__import__(name, fromlist=["__all__"]))
        except ImportError:
            pass
    return mods


def test_api_reference_lists_exactly_the_public_names():
    table = section("API reference")
    listed = {}                                   # module -> names in its part of the table
    module = None
    for row in re.findall(r"^\| (.*?) \|", table, flags=re.M):
        head = re.fullmatch(r"\*\*`([\w.]+)`\*\*.*", row)
        if head:
            module = head.group(1)
            continue
        if module:
            listed.setdefault(module, set()).update(re.findall(r"`(\w+)`", row))
    assert set(listed) == {"gpuconv", "gpuconv.torch", "gpuconv.dask"}
    for mod in _public_modules():
        assert listed[mod.__name__] == set(mod.__all__), mod.__name__


@pytest.mark.parametrize("module", ["gpuconv", "gpuconv.torch", "gpuconv.dask", "gpuconv.shapes",
                                    "gpuconv.filters", "gpuconv.reference"])
def test_every_public_helper_has_a_docstring(module):
    """Every name in __all__, and every public function or class a public module defines, has a docstring
    of its own (not a dataclass's generated signature)."""
    try:
        mod = __import__(module, fromlist=["_"])
    except ImportError as e:
        pytest.skip(f"{module}: {e}")
    assert inspect.getdoc(mod), module
    names = set(getattr(mod, "__all__", ()))
    names |= {n for n, v in vars(mod).items() if not n.startswith("_") and (inspect.isfunction(v) or
              inspect.isclass(v)) and getattr(v, "__module__", "").startswith(module)}
    missing = []
    for n in sorted(names):
        v = getattr(mod, n)
        if not (callable(v) or inspect.ismodule(v)):
            continue                              # SIMULATOR, __version__: values, documented in the README
        doc = v.__doc__ or ""
        if not doc.strip() or doc.startswith(f"{n}("):
            missing.append(n)
    assert not missing, f"{module}: no docstring for {missing}"


# ----------------------------------------------------------------------------- layout and references


def _layout():
    """{path at the start of a line of the Layout block: the names its description mentions}."""
    block = re.search(r"```text\n(.*?)```", section("Layout"), flags=re.S).group(1)
    entries, current = {}, None
    for line in block.splitlines():
        if line and not line[0].isspace():
            current, _, rest = line.partition(" ")
            entries[current] = rest
        elif current:
            entries[current] += " " + line.strip()
    return entries


ENUMERATED = ("kernels/", "python/gpuconv/", "bench/", "scripts/", "examples/")   # layout lines that list every module


def test_layout_names_what_exists_and_lists_every_module():
    entries = _layout()
    for path, text in entries.items():
        assert (ROOT / path).exists(), f"README layout: {path} does not exist"
        if not path.endswith("/"):
            continue
        named = set(re.findall(r"[\w.]+\.(?:py|sh|md)\b|\b\w+/(?=[\s,;)]|$)", text))
        for name in named:
            assert (ROOT / path / name).exists(), f"README layout: {path}{name} does not exist"
        if path in ENUMERATED:
            on_disk = {p.name for p in (ROOT / path).iterdir()
                       if p.suffix in (".py", ".sh") and p.name != "__init__.py"}
            assert on_disk <= named, f"README layout: {path} does not mention {sorted(on_disk - named)}"


def test_nothing_points_outside_the_repository():
    """No tracked file refers to the design notes kept outside the repository."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    outside = re.compile("|".join(re.escape(s) for s in ("shared/" + "DESIGN", "../" + "shared", "shared/" + "STYLE")))
    found = [f for f in files if f.endswith((".py", ".md", ".sh", ".toml", ".txt", ".cfg", ".json", ".yml"))
             and (ROOT / f).exists() and outside.search((ROOT / f).read_text(encoding="utf-8", errors="replace"))]
    assert not found, f"files that point outside the repository: {found}"


def test_install_section_names_every_extra():
    tomllib = pytest.importorskip("tomllib")
    text = section("Install")
    for extra in ("cu12", "cu13"):
        assert f'pip install "gpuconv[{extra}] @ git+' in text
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in extras:
        assert f"`{extra}`" in text or f"[{extra}]" in text, f"the Install section does not name the {extra} extra"
