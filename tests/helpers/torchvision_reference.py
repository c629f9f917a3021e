"""torchvision 0.28's own model definitions as the tests' reference for the zoo specs (parameters, MACs, state_dict
layout, logits). Test-only: tcc itself never imports torchvision.

`make venv` installs the torchvision 0.28.0 wheel with `pip install --no-deps` beside the CPU torch 2.13 (the wheel
declares the CUDA torch). Its model definitions are plain Python, but `import torchvision` first imports
`torchvision._meta_registrations`, which registers fake-tensor kernels for torchvision's compiled operators
(torchvision::nms, roi_align, ...); those live in the wheel's `_C` library, which does not load against the CPU
torch, so the import fails with "operator torchvision::nms does not exist". An empty module put in its place lets
the import go on; nothing here uses those operators. No weights are downloaded: every model is built with
`weights=None` and randomly initialised.
"""

from __future__ import annotations

import sys
import types

import torch

VERSION = "0.28.0"


def torchvision_models():
    """`torchvision.models`, imported with its operator registrations stubbed out (see the module doc)."""
    if "torchvision" not in sys.modules:
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
        try:
            import torchvision
        except ImportError as e:
            raise RuntimeError(
                f"torchvision {VERSION} is not installed in this venv ({e}); `make venv` installs it "
                "(pip install --no-deps)"
            ) from None
    import torchvision

    if not torchvision.__version__.startswith(VERSION):
        raise RuntimeError(
            f"the zoo specs are checked against torchvision {VERSION}, this venv has "
            f"{torchvision.__version__}; `make venv` installs {VERSION}"
        )
    return torchvision.models


def build(name: str, num_classes: int = 6, seed: int = 0, **kwargs) -> torch.nn.Module:
    """torchvision.models.<name>(weights=None, num_classes=...) with torchvision's own initialisation drawn under
    `seed`, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(torchvision_models(), name)(weights=None, num_classes=num_classes, **kwargs)
    return model.eval()


def structure(name: str, num_classes: int = 6, **kwargs) -> torch.nn.Module:
    """The same model on the meta device: shapes without storage, so counting parameters, the state_dict's layout
    and MACs (a forward pass of shapes only) take a fraction of a second even for the big ones."""
    constructor = getattr(torchvision_models(), name)
    try:
        with torch.device("meta"):
            model = constructor(weights=None, num_classes=num_classes, **kwargs)
    except NotImplementedError:  # RegNet computes its widths with tensors while it is built: build it on the CPU
        model = constructor(weights=None, num_classes=num_classes, **kwargs).to("meta")
    return model.eval()


def trainable_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def macs(model: torch.nn.Module, image_size: int) -> int:
    """Multiply-accumulates of the conv and linear layers for one image (what tcc counts): a conv's weight
    elements (per group) times its output pixels, a linear's weight elements times the rows it is applied to (a
    Linear on NHWC, as in ConvNeXt, runs once per pixel)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            total += module.weight.numel() * output.shape[-2] * output.shape[-1]
        else:
            total += module.weight.numel() * (output[0].numel() // module.out_features)

    hooks = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return total


def state_layout(model: torch.nn.Module) -> list[tuple[str, tuple]]:
    """The state_dict's (key, shape) list, in order: what name-based and by-order import rely on."""
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
