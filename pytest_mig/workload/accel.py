"""GPU path of the built-in harness: weights cast to bf16/fp16, channels-last conv nets,
one CUDA graph per batch size (partial batches padded up, the output's reduction captured with
the model), device-resident QSL samples gathered by index, and batches launched ahead (two in
flight) with their reduced outputs copied to pinned host memory once per batch.
Optionally the model's compiled code (`compiled.py`, torch.compile) is what the graphs hold.

CUDA only: on the CPU the harness keeps `models.Predictor` (autocast).
Fixed shapes: with graphs or compile every batch is padded up to a bucket size; Offline runs
one bucket, the largest batch, so one capture (and one compile) serves the whole run.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .datasets import Sample, SampleLoader
from .models.rnnt import BLANK, RNNT
from .resident import ResidentSet
from .responses import BatchOutput

CAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MEMORY_FORMATS = {"resnet50": torch.channels_last, "ssd-resnet34": torch.channels_last,
                  "ssd-mobilenet": torch.channels_last, "3d-unet": torch.channels_last_3d}
FORMAT_RANK = {torch.channels_last: 4, torch.channels_last_3d: 5}
IN_FLIGHT = 2  # batches queued on the GPU at once: the host answers one while the GPU runs the next
GRAPH_WARMUP = 3  # eager runs on a side stream before capture (cuDNN autotuning, lazy caches)


@dataclass(frozen=True)
class AccelOptions:
    """How the GPU path runs one model."""

    dtype: torch.dtype  # weights and floating inputs
    memory_format: torch.memory_format | None  # channels-last variant, or None: as built
    cuda_graphs: bool
    start_from_device: bool
    compile_mode: str | None = None  # torch.compile mode of `compiled.py`, or None: eager kernels

    def describe(self) -> str:
        fmt = {torch.channels_last: "channels_last", torch.channels_last_3d: "channels_last_3d"}
        return (f"dtype={str(self.dtype).removeprefix('torch.')} "
                f"layout={fmt.get(self.memory_format, 'contiguous')} "  # type: ignore[arg-type]
                f"cuda_graphs={'on' if self.cuda_graphs else 'off'} "
                f"start_from_device={'on' if self.start_from_device else 'off'} "
                f"compile={self.compile_mode or 'off'}")


def options_for(benchmark: str, precision: str, cuda_graphs: bool | None = None,
                channels_last: bool | None = None, start_from_device: bool = False,
                compile_mode: str | None = None) -> AccelOptions:
    """Defaults: graphs on, channels-last for the conv nets, no compile; None means default."""
    return AccelOptions(
        dtype=CAST_DTYPES.get(precision, torch.float32),
        memory_format=MEMORY_FORMATS.get(benchmark) if channels_last is not False else None,
        cuda_graphs=cuda_graphs is not False,
        start_from_device=start_from_device,
        compile_mode=compile_mode)


def setup_cuda() -> None:
    """Fixed shapes throughout: let cuDNN pick the fastest algorithm per shape once."""
    torch.backends.cudnn.benchmark = True


# --- batch padding (pure) ---------------------------------------------------------------------

def bucket_sizes(max_batch: int) -> tuple[int, ...]:
    """Batch sizes that get a graph: powers of two below `max_batch`, then `max_batch` itself."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    sizes: list[int] = []
    size = 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return (*sizes, max_batch)


def run_buckets(max_batch: int, scenario: str) -> tuple[int, ...]:
    """Batch sizes the GPU path runs (one graph capture, cuDNN autotune and compile each):
    Offline only its largest batch (LoadGen issues every sample at once, so only the last
    batch is partial: padded up); latency scenarios, whose batches are small and vary, every
    `bucket_sizes` entry. One shape for Offline keeps warm-up to one capture."""
    return (max_batch,) if scenario == "Offline" else bucket_sizes(max_batch)


def bucket_for(count: int, buckets: Sequence[int]) -> int:
    """Smallest bucket holding `count` samples."""
    for size in sorted(buckets):
        if count <= size:
            return size
    raise ValueError(f"{count} samples exceed the largest graphed batch {max(buckets)}")


def pad_indices(indices: Sequence[int], size: int) -> list[int]:
    """Fill a partial batch up to `size` by repeating its last sample (outputs of the copies are dropped)."""
    if not indices or len(indices) > size:
        raise ValueError(f"cannot pad {len(indices)} samples to a batch of {size}")
    return [*indices, *[indices[-1]] * (size - len(indices))]


def take_samples(output: Any, count: int, size: int) -> Any:
    """The first `count` samples of a model output computed for `size` (tensors or nested tuples).

    A tensor's leading dim holds a whole number of rows per sample (DLRM: pairs per query);
    None (a reduction's absent counts) stays None.
    """
    if output is None:
        return None
    if isinstance(output, torch.Tensor):
        rows, rest = divmod(output.shape[0], size)
        if rest:
            raise ValueError(f"output of {output.shape[0]} rows is not {size} equal samples")
        return output[:count * rows]
    if isinstance(output, (tuple, list)):
        return type(output)(take_samples(part, count, size) for part in output)
    raise TypeError(f"cannot split a model output of type {type(output).__name__}")


# --- model preparation ------------------------------------------------------------------------

class LayoutInstanceNorm(nn.Module):
    """Instance norm that keeps its input's memory layout (PyTorch's makes channels-last contiguous)."""

    def __init__(self, norm: nn.modules.instancenorm._InstanceNorm) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=tuple(range(2, x.dim())), keepdim=True, correction=0)
        scale = torch.rsqrt(var.float() + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.weight is not None:
            scale = scale * self.weight.float().view(shape)
        shift = -mean.float() * scale
        if self.bias is not None:
            shift = shift + self.bias.float().view(shape)
        return x * scale.to(x.dtype) + shift.to(x.dtype)


def replace_instance_norms(model: nn.Module) -> int:
    """Swap every InstanceNorm for a layout-keeping one with the same parameters; returns the count."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.modules.instancenorm._InstanceNorm) and not child.track_running_stats:
                setattr(module, name, LayoutInstanceNorm(child))
                swapped += 1
    return swapped


def cast_parameters(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast floating parameters to `dtype`; floating buffers (e.g. SSD's logit scale) stay fp32."""
    kept = [(m, name, buf) for m in model.modules() for name, buf in m._buffers.items()
            if buf is not None and buf.is_floating_point()]
    model.to(dtype)  # nn.LSTM re-flattens its cuDNN weights in here
    for module, name, buf in kept:
        module._buffers[name] = buf
    return model


def prepare_model(model: nn.Module, benchmark: str, opts: AccelOptions, copy_first: bool) -> nn.Module:
    """The model to run: cast and re-laid-out per `opts`, on a copy when the original must stay (reference)."""
    changes = opts.dtype != torch.float32 or opts.memory_format is not None
    if copy_first and changes:
        model = copy.deepcopy(model)
    if opts.dtype != torch.float32:
        cast_parameters(model, opts.dtype)
    if opts.memory_format is not None:
        if opts.memory_format == torch.channels_last_3d:
            replace_instance_norms(model)
        model.to(memory_format=opts.memory_format)
    return model.eval()


def prepare_input(tensor: torch.Tensor, opts: AccelOptions) -> torch.Tensor:
    """A floating input in the model's dtype and layout; integer inputs (ids) as they are."""
    if not tensor.is_floating_point():
        return tensor
    fmt = opts.memory_format
    if fmt is not None and tensor.dim() == FORMAT_RANK[fmt]:
        return tensor.to(dtype=opts.dtype, memory_format=fmt)
    return tensor.to(opts.dtype)


def resident_sample(sample: Sample, device: torch.device, dtype: torch.dtype) -> Sample:
    """A QSL sample as held in device memory: floating tensors already in the compute dtype."""
    return {key: value.to(device, dtype=dtype if value.is_floating_point() else value.dtype)
            for key, value in sample.items()}


# --- execution --------------------------------------------------------------------------------

def check_static_shapes(static: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor]) -> None:
    """A graph replays on the shapes it was captured with: raise one clear line for any other."""
    for k, (dst, src) in enumerate(zip(static, inputs)):
        if dst.shape != src.shape:
            raise ValueError(f"input {k} has shape {tuple(src.shape)} but the CUDA graph was captured for "
                             f"{tuple(dst.shape)}; the model's collate must give every batch one shape "
                             f"(pad to a fixed length) or run with --no-cuda-graphs")


class GraphRunner:
    """One CUDA graph per batch size, all in one memory pool; inputs are copied into static buffers.

    Sharing the pool is safe because replays run in order on one stream and each output is
    consumed (reduced and copied to pinned host memory) on that stream before the next replay.
    """

    def __init__(self, model: nn.Module, device: torch.device,
                 head: Callable[[Any], Any] | None = None) -> None:
        self.model, self.device = model, device
        self.head = head  # the output's reduction (Family.reduce), captured in the same graph
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], Any]] = {}
        self._pool: Any = None

    def _forward(self, static: Sequence[torch.Tensor]) -> Any:
        output = self.model(*static)
        return self.head(output) if self.head is not None else output

    def capture(self, size: int, inputs: Sequence[torch.Tensor]) -> None:
        static = tuple(t.clone() for t in inputs)  # clone keeps the (channels-last) layout
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP):
                self._forward(static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            output = self._forward(static)
        if self._pool is None:
            self._pool = graph.pool()
        self.graphs[size] = (graph, static, output)

    def __call__(self, size: int, inputs: Sequence[torch.Tensor]) -> Any:
        graph, static, output = self.graphs[size]
        check_static_shapes(static, inputs)
        for dst, src in zip(static, inputs):
            dst.copy_(src, non_blocking=True)  # casts and re-lays-out in the same copy
        graph.replay()
        return output


class DecoderGraphRunner:
    """RNN-T with one CUDA graph per batch size for a greedy symbol step (~40 small kernels).

    The encoder runs eager (cuDNN LSTMs over whole sequences: few, large kernels) and the host
    still ends each time step when no sample emitted, exactly as `RNNT.greedy` does; the step's
    prediction LSTM is written out as matmuls (`rnnt.lstm_step`) so the graph can hold it.
    """

    def __init__(self, model: RNNT, device: torch.device) -> None:
        self.model, self.device = model, device
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], tuple[torch.Tensor, ...]]] = {}
        self._pool: Any = None

    def _start(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = torch.full((size,), BLANK, dtype=torch.long, device=self.device)
        g, (h, c) = self.model.predict(tokens, None)
        return g, h, c

    def _body(self, s: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, emit, g, h, c = self.model.decode_step(s["f"], s["g"], s["h"], s["c"], s["active"])
        for key, value in (("g", g), ("h", h), ("c", c), ("active", emit)):
            s[key].copy_(value)
        return tokens, emit.any()

    def static_buffers(self, size: int, inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step's inputs, updated in place by each replay (g, h, c, active) or before it (f)."""
        with torch.inference_mode():
            enc, _ = self.model.encode(*inputs)
            g, h, c = self._start(size)
            return {"f": enc[:, 0].clone(), "g": g, "h": h, "c": c,
                    "active": torch.ones(size, dtype=torch.bool, device=self.device)}

    def capture(self, size: int, inputs: Sequence[torch.Tensor]) -> None:
        static = self.static_buffers(size, inputs)
        with torch.inference_mode():
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP):
                    self._body(static)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                output = self._body(static)
        if self._pool is None:
            self._pool = graph.pool()
        self.graphs[size] = (graph, static, output)

    def __call__(self, size: int, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():  # the static buffers are inference tensors
            return self._decode(size, inputs)

    def _decode(self, size: int, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        graph, s, (tokens, any_emitted) = self.graphs[size]
        enc, enc_len = self.model.encode(*inputs)
        for key, value in zip("ghc", self._start(size)):
            s[key].copy_(value)
        steps = enc.shape[1]
        active = torch.arange(steps, device=self.device)[:, None] < enc_len[None, :]  # [T, B]
        emitted: list[torch.Tensor] = []
        for t in range(steps):
            s["f"].copy_(enc[:, t])
            s["active"].copy_(active[t])
            for _ in range(self.model.cfg.max_symbols):
                graph.replay()
                if not bool(any_emitted):
                    break
                emitted.append(tokens.clone())
        if not emitted:
            return torch.full((size, 0), -1, dtype=torch.long, device=self.device)
        return torch.stack(emitted, dim=1)


def runner_for(model: nn.Module, device: torch.device,
               head: Callable[[Any], Any] | None = None) -> GraphRunner | DecoderGraphRunner:
    """Whole-forward graphs for fixed-shape models (with the output's reduction when given);
    step graphs for RNN-T's data-dependent decoder."""
    return DecoderGraphRunner(model, device) if isinstance(model, RNNT) else GraphRunner(model, device, head)


class AccelPredictor:
    """The GPU counterpart of `models.Predictor`: QSL indices in, outputs on the host out.

    `launch(indices)` queues a batch on the GPU and returns `finish()`, which waits for it and
    gives a `responses.BatchOutput`; `__call__` does both and gives one array per sample. With
    a `reduce` (the family's), the batch is gathered from device-resident samples by index,
    run (graph replay), reduced on the device and copied to pinned host memory in one
    asynchronous copy; `in_flight` pinned slots let that many batches be queued at once.
    Without one (RNN-T, the LLM) `launch` computes and post-processes at once.
    """

    def __init__(self, model: nn.Module, make_inputs: SampleLoader, postprocess: Callable[[Any], list[np.ndarray]],
                 opts: AccelOptions, device: torch.device, max_batch: int,
                 buckets: Sequence[int] | None = None, reduce: Callable[[Any], Any] | None = None,
                 in_flight: int = IN_FLIGHT) -> None:
        self.model, self.make_inputs, self.postprocess = model, make_inputs, postprocess
        self.opts, self.device, self.reduce = opts, device, reduce
        self.buckets = tuple(sorted(buckets)) if buckets else bucket_sizes(max_batch)
        self.runner = runner_for(model, device, reduce) if opts.cuda_graphs else None
        self.fixed_shapes = self.runner is not None or opts.compile_mode is not None
        self.resident: ResidentSet | None = None
        if opts.start_from_device:
            if make_inputs.stack_keys:
                self.resident = ResidentSet(make_inputs.stack_keys, device, opts.dtype, opts.memory_format,
                                            slots=in_flight + 1)
                make_inputs.resident_set = self.resident
            else:
                make_inputs.resident = lambda sample: resident_sample(sample, device, opts.dtype)
        self.in_flight = in_flight
        self._slots: list[dict[str, torch.Tensor]] = [{} for _ in range(in_flight + 1)]
        self._slot = 0

    @property
    def resident_inputs(self) -> bool:
        """Batches are gathered on the device from the resident set (else collated from samples)."""
        return self.resident is not None

    def describe_io(self) -> dict[str, Any]:
        """How batches reach the model and outputs reach LoadGen (for the path record)."""
        if self.resident is not None:
            inputs = "device-resident set, batches gathered on the device by index"
        elif self.opts.start_from_device:
            inputs = "device-resident samples, collated per batch"
        else:
            inputs = "host-resident samples, copied to the device per batch"
        outputs = ("reduced on the device, one copy to pinned host memory per batch" if self.reduce is not None
                   else "post-processed on the host per batch")
        return {"inputs": inputs, "outputs": outputs,
                "in_flight": self.in_flight if self.reduce is not None else 1}

    def capture(self, indices: Sequence[int]) -> float:
        """Capture every bucket's graph (compiling first where compiled) up front, so no
        capture or compile stalls a timed run; seconds taken."""
        started = time.perf_counter()
        for size in self.buckets if self.fixed_shapes else ():
            padded = pad_indices(list(indices[:size]), size)
            if self.runner is not None:
                self._graph_for(size, padded)
            else:  # compiled, no graphs: the first call compiles
                with torch.inference_mode():
                    self.model(*self._inputs(padded))
        torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    def _inputs(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """Model inputs in the model's dtype and layout: gathered on the device when resident."""
        if self.resident is not None and self.resident.holds(indices):
            return self.resident.gather(indices)
        return tuple(prepare_input(t, self.opts) for t in self.make_inputs(indices))

    def _graph_for(self, size: int, indices: Sequence[int]) -> None:
        assert self.runner is not None
        if size not in self.runner.graphs:
            self.runner.capture(size, self._inputs(pad_indices(indices, size)))

    def _run(self, indices: Sequence[int]) -> Any:
        """The batch's output (reduced where `reduce` is given), on the device, `len(indices)` rows."""
        count = len(indices)
        if self.fixed_shapes and count <= self.buckets[-1]:
            size = bucket_for(count, self.buckets)
            padded = pad_indices(indices, size)
            if self.runner is not None:
                self._graph_for(size, padded)
                output = self.runner(size, self._inputs(padded))
                if self.reduce is not None and isinstance(self.runner, GraphRunner):
                    return take_samples(output, count, size)  # the graph reduced it
            else:
                output = self.model(*self._inputs(padded))
            output = take_samples(output, count, size)
        else:
            output = self.model(*self._inputs(indices))
        return self.reduce(output) if self.reduce is not None else output

    def _to_host(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` copied (asynchronously) into this launch's pinned slot buffer `name`."""
        slot = self._slots[self._slot]
        buf = slot.get(name)
        if buf is None or buf.dtype != tensor.dtype or buf.numel() < tensor.numel():
            buf = slot[name] = torch.empty(max(tensor.numel(), 1), dtype=tensor.dtype,
                                           pin_memory=self.device.type == "cuda")
        host = buf[:tensor.numel()].view(tensor.shape)
        host.copy_(tensor, non_blocking=True)
        return host

    def launch(self, indices: Sequence[int]) -> Callable[[], Any]:
        with torch.inference_mode():
            output = self._run(indices)
            if self.reduce is None:  # computed and post-processed now: nothing left in flight
                result = self.postprocess(output)
                return lambda: result
            rows, counts = output
            rows_host = self._to_host("rows", rows.contiguous())
            counts_host = self._to_host("counts", counts) if counts is not None else None
            self._slot = (self._slot + 1) % len(self._slots)
            done = None
            if self.device.type == "cuda":
                done = torch.cuda.Event(blocking=True)  # the waiting thread sleeps, leaving the core to LoadGen
                done.record()

        def finish() -> BatchOutput:
            if done is not None:
                done.synchronize()
            return BatchOutput(rows_host.numpy(), None if counts_host is None else counts_host.numpy())
        return finish

    def __call__(self, indices: Sequence[int]) -> list[np.ndarray]:
        output = self.launch(indices)()
        return output.arrays() if isinstance(output, BatchOutput) else output
