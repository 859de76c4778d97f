"""Replacing a folder whole (a checkpoint, a run): the old or the new one is in place at every instant.

A finished folder is made beside its target under a hidden staging name (never listed) and swapped in at
the end. Where the file system can exchange two paths in one step (Linux renameat2), nothing is ever
missing; elsewhere two renames are used, and recover_swaps() undoes an interrupted pair at the next start.
"""
from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0


def swap_folder(new: str | Path, out: str | Path) -> Path:
    """Put the finished folder `new` in place of `out`, so that `out` holds the old or the new folder at every
    instant: one atomic exchange where the file system has it, else two renames (old aside as `.NAME.replaced`,
    new in) whose interruption recover_swaps() undoes at the next start. The old folder is deleted last."""
    new, out = Path(new), Path(out)
    if not out.exists():
        os.replace(new, out)
        return out
    old = out.parent / f".{out.name}.replaced"
    shutil.rmtree(old, ignore_errors=True)
    if _exchange(new, out):
        os.replace(new, old)  # `new` now holds the old folder
    else:
        os.replace(out, old)
        os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def recover_swaps(root: str | Path) -> list[str]:
    """Finish what a killed swap left in `root` (a checkpoints or runs folder): an old folder moved aside with
    nothing in its place goes back; one whose replacement is in place is deleted. Returns one note per fix."""
    root, notes = Path(root), []
    if not root.is_dir():
        return notes
    asides = [(p, p.name[1:-len(".replaced")], p) for p in root.glob(".*.replaced")]
    asides += [(p, p.name[1:p.name.rindex(".old-")], p / p.name[1:p.name.rindex(".old-")])
               for p in root.glob(".*.old-*")]  # pulls and imports of earlier versions: .NAME.old-XXXX/NAME
    for holder, name, folder in asides:
        out = root / name
        try:
            if name and not out.exists() and folder.is_dir():
                os.replace(folder, out)
                notes.append(f"{out}: restored the folder an interrupted replacement had moved aside")
            shutil.rmtree(holder, ignore_errors=True)
        except OSError as err:
            notes.append(f"{out}: could not restore {folder.name} ({err})")
    return notes
