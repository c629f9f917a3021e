"""The quantization-aware model: the spec's own PyTorch lowering (its parameters, by their names) run with the fake
quantization of a QatPlan, so the trained weights are the spec's state_dict and `tcc build --weights` takes them.

    student = QatModel(module, plan)     # module: the inference-only fx.GraphModule (tcc.frontend.reference_module)
    logits = student(x)                  # the INT8 model's function, differentiable
    student.write_back()                 # the trained layers unfolded into the module's own parameters
    student.module.state_dict()          # the spec's tensors (BN statistics unchanged)

What trains is what the integer graph holds: each conv or linear layer's folded weight and bias, folded as
tcc.passes.batchnorm folds them (the BatchNorm after the layer: W k, (b - mean) k + beta; the BatchNorm before it that
only unpadded convs read, per input channel; a BatchNorm on its own as a 1x1 depthwise conv), kept in code units:
the weight in its channel's weight steps, the bias in its output's steps, so one learning rate moves every layer by
the same fraction of a code whatever its scale. `write_back` unfolds them into the layer's weight and bias and the
BatchNorm's gamma / beta (running statistics unchanged: the build folds them again to the same values, up to one
float32 rounding). The rest of the model (nothing, for a CNN of conv / BN / linear layers) trains as it is. The model
runs in eval mode: BatchNorm on its running statistics, no dropout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.nn import functional as F

from ...errors import DataError
from .fake_quant import fake_quant
from .quant_points import QatPlan, WeightQuant

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
INT32 = (-(2**31), 2**31 - 1)


def fx_name(tensor: str) -> str:
    """The fx node that computes an ONNX tensor of the spec (both are named after the spec's node)."""
    return tensor.replace(".", "_")


@dataclass
class Layer:
    """A weighted node of the integer graph as PyTorch modules: the layer (Conv2d, Linear, or a lone BatchNorm2d)
    and the BatchNorms folded into it."""

    module: nn.Module
    quant: WeightQuant
    scale: torch.Tensor  # the weight's scales, broadcast over its shape (a transposed conv's: one per element)
    acc_scale: torch.Tensor | None
    after: nn.Module | None = None  # the BatchNorm after it
    before: nn.Module | None = None  # the BatchNorm before it, folded per input channel
    codes: nn.Parameter | None = None  # the folded weight / scale (trained)
    bias_codes: nn.Parameter | None = None  # the folded bias / the output's step (trained)
    # a conv without a bias of its own that a BatchNorm before it gives one (sum_j W[o, j] shift[c]): that bias
    # follows the trained weight, (W' / k[c]) shift[c], as the spec can hold no other
    derived: torch.Tensor | None = None
    # a transposed conv, which the integer graph computes as one conv of its stride's phases (tcc.passes.
    # conv_transpose): its weights and bias quantized per phase channel (channel o s_h s_w + p_h s_w + p_w)
    strides: tuple[int, int] | None = None

    @property
    def bias_unit(self) -> float:
        return self.quant.out_scale

    def weight(self) -> torch.Tensor:
        return self.codes * self.scale

    def bias(self) -> torch.Tensor | None:
        if self.derived is not None:
            return (self.weight() * self.derived).sum(dim=(1, 2, 3))
        return None if self.bias_codes is None else self.bias_codes * self.bias_unit


class QatModel(nn.Module):
    def __init__(self, module: fx.GraphModule, plan: QatPlan, where: str = "qat"):
        super().__init__()
        self.module, self.plan, self.where = module, plan, where
        nodes = {n.name: n for n in module.graph.nodes}
        placeholder = next(n for n in module.graph.nodes if n.op == "placeholder")
        self.activations = {}  # fx node name -> QParams
        moved_from = set(plan.moves.values())
        for tensor, q in plan.activations.items():
            node = placeholder if tensor == plan.input else nodes.get(fx_name(tensor))
            if node is None and (tensor in plan.moves or tensor in moved_from):
                continue  # the same codes as a move's input or output, fake-quantized where that is computed
            if node is None:
                raise DataError(
                    f"{where}: the integer graph quantizes tensor {tensor!r}, which the PyTorch model does "
                    "not compute as one value; quantization-aware training cannot place its fake "
                    "quantization"
                )
            self.activations[node.name] = q
        if plan.input_q is not None:
            self.activations[placeholder.name] = plan.input_q
        self._scales(plan, placeholder.name)
        self.layers: dict[str, Layer] = {}  # fx node name -> its layer
        self.folded: set[str] = set()  # fx nodes of BatchNorms folded into a layer: they pass their input on
        # a BatchNorm folded into the layer before it -> that layer: the FP32 model's value of the layer's output
        # (its quantized tensor) is the BatchNorm's
        self.normalized_by: dict[str, str] = {}
        for name, wq in plan.weighted.items():
            # a linear layer over tokens is Reshape -> Gemm (named LAYER/gemm) -> Reshape in ONNX
            node = nodes.get(fx_name(name)) or nodes.get(fx_name(name.rsplit("/", 1)[0]))
            self._layer(node, name, wq)
        self.folded_params = nn.ParameterList()
        with torch.no_grad():
            for layer in self.layers.values():
                w, b = self.folded_parameters(layer)
                layer.codes = nn.Parameter(w / layer.scale)
                if layer.before is not None and layer.after is None and layer.module.bias is None:
                    k, shift = _affine(layer.before)
                    layer.derived = (shift / k)[_input_channels(w, layer.module.groups)].float()
                    b = None
                layer.bias_codes = None if b is None else nn.Parameter(b / layer.bias_unit)
                self.folded_params.extend([p for p in (layer.codes, layer.bias_codes) if p is not None])

    def free_parameters(self) -> list[nn.Parameter]:
        """The module's parameters that no folded layer holds (trained as they are)."""
        held = {
            id(p)
            for layer in self.layers.values()
            for m in (layer.module, layer.after, layer.before)
            if m is not None
            for p in m.parameters()
        }
        return [p for p in self.module.parameters() if id(p) not in held]

    def _scales(self, plan: QatPlan, input_node: str) -> None:
        """One factor per scale the table may change (a group of tensors sharing one scale counts once): each
        quantized tensor's scale is its table scale times exp(factor), the factor 0 until training moves it (LSQ)."""
        group_of = {t: i for i, g in enumerate(plan.groups) for t in g}
        self.log_scales = nn.ParameterList()
        self.scale_of: dict[str, int] = {}  # fx node name -> its factor
        self.tensors_of: dict[int, list[str]] = {}  # factor -> the table's tensors it scales
        keys: dict = {}
        for tensor in plan.activations:
            if tensor in plan.fixed:
                continue
            root = tensor
            while root not in group_of and root in plan.moves:  # a move keeps its input's scale
                root = plan.moves[root]
            group = group_of.get(root)
            key = ("group", group) if group is not None else ("tensor", root)
            if key not in keys:
                keys[key] = len(self.log_scales)
                self.log_scales.append(nn.Parameter(torch.zeros((), dtype=torch.float64), requires_grad=False))
                self.tensors_of[keys[key]] = list(plan.groups[group]) if group is not None else []
            if key[0] == "tensor":
                self.tensors_of[keys[key]].append(tensor)
            self.scale_of[input_node if tensor == plan.input else fx_name(tensor)] = keys[key]

    def scale(self, node: str, q) -> torch.Tensor | float:
        """A tensor's current scale: the table's, times the learned factor."""
        i = self.scale_of.get(node)
        factor = self.log_scales[i] if i is not None else None
        if factor is None or not (factor.requires_grad or factor.item() != 0):
            return q.scale
        return (q.scale * torch.exp(factor)).float()

    def learned_scales(self) -> dict[str, float]:
        """{tensor: its scale} of every tensor whose scale training moved (float32 values); the members of a group
        take one value, the group's table scale times the factor."""
        out = {}
        for i, factor in enumerate(self.log_scales):
            if factor.item() != 0:
                members = self.tensors_of[i]
                base = next(self.plan.activations[t].scale for t in members if t in self.plan.activations)
                out.update(dict.fromkeys(members, float(np.float32(base * np.exp(factor.item())))))
        return out

    def _submodule(self, node) -> nn.Module | None:
        ok = isinstance(node, fx.Node) and node.op == "call_module"
        return self.module.get_submodule(node.target) if ok else None

    def _layer(self, node: fx.Node | None, name: str, wq: WeightQuant) -> None:
        module = self._submodule(node)
        if isinstance(module, nn.ConvTranspose2d):
            assert node is not None  # it has a module
            self.layers[node.name] = _transposed_layer(module, name, wq, self.where)
            return
        if not isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            raise DataError(
                f"{self.where}: layer {name!r} of the integer graph is not a Conv2d, ConvTranspose2d, Linear or "
                "BatchNorm2d module of the PyTorch model; quantization-aware training cannot fake-quantize its weight"
            )
        assert node is not None  # it has a module
        if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
            raise DataError(
                f"{self.where}: layer {name!r} pads with {module.padding_mode!r}; its folded form takes zeros"
            )
        out = module.weight.shape[0]
        if wq.scale.shape != (out,):
            raise DataError(f"{self.where}: layer {name!r} has {out} output channels, the table {wq.scale.size} scales")
        rank = 4 if isinstance(module, nn.BatchNorm2d) else module.weight.dim()
        layer = Layer(
            module,
            wq,
            torch.from_numpy(wq.scale.reshape((out,) + (1,) * (rank - 1))),
            None if wq.acc_scale is None else torch.from_numpy(wq.acc_scale),
        )
        if not isinstance(module, nn.BatchNorm2d):  # a lone BatchNorm folds nothing more
            source, users = node.args[0], list(node.users)
            before = self._submodule(source)
            if (
                isinstance(module, nn.Conv2d)
                and isinstance(before, nn.BatchNorm2d)
                and source.name not in self.folded
                and source.name not in self.activations
                and source.target not in self.plan.weighted
                and getattr(source.args[0], "name", None) in self.activations
            ):
                layer.before = before  # read by unpadded convs only: the passes' bn_conv rule folded it into them
                self.folded.add(source.name)
            after = self._submodule(users[0]) if len(users) == 1 else None
            if isinstance(after, BATCHNORMS):
                layer.after = after
                self.folded.add(users[0].name)
                self.normalized_by[users[0].name] = node.name
        self.layers[node.name] = layer

    def folded_parameters(self, layer: Layer) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A layer's weight and bias with its BatchNorms folded in, from the module's parameters: in float64 and
        rounded to float32 once, with ONNX's float32 epsilon, as tcc.passes.batchnorm folds them (a weight one float32
        step from a rounding tie of its code would otherwise take the other code)."""
        m = layer.module
        if isinstance(m, nn.BatchNorm2d):  # y = k x + (beta - mean k): a 1x1 depthwise conv's [C, 1, 1, 1]
            k, shift = _affine(m)
            return k.float().reshape(-1, 1, 1, 1), shift.float()
        w, b = m.weight, m.bias
        if layer.before is not None:  # W'[o, j] = W[o, j] k[c], b'[o] = b[o] + sum_j W[o, j] shift[c]
            k, shift = _affine(layer.before)
            channel = _input_channels(w, m.groups)
            w64 = w.double()
            added = (w64 * shift[channel]).sum(dim=(1, 2, 3))
            w, b = (w64 * k[channel]).float(), ((b.double() if b is not None else 0.0) + added).float()
        if layer.after is None:
            return w, b
        k, shift = _affine(layer.after)
        b = b.double() * k + shift if b is not None else shift
        return (w.double() * k.reshape((-1,) + (1,) * (w.dim() - 1))).float(), b.float()

    @torch.no_grad()
    def write_back(self) -> None:
        """The trained folded weights and biases unfolded into the module's parameters (float64, then float32):
        the inverse of folded_parameters."""
        for name, layer in self.layers.items():
            w, b = layer.weight().double(), layer.bias()
            b = None if b is None else b.double()
            m = layer.module
            if isinstance(m, nn.BatchNorm2d):  # k = gamma / sqrt(var + eps), shift = beta - mean k
                k = w.reshape(-1)
                m.weight.copy_(k * torch.sqrt(m.running_var.double() + float(np.float32(m.eps))))
                m.bias.copy_(b + m.running_mean.double() * k)
                continue
            if layer.strides is not None:  # nothing folded into it
                m.weight.copy_(w)
                if b is not None:
                    m.bias.copy_(b)
                continue
            added = 0.0
            if layer.after is not None:
                k_after, shift_after = _affine(layer.after)
                w = w / k_after.reshape((-1,) + (1,) * (w.dim() - 1))
            if layer.before is not None:
                k, shift = _affine(layer.before)
                channel = _input_channels(w, m.groups)
                w = w / k[channel]
                added = (w * shift[channel]).sum(dim=(1, 2, 3))
            if layer.derived is not None or b is None:
                pass  # no bias, or one that follows the weight
            elif m.bias is not None:  # b = ((bias + added) k_after + shift_after), or bias + added
                m.bias.copy_((b - shift_after) / k_after - added if layer.after is not None else b - added)
            elif layer.after is not None:  # no bias of its own: beta takes it (b = added k + beta - mean k)
                bn = layer.after
                bn.bias.copy_(b - added * k_after + bn.running_mean.double() * k_after)
            else:
                raise DataError(f"{self.where}: layer {name!r} has no bias of its own to take the trained one")
            m.weight.copy_(w)

    def run_layer(self, layer: Layer, x: torch.Tensor) -> torch.Tensor:
        w, b = layer.weight(), layer.bias()
        w = fake_quant(w, layer.scale, 0, layer.quant.lo, layer.quant.hi)  # equation (8), as the table's codes
        if b is not None and layer.strides is not None:  # one bias per phase channel, as the phase conv's
            b = b.repeat_interleave(layer.strides[0] * layer.strides[1])
        if b is not None and layer.acc_scale is not None:
            b = fake_quant(b, layer.acc_scale, 0, *INT32)
        m = layer.module
        if layer.strides is not None:
            return _transposed(m, layer.strides, x, w, b)
        if isinstance(m, nn.Linear):
            return F.linear(x, w, b)
        if isinstance(m, nn.BatchNorm2d):
            return F.conv2d(x, w, b, groups=w.shape[0])
        return m._conv_forward(x, w, b)

    def forward(self, x: torch.Tensor, features: dict | None = None) -> torch.Tensor:
        """The fake-quantized model's output; with `features` (a dict), also every quantized tensor's fake-quantized
        value by its fx node name."""
        run = _Run(self, capture=features)
        return run.run(x)

    def run_per_node(self, x: torch.Tensor, given: dict) -> dict:
        """Each node computed on the given values of its inputs (`given`: fx node name -> tensor, e.g. the integer
        reference's dequantized codes), not on its own earlier results: {fx node name: its result}. Compares op by
        op, without one tie's difference spreading through the network."""
        run = _Run(self, given)
        run.run(x)
        return run.results


def _input_channels(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[O, I/g, 1, 1]: the input channel each row of a grouped conv's weight reads."""
    out, per_group = w.shape[:2]
    return ((torch.arange(out)[:, None] // (out // groups)) * per_group + torch.arange(per_group)[None, :]).reshape(
        out, per_group, 1, 1
    )


def _transposed_layer(module: nn.ConvTranspose2d, name: str, wq: WeightQuant, where: str) -> Layer:
    """A transposed conv as the integer graph quantizes it, one conv of its stride's phases: each element of its
    [C_in, C_out / g, k_h, k_w] weight is one weight of a phase channel (tcc.passes.conv_transpose.phase_weights,
    applied to the elements' numbers), quantized at that channel's scale; or, where the rules keep it one node, per
    output channel."""
    from ...passes.conv_transpose import phase_weights  # deferred for start-up: loads onnx_graphsurgeon

    strides, groups = module.stride, module.groups
    if module.dilation != (1, 1) or module.padding_mode != "zeros":
        raise DataError(
            f"{where}: transposed conv {name!r} is dilated or not zero-padded; its phase form takes neither"
        )
    acc = None if wq.acc_scale is None else torch.from_numpy(wq.acc_scale)
    if groups == 1 and math.prod(strides) > 1 and wq.scale.shape == (module.out_channels,):
        # kept one node (the NPUs' rules: intops' `conv_transpose`): a scale and a bias per output channel, the
        # weight's axis 1; as a phase conv of stride 1, which adds the bias per channel alike
        scale = torch.from_numpy(wq.scale.reshape(1, -1, 1, 1))
        return Layer(module, wq, scale, acc, strides=(1, 1))
    numbered = phase_weights(np.arange(1, module.weight.numel() + 1).reshape(module.weight.shape), strides, groups)
    if wq.scale.shape != (len(numbered),):
        raise DataError(
            f"{where}: transposed conv {name!r} has {len(numbered)} phase channels, the table {wq.scale.size} scales"
        )
    row = np.empty(module.weight.numel(), np.int64)  # each element's phase channel (0 in `numbered`: a padding tap)
    row[numbered[numbered > 0] - 1] = np.nonzero(numbered)[0]
    scale = torch.from_numpy(wq.scale)[torch.from_numpy(row).reshape(module.weight.shape)]
    return Layer(module, wq, scale, acc, strides=(strides[0], strides[1]))


def _transposed(m: nn.Module, strides: tuple[int, int], x: torch.Tensor, w: torch.Tensor, b) -> torch.Tensor:
    """The transposed conv with a bias per phase channel: output row u (column v) is phase (u + pad) mod s."""
    assert isinstance(m, nn.ConvTranspose2d)
    y = F.conv_transpose2d(x, w, None, m.stride, m.padding, m.output_padding, m.groups)
    if b is None:
        return y
    (sh, sw), (ph, pw) = strides, m.padding
    rows, cols = (torch.arange(y.shape[2]) + ph) % sh, (torch.arange(y.shape[3]) + pw) % sw
    return y + b.reshape(-1, sh, sw)[:, rows][:, :, cols]


def _affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm as y = k x + shift per channel, in float64."""
    eps = float(np.float32(bn.eps))  # an ONNX attribute is float32
    k = bn.weight.double() / torch.sqrt(bn.running_var.double() + eps)
    return k, bn.bias.double() - bn.running_mean.double() * k


class Features(fx.Interpreter):
    """The FP32 model's values of the student's quantized tensors (the teacher's side of feature distillation). A
    layer with a BatchNorm folded after it outputs the normalized value: its BatchNorm's, not its own."""

    def __init__(self, module: fx.GraphModule, student: QatModel):
        super().__init__(module, garbage_collect_values=True)
        self.names = set(student.activations)
        self.normalized_by = student.normalized_by
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        name = self.normalized_by.get(n.name, n.name)  # the BatchNorm runs after its layer: its value replaces it
        if name in self.names:
            self.values[name] = result
        return result


class _Run(fx.Interpreter):
    """The GraphModule's nodes in order, with folded layers and fake quantization where the plan says. Values are
    kept to the end (a layer reads past the BatchNorm folded into it; autograd keeps them anyway)."""

    def __init__(self, qat: QatModel, given: dict | None = None, capture: dict | None = None):
        super().__init__(qat.module, garbage_collect_values=False)
        self.qat, self.given, self.capture = qat, given, capture
        self.results: dict[str, Any] = {}

    def run_node(self, n: fx.Node):
        qat = self.qat
        if n.name in qat.folded:  # its layer computes it
            result = self.env[n.args[0]]
        elif n.name in qat.layers:
            result = qat.run_layer(qat.layers[n.name], self.env[n.args[0]])
        else:
            result = super().run_node(n)
        q = qat.activations.get(n.name)
        if q is not None:
            rounding = qat.plan.input_rounding if n.op == "placeholder" else qat.plan.rounding
            result = fake_quant(result, qat.scale(n.name, q), q.zp, q.lo, q.hi, rounding)
            if self.capture is not None:
                self.capture[n.name] = result
        if self.given is not None:
            self.results[n.name] = result
            result = self.given.get(n.name, result)
        return result


@torch.no_grad()
def absorb_bias_correction(qat: QatModel, shifts: dict) -> tuple[list[str], list[str]]:
    """Add a calibration table's bias-correction shifts (layer -> one per output channel, added to the folded bias)
    to the trained folded biases: the trained weights carry the correction, and their table no longer applies it.
    Returns (the layers corrected, the layers that cannot hold a correction: a conv without a bias of its own whose
    bias a BatchNorm before it makes)."""
    done, dropped = [], []
    for name, shift in shifts.items():
        layer = qat.layers.get(fx_name(name))
        if layer is not None and layer.derived is not None:
            dropped.append(name)
            continue
        shift = torch.as_tensor(shift, dtype=torch.float64)
        if layer is not None and layer.strides is not None:  # a shift per phase channel: the spec holds one per channel
            phases = shift.reshape(-1, layer.strides[0] * layer.strides[1])
            if not bool((phases == phases[:, :1]).all()):
                dropped.append(name)
                continue
            shift = phases[:, 0]
        if layer is None or layer.bias_codes is None or shift.shape != layer.bias_codes.shape:
            raise DataError(
                f"{qat.where}: the table's bias correction of layer {name!r} does not fit the integer "
                "graph's layers; recalibrate"
            )
        layer.bias_codes.copy_((layer.bias_codes.double() + shift / layer.bias_unit).float())
        done.append(name)
    return done, dropped
