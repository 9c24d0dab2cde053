"""Copying the recorded tensors into one row of a recorder's storage, at every snapshot.

A :class:`RowWriter` is told after each walk of the model which tensors (and pruning masks)
hold the values, and copies them, flattened one after another, into row k. Two routes:

* direct: every piece a contiguous, unpruned CPU tensor of the storage's dtype, into CPU storage.
  One call over addresses taken once: the compiled ``kt_copy_row`` (:class:`koopman_tut.numerics.native.RowCopy`:
  streaming stores, which neither read the row into the cache first nor evict the model's data from
  it; on torch's threads for a row of 256 KiB or more), or where it was not built, one single-threaded
  ``numpy.concatenate`` over flat views (not bfloat16, which numpy cannot hold: torch's route then).
  The addresses are compared with the data's before every write and taken anew when they moved
  (``share_memory_()`` moves data inside its storage and frees the old memory); the storages are
  pinned against a resize (NumPy views: torch then refuses ``storage().resize_``).
* torch: everything else (pruned pieces, CUDA tensors, a dtype to convert, bfloat16). Each
  piece is flattened at every step, so a piece that is not contiguous (a channels_last
  convolution weight, whose flat form is a copy) is never recorded stale, and a pruning mask
  is read from its module at every step, so a mask swapped without a registration
  (``m._buffers["weight_mask"] = ...``, ``m.weight_mask.data = ...``) is followed.

A mask set or replaced after the first snapshot (pruning inside the window) is reported to ``on_mask``
(the recorder warns: :class:`koopman_tut.recording.after_step.ChangedAfterStepWarning`): the rows before it hold
unpruned values, those after it masked ones, a jump that is not training. A mask removed (``prune.remove``,
which keeps the masked values) is no jump.
"""
from __future__ import annotations

import numpy as np
import torch

from ..numerics import native
from ..numerics.distributed import local_tensor

_ADDRESS = torch.Tensor.data_ptr
_function_mode, _dispatch_modes = torch._C._is_torch_function_mode_enabled, torch._C._len_torch_dispatch_stack


class RowWriter:
    """Write the flattened recorded values into rows of ``storage`` (capacity, n).

    Parameters
    ----------
    storage : (capacity, n) the recorder's storage.
    pieces : (index, lo, hi) per piece held: entries lo:hi of recorded tensor ``index``.
    names : each recorded tensor's name ('0.weight'): its attribute ('weight') names its mask.
    on_mask : (names, step) -> None, told of masks set or replaced after the first row was written.
    """

    def __init__(self, storage: torch.Tensor, pieces: list[tuple[int, int, int]], names: list[str],
                 on_mask=lambda names, step: None):
        self.storage, self.pieces, self.names, self.on_mask = storage, pieces, names, on_mask
        self.attrs = [n.rpartition(".")[2] for n in names]
        self.masks: list | None = None  # each piece's mask tensor (or None) at the last walk, once a row is written
        self.parts: list[tuple] = []  # (tensor, (module's buffers, mask name) or None, lo, hi)
        self.copy: native.RowCopy | None = None  # the compiled copy, where it applies
        self.direct: tuple | None = None  # (numpy flat views, numpy rows) on the numpy route
        self._held: tuple = ()  # on those two routes: the tensors whose addresses they copy from and to,
        self._at: list[int] = []  # and those addresses

    def _parts(self, found) -> list[tuple]:
        """(tensor, (module's buffers, mask name) or None, lo, hi) per piece, from ``found``: (module, trainable
        tensor, pruned?) per recorded tensor, as a walk of the model gives it."""
        out = []
        for i, lo, hi in self.pieces:  # whole parameters, or the pieces in this rank's rows
            m, t, pruned = found[i]
            mask = (m._buffers, self.attrs[i] + "_mask") if pruned else None  # looked up at every write
            out.append((local_tensor(t).detach(), mask, lo, hi))
        return out

    @staticmethod
    def _masks(parts: list[tuple]) -> list:
        """Each piece's mask tensor in its module now (None: not pruned)."""
        return [mask[0].get(mask[1]) if mask else None for _, mask, _, _ in parts]

    def current(self, found) -> torch.Tensor:
        """(n,) the flattened values of the model as ``found`` now, in the storage's dtype and device (a new tensor)."""
        return self._cat(self._parts(found)).to(self.storage.device, self.storage.dtype)

    def prepare(self, found, step: int = 0) -> None:
        """After a walk (at optimizer step ``step``): ``found`` is (module, trainable tensor, pruned?) per recorded
        tensor."""
        parts = self._parts(found)
        masks = self._masks(parts)
        moved = [self.names[i] for (i, _, _), now, was in zip(self.pieces, masks, self.masks or masks)
                 if now is not was and now is not None]  # set or replaced (removed: the values stay masked)
        if moved:
            self.on_mask(moved, step)
        self.masks = masks if self.masks is not None else None
        self.parts = parts
        self._take_addresses()

    def _take_addresses(self) -> None:
        """The direct routes (compiled, numpy) where they apply: they copy from addresses taken here."""
        store, self.copy, self.direct, self._held, self._at = self.storage, None, None, (), []
        if not (store.device.type == "cpu" and all(
                mask is None and t.device.type == "cpu" and t.dtype == store.dtype and t.is_contiguous()
                for t, mask, _, _ in self.parts)):
            return
        flat = [t.reshape(-1)[lo:hi] for t, _, lo, hi in self.parts]
        self.copy = native.row_copy(flat, store)
        if self.copy is None and store.dtype != torch.bfloat16:
            self.direct = [v.numpy() for v in flat], store.numpy()
        if self.copy is not None or self.direct is not None:
            self._held = (*(t for t, _, _, _ in self.parts), store)
            self._at = list(map(_ADDRESS, self._held))

    def ahead(self, k: int, cap: int) -> tuple[int, ...]:
        """The compiled copy's arguments for row ``k`` (< ``cap``), to run beside the compiled checks
        (:mod:`.step_checks`), or () where there is no such copy, or a torch function or dispatch mode is on (such as
        ``with torch.device(...)``: ``is_set_to`` would run the mode's Python code beside the copy)."""
        if self.copy is None or k >= cap or _function_mode() or _dispatch_modes():
            return ()
        return self.copy.args(k)

    def write(self, k: int, checked: bool = False, copied: bool = False) -> None:
        """Row ``k`` = the flattened values now (converted to the storage's dtype); ``checked``: the addresses were
        compared with the data's already (:mod:`.step_checks`); ``copied``: and row ``k`` copied beside them."""
        if self.masks is None:  # a row written: a mask changed from here on is a jump in the rows
            self.masks = self._masks(self.parts)
        if copied:
            return
        if self._at and not checked and list(map(_ADDRESS, self._held)) != self._at:  # data moved inside its
            self._take_addresses()  # storage (share_memory_(), torch.multiprocessing), its old memory freed
        if self.copy is not None:
            self.copy(k)
            return
        if self.direct is not None:
            views, rows = self.direct
            np.concatenate(views, out=rows[k])
            return
        self._cat(self.parts, self.storage[k])

    @staticmethod
    def _cat(parts: list[tuple], row: torch.Tensor | None = None) -> torch.Tensor:
        """The pieces of ``parts``, flattened and masked, concatenated into ``row`` (or a new tensor)."""
        vals = []
        for t, mask, lo, hi in parts:
            v = t.reshape(-1)[lo:hi]  # a view, or (not contiguous) a fresh copy: never a stale one
            if mask is not None:  # the module's mask now, however it was last set
                buffers, name = mask
                v = v * local_tensor(buffers[name]).reshape(-1)[lo:hi]
            vals.append(v)
        if row is None or not all(v.device == row.device for v in vals):  # e.g. CUDA parameters, CPU storage
            out = torch.cat([v.to(vals[0].device) for v in vals])
            return out if row is None else row.copy_(out)  # one transfer
        return torch.cat(vals, out=row)
