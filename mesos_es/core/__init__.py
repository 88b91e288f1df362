"""The pure core: state, appliers and queries. No clock, randomness, I/O or I/O library.

Everything here is deterministic: the same events folded in the same order give the same
state and the same digest on every replica, in a replay, and in the simulator.
"""
