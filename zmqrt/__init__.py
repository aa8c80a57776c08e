"""zmqrt: a real-time GPU task server. Tasks arrive as msgpack over ZeroMQ and run as NVRTC-compiled CUDA
kernels through the driver API, scheduled under EDF, rate-monotonic, fixed-priority or proportional share."""

__version__ = "0.1.0"
