"""A region's window of a large lazy cube with a graph of only the tasks it needs, found from its own keys.

Dask's ``HighLevelGraph.cull`` first lists every key of every layer; a window of a large cube is a few dozen
tasks of a graph of hundreds of thousands, so each region's read paid for the whole cube: 0.4-1.0 s per window
of a 300,000 px square cube (343,000 chunks; about a continent at 10 m), 30 times a GPU's time for the region's
tiles, and on a cluster all of it on the driver. ``culled`` walks the layers down from the window's keys instead,
asking each layer only for the keys wanted of it (a ``Blockwise`` layer computes its dependencies from block
indices; a materialized one holds its tasks by key), so the cost is that of the window. A graph it cannot walk
this way (tasks in the legacy tuple form, layers of other kinds) is left as it is, culled the usual way.
"""

from __future__ import annotations

import dask.array as da
from dask.blockwise import Blockwise
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.task_spec import GraphNode


def culled(array):
    """A dask array with a graph holding only the tasks its chunks need: the same keys, values and chunks. Anything
    else, and an array whose graph cannot be walked key by key, comes back as it is."""
    graph = array.__dask_graph__() if isinstance(array, da.Array) else None
    if not isinstance(graph, HighLevelGraph):
        return array
    wanted: dict[str, set] = {}
    for key in flatten(array.__dask_keys__()):
        wanted.setdefault(_layer_name(key), set()).add(key)
    layers, dependencies = {}, {}
    for name in _top_down(graph):
        keys = wanted.pop(name, None)
        if not keys:
            continue
        layer = graph.layers[name]
        walked = _cull_layer(layer, keys)
        if walked is None:
            return array
        layers[name], needs = walked
        dependencies[name] = set()
        for key in needs:
            owner = _layer_name(key)
            if owner not in graph.layers:  # a key no layer is named after: not a graph this can walk
                return array
            wanted.setdefault(owner, set()).add(key)
            dependencies[name].add(owner)
    if wanted:  # keys whose layers came earlier in the order: cannot happen in a well-formed graph
        return array
    return da.Array(HighLevelGraph(layers, dependencies), array.name, array.chunks, dtype=array.dtype)


def _layer_name(key) -> str:
    return key[0] if isinstance(key, tuple) else key


def _top_down(graph: HighLevelGraph) -> list[str]:
    """The layers, each before every layer it depends on."""
    order, seen = [], set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dependency in graph.dependencies.get(name, ()):
            visit(dependency)
        order.append(name)

    for name in graph.layers:
        visit(name)
    return order[::-1]


def _cull_layer(layer, keys: set):
    """The part of ``layer`` computing ``keys``, and the keys of other layers it needs; None if it cannot say."""
    if isinstance(layer, Blockwise):
        part, deps = layer.cull(keys, ())  # a Blockwise layer's dependencies follow from block indices alone
        return part, {dep for needs in deps.values() for dep in needs} - keys
    if isinstance(layer, MaterializedLayer):
        tasks, work = {}, list(keys)
        while work:
            key = work.pop()
            if key in tasks:
                continue
            if key not in layer:
                return None
            task = tasks[key] = layer[key]
            if isinstance(task, GraphNode):
                work.extend(dep for dep in task.dependencies if dep in layer)
            elif isinstance(task, (tuple, list, dict, str)):  # a legacy task: the keys it names cannot be read off
                return None
            # anything else is data (an array-like a reader wraps): it depends on nothing
        needs = {dep for task in tasks.values() if isinstance(task, GraphNode) for dep in task.dependencies} - tasks.keys()
        return MaterializedLayer(tasks, annotations=layer.annotations), needs
    return None
