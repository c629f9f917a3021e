"""Weight import: a PyTorch state_dict mapped onto the spec by name, by an explicit key map, by order, or, with
none of them asked for, by name and then by each checkpoint layout the spec declares (tcc.spec.checkpoint_layouts),
whose
parameter sources may also fit the spec to the checkpoint first (`fit_to_checkpoint`: num_classes from the
classifier's shape).

Checkpoints are read with `torch.load(weights_only=True)`: never unpickled as code. Tensors registered twice by
the original code (the same module under two names) are detected as aliases, reported and used once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import SpecError, WeightsError
from ..ir import Graph
from ..spec.checkpoint_layouts import CheckpointLayout, KeyMap, read_key_map
from ..spec.loader import load_spec

__all__ = [
    "WeightMatch",
    "find_aliases",
    "fit_to_checkpoint",
    "load_weights",
    "match_weights",
    "read_key_map",
    "read_state_dict",
]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except Exception as e:  # torch raises many types for bad/unsafe files; all mean "not a usable checkpoint"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kind = _file_kind(path)
        if kind:  # say what the file is rather than what torch.load tripped on
            raise WeightsError(f"{path}: not a PyTorch checkpoint: {kind}") from None
        raise WeightsError(f"{path}: not a loadable PyTorch state_dict ({first})") from None
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    return dict(obj)


def _file_kind(path: Path) -> str | None:
    """What a file that torch.load refused is, by its first bytes, when it is plainly not a checkpoint (None: it
    may be a damaged one; torch's own words then say more)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch's zip format, or a legacy pickle
        return None
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file (load it with safetensors.torch.load_file and torch.save the dict)"
    if path.suffix.lower() == ".onnx" or head[:2] == b"\x08\x07" or b"onnx" in head[:64].lower():
        return "an ONNX model (give it as the SPEC: tcc imports it with its weights)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"unknown binary data (starts {head[:8].hex(' ')})"
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"a text file (it starts {first!r})"


def find_aliases(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """{later key: first key} for tensors that are the same tensor (shared storage view) or equal copies."""
    seen_view: dict[tuple, str] = {}
    seen_value: dict[tuple, list[str]] = {}
    aliases = {}
    for key, t in state.items():
        view = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and view in seen_view:
            aliases[key] = seen_view[view]
            continue
        seen_view[view] = key
        # Equal-valued copies count only for tensors that cannot be equal by chance (large, not constant). Candidates
        # share shape, dtype and 64 evenly spaced elements; torch.equal decides.
        if t.numel() >= 16 and t.is_floating_point():
            flat = t.reshape(-1)
            # integer positions: a float32 linspace rounds the last index of a 37.7M-element tensor past its end
            sample = flat[torch.arange(64) * (flat.numel() - 1) // 63].tolist()
            sig = (tuple(t.shape), t.dtype, tuple(sample))
            for other in seen_value.get(sig, []):
                if torch.equal(state[other], t) and not torch.all(flat == flat[0]):
                    aliases[key] = other
                    break
            else:
                seen_value.setdefault(sig, []).append(key)
    return aliases


@dataclass
class WeightMatch:
    assignment: dict[str, str]  # spec parameter name -> checkpoint key
    aliases: dict[str, str] = field(default_factory=dict)
    defaulted: list[str] = field(default_factory=list)  # spec buffers the checkpoint lacks (num_batches_tracked)
    method: str = "by_name"  # by_name | by_order | key_map | layout: the manifest's token
    layout: CheckpointLayout | None = None  # the spec's checkpoint layout that matched (method "layout")
    # tensors of `fresh` nodes whose shape differs from the checkpoint's, left out: (name, shape, key, its shape)
    reinitialised: list[tuple[str, list, str, list]] = field(default_factory=list)

    @property
    def how(self) -> str:
        """The method for people: by name | by order | by the key map | by the spec's checkpoint layout 'NAME' (...)."""
        if self.layout is not None:
            return f"by the spec's {self.layout.describe()}" + (f": {self.layout.doc}" if self.layout.doc else "")
        return {"by_name": "by name", "by_order": "by order", "key_map": "by the key map"}[self.method]

    def report(self) -> str:
        lines = [f"{len(self.assignment)} tensors matched {self.how}"]
        if self.aliases:
            shown = ", ".join(f"{k} = {v}" for k, v in list(self.aliases.items())[:3])
            more = ", ..." if len(self.aliases) > 3 else ""
            lines.append(f"{len(self.aliases)} aliased checkpoint keys used once ({shown}{more})")
        if self.defaulted:
            lines.append(f"{len(self.defaulted)} buffers not in the checkpoint kept at their defaults")
        if self.reinitialised:
            lines.append(f"{len(self.reinitialised)} head tensors of another shape not loaded")
        return "; ".join(lines)


def _targets(graph: Graph, keys: list[str], inference_only: bool):
    """The spec tensors a checkpoint with `keys` fills, in parameter order, and the buffers left at defaults."""
    keep = graph.inference_nodes() if inference_only else graph.live_nodes()
    targets = [(n, p) for n, p in graph.parameters() if n.rsplit(".", 1)[0] in keep]
    defaulted = []
    if not any(k.endswith("num_batches_tracked") for k in keys):
        defaulted = [n for n, _ in targets if n.endswith("num_batches_tracked")]
        targets = [(n, p) for n, p in targets if not n.endswith("num_batches_tracked")]
    return targets, defaulted


class _Shapes:
    """Shape checks of an assignment: a mismatch is an error, except on a `fresh` node's tensors (a classifier
    head being fine-tuned to another class count), which are left out and recorded."""

    def __init__(self, source: str, fresh: frozenset[str]):
        self.source, self.fresh = source, fresh
        self.left_out: list[tuple[str, list[int], str, list[int]]] = []

    def keep(self, name: str, shape, key: str, tensor) -> bool:
        if tuple(shape) == tuple(tensor.shape):
            return True
        if name.rsplit(".", 1)[0] in self.fresh:
            self.left_out.append((name, list(shape), key, list(tensor.shape)))
            return False
        _check_shape(name, shape, key, tensor, self.source)
        return True


def _by_order(targets, keys, aliases, state, shapes: _Shapes) -> dict[str, str]:
    if len(keys) != len(targets):
        raise WeightsError(
            f"{shapes.source}: {len(keys)} tensors (after {len(aliases)} aliases) but the spec has {len(targets)}; "
            f"by-order import needs equal counts" + _first_mismatch(targets, keys, state)
        )
    return {name: key for (name, spec), key in zip(targets, keys) if shapes.keep(name, spec.shape, key, state[key])}


def _by_name(targets, keys, state, key_map: KeyMap, shapes: _Shapes, aliases=()) -> dict[str, str]:
    """By the spec's names (through the key map); an aliased key (equal to an earlier one) still fills the spec
    tensor of its own name: two tensors may hold equal values (two BatchNorms on one input, their statistics)."""
    source = shapes.source
    names = {n for n, _ in targets}
    keys = [*keys, *(a for a in aliases if key_map.rename(a) in names)]
    renamed = {key_map.rename(k): k for k in keys}
    missing = [n for n, _ in targets if n not in renamed]
    unused = [renamed[r] for r in renamed if r not in names]
    if missing or unused:
        raise WeightsError(
            f"{source}: names do not match the spec: {len(missing)} spec tensors missing"
            + (f" (first: {missing[0]})" if missing else "")
            + f", {len(unused)} checkpoint keys unused"
            + (f" (first: {unused[0]})" if unused else "")
        )
    return {
        name: renamed[name]
        for name, spec in targets
        if shapes.keep(name, spec.shape, renamed[name], state[renamed[name]])
    }


def _by_layout(layout: CheckpointLayout, targets, keys, aliases, state, shapes: _Shapes) -> dict[str, str]:
    if layout.match == "by_order":
        return _by_order(targets, keys, aliases, state, shapes)
    return _by_name(targets, keys, state, layout.key_map, shapes, aliases)


def match_weights(
    graph: Graph,
    state: dict,
    by_order: bool = False,
    key_map: KeyMap | dict | None = None,
    source: str = "checkpoint",
    inference_only: bool = False,
    layouts: Sequence[CheckpointLayout] = (),
    fresh: frozenset[str] = frozenset(),
) -> WeightMatch:
    """Map checkpoint keys onto the spec's tensors, shapes checked. `--by-order` / `--key-map` say how; without
    them the spec's own names are tried, then each checkpoint layout the spec declares, in order. Tensors of the
    `fresh` nodes (a head being fine-tuned) whose shapes differ are left out (`reinitialised`), not an error."""
    aliases = find_aliases(state)
    keys = [k for k in state if k not in aliases]
    targets, defaulted = _targets(graph, keys, inference_only)
    if isinstance(key_map, dict):
        key_map = KeyMap(tuple(key_map.items()))

    def matched(assignment: dict, method: str, shapes: _Shapes, layout=None) -> WeightMatch:
        return WeightMatch(assignment, aliases, defaulted, method, layout, shapes.left_out)

    if by_order:
        shapes = _Shapes(source, fresh)
        return matched(_by_order(targets, keys, aliases, state, shapes), "by_order", shapes)
    if key_map:
        shapes = _Shapes(source, fresh)
        return matched(_by_name(targets, keys, state, key_map, shapes, aliases), "key_map", shapes)
    try:
        shapes = _Shapes(source, fresh)
        return matched(_by_name(targets, keys, state, KeyMap(), shapes, aliases), "by_name", shapes)
    except WeightsError as by_name:
        failures = []
        for layout in layouts:
            shapes = _Shapes(source, fresh)
            try:
                assignment = _by_layout(layout, targets, keys, aliases, state, shapes)
            except WeightsError as e:
                failures.append(f"{layout.describe()}: {e.for_cli().removeprefix(f'{source}: ')}")  # worded once, below
                continue
            return matched(assignment, "layout", shapes, layout)
        tried = "".join(f"; {f}" for f in failures)
        raise WeightsError(f"{by_name}{tried}; use --by-order or --key-map") from None


def _param_values(layout: CheckpointLayout, graph: Graph, state: dict, inference_only: bool) -> dict[str, tuple]:
    """{param: (value, checkpoint key, its shape)} for the layout's parameter sources that the checkpoint has."""
    aliases = find_aliases(state)
    keys = [k for k in state if k not in aliases]
    targets, _ = _targets(graph, keys, inference_only)
    names = [n for n, _ in targets]
    if layout.match == "by_order":
        where = dict(zip(names, keys)) if len(names) == len(keys) else {}
    else:
        where = {layout.key_map.rename(k): k for k in keys}
    out = {}
    for src in layout.params:
        key = where.get(src.tensor)
        if not src.present and key is not None and src.dim < state[key].dim():
            out[src.param] = (int(state[key].shape[src.dim]), key, list(state[key].shape))
    return out


def _presence_values(layout: CheckpointLayout, state: dict) -> dict[str, tuple]:
    """{param: (whether the checkpoint holds the key, the key, "present" or "absent")} of the layout's presence
    sources (an auxiliary head the checkpoint carries)."""
    return {
        src.param: (src.present in state, src.present, "present" if src.present in state else "absent")
        for src in layout.params
        if src.present
    }


def fit_to_checkpoint(model, weights, by_order: bool = False, key_map=None, inference_only: bool = False):
    """The model to import `weights` into: `model` itself, or, when the checkpoint matches a layout the spec
    declares only with other values of the layout's `params` (a classifier for 2 classes where the spec's default
    is 6), the spec loaded again with those values, noted. Explicit --by-order / --key-map, and parameters the user
    --set, are left as they are."""
    if not weights or by_order or key_map or not any(layout.params for layout in model.checkpoints):
        return model

    state = read_state_dict(weights)
    try:
        match_weights(model.graph, state, source=str(weights), inference_only=inference_only, layouts=model.checkpoints)
        return model
    except WeightsError:
        pass
    for layout in model.checkpoints:
        try:
            # the heads the checkpoint has first (they move the tensors' order), then the sizes read through them
            found = _presence_values(layout, state)
            present = _changed(model, found)
            graph = load_spec(model.path, {**model.overrides, **present}).graph if present else model.graph
            found.update(_param_values(layout, graph, state, inference_only))
            changed = _changed(model, found)
            if not changed:
                continue
            fitted = load_spec(model.path, {**model.overrides, **changed})
            match_weights(fitted.graph, state, source=str(weights), inference_only=inference_only, layouts=[layout])
        except (WeightsError, SpecError):
            continue
        fitted.notes[:0] = [
            f"{p}={v} read from the checkpoint ({found[p][1]} {found[p][2]}; the spec's {layout.describe()})"
            for p, v in changed.items()
        ]
        return fitted
    return model


def _changed(model, found: dict[str, tuple]) -> dict:
    """The values read from a checkpoint that differ from the model's and were not --set."""
    return {p: v for p, (v, _, _) in found.items() if p not in model.overrides and v != model.params.get(p)}


def _first_mismatch(targets, keys, state) -> str:
    for (name, spec), key in zip(targets, keys):
        if tuple(spec.shape) != tuple(state[key].shape):
            return (
                f"; first shape mismatch: spec {name} {list(spec.shape)} vs checkpoint {key} {list(state[key].shape)}"
            )
    return ""


def _check_shape(name, shape, key, tensor, source):
    if tuple(shape) != tuple(tensor.shape):
        node = name.rsplit(".", 1)[0]
        raise WeightsError(
            f"{source}: spec node '{node}' tensor {name} has shape {list(shape)} but checkpoint key "
            f"'{key}' has shape {list(tensor.shape)}"
        )


def load_weights(
    module: torch.nn.Module,
    graph: Graph,
    path: str | Path,
    by_order: bool = False,
    key_map_path: str | Path | None = None,
    inference_only: bool = False,
    layouts: Sequence[CheckpointLayout] = (),
    fresh: frozenset[str] = frozenset(),
) -> WeightMatch:
    """Load the checkpoint at `path` into `module`; tensors of `fresh` nodes whose shapes differ keep the
    module's own values (match_weights)."""
    state = read_state_dict(path)
    key_map = read_key_map(key_map_path) if key_map_path else None
    match = match_weights(
        graph, state, by_order, key_map, source=str(path), inference_only=inference_only, layouts=layouts, fresh=fresh
    )
    own = module.state_dict()
    new = {name: state[key].to(own[name].dtype) for name, key in match.assignment.items()}
    missing = set(own) - set(new) - set(match.defaulted) - {name for name, *_ in match.reinitialised}
    assert not missing, f"internal: unassigned {sorted(missing)[:3]}"
    module.load_state_dict(new, strict=False)
    return match
