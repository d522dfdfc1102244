"""Waiting by spinning, and compiled jobs, for backend's kernel pool (numba; imported only where
numba is).

A pool thread waits for the next job in ``add_then_serve``: it looks at the pool's ticket, and
while nothing new is there gives the CPU away (``sched_yield``) and looks again, at most
``turns`` times. It runs compiled with the GIL released, so the thread that will post the job
runs Python meanwhile. Loads and stores of the shared words are atomic (acquire / release):
the compiler may not hoist a read out of the loop, and what a writer stored before a ticket is
visible to a thread that sees that ticket. A turn is one syscall, ~0.5 µs on the 2-vCPU VM
measured, so 2,000 turns are about 1 ms.

Why spin: a pool thread blocked on a condition variable took 60-140 µs to wake there (a
halted vCPU is woken through the hypervisor), so splitting less than ~0.5 ms of work over two
threads never paid; a thread still spinning when the next call comes sees it in ~3 µs (round
trip).
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def _sched_yield(typingctx):
    """libc's sched_yield(): this thread goes to the back of its CPU's run queue."""
    sig = types.int32()

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "sched_yield")
        return builder.call(fn, [])

    return sig, codegen


# ------------------------------------------------------------------------- compiled jobs
# A compiled job is a C function ``void piece(int64 desc, int64 i)`` (a numba cfunc: its
# address) that runs piece i of a job described by the int64 array at address ``desc``. The
# pool's ``slot`` (int64[8]) announces jobs: [ticket, piece function, desc, pieces, next,
# finished, 0, 0]; a Python job (the pool's ``job``) has 0 as its piece function.
#
# The ticket is a sequence lock: ``publish`` makes it odd, writes the fields, and makes it even
# (the job's ticket); a thread reads the fields and then the ticket again, and uses them only
# if it is still the ticket it saw (so never a mix of two jobs' fields). ``next`` holds the
# job's ticket in its high bits and the next piece in its 32 low ones, and a piece is taken
# only by a compare-and-swap that finds both: a thread that saw an earlier ticket (it was
# descheduled while the caller finished that job and posted the next) cannot take a piece of
# the next job. A job's caller posts the next only when every piece is finished, and a thread
# adds to ``finished`` only the pieces it ran; so the words are never reused under a thread
# that still counts on them.
#
# Why compiled jobs: a pool thread runs them without returning to Python, so it never waits
# for the GIL, and that wait costs 25-40 µs a job on the VM measured (the caller holds the GIL
# while it sets up its own first piece; benchmarks/RESULTS.md, rounds 12 and 13): a dense
# layer's 2048 × 128 → 128 forward at 2 threads takes 290 µs with Python pieces, 238 µs as a
# compiled job (1 thread 465 µs; PyTorch 219 µs).
SLOT_TICKET, SLOT_FN, SLOT_DESC, SLOT_PIECES, SLOT_NEXT, SLOT_FINISHED = 0, 1, 2, 3, 4, 5
_TAG = 0x7FFFFFFF  # the ticket's bits kept in ``next`` (it wraps after 2³¹ jobs)
_LOW = 0xFFFFFFFF


@intrinsic
def _load_at(typingctx, arr, idx):
    """arr[idx] of an int64 array, as an atomic load with acquire ordering."""
    sig = types.int64(arr, types.intp)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(ary.data, [args[1]]), "acquire", 8)

    return sig, codegen


@intrinsic
def _store_at(typingctx, arr, idx, v):
    """arr[idx] = v as an atomic store with release ordering."""
    sig = types.void(arr, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        builder.store_atomic(args[2], builder.gep(ary.data, [args[1]]), "release", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _fence(typingctx):
    """A full memory fence (the sequence lock's: the odd ticket before the fields' stores)."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _cas_at(typingctx, arr, idx, old, new):
    """arr[idx]: old → new as one atomic compare-and-swap; whether it was swapped."""
    sig = types.boolean(arr, types.intp, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        r = builder.cmpxchg(builder.gep(ary.data, [args[1]]), args[2], args[3], "acq_rel",
                            "acquire")
        return builder.extract_value(r, 1)

    return sig, codegen


@intrinsic
def _add_at(typingctx, arr, idx, k):
    """arr[idx] += k as one atomic read-modify-write; the value after."""
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        old = builder.atomic_rmw("add", builder.gep(ary.data, [args[1]]), args[2], "acq_rel")
        return builder.add(old, args[2])

    return sig, codegen


@intrinsic
def _call_piece(typingctx, fn, desc, i):
    """The C function at address ``fn``, called as fn(desc, i)."""
    sig = types.void(types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(ir.VoidType(), [i64, i64])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [args[1], args[2]])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def publish(slot, fn, desc, pieces):
    """Announce a job in ``slot`` (under the pool's lock: one writer): the ticket odd, the
    fields, then the next even ticket, which it returns. ``fn`` 0: a Python job."""
    t = slot[SLOT_TICKET] + 2
    _store_at(slot, SLOT_TICKET, t - 1)
    _fence()
    _store_at(slot, SLOT_FN, fn)
    _store_at(slot, SLOT_DESC, desc)
    _store_at(slot, SLOT_PIECES, pieces)
    _store_at(slot, SLOT_FINISHED, 0)
    _store_at(slot, SLOT_NEXT, (t & _TAG) << 32)
    _store_at(slot, SLOT_TICKET, t)
    return t


@numba.njit(nogil=True, cache=True)
def run_pieces(slot, ticket):
    """Take and run pieces of the compiled job ``ticket`` until none is left; add how many
    this thread ran to its finished count (if any); return that number. Nothing, if the
    slot has moved on to another job."""
    fn = _load_at(slot, SLOT_FN)
    desc = _load_at(slot, SLOT_DESC)
    n = _load_at(slot, SLOT_PIECES)
    if _load_at(slot, SLOT_TICKET) != ticket or fn == 0:
        return 0
    tag = ticket & _TAG
    k = 0
    while True:
        v = _load_at(slot, SLOT_NEXT)
        if (v >> 32) != tag or (v & _LOW) >= n:
            break
        if _cas_at(slot, SLOT_NEXT, v, v + 1):
            _call_piece(fn, desc, v & _LOW)
            k += 1
    if k:
        _add_at(slot, SLOT_FINISHED, k)
    return k


@numba.njit(nogil=True, cache=True)
def run_pieces_then_wait(slot, ticket, turns):
    """The caller's side of its compiled job: pieces, then spin (at most ``turns`` turns)
    until every piece is finished; the finished count seen last."""
    run_pieces(slot, ticket)
    n = _load_at(slot, SLOT_PIECES)
    v = _load_at(slot, SLOT_FINISHED)
    i = 0
    while v != n and i < turns:
        _sched_yield()
        v = _load_at(slot, SLOT_FINISHED)
        i += 1
    return v


@numba.njit(nogil=True, cache=True)
def add_then_serve(counter, k, slot, seen, turns):
    """A pool thread's wait: counter[0] += k (the pieces of a Python job it finished, where
    the caller may be waiting for that count), then spin for a new ticket, at most ``turns``
    turns without one; compiled jobs it runs here, and spins on. Returns the ticket of a
    Python job, or ``seen`` when the turns ran out (the thread then blocks in Python)."""
    _add_at(counter, 0, k)
    while True:
        v = _load_at(slot, SLOT_TICKET)
        i = 0
        while (v == seen or v & 1) and i < turns:
            _sched_yield()
            v = _load_at(slot, SLOT_TICKET)
            i += 1
        if v == seen or v & 1:
            return seen
        fn = _load_at(slot, SLOT_FN)
        if fn == 0 and _load_at(slot, SLOT_TICKET) == v:
            return v
        seen = v
        run_pieces(slot, v)


@numba.njit(nogil=True, cache=True)
def add_then_spin_until(counter, k, target, turns):
    """counter[0] += k (atomically), then spin while counter[0] != target, at most ``turns``
    turns; the value seen last (the caller's side: its own pieces, then the others')."""
    v = _add_at(counter, 0, k)
    i = 0
    while v != target and i < turns:
        _sched_yield()
        v = _load_at(counter, 0)
        i += 1
    return v
