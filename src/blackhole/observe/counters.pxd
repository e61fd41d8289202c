# C types for counters.py, read by Cython in the compiled build (setup.py,
# BLACKHOLE_MYPYC=1); the pure build never reads this file. The slot becomes a
# C array of unsigned 64-bit integers, so an increment is one addition.

cdef class Counters:
    cdef readonly object layout
    cdef readonly unsigned long long[::1] view
    cdef unsigned long long[::1] _v
    cdef Py_ssize_t _connections, _sessions_open, _session_ends, _messages, _message_bytes
    cdef Py_ssize_t _replies, _reply_histograms, _size_histogram

    cpdef void connection(self, Py_ssize_t listener)
    cpdef void session_end(self, Py_ssize_t listener, Py_ssize_t end)
