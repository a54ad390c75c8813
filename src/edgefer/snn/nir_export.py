"""SpikingNet <-> NIR (Neuromorphic Intermediate Representation, read by Lava, snnTorch, Norse,
Sinabs and SpiNNaker2 tooling).

The graph holds the on-chip part: input (rate-coded spikes) -> [Conv2d | Flatten + Affine/Linear
-> IF] per layer -> output. Weights are exported in membrane units (Loihi mode: the integer
mantissa x 2^(6+e)), thresholds likewise. NIR's IF resets to zero, edgefer's resets by
subtraction: the node metadata says so (``reset: subtract``), and edgefer-specific settings
(precision, leak, initial membrane, weight exponents) travel in metadata so that ``from_nir``
rebuilds the identical network. The off-chip encoder is not part of the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgefer.errors import EdgeferError
from edgefer.snn.convert import SpikingLayer, SpikingNet


def _nir():
    try:
        import nir
    except ImportError:  # optional dependency: only the export needs it
        raise EdgeferError("NIR export needs the 'nir' package (pip install nir)") from None
    return nir


def to_nir(net: SpikingNet):
    """The NIRGraph of a SpikingNet."""
    nir = _nir()
    nodes = {"input": nir.Input(input_type={"input": np.array(net.input_shape)})}
    edges = []
    layer_meta: dict = {}
    previous = "input"
    for layer in net.layers:
        weight = (layer.weight.double() * layer.weight_scale).numpy()
        bias = (layer.bias.double().numpy() if layer.bias is not None else np.zeros(weight.shape[0]))
        # NIR's synapse nodes carry no metadata: per-layer settings go into the graph's metadata.
        layer_meta[f"{layer.name}.weight_scale"] = float(layer.weight_scale)
        layer_meta[f"{layer.name}.weight_exponent"] = -999 if layer.weight_exponent is None else int(layer.weight_exponent)
        if layer.kind == "conv":
            syn = nir.Conv2d(input_shape=tuple(layer.input_shape[1:]), weight=weight, stride=layer.stride,
                             padding=layer.padding, dilation=1, groups=layer.groups, bias=bias)
            nodes[layer.name] = syn
            edges.append((previous, layer.name))
            previous = layer.name
        else:
            if len(layer.input_shape) > 1:
                flatten = f"{layer.name}_flatten"
                nodes[flatten] = nir.Flatten(input_type={"input": np.array(layer.input_shape)}, start_dim=0)
                edges.append((previous, flatten))
                previous = flatten
            # Affine even without a bias (zeros): Sinabs' importer maps nir.Affine but drops nir.Linear
            syn = nir.Affine(weight=weight, bias=bias)
            nodes[layer.name] = syn
            edges.append((previous, layer.name))
            previous = layer.name
        neuron_name = f"{layer.name}_if"
        shape = tuple(layer.output_shape)
        neuron = nir.IF(r=np.ones(shape), v_threshold=np.full(shape, float(layer.threshold)))
        neuron.metadata = {"reset": "subtract"}
        nodes[neuron_name] = neuron
        edges.append((previous, neuron_name))
        previous = neuron_name
    nodes["output"] = nir.Output(output_type={"output": np.array(net.layers[-1].output_shape)})
    edges.append((previous, "output"))
    metadata = {"producer": "edgefer", "precision": net.precision, "leak": float(net.leak), "v_init": float(net.v_init),
                "state_bits": -1 if net.state_bits is None else int(net.state_bits), "input_mode": net.input_mode,
                "classes": ",".join(net.classes), "reset": "subtract", "input": "rate-coded spikes of the off-chip encoder",
                **layer_meta}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def export_nir(net: SpikingNet, path: str | Path) -> Path:
    nir = _nir()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), to_nir(net))
    return path


def _chain(graph) -> list[str]:
    following = {}
    for src, dst in graph.edges:
        if src in following:
            raise EdgeferError(f"NIR graph branches at {src!r}: only feed-forward chains are supported")
        following[src] = dst
    order, node = [], "input"
    while node in following:
        node = following[node]
        order.append(node)
    if not order or order[-1] != "output":
        raise EdgeferError("NIR graph is not a chain from 'input' to 'output'")
    return order[:-1]


def _meta_value(value):
    return value.item() if isinstance(value, np.ndarray) and value.shape == () else value


def from_nir(graph, encoder=None, input_scale: float = 1.0) -> SpikingNet:
    """Rebuild a SpikingNet from a NIR graph (one written by ``to_nir``, or any chain of
    Conv2d/Affine/Linear [+ Flatten] -> IF nodes; foreign IF nodes are taken as reset-by-subtraction)."""
    nir = _nir()
    if isinstance(graph, (str, Path)):
        graph = nir.read(str(graph))
    meta = {k: _meta_value(v) for k, v in (graph.metadata or {}).items()}
    decode = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731  (h5py returns bytes)
    input_node = graph.nodes["input"]
    input_shape = tuple(int(v) for v in np.asarray(input_node.input_type["input"]).reshape(-1))
    layers: list[SpikingLayer] = []
    shape = input_shape
    pending = None
    for name in _chain(graph):
        node = graph.nodes[name]
        if isinstance(node, nir.Flatten):
            continue
        if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            pending = (name, node)
            continue
        if not isinstance(node, nir.IF):
            raise EdgeferError(f"NIR node {name!r} ({type(node).__name__}) has no edgefer equivalent")
        if pending is None:
            raise EdgeferError(f"NIR IF node {name!r} has no synapses before it")
        syn_name, syn = pending
        scale = float(meta.get(f"{syn_name}.weight_scale", 1.0))
        exponent = int(meta.get(f"{syn_name}.weight_exponent", -999))
        weight = torch.from_numpy(np.asarray(syn.weight, dtype=np.float64) / scale).float()
        bias = np.asarray(getattr(syn, "bias", np.zeros(weight.shape[0])), dtype=np.float64)
        bias_t = torch.from_numpy(bias).float() if np.any(bias) else None
        thresholds = np.unique(np.asarray(node.v_threshold))
        if len(thresholds) != 1:
            raise EdgeferError(f"NIR IF node {name!r}: per-neuron thresholds are not supported")
        out_shape = tuple(np.asarray(node.v_threshold).shape)
        if isinstance(syn, nir.Conv2d):
            stride = np.asarray(syn.stride).reshape(-1)
            padding = np.asarray(syn.padding).reshape(-1)
            layer = SpikingLayer(syn_name, "conv", weight.contiguous(), bias_t, float(thresholds[0]), shape, out_shape,
                                 int(stride[0]), int(padding[0]), int(syn.groups), scale,
                                 None if exponent == -999 else exponent)
        else:
            layer = SpikingLayer(syn_name, "dense", weight.contiguous(), bias_t, float(thresholds[0]), shape, out_shape,
                                 weight_scale=scale, weight_exponent=None if exponent == -999 else exponent)
        layers.append(layer)
        shape = out_shape
        pending = None
    if not layers:
        raise EdgeferError("the NIR graph holds no spiking layers")
    state_bits = int(meta.get("state_bits", -1))
    classes = tuple(decode(meta.get("classes", "")).split(",")) if meta.get("classes") else tuple(
        str(i) for i in range(int(np.prod(layers[-1].output_shape))))
    return SpikingNet(layers, input_shape, classes, decode(meta.get("input_mode", "gray")), encoder, input_scale,
                      decode(meta.get("precision", "float")), float(meta.get("leak", 0.0)), float(meta.get("v_init", 0.0)),
                      None if state_bits < 0 else state_bits, {"source": "nir"})
