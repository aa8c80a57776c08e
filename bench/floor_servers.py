"""The floors zmqrt is compared against, as servers speaking just enough of the zmqrt wire protocol.

- ``echo_server``: PULL, msgpack decode, PUSH the first input straight back to ``reply_to``. The bare ZeroMQ
  round trip with Python on both ends.
- ``prototype_server``: the minimal ZeroMQ -> CUDA graph -> ZeroMQ path of DESIGN.md: one stream, one captured
  graph of H2D + ``vector_add`` + D2H on preallocated pinned/device buffers, ``memmove`` in, sync, reply. No
  validation, no scheduling, no tracking: the best a Python server can do for this one fixed task.
- ``resident_prototype_server``: the same, with the GPU stage of ``zmqrt serve --resident`` instead of the graph: a
  kernel that never returns serves a mailbox in mapped pinned memory (``bench/persistent_floor.py``). Inputs
  copied in, a request number stored, the done number polled, the output copied out; no driver call per task. The
  floor of a Python server with that GPU path: what is left above it in zmqrt is zmqrt's own per-task work.

Both run in a spawned process, stamp each task's receipt and send (``perf_counter_ns``, CLOCK_MONOTONIC like
the server's trace) and put the ``(receipt, sent)`` pairs on a queue at the end. They stop after ``n`` tasks.
``spin`` busy-polls the socket (and the event) instead of blocking.
"""

from __future__ import annotations

import ctypes
import time

import msgpack
import numpy as np
import zmq


def _recv(sock: zmq.Socket, spin: bool) -> bytes:
    if not spin:
        return sock.recv()
    while True:
        try:
            return sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            pass


def _reply_socket(ctx: zmq.Context, cache: dict, endpoint: str) -> zmq.Socket:
    sock = cache.get(endpoint)
    if sock is None:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(endpoint)
        cache[endpoint] = sock
    return sock


def _finish(out_q, stamps: list, peers: dict, pull: zmq.Socket, zctx: zmq.Context) -> None:
    """Hand the stamps over, give the last results time to leave, and close the sockets."""
    out_q.put(stamps)
    time.sleep(0.5)
    for sock in peers.values():
        sock.close()
    pull.close(0)
    zctx.term()


def echo_server(endpoint: str, n: int, spin: bool, ready, out_q) -> None:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(endpoint)
    peers: dict = {}
    ready.set()
    pc = time.perf_counter_ns
    stamps = []
    for _ in range(n):
        raw = _recv(pull, spin)
        t0 = pc()
        m = msgpack.unpackb(raw, raw=False)
        data = m["inputs"][0]
        payload = msgpack.packb({"id": m["id"], "status": "ok", "code": "OK", "message": "",
                                 "outputs": [data], "missed_deadline": False, "latency_us": {}})
        _reply_socket(ctx, peers, m["reply_to"]).send(payload)
        stamps.append((t0, pc()))
    _finish(out_q, stamps, peers, pull, ctx)


def prototype_server(endpoint: str, n: int, spin: bool, ready, out_q, nel: int = 256) -> None:
    from cuda.bindings import driver as cu
    from cuda.bindings import nvrtc

    def ok(r):
        if int(r[0]) != 0:
            raise RuntimeError(f"CUDA error {r[0]}")
        return r[1] if len(r) == 2 else r[1:]

    src = (b'extern "C" __global__ void vadd(const float* a, const float* b, float* c, int n) {'
           b' int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) c[i] = a[i] + b[i]; }')
    ok(cu.cuInit(0))
    dev = ok(cu.cuDeviceGet(0))
    ctx_cu = ok(cu.cuDevicePrimaryCtxRetain(dev))
    ok(cu.cuCtxSetCurrent(ctx_cu))
    major = ok(cu.cuDeviceGetAttribute(cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev))
    minor = ok(cu.cuDeviceGetAttribute(cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))
    prog = ok(nvrtc.nvrtcCreateProgram(src, b"proto.cu", 0, [], []))
    opts = [f"--gpu-architecture=sm_{major}{minor}".encode()]
    if int(nvrtc.nvrtcCompileProgram(prog, 1, opts)[0]) != 0:
        raise RuntimeError("prototype kernel failed to compile")
    size = ok(nvrtc.nvrtcGetCUBINSize(prog))
    cubin = bytearray(size)
    nvrtc.nvrtcGetCUBIN(prog, cubin)
    mod = ok(cu.cuModuleLoadData(bytes(cubin)))
    f = ok(cu.cuModuleGetFunction(mod, b"vadd"))
    s = ok(cu.cuStreamCreate(1))
    ev = ok(cu.cuEventCreate(2))
    nb = nel * 4
    h_in = ok(cu.cuMemHostAlloc(2 * nb, 0))
    h_out = ok(cu.cuMemHostAlloc(nb, 0))
    d_in = ok(cu.cuMemAlloc(2 * nb))
    d_out = ok(cu.cuMemAlloc(nb))
    out_view = (ctypes.c_char * nb).from_address(h_out)
    vals = [np.array([int(d_in)], np.uint64), np.array([int(d_in) + nb], np.uint64),
            np.array([int(d_out)], np.uint64), np.array([nel], np.int32)]
    params = np.array([v.ctypes.data for v in vals], np.uint64)
    ok((cu.cuStreamBeginCapture(s, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)[0], None))
    cu.cuMemcpyHtoDAsync(d_in, h_in, 2 * nb, s)
    cu.cuLaunchKernel(f, (nel + 255) // 256, 1, 1, 256, 1, 1, 0, s, params.ctypes.data, 0)
    cu.cuMemcpyDtoHAsync(h_out, d_out, nb, s)
    g = ok(cu.cuStreamEndCapture(s))
    gx = ok(cu.cuGraphInstantiate(g, 0))
    zctx = zmq.Context()
    pull = zctx.socket(zmq.PULL)
    pull.bind(endpoint)
    peers: dict = {}
    ready.set()
    pc = time.perf_counter_ns
    stamps = []
    for _ in range(n):
        raw = _recv(pull, spin)
        t0 = pc()
        m = msgpack.unpackb(raw, raw=False)
        a, b = m["inputs"]
        ctypes.memmove(h_in, a["data"], nb)
        ctypes.memmove(h_in + nb, b["data"], nb)
        cu.cuGraphLaunch(gx, s)
        if spin:
            cu.cuEventRecord(ev, s)
            while int(cu.cuEventQuery(ev)[0]) != 0:
                pass
        else:
            cu.cuStreamSynchronize(s)
        # Inline, not a shared helper: a floor pays for no call it does not need.
        payload = msgpack.packb({"id": m["id"], "status": "ok", "code": "OK", "message": "",
                                 "outputs": [{"dtype": "float32", "shape": [nel], "data": bytes(out_view)}],
                                 "missed_deadline": False, "latency_us": {}})
        _reply_socket(zctx, peers, m["reply_to"]).send(payload)
        stamps.append((t0, pc()))
    _finish(out_q, stamps, peers, pull, zctx)


def resident_prototype_server(endpoint: str, n: int, spin: bool, ready, out_q, nel: int = 256) -> None:
    """The prototype with the resident GPU stage. The mailbox wait always spins (as the server's resident lanes
    are polled); ``spin`` chooses how the socket is waited on, as for the other floors."""
    from bench.persistent_floor import NEL, ResidentVadd

    if nel != NEL:
        raise ValueError(f"the resident floor kernel is built for {NEL} elements, not {nel}")
    zctx = zmq.Context()
    pull = zctx.socket(zmq.PULL)
    pull.bind(endpoint)
    peers: dict = {}
    pc = time.perf_counter_ns
    stamps = []
    frombuffer = np.frombuffer
    with ResidentVadd(timeout_s=5.0) as res:
        ready.set()
        for _ in range(n):
            raw = _recv(pull, spin)
            t0 = pc()
            m = msgpack.unpackb(raw, raw=False)
            a, b = m["inputs"]
            out = res.run(frombuffer(a["data"], np.float32), frombuffer(b["data"], np.float32))
            payload = msgpack.packb({"id": m["id"], "status": "ok", "code": "OK", "message": "",
                                     "outputs": [{"dtype": "float32", "shape": [nel], "data": out.tobytes()}],
                                     "missed_deadline": False, "latency_us": {}})
            _reply_socket(zctx, peers, m["reply_to"]).send(payload)
            stamps.append((t0, pc()))
        _finish(out_q, stamps, peers, pull, zctx)
