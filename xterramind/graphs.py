"""A region's window of a large lazy cube with a graph of only the tasks it needs, found from its own keys.

Dask's ``HighLevelGraph.cull`` first lists every key of every layer; a window of a large cube is a few dozen
tasks of a graph of hundreds of thousands, so each region's read paid for the whole cube: 0.4-1.0 s per window
of a 300,000 px square cube (343,000 chunks; about a continent at 10 m), 30 times a GPU's time for the region's
tiles, and on a cluster all of it on the driver. ``culled`` walks the layers down from the window's keys instead,
asking each layer only for the keys wanted of it (a ``Blockwise`` layer computes its dependencies from block
indices; a materialized one holds its tasks by key), so the cost is that of the window. A graph it cannot walk
this way (layers of other kinds, keys no layer holds) is left as it is, culled the usual way.
"""

from __future__ import annotations

import functools

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
    layers, dependencies, is_key = {}, {}, functools.partial(_is_key, graph)
    for name in _top_down(graph):
        keys = wanted.pop(name, None)
        if not keys:
            continue
        walked = _cull_layer(graph.layers[name], keys, is_key)
        if walked is None:
            return array
        layers[name], needs = walked
        dependencies[name] = set()
        for key in needs:
            owner = _owner(graph, key, graph.dependencies.get(name, ()))
            if owner is None:  # a key no layer holds: not a graph this can walk
                return array
            wanted.setdefault(owner, set()).add(key)
            dependencies[name].add(owner)
    if wanted:  # keys found only in layers already walked (a key several layers hold): not culled here
        return array
    return da.Array(HighLevelGraph(layers, dependencies), array.name, array.chunks, dtype=array.dtype)


def _layer_name(key) -> str:
    return key[0] if isinstance(key, tuple) else key


def _owner(graph: HighLevelGraph, key, near=()) -> str | None:
    """The layer holding ``key``: the one named after it, else a materialized layer holding it, first among ``near``
    (the layers the asking layer depends on: odc-stac keeps its grid's and configuration's keys in layers of other
    names, the same key in several)."""
    name = _layer_name(key)
    if name in graph.layers:
        return name
    for name in (*near, *graph.layers):
        layer = graph.layers.get(name)
        if isinstance(layer, MaterializedLayer) and key in layer:
            return name
    return None


def _is_key(graph: HighLevelGraph, value) -> bool:
    """``value`` names a key of ``graph`` (a legacy alias: a task that is another task's key)."""
    if isinstance(value, tuple):
        if not value or not isinstance(value[0], str) or not all(isinstance(i, int) for i in value[1:]):
            return False
    elif not isinstance(value, str):
        return False
    owner = _owner(graph, value)
    # a Blockwise layer holds every block of its name (asking it would build all its tasks)
    return owner is not None and (isinstance(graph.layers[owner], Blockwise) or value in graph.layers[owner])


def _top_down(graph: HighLevelGraph) -> list[str]:
    """The layers, each before every layer it depends on (a depth-first order, without recursion: graphs of
    thousands of layers exist)."""
    order, seen = [], set()
    for root in graph.layers:
        stack = [(root, False)]
        while stack:
            name, done = stack.pop()
            if done:
                order.append(name)
            elif name not in seen:
                seen.add(name)
                stack.append((name, True))
                stack.extend((dependency, False) for dependency in graph.dependencies.get(name, ()))
    return order[::-1]


def _cull_layer(layer, keys: set, is_key):
    """The part of ``layer`` computing ``keys``, and the keys of other layers it needs; None if it cannot say.
    ``is_key(value)``: the value is a key of the graph (how the keys a legacy tuple task names are found)."""
    if isinstance(layer, Blockwise):
        part, deps = layer.cull(keys, ())  # a Blockwise layer's dependencies follow from block indices alone
        return part, {dep for needs in deps.values() for dep in needs} - keys
    if isinstance(layer, MaterializedLayer):
        tasks, needs, work = {}, set(), list(keys)
        while work:
            key = work.pop()
            if key in tasks:
                continue
            if key not in layer:
                return None
            task = tasks[key] = layer[key]
            # a legacy task names keys anywhere in its tuples (a key alone: an alias); plain data names none
            found = set(task.dependencies) if isinstance(task, GraphNode) else _named_keys(task, is_key)
            work.extend(dep for dep in found if dep in layer)
            needs |= {dep for dep in found if dep not in layer}
        return MaterializedLayer(tasks, annotations=layer.annotations), needs
    return None


def _named_keys(task, is_key) -> set:
    """The keys a legacy task names: itself if it is one, else any key among its nested tuples, lists and dicts (what
    dask takes them for); plain data names none."""
    found, items = set(), [task]
    while items:
        item = items.pop()
        if is_key(item):
            found.add(item)
        elif isinstance(item, (tuple, list)):
            items.extend(item)
        elif isinstance(item, dict):
            items.extend(item.values())
    return found
