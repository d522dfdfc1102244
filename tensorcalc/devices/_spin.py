"""Waiting by spinning, for backend's kernel pool (numba; imported only where numba is).

``spin_while(flag, value, turns)``: while the int64 ``flag[0]`` equals ``value``, give the CPU
away (``sched_yield``) and look again, at most ``turns`` times; returns the value seen last.
It runs compiled with the GIL released, so the thread that will change the flag runs Python
meanwhile. The flag is read with an atomic acquire load: the compiler may not hoist the read
out of the loop, and what the writer stored before the flag is visible after it. A turn is one
syscall, ~0.5 µs on the 2-vCPU VM measured, so 2,000 turns are about 1 ms.

Why: a pool thread blocked on a condition variable took 60-140 µs to wake there (a halted vCPU
is woken through the hypervisor), so splitting less than ~0.5 ms of work over two threads never
paid; a thread still spinning when the next call comes sees it in ~3 µs (round trip).
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def _load_acquire(typingctx, arr):
    """flag[0] of an int64 array, as an atomic load with acquire ordering."""
    sig = types.int64(arr)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.load_atomic(ary.data, "acquire", 8)

    return sig, codegen


@intrinsic
def _sched_yield(typingctx):
    """libc's sched_yield(): this thread goes to the back of its CPU's run queue."""
    sig = types.int32()

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "sched_yield")
        return builder.call(fn, [])

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def spin_while(flag, value, turns):
    v = _load_acquire(flag)
    i = 0
    while v == value and i < turns:
        _sched_yield()
        v = _load_acquire(flag)
        i += 1
    return v


@intrinsic
def _fetch_add(typingctx, arr, k):
    """counter[0] += k as one atomic read-modify-write; the value after."""
    sig = types.int64(arr, types.int64)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        old = builder.atomic_rmw("add", ary.data, args[1], "acq_rel")
        return builder.add(old, args[1])

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def add_then_spin_while(counter, k, flag, value, turns):
    """counter[0] += k (atomically, with the GIL already released), then
    spin_while(flag, value, turns): a pool thread reports its finished pieces and waits for the
    next call in one call, so the caller, which may be waiting for that count, never finds this
    thread holding the GIL."""
    _fetch_add(counter, k)
    return spin_while(flag, value, turns)


@numba.njit(nogil=True, cache=True)
def add_then_spin_until(counter, k, target, turns):
    """counter[0] += k (atomically), then spin while counter[0] != target, at most ``turns``
    turns; the value seen last (the caller's side: its own pieces, then the others')."""
    v = _fetch_add(counter, k)
    i = 0
    while v != target and i < turns:
        _sched_yield()
        v = _load_acquire(counter)
        i += 1
    return v
