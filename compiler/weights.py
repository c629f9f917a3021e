"""Weight import: a PyTorch state_dict mapped onto the spec by name, by an explicit key map, or by order.

Checkpoints are read with `torch.load(weights_only=True)`: never unpickled as code. Tensors registered twice by
the original code (the same module under two names) are detected as aliases, reported and used once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from .errors import WeightsError
from .ir import Graph


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except Exception as e:  # torch raises many types for bad/unsafe files; all mean "not a usable checkpoint"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path}: not a loadable PyTorch state_dict ({first})") from None
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    return dict(obj)


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
        # Equal-valued copies count only for tensors that cannot be equal by chance (large, not constant).
        if t.numel() >= 16 and t.is_floating_point() and not torch.all(t == t.flatten()[0]):
            sig = (tuple(t.shape), t.dtype, float(t.double().sum()))
            for other in seen_value.get(sig, []):
                if torch.equal(state[other], t):
                    aliases[key] = other
                    break
            else:
                seen_value.setdefault(sig, []).append(key)
    return aliases


def read_key_map(path: str | Path) -> dict[str, str]:
    """YAML/JSON mapping checkpoint key -> spec name; a key ending in '.' renames a prefix."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise WeightsError(f"{path}: cannot read key map ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise WeightsError(f"{path}: a key map is a mapping of checkpoint keys to spec names")
    return data


def _rename(key: str, key_map: dict[str, str]) -> str:
    if key in key_map:
        return key_map[key]
    best = max((p for p in key_map if p.endswith(".") and key.startswith(p)), key=len, default=None)
    return key_map[best] + key[len(best):] if best else key


@dataclass
class WeightMatch:
    assignment: dict[str, str]  # spec parameter name -> checkpoint key
    aliases: dict[str, str] = field(default_factory=dict)
    defaulted: list[str] = field(default_factory=list)  # spec buffers the checkpoint lacks (num_batches_tracked)

    def report(self) -> str:
        lines = [f"{len(self.assignment)} tensors matched"]
        if self.aliases:
            shown = ", ".join(f"{k} = {v}" for k, v in list(self.aliases.items())[:3])
            more = ", ..." if len(self.aliases) > 3 else ""
            lines.append(f"{len(self.aliases)} aliased checkpoint keys used once ({shown}{more})")
        if self.defaulted:
            lines.append(f"{len(self.defaulted)} buffers not in the checkpoint kept at their defaults")
        return "; ".join(lines)


def match_weights(graph: Graph, state: dict, by_order: bool = False, key_map: dict | None = None,
                  source: str = "checkpoint", inference_only: bool = False) -> WeightMatch:
    aliases = find_aliases(state)
    keys = [k for k in state if k not in aliases]
    keep = graph.inference_nodes() if inference_only else graph.live_nodes()
    targets = [(n, p) for n, p in graph.parameters() if n.rsplit(".", 1)[0] in keep]
    defaulted = []
    if not any(k.endswith("num_batches_tracked") for k in keys):
        defaulted = [n for n, _ in targets if n.endswith("num_batches_tracked")]
        targets = [(n, p) for n, p in targets if not n.endswith("num_batches_tracked")]
    assignment = {}
    if by_order:
        if len(keys) != len(targets):
            raise WeightsError(
                f"{source}: {len(keys)} tensors (after {len(aliases)} aliases) but the spec has {len(targets)}; "
                f"by-order import needs equal counts"
                + _first_mismatch(targets, keys, state)
            )
        for (name, spec), key in zip(targets, keys):
            _check_shape(name, spec.shape, key, state[key], source)
            assignment[name] = key
    else:
        renamed = {_rename(k, key_map or {}): k for k in keys}
        names = {n for n, _ in targets}
        missing = [n for n, _ in targets if n not in renamed]
        unused = [renamed[r] for r in renamed if r not in names]
        if missing or unused:
            raise WeightsError(
                f"{source}: names do not match the spec: {len(missing)} spec tensors missing"
                + (f" (first: {missing[0]})" if missing else "")
                + f", {len(unused)} checkpoint keys unused"
                + (f" (first: {unused[0]})" if unused else "")
                + "; use --by-order or --key-map"
            )
        for name, spec in targets:
            key = renamed[name]
            _check_shape(name, spec.shape, key, state[key], source)
            assignment[name] = key
    return WeightMatch(assignment, aliases, defaulted)


def _first_mismatch(targets, keys, state) -> str:
    for (name, spec), key in zip(targets, keys):
        if tuple(spec.shape) != tuple(state[key].shape):
            return f"; first shape mismatch: spec {name} {list(spec.shape)} vs checkpoint {key} {list(state[key].shape)}"
    return ""


def _check_shape(name, shape, key, tensor, source):
    if tuple(shape) != tuple(tensor.shape):
        node = name.rsplit(".", 1)[0]
        raise WeightsError(
            f"{source}: spec node '{node}' tensor {name} has shape {list(shape)} but checkpoint key "
            f"'{key}' has shape {list(tensor.shape)}"
        )


def load_weights(module: torch.nn.Module, graph: Graph, path: str | Path, by_order: bool = False,
                 key_map_path: str | Path | None = None, inference_only: bool = False) -> WeightMatch:
    state = read_state_dict(path)
    key_map = read_key_map(key_map_path) if key_map_path else None
    match = match_weights(graph, state, by_order, key_map, source=str(path), inference_only=inference_only)
    own = module.state_dict()
    new = {name: state[key].to(own[name].dtype) for name, key in match.assignment.items()}
    missing = set(own) - set(new) - set(match.defaulted)
    assert not missing, f"internal: unassigned {sorted(missing)[:3]}"
    module.load_state_dict(new, strict=False)
    return match
