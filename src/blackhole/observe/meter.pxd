# C types for meter.py, read by Cython in the compiled build (setup.py,
# BLACKHOLE_MYPYC=1); the pure build never reads this file. The counter slot
# is a C array of unsigned 64-bit integers (a count is one addition), and the
# constants and the hot path's locals are C numbers. Names declared here are
# C variables, invisible to other modules: only private ones.
cimport cython
# time.perf_counter() in meter.py is then CPython's clock read in C (Cython's
# cpython.time), not a call of the Python function: a reply batch reads it.
from cpython cimport time

from blackhole.observe.counters cimport Counters

cdef Py_ssize_t _PLAIN, _MAIL, _INSIDE, _ENDS, _END, _AUTH, _IDLE, _OPEN
cdef Py_ssize_t _ACCEPTED, _REJECTED, _DEFERRED, _DROPPED
cdef Py_ssize_t _REPLY_WIDTH, _REPLY_SUM, _SIZE_SUM, _OUTCOMES, _ZEROS
cdef double _MICROS, _FIRST_BOUND
# As long as layout.REPLY_BOUNDS and SIZE_BOUNDS, or the import fails.
cdef double[16] _BOUNDS
cdef double[9] _SIZES
cdef Py_ssize_t _REPLY_BUCKETS, _SIZE_BUCKETS


@cython.locals(index=Py_ssize_t)
cdef inline Py_ssize_t _bucket(double value, double* bounds, Py_ssize_t count)


cdef class VerbSlots:
    cdef readonly dict by_verb
    cdef readonly tuple unknown
    cdef readonly Py_ssize_t messages, message_bytes, size_histogram


cdef class SessionMeter:
    # The Counters, not a view of its slot here: a typed view is ~200 bytes,
    # and there is a meter per open session.
    cdef Counters _counters
    # Typed: dict.get() is then a C lookup, not a method call.
    cdef dict _by_verb
    cdef tuple _unknown
    cdef object _last
    cdef Py_ssize_t _outcomes, _bytes, _sizes, _transaction
    cdef public Py_ssize_t listener, commands
    cdef public double started
    cdef public object size, on_message

    cpdef void start(self)
    cdef void _place(self, VerbSlots slots, Py_ssize_t listener)
    @cython.locals(
        now=double, seconds=double, command=Py_ssize_t, codes=Py_ssize_t, histogram=Py_ssize_t,
        kind=Py_ssize_t, code=Py_ssize_t, outcome=Py_ssize_t, bucket=Py_ssize_t,
        micros=Py_ssize_t, count=Py_ssize_t, k=Py_ssize_t, stop=Py_ssize_t, index=Py_ssize_t,
        wire=bytes, v=cython.ulonglong[::1],
    )
    cpdef void replies(self, list out, list marks)
    @cython.locals(k=Py_ssize_t, command=Py_ssize_t, v=cython.ulonglong[::1])
    cpdef void unanswered(self, list marks)
    @cython.locals(outcome=Py_ssize_t)
    cdef void _transaction_reply(self, Py_ssize_t kind, Py_ssize_t code, bytes wire)
    @cython.locals(state=Py_ssize_t)
    cdef void _close_transaction(self, bint abandoned)
    @cython.locals(v=cython.ulonglong[::1])
    cdef void _count(self, Py_ssize_t outcome, object reply, object size)
    cpdef void end(self, Py_ssize_t how)
