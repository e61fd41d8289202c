# C types for counters.py, read by Cython in the compiled build (setup.py,
# BLACKHOLE_MYPYC=1); the pure build never reads this file. The slot becomes a
# C array of unsigned 64-bit integers, so an increment is one addition. Names
# declared here are C variables, invisible to other modules: only private ones.

cdef Py_ssize_t _REPLY_WIDTH, _REPLY_SUM, _SIZE_SUM, _OUTCOMES
cdef double _MICROS
# As long as layout.REPLY_BOUNDS and SIZE_BOUNDS (a longer or shorter tuple
# fails the import).
cdef double[16] _REPLY_BOUNDS
cdef double[9] _SIZE_BOUNDS
cdef Py_ssize_t _COMMAND, _CODES, _HISTOGRAM


cdef class Counters:
    cdef readonly object layout
    cdef unsigned long long[::1] _v
    cdef Py_ssize_t _connections, _sessions_open, _session_ends, _messages, _message_bytes
    cdef Py_ssize_t _replies, _reply_histograms, _size_histogram

    cpdef void connection(self, Py_ssize_t listener)
    cpdef void session_end(self, Py_ssize_t listener, Py_ssize_t end)
    cpdef void command_at(self, Py_ssize_t index)
    cpdef void replied(self, tuple slots, Py_ssize_t code, double seconds, bint command=*)
    cpdef void message(self, Py_ssize_t listener, Py_ssize_t outcome, object size)
