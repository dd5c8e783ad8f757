"""Checks of the paths a user gives (``--input`` files, ``--output`` folders): one clear line
naming the path and the fix, raised as :class:`~corpus_pipeline.errors.UserError` before any
work starts."""

from __future__ import annotations

import os
from collections.abc import Sequence

from corpus_pipeline.errors import UserError
from corpus_pipeline.fsio_remote import REMOTE, check_writable, is_remote

__all__ = ["check_input_file", "check_output_path", "make_output_dir"]


def make_output_dir(folder: str) -> None:
    """Create a local output folder; check a remote one can be written (no folders there)."""
    if is_remote(folder):
        check_writable(folder)
        return
    check_output_path(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"--output {folder}: cannot create the folder ({e.strerror}): choose another --output"
        ) from None


def _kind_of(path: str) -> str:
    import stat

    mode = os.stat(path).st_mode
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_input_file(path: str, flag: str = "--input", hint: str = "") -> None:
    """One true line for an input that must be a file: missing, a folder, a FIFO, a device."""
    if is_remote(path):
        if not REMOTE.isfile(path):
            raise UserError(f"{flag} {path}: no such file")
        return
    if not os.path.lexists(path):
        raise UserError(f"{flag} {path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a folder, not a file{hint}")
    if not os.path.isfile(path):
        raise UserError(
            f"{flag} {path}: is {_kind_of(path)}; give a regular file (dumps are read with seeks)"
        )
    if not os.access(path, os.R_OK):
        raise UserError(f"{flag} {path}: not readable (permission denied)")


def check_output_path(out: str, inputs: Sequence[str] = ()) -> None:
    """``--output`` must be a folder (or not exist yet) and must not overlap any input.

    An output inside an input folder would be read back as input by the next run; an input
    inside the output would be replaced by ``--overwrite``.
    """
    if is_remote(out):
        norm_out = out.rstrip("/")
    else:
        if os.path.exists(out) and not os.path.isdir(out):
            raise UserError(
                f"--output {out}: is a file, not a folder: choose a folder (it is created)"
            )
        norm_out = os.path.realpath(out)
    for given in inputs:
        norm_in = given.rstrip("/") if is_remote(given) else os.path.realpath(given)
        if norm_in == norm_out:
            raise UserError(f"--output {out} is the input {given}: choose another --output")
        if norm_out.startswith(norm_in.rstrip("/") + "/"):
            raise UserError(
                f"--output {out} is inside the input folder {given}: the next run would read "
                "its own output as input; choose an --output outside it"
            )
        if norm_in.startswith(norm_out.rstrip("/") + "/"):
            raise UserError(
                f"input {given} is inside --output {out}: choose an --output that does not "
                "hold the inputs"
            )
