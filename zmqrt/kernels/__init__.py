"""Kernel descriptions: validation, launch plans, numpy references, and the registry of builtin and user kernels.

The CUDA side (NVRTC, modules, launches) lives elsewhere; everything here runs without a GPU. See
:mod:`zmqrt.kernels.spec` for the kernel ABI and the contract of :class:`KernelSpec`.
"""

from zmqrt.kernels.builtin import builtin_specs
from zmqrt.kernels.registry import KernelRegistry, builtin_ptx_dir, load_registry
from zmqrt.kernels.spec import Checked, InputSpec, KernelSpec, LaunchPlan, ParamSpec
from zmqrt.kernels.user import UserKernelSpec, load_user_kernel, load_user_kernels

__all__ = [
    "Checked",
    "InputSpec",
    "KernelRegistry",
    "KernelSpec",
    "LaunchPlan",
    "ParamSpec",
    "UserKernelSpec",
    "builtin_ptx_dir",
    "builtin_specs",
    "load_registry",
    "load_user_kernel",
    "load_user_kernels",
]
