"""The dtypes zmqrt moves: one list for the wire protocol and for user kernel specs."""

# numpy names; on the wire every one is little-endian (ingest.protocol.WIRE_DTYPES).
DTYPE_NAMES: tuple[str, ...] = (
    "float16", "float32", "float64", "complex64", "complex128",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
)
