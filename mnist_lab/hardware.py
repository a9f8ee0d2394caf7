"""What the machine computes fast, and the process settings a run tunes to it.

`trainer.precision=auto` (the default) becomes bf16 where the device has native bf16 arithmetic and fp32
(or fp16 on GPUs without bf16) elsewhere: on a CPU without AVX512-BF16 or AMX, torch's bf16 matrix
products are emulated and run hundreds of times slower than fp32, so a bf16 default would make such a
machine's runs ~10× slower. A CPU run also tunes the process here (torch threads, glibc's allocator,
environment), and isolated_job puts everything a job changes back when it ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

log = logging.getLogger("mnist_lab")
_keeping_freed_memory = False  # what keep_freed_memory last set (glibc offers no way to read it back)


# oneDNN (torch's and TensorFlow's bf16 matrix products and convolutions) uses at most the instruction set
# that ONEDNN_MAX_CPU_ISA names; these names leave out every bf16 instruction.
ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
# What `make ... CPU=avx2` sets: torch's own, oneDNN's and MKL's kernels for AVX2, on any x86 CPU
AVX2_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def onednn_isa_cap() -> str | None:
    """The instruction set oneDNN is limited to, if the environment limits it below bf16: with AVX2_KERNELS
    in the environment an AVX-512 CPU runs the kernels an AVX2-only CPU runs (how BENCHMARKS.md measures
    the AVX2 kind on an AVX-512 machine)."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    return cap if cap in ISAS_WITHOUT_BF16 else None


def cpu_bf16_instructions() -> list[str]:
    """The native bf16 instructions torch's kernels may use here: AVX512-BF16 and AMX, or none."""
    if onednn_isa_cap():
        return []
    found = (("BF16", torch.cpu._is_avx512_bf16_supported()), ("AMX", torch.cpu._is_amx_tile_supported()))
    return [name for name, has in found if has]


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the x86 instructions that compute bf16 products in hardware."""
    return bool(cpu_bf16_instructions())


def cpu_kind() -> str:
    """The instruction set torch's CPU kernels use, and native bf16 if any: 'AVX2', 'AVX512 + BF16'."""
    kind = " + ".join([torch.backends.cpu.get_cpu_capability(), *cpu_bf16_instructions()])
    return kind + (f", oneDNN capped at {cap}" if (cap := onednn_isa_cap()) else "")


def device_type(accelerator: str) -> str:
    """The device Lightning gives `trainer.accelerator`: for `auto` and `gpu` CUDA, else MPS, else the CPU."""
    if accelerator == "cuda" or (accelerator in ("auto", "gpu") and CUDAAccelerator.is_available()):
        return "cuda"
    if accelerator == "mps" or (accelerator in ("auto", "gpu") and MPSAccelerator.is_available()):
        return "mps"
    return "cpu"


def auto_precision(device: str) -> tuple[str, str]:
    """The fast precision on this kind of device, and why."""
    if device == "cuda":
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"{name} computes bf16"
        return "16-mixed", f"{name} has no bf16"
    if device == "mps":
        if torch.backends.mps.is_macos_or_newer(14, 0):
            return "bf16-mixed", "MPS computes bf16 from macOS 14"
        return "16-mixed", "MPS before macOS 14 has no bf16"
    if cpu_has_native_bf16():
        return "bf16-mixed", f"this CPU has native bf16 ({cpu_kind()})"
    return "32-true", f"this CPU has no native bf16 ({cpu_kind()})"


def matmul_gflops(dtype: torch.dtype, n: int = 512, min_seconds: float = 0.1) -> float:
    """GFLOP/s of n×n torch.mm on the CPU, repeated for at least min_seconds after a warm-up."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    repeats, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or not repeats:
        a @ b
        repeats += 1
    return 2 * n**3 * repeats / elapsed / 1e9


def choose_precision(requested: str, accelerator: str) -> tuple[str, str]:
    """The precision a run uses and why: `auto` becomes the device's fast one; any other value is kept,
    with one warning when it asks a CPU for bf16 that the CPU can only emulate."""
    device = device_type(accelerator)
    requested = str(requested)
    if requested == "auto":
        precision, why = auto_precision(device)
        return precision, f"auto: {why}"
    if device == "cpu" and requested.startswith("bf16") and not cpu_has_native_bf16():
        bf16, fp32 = matmul_gflops(torch.bfloat16, n=256), matmul_gflops(torch.float32, n=256)
        log.warning(
            "trainer.precision=%s on a CPU without native bf16 (%s): its bf16 matrix products run %.0f× "
            "slower than fp32 here (%.1f vs %.0f GFLOP/s), so this run will be many times slower than in "
            "32-true; trainer.precision=auto (the default) picks 32-true on this CPU",
            requested,
            cpu_kind(),
            fp32 / bf16,
            bf16,
            fp32,
        )
    return requested, "set by trainer.precision"


def replay_precision(trained: str, accelerator: str) -> tuple[str, str]:
    """The precision to run a trained network in: the run's own, so that its numbers reproduce to the
    last digit, unless that is bf16 which this device can only emulate; then auto's choice."""
    device = device_type(accelerator)
    emulated = str(trained).startswith("bf16") and device == "cpu" and not cpu_has_native_bf16()
    if str(trained) == "auto" or emulated:
        precision, why = auto_precision(device)
        return precision, f"auto: {why}" + (f"; the run trained in {trained}" if emulated else "")
    return str(trained), "the run's"


def cpu_threads(local_processes: int) -> int:
    """Torch threads for each process of a CPU run: torch's default, capped by the CPUs the process may
    use (a SLURM task's allocation, else its affinity shared among the processes on this machine)."""
    if os.environ.get("SLURM_CPUS_PER_TASK"):  # an allocation of its own for each task (rank)
        cpus = int(os.environ["SLURM_CPUS_PER_TASK"])
    else:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        cpus = len(affinity) // local_processes
    return max(1, min(torch.get_num_threads(), cpus))


def keep_freed_memory(keep: bool = True) -> None:
    """Let glibc keep the memory a training step frees for the next step. By default it hands every freed
    block over ~128 KiB (an activation, a gradient) back to the system, so each step maps its tensors
    anew and pays a page fault on the first touch of every page: ~8,000 a Keras CNN step, which then
    takes ~1.2x longer (BENCHMARKS.md). keep=False restores glibc's defaults. Other C libraries (macOS,
    musl) are left as they are."""
    global _keeping_freed_memory
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if not hasattr(libc, "mallopt"):
        return
    _keeping_freed_memory = keep
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    # blocks up to 32 MiB (glibc's largest threshold) come from the heap, which keeps up to 1 GiB free
    libc.mallopt(m_mmap_threshold, 32 << 20 if keep else 128 << 10)
    libc.mallopt(m_trim_threshold, 1 << 30 if keep else 128 << 10)
    libc.mallopt(m_top_pad, 64 << 20 if keep else 0)


def tune_process(trainer: L.Trainer) -> None:
    """What a CPU run changes process-wide to train fast; isolated_job() undoes all of it."""
    if trainer.strategy.root_device.type != "cpu":
        return
    # Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (fork-safe CUDA checks), and torch's Adam and Adadelta
    # ask whether CUDA is available on every step: without a GPU driver each answer loads NVML anew
    # (~40 µs, 3 % of an MLP step). A CPU run has no CUDA to protect.
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    torch.set_num_threads(cpu_threads(trainer.num_devices if trainer.world_size > 1 else 1))
    # Lightning's DDP launch sets torch's threads again (the affinity over the local processes, all CPUs
    # of a SLURM node without CPU binding) unless OMP_NUM_THREADS is set: keep the allocation's.
    os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    keep_freed_memory()


@contextmanager
def isolated_job() -> Iterator[None]:
    """Leave the process as the job found it, so that the next job of a sweep, a study or a notebook starts
    afresh: environment variables (Lightning reads LOCAL_RANK and friends from os.environ), torch threads,
    glibc's allocator setting, cuDNN's benchmark flag (Trainer(benchmark=...) sets it), no process group."""
    environ, threads = dict(os.environ), torch.get_num_threads()
    keeping, cudnn_benchmark = _keeping_freed_memory, torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update({key: value for key, value in environ.items() if os.environ.get(key) != value})
        torch.set_num_threads(threads)
        if _keeping_freed_memory != keeping:
            keep_freed_memory(keeping)
        torch.backends.cudnn.benchmark = cudnn_benchmark


def main() -> None:
    """`python -m mnist_lab.hardware`: what a CPU run on this machine gets, and why."""
    precision, why = auto_precision("cpu")
    print(f"CPU: {cpu_kind()}; a run uses {cpu_threads(1)} torch threads")
    print(f"trainer.precision=auto on the CPU: {precision}, as {why}")
    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print(f"torch.mm of 512x512: {fp32:.0f} GFLOP/s in fp32, {bf16:.1f} in bf16")


if __name__ == "__main__":
    main()
