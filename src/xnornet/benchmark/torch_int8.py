"""torch's int8 layer on its x86 quantized engine: what a torch user would quantize to instead of
binarizing. Configured as torch's own x86 recipe does (``get_default_qconfig("x86")``): per-channel
symmetric int8 weights, quint8 activations with ``reduce_range`` (7 bits, so that the u8·s8 pair
sums of the AVX2 path cannot saturate), the input quantized once and channels-last, as the layers
of a quantized network hand it to each other."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.ao.nn import quantized as nnq

from xnornet.benchmark.shapes import LayerShape


def affine_qparams(lo: float, hi: float, qmax: int) -> tuple[float, int]:
    """Scale and zero point mapping [lo, hi] (widened to hold 0) onto quint8 [0, qmax]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / qmax
    return scale, int(np.clip(round(-lo / scale), 0, qmax))


def torch_int8_layer(
    shape: LayerShape, x: np.ndarray, w: np.ndarray, y_ref: np.ndarray
) -> tuple[Callable[[], torch.Tensor], Callable[[], np.ndarray]]:
    """(the timed call, a call that returns its float output in the reference's layout).

    The timed call is the quantized layer alone, quantized input to quantized output, as it runs
    inside an int8 network; the output's scale comes from the float reference's range (a perfect
    calibration, the int8 peer's best case)."""
    torch.backends.quantized.engine = "x86"
    wt = torch.from_numpy(w)
    w_scale = (wt.abs().amax(dim=tuple(range(1, wt.ndim))).double() / 127).clamp_min(1e-12)
    qw = torch.quantize_per_channel(wt, w_scale, torch.zeros(shape.c_out, dtype=torch.int64), 0, torch.qint8)
    in_scale, in_zp = affine_qparams(float(x.min()), float(x.max()), 127)  # reduce_range: [0, 127]
    out_scale, out_zp = affine_qparams(float(y_ref.min()), float(y_ref.max()), 255)
    if shape.kind == "linear":
        layer = nnq.Linear(shape.c_in, shape.c_out, dtype=torch.qint8)
        xt = torch.from_numpy(x)
    else:
        layer = nnq.Conv2d(shape.c_in, shape.c_out, shape.k, stride=shape.stride, padding=shape.padding)
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC memory seen as channels-last NCHW
    layer.set_weight_bias(qw, None)
    layer.scale, layer.zero_point = out_scale, out_zp
    xq = torch.quantize_per_tensor(xt, in_scale, in_zp, torch.quint8)

    def output() -> np.ndarray:
        y = layer(xq).dequantize()
        return (y if shape.kind == "linear" else y.permute(0, 2, 3, 1)).numpy()  # NHWC like the reference

    return lambda: layer(xq), output
