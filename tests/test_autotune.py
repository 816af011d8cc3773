"""algo="auto": the tuner's cache (hit, miss, disk, corrupt file, concurrent writers, stale entries) and
that auto only ever picks an eligible algorithm. The timers here are stand-ins that return fixed numbers:
they test the bookkeeping, not any speed."""

import json
import multiprocessing

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import rel_err
from gpuconv import autotune, gpu_conv2d
from gpuconv import reference as ref
from gpuconv._args import conv2d_geometry

F32 = np.dtype(np.float32)


def fixed_timer(times, calls):
    def timer(algo):
        calls.append(algo)
        return times[algo]
    return timer


def test_choose_times_once_then_hits_memory_and_disk(tmp_path):
    path = str(tmp_path / "autotune.json")
    calls = []
    t = autotune.Tuner(path)
    cands = ["direct", "implicit_gemm", "im2col"]
    assert t.choose("k1", cands, fixed_timer({"direct": 3.0, "implicit_gemm": 1.0, "im2col": 2.0}, calls)) == \
        "implicit_gemm"
    assert calls == cands
    assert t.choose("k1", cands, fixed_timer({}, calls)) == "implicit_gemm"       # memory hit: no timing
    assert calls == cands
    fresh = autotune.Tuner(path)                                                 # another process: disk hit
    assert fresh.lookup("k1") == "implicit_gemm"
    data = json.loads(open(path).read())
    assert data["entries"]["k1"]["times_ms"] == {"direct": 3.0, "implicit_gemm": 1.0, "im2col": 2.0}


def test_stale_entry_is_retimed(tmp_path):
    t = autotune.Tuner(str(tmp_path / "a.json"))
    t.store("k", "winograd", {"winograd": 1.0})
    calls = []
    assert t.choose("k", ["direct", "im2col"], fixed_timer({"direct": 2.0, "im2col": 1.0}, calls)) == "im2col"
    assert calls == ["direct", "im2col"]


def test_corrupt_cache_is_set_aside(tmp_path):
    path = tmp_path / "autotune.json"
    path.write_text("{not json")
    t = autotune.Tuner(str(path))
    with pytest.warns(UserWarning, match="unreadable"):
        assert t.lookup("k") is None
    assert (tmp_path / "autotune.json.corrupt").read_text() == "{not json"
    t.store("k", "direct", {"direct": 1.0})
    assert json.loads(path.read_text())["entries"]["k"]["algo"] == "direct"


def _writer(args):
    path, worker = args
    t = autotune.Tuner(path)
    for i in range(15):
        t.store(f"w{worker}-{i}", "direct", {"direct": float(i)})


def test_concurrent_writers_keep_every_entry(tmp_path):
    path = str(tmp_path / "autotune.json")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_writer, [(path, w) for w in range(4)])
    entries = json.loads(open(path).read())["entries"]
    assert len(entries) == 60


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 4), c=st.sampled_from([1, 3, 8, 32, 64]), k=st.sampled_from([1, 4, 32, 64]),
       hw=st.integers(3, 40), r=st.sampled_from([1, 3, 5]), stride=st.integers(1, 3), dilation=st.integers(1, 2),
       depthwise=st.booleans(), pad=st.integers(0, 2))
def test_heuristic_picks_only_eligible(n, c, k, hw, r, stride, dilation, depthwise, pad):
    groups = c if depthwise else 1
    k = c if depthwise else k
    try:
        g = conv2d_geometry((n, c, hw, hw), (k, c // groups, r, r), stride, pad, dilation, groups)
    except ValueError:
        return
    ok = autotune.eligible(g, F32)
    assert autotune.heuristic(g, F32) in ok
    assert autotune.heuristic(g, F32, weight_viewable=False) == "direct"
    if autotune.heuristic(g, F32) == "winograd":
        assert (g.R, g.S, g.stride, g.dilation, g.groups) == (3, 3, (1, 1), (1, 1), 1)


def test_auto_runs_the_heuristic_choice_in_the_simulator(rng):
    if autotune.can_time():
        pytest.skip("on a GPU auto times the candidates instead")
    x = rng.standard_normal((1, 8, 5, 5)).astype(np.float32)
    w = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)
    g = conv2d_geometry(x.shape, w.shape, padding=1)
    assert autotune.heuristic(g, F32) == "implicit_gemm"
    assert rel_err(gpu_conv2d(x, w, padding=1), ref.conv2d(x, w, padding=1)) < 1e-5


def test_cache_path_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUCONV_CACHE_DIR", str(tmp_path))
    assert autotune.cache_path() == str(tmp_path / "autotune.json")
    monkeypatch.delenv("GPUCONV_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert autotune.cache_path() == str(tmp_path / "xdg" / "gpuconv" / "autotune.json")


def _cache_file(path, entries):
    path.write_text(json.dumps({"version": autotune.CACHE_VERSION, "entries": entries}))


GOOD = {"algo": "implicit_gemm", "times_ms": {"direct": 2.0, "implicit_gemm": 1.0}}


@pytest.mark.parametrize("bad", ["direct", None, {}, [], {"algo": "fft", "times_ms": {}},
                                 {"algo": "direct"}, {"algo": "direct", "times_ms": {"direct": "1"}},
                                 {"algo": "direct", "times_ms": {"direct": float("nan")}},
                                 {"algo": "direct", "times_ms": [1.0]}, {"algo": ["direct"], "times_ms": {}}])
def test_malformed_entry_is_dropped_and_the_rest_kept(tmp_path, bad):
    """One bad entry must not break lookups of the others, nor get the file set aside."""
    path = tmp_path / "autotune.json"
    _cache_file(path, {"bad": bad, "good": GOOD})
    t = autotune.Tuner(str(path))
    with pytest.warns(UserWarning, match="dropped 1 malformed entry") as record:
        assert t.lookup("good") == "implicit_gemm"
        assert t.lookup("bad") is None
    assert len(record) == 1
    assert not (tmp_path / "autotune.json.corrupt").exists()
    calls = []
    assert t.choose("bad", ["direct", "im2col"], fixed_timer({"direct": 1.0, "im2col": 2.0}, calls)) == "direct"
    entries = json.loads(path.read_text())["entries"]          # rewritten with valid entries only
    assert entries == {"good": GOOD, "bad": {"algo": "direct", "times_ms": {"direct": 1.0, "im2col": 2.0}}}


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, '{"version": 1, "entries": ' + "{\"a\": " * 5000 +
                                  "1" + "}" * 5001, "[]", '"text"', '{"version": 1, "entries": []}', "\x00\xff"])
def test_unparseable_or_deeply_nested_file_is_set_aside(tmp_path, text):
    path = tmp_path / "autotune.json"
    path.write_text(text, errors="surrogateescape")
    t = autotune.Tuner(str(path))
    with pytest.warns(UserWarning, match="unreadable"):
        assert t.lookup("k") is None
    assert (tmp_path / "autotune.json.corrupt").exists() and not path.exists()
    t.store("k", "direct", {"direct": 1.0})
    assert json.loads(path.read_text())["entries"]["k"]["algo"] == "direct"


def test_cache_dir_is_the_platform_user_cache(monkeypatch):
    platformdirs = pytest.importorskip("platformdirs")
    monkeypatch.delenv("GPUCONV_CACHE_DIR", raising=False)
    assert autotune.cache_dir() == platformdirs.user_cache_dir("gpuconv", appauthor=False)


def test_tf32_is_part_of_the_cache_key():
    """A choice timed with TF32 off is not reused with it on (im2col then runs on the tensor cores)."""
    g = conv2d_geometry((1, 8, 16, 16), (8, 8, 3, 3), 1, 1, 1, 1)
    f32 = np.dtype(np.float32)
    plain, tf32 = (autotune.key_of("dev", g, f32, False, 0, tc) for tc in (None, "tf32"))
    assert plain != tf32 and plain == autotune.key_of("dev", g, f32, False, 0)
