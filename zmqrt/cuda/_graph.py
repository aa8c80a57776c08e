"""CUDA graphs by stream capture: record a fixed sequence once, replay it with one launch."""

from __future__ import annotations

from cuda.bindings import driver as cu

from ._check import check
from ._handle import OwnedHandle


class Graph(OwnedHandle):
    """Usage::

        with Graph.capture(stream) as cap:
            ...enqueue copies and launches on stream...
        graph = cap.graph   # instantiated, ready to launch(stream)
    """

    def __init__(self, cu_graph) -> None:
        self._graph = cu_graph
        exe = check(cu.cuGraphInstantiate(cu_graph, 0), "cuGraphInstantiate")
        self._own(exe, _destroy, exe, cu_graph)

    @staticmethod
    def capture(stream) -> _Capture:
        return _Capture(stream)

    def launch(self, stream) -> None:
        check(cu.cuGraphLaunch(self._handle, stream.handle), "cuGraphLaunch")


def _destroy(exe, graph):
    cu.cuGraphExecDestroy(exe)
    return cu.cuGraphDestroy(graph)


class _Capture:
    def __init__(self, stream) -> None:
        self.stream = stream
        self.graph: Graph | None = None

    def __enter__(self) -> _Capture:
        mode = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        check(cu.cuStreamBeginCapture(self.stream.handle, mode), "cuStreamBeginCapture")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        cu_graph = check(cu.cuStreamEndCapture(self.stream.handle), "cuStreamEndCapture")
        if exc_type is None:
            self.graph = Graph(cu_graph)
        else:
            cu.cuGraphDestroy(cu_graph)
