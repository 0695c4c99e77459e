"""Private: the arrays of a compiled inference plan, planned by liveness.

Every tensor a kernel step writes lives in a *storage* (one flat byte array the plan owns). Steps
run in a fixed order, so each tensor's lifetime is known: from the step that writes it to the last
step that reads it (through any view made of it; graph outputs live to the end, where the plan
copies them out). Walking the steps in order, a tensor takes:

1. the interior of the next convolution's stage (padded input), when the convolution is its only
   reader and its producer can write into a strided view: the padding copy disappears;
2. the storage of the input it is computed from, when that input dies at this step and the step
   works in place (ReLU, BatchNorm, Add);
3. otherwise a free storage (the smallest large enough, else the largest one, grown) or a new one.

Workspaces (im2col columns, GEMM blocks, stages that are copied into) live for their step only and
come from the same free storages. Storages are created once per batch size; calls allocate nothing
but the copies of the outputs they return.

*Tiled segments* (``tiles``): a run of per-sample steps that the plan runs over the batch in chunks
of ``chunk`` samples (all its steps for samples 0..chunk-1, then for the next chunk, ...). The
tensors made and read only inside the run, its stages and its workspaces are then sized for one
chunk (and stay in cache from one step to the next), once per *lane* (``lanes`` threads run the chunks
side by side, each lane on its own arrays: lane after lane along the batch axis of the tensors and
stages, ``lane_workspaces`` for the workspaces); the tensors it reads from before the run and the
ones it writes for later steps keep the whole batch, written one chunk slice at a time. So
nothing taken inside the run is given back before its last step (a later chunk writes the run's
arrays again while the whole-batch outputs of earlier chunks must survive), the whole-batch inputs
of the run live to its last step, and no padding is elided across the chunked/whole boundary
into a chunked stage.
"""

from __future__ import annotations

import numpy as np

from ._lowering import concrete

__all__ = []  # private module


class _Storage:
    __slots__ = ("index", "size", "array")

    def __init__(self, index):
        self.index, self.size, self.array = index, 0, None


class _Pool:
    def __init__(self):
        self.storages, self.free = [], []

    def take(self, nbytes) -> _Storage:
        fitting = [s for s in self.free if s.size >= nbytes]
        if fitting:
            best = min(fitting, key=lambda s: s.size)
        elif self.free:
            best = max(self.free, key=lambda s: s.size)
        else:
            best = _Storage(len(self.storages))
            self.storages.append(best)
        if best in self.free:
            self.free.remove(best)
        best.size = max(best.size, nbytes)
        return best

    def give(self, storage) -> None:
        if storage not in self.free:
            self.free.append(storage)


class MemoryPlan:
    """Where every fixed tensor, stage and workspace of a plan lives for one batch size.

    Attributes:
        arrays: ``{tensor key: ndarray}`` for the tensors the plan owns (kernel outputs and their views).
        stages: ``{step index: ndarray}`` padded inputs of convolutions; ``elided``: the step indices whose
            producer wrote into the stage.
        workspaces: ``{step index: {name: ndarray}}``.
        storages: the flat byte arrays (``nbytes`` in total).
    """

    def __init__(self, plan, batch, tiles=()):
        steps, tensors = plan.steps, plan.tensors
        n = len(steps)
        tile_of = {}  # step index -> (first step, last step, chunk, lanes) of its tiled segment
        internal = set()  # tensors sized for one chunk per lane
        for start, stop, chunk, inner, lanes in tiles:
            for i in range(start, stop + 1):
                tile_of[i] = (start, stop, chunk, lanes)
            internal |= set(inner)

        def rows(i):  # the batch a step's stage is sized for (one chunk per lane, lane after lane)
            tile = tile_of.get(i)
            return batch if tile is None else tile[2] * tile[3]

        def tensor_rows(key):
            tile = tile_of.get(tensors[key].step_index) if key in internal else None
            return batch if tile is None else tile[2] * tile[3]
        readers = {}
        for i, step in enumerate(steps):
            for key in step.inputs:
                readers.setdefault(key, []).append(i)
        last = {key: max(r) for key, r in readers.items()}
        for key in plan.output_keys:
            last[key] = n
        # which owned tensors a value may reference (views, and whatever a called layer returns)
        aliases = {}
        for i, step in enumerate(steps):
            for key in step.outputs:
                if step.kind == "kernel":
                    aliases[key] = {key}
                elif step.fresh:
                    aliases[key] = set()
                else:
                    aliases[key] = set().union(*[aliases.get(k, set()) for k in step.inputs])
        end = {}
        for key, owners in aliases.items():
            for owner in owners:
                end[owner] = max(end.get(owner, -1), last.get(key, -1), tensors[owner].step_index)
        for i, (start, stop, _, _) in tile_of.items():  # whole-batch inputs of a tiled run live through it
            for key in steps[i].inputs:
                t = tensors.get(key)
                if t is not None and t.step_index is not None and start <= t.step_index <= stop:
                    continue
                for owner in aliases.get(key, ()):
                    end[owner] = max(end[owner], stop)

        # stages written by their producer (elision)
        elide = {}  # producer output key -> consumer step index
        for j, step in enumerate(steps):
            if step.stage is None:
                continue
            x = step.inputs[0]
            if not plan.fixed(x) and step.stage.identity:
                continue
            if step.stage.identity:
                continue  # the input buffer itself is read
            t = tensors.get(x)
            if t is None or t.step_index is None:
                continue
            producer = steps[t.step_index]
            if (producer.kind == "kernel" and producer.strided_out and readers.get(x) == [j]
                    and x not in plan.output_keys and step.stage.covers_input and aliases.get(x) == {x}
                    and tensor_rows(x) == rows(j)):
                elide[x] = j

        # elided outputs whose stage is the zero-bordered grid of the output (the producer writes grid rows into it)
        self.bordered = {x: j for x, j in elide.items()
                         if steps[j].stage.borders_output(tuple(tensors[x].shape[1:-1]))}

        pool = _Pool()
        owner_storage, stage_storage = {}, {}
        self.stages, self.elided, self.workspaces, self.lane_workspaces = {}, set(), {}, {}
        ws_storage = {}
        transferred = set()
        deferred = []  # storages given back inside a tiled run: given at its last step
        for i, step in enumerate(steps):
            tile = tile_of.get(i)
            give = deferred.append if tile is not None else pool.give
            for key in step.outputs:
                if step.kind != "kernel":
                    continue
                t = tensors[key]
                nbytes = t.nbytes(tensor_rows(key))
                if key in elide:
                    j = elide[key]
                    stage_storage[j] = pool.take(_stage_nbytes(steps[j], tensors, rows(j)))
                    self.elided.add(j)
                    continue
                reuse = None
                if step.inplace is not None:
                    u = step.inputs[step.inplace]
                    if (u in owner_storage and u not in transferred and end.get(u) == i
                            and tensors[u].nbytes(tensor_rows(u)) == nbytes and tensors[u].dtype == t.dtype):
                        reuse = owner_storage[u]
                        transferred.add(u)  # the output owns the storage now
                owner_storage[key] = reuse if reuse is not None else pool.take(nbytes)
            transient = []
            if step.stage is not None and i not in self.elided and (not step.stage.identity or not plan.fixed(step.inputs[0])):
                stage_storage[i] = pool.take(_stage_nbytes(step, tensors, rows(i)))
                transient.append(stage_storage[i])
            strided = step.outputs[0] in elide if step.outputs else False
            bordered = step.outputs[0] in self.bordered if step.outputs else False
            ws = step.workspaces(batch if tile is None else tile[2], strided, bordered)
            ws_storage[i] = []
            for _ in range(1 if tile is None else tile[3]):  # one set per lane
                ws_storage[i].append({})
                for name, (shape, dtype) in ws.items():
                    s = pool.take(int(np.prod(shape)) * np.dtype(dtype).itemsize)
                    ws_storage[i][-1][name] = (s, shape, dtype)
                    transient.append(s)
            for s in transient:
                give(s)
            if i in self.elided:
                give(stage_storage[i])
            for key, s in owner_storage.items():
                if end.get(key) == i and key not in transferred:
                    give(s)
            if tile is not None and i == tile[1]:
                for s in deferred:
                    pool.give(s)
                deferred.clear()
        for s in pool.storages:
            s.array = np.empty(s.size, dtype=np.uint8)
        self.storages = [s.array for s in pool.storages]
        self.nbytes = sum(s.size for s in pool.storages)

        def view(storage, shape, dtype):
            dtype = np.dtype(dtype)
            count = int(np.prod(shape))
            return storage.array[:count * dtype.itemsize].view(dtype).reshape(shape)

        for j, s in stage_storage.items():
            step = steps[j]
            self.stages[j] = view(s, step.stage.shape(rows(j)), tensors[step.inputs[0]].dtype)
        self.arrays = {}
        for i, step in enumerate(steps):
            for key in step.outputs:
                t = tensors[key]
                shape = concrete(t.shape, tensor_rows(key) if step.kind == "kernel" else batch)
                if key in elide:
                    self.arrays[key] = self.stages[elide[key]][steps[elide[key]].stage.dst]
                elif step.kind == "kernel":
                    self.arrays[key] = view(owner_storage[key], shape, t.dtype)
                elif step.kind == "view" and plan.fixed(key):
                    self.arrays[key] = self.arrays[step.inputs[0]].reshape(shape)
            self.lane_workspaces[i] = [{name: view(s, shape, dtype) for name, (s, shape, dtype) in lane.items()}
                                       for lane in ws_storage[i]]
            self.workspaces[i] = self.lane_workspaces[i][0]


def _stage_nbytes(step, tensors, batch) -> int:
    return int(np.prod(step.stage.shape(batch))) * tensors[step.inputs[0]].dtype.itemsize
