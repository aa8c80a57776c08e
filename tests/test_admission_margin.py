"""The admission margin (``--admission-margin``): validated, read from TOML, and the predictor's k in the server."""

from __future__ import annotations

import pytest

from zmqrt.config import ServerConfig, build_config
from zmqrt.sched.predictor import ServicePredictor


def test_margin_is_validated_and_read_from_toml(tmp_path):
    assert build_config().admission_margin == 1.0  # about p80: infeasible = most likely late (NOTES 36)
    with pytest.raises(ValueError, match="admission_margin"):
        build_config(admission_margin=-1.0)
    path = tmp_path / "zmqrt.toml"
    path.write_text("[server]\nadmission_margin = 1.5\n")
    assert build_config(path).admission_margin == 1.5
    assert build_config(path, admission_margin=0.5).admission_margin == 0.5  # flags win over the file


def test_the_server_predicts_with_the_margin(tmp_path):
    from zmqrt.server import Server

    cfg = ServerConfig(backend="cpu", ingest=f"ipc://{tmp_path}/in", calibrate=False, admission_margin=0.5)
    with Server(cfg) as server:
        assert server.predictor.k == 0.5
        for ns in (10_000, 12_000, 8_000, 10_000):
            server.predictor.observe("vector_add", 5, ns)
        low = server.predictor.predict_ns("vector_add", 5)
    high = ServicePredictor(k=3.0)
    for ns in (10_000, 12_000, 8_000, 10_000):
        high.observe("vector_add", 5, ns)
    assert low < high.predict_ns("vector_add", 5)  # the same samples, a smaller margin
