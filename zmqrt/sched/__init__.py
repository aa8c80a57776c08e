"""Real-time scheduling core: policies, service-time prediction and admission control (no I/O, no clock).

Every method that needs time takes ``now_ns`` explicitly, on the server's monotonic ns clock.
"""

from zmqrt.sched.admission import ADMISSION_MODES, EXPIRY_MODES, AdmissionControl
from zmqrt.sched.predictor import DEFAULT_SERVICE_NS, ServicePredictor
from zmqrt.sched.queues import (
    POLICIES,
    EarliestDeadlineScheduler,
    FixedPriorityScheduler,
    ProportionalShareScheduler,
    RateMonotonicScheduler,
    SchedItem,
    Scheduler,
    default_weights,
    make_scheduler,
)

__all__ = [
    "ADMISSION_MODES",
    "DEFAULT_SERVICE_NS",
    "EXPIRY_MODES",
    "POLICIES",
    "AdmissionControl",
    "EarliestDeadlineScheduler",
    "FixedPriorityScheduler",
    "ProportionalShareScheduler",
    "RateMonotonicScheduler",
    "SchedItem",
    "Scheduler",
    "ServicePredictor",
    "default_weights",
    "make_scheduler",
]
