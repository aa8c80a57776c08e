"""NVRTC compilation and the on-disk kernel cache (CPU only: NVRTC needs no GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zmqrt.compiler import KernelCache, NvrtcError, compile_registry, compile_source
from zmqrt.compiler._cache import cache_key
from zmqrt.kernels.registry import load_registry

ARCH = "sm_90"


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_every_kernel_compiles_to_ptx_and_cubin(registry, tmp_path):
    compiled = compile_registry(registry, ARCH, KernelCache(tmp_path))
    assert set(compiled) == set(registry.sources())
    for spec in registry:
        comp = next(c for c in compiled.values() if c.path == spec.source_path)
        assert b".target sm_90" in comp.ptx
        assert f".entry {spec.entry}".encode() in comp.ptx, spec.name
        assert comp.cubin and comp.cubin[:4] == b"\x7fELF"


def test_cache_miss_then_hit(registry, tmp_path):
    cache = KernelCache(tmp_path)
    cold = compile_registry(registry, ARCH, cache)
    assert not any(c.from_cache for c in cold.values())
    assert cache.hits == 0
    warm_cache = KernelCache(tmp_path)
    warm = compile_registry(registry, ARCH, warm_cache)
    assert all(c.from_cache for c in warm.values())
    assert warm_cache.misses == 0 and warm_cache.hits == 2 * len(warm)
    for sid in cold:
        assert warm[sid].ptx == cold[sid].ptx and warm[sid].cubin == cold[sid].cubin


def test_cache_key_covers_arch_and_source(registry, tmp_path):
    cache = KernelCache(tmp_path)
    compile_registry(registry, ARCH, cache)
    other = KernelCache(tmp_path)
    again = compile_registry(registry, "sm_80", other)
    assert not any(c.from_cache for c in again.values())
    assert cache_key("a", "bc") != cache_key("ab", "c")


def test_corrupt_entry_is_a_miss_and_recompiled(registry, tmp_path):
    compile_registry(registry, ARCH, KernelCache(tmp_path))
    entries = sorted(tmp_path.glob("*.cubin"))
    assert entries
    victim = entries[0]
    blob = bytearray(victim.read_bytes())
    blob[-10] ^= 0xFF
    victim.write_bytes(bytes(blob))
    (tmp_path / sorted(tmp_path.glob("*.ptx"))[0].name).write_bytes(b"garbage")
    cache = KernelCache(tmp_path)
    result = compile_registry(registry, ARCH, cache)
    assert cache.corrupt == 2
    assert sum(not c.from_cache for c in result.values()) >= 1
    for c in result.values():
        assert b".target sm_90" in c.ptx
    # the recompiled entries were written back whole
    cache2 = KernelCache(tmp_path)
    compile_registry(registry, ARCH, cache2)
    assert cache2.corrupt == 0 and cache2.misses == 0


def test_unwritable_cache_dir_is_not_fatal(registry, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    result = compile_registry(registry, ARCH, KernelCache(blocker / "sub"))
    assert all(b".target sm_90" in c.ptx for c in result.values())


def test_compile_error_carries_log_and_source_name():
    src = 'extern "C" __global__ void broken(float* a) {\n  a[threadIdx.x] = undefined_name;\n}\n'
    with pytest.raises(NvrtcError) as info:
        compile_source(src, "broken.cu", ARCH)
    err = info.value
    assert err.source_name == "broken.cu"
    assert "undefined_name" in err.log and "broken.cu(2)" in err.log
    assert "NVRTC_ERROR_COMPILATION" in str(err)
    assert "2 |   a[threadIdx.x] = undefined_name;" in err.dump()


def test_ptx_only_compile():
    images = compile_source('extern "C" __global__ void k(float* a) { a[0] = 1.0f; }', "k.cu", ARCH,
                            want_cubin=False)
    assert images.cubin is None and b".target sm_90" in images.ptx


def test_kernels_command_takes_a_relative_kernels_dir(tmp_path, monkeypatch):
    import shutil

    from zmqrt.cli import main

    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "user_kernels", tmp_path / "uk")
    monkeypatch.chdir(tmp_path)
    assert main(["kernels", "--kernels-dir", "uk", "--out", str(tmp_path / "out"), "--no-cache"]) == 0
    assert any((tmp_path / "out").glob("scale_add.*.ptx"))


def test_resident_lane_source_compiles_without_a_gpu():
    from zmqrt.backends.resident import SOURCE
    from zmqrt.compiler import compile_one

    compiled = compile_one("resident", SOURCE, "sm_90", None, want_cubin=False)
    assert b".entry resident_lane" in compiled.ptx


@pytest.mark.parametrize("mode", [0, 1, 2, 3, 9])
@pytest.mark.parametrize("stamps", [False, True])
def test_every_resident_ordering_mode_compiles(mode, stamps):
    """bench/resident_variants.py builds each RESIDENT_FENCE mode, with and without clock stamps; the default build
    (mode 3) publishes the done number with a release store and reads the mailbox with an acquire load."""
    from zmqrt.backends.resident import SOURCE
    from zmqrt.compiler import COMPILE_OPTIONS

    opts = (*COMPILE_OPTIONS, f"-DRESIDENT_FENCE={mode}", *(("-DRESIDENT_STAMPS",) if stamps else ()))
    ptx = compile_source(SOURCE.read_text(), "resident.cu", "sm_90", opts, want_cubin=False).ptx
    assert b".entry resident_lane" in ptx
    assert (b"resident_stamps" in ptx) == stamps
    assert (b"ld.acquire.sys" in ptx) == (mode >= 2)
    assert (b"st.release.sys" in ptx) == (mode == 3)
    assert (b"membar.sys" in ptx) == (mode in (0, 1, 2))  # __threadfence_system; mode 9 has no release at all


def test_the_default_resident_build_is_the_release_store():
    from zmqrt.backends.resident import SOURCE
    from zmqrt.compiler import compile_one

    ptx = compile_one("resident", SOURCE, "sm_90", None, want_cubin=False).ptx
    assert b"st.release.sys" in ptx and b"ld.acquire.sys" in ptx and b"membar.sys" not in ptx
