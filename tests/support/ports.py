"""Free loopback ports for tests that start real servers."""

import random
import socket


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(count: int, offsets: tuple[int, ...] = (0, 1000)) -> int:
    """A base port such that base+i+offset is free for every i < count and offset."""
    for _ in range(200):
        base = random.randrange(20000, 29000)
        if all(is_free(base + i + o) for i in range(count) for o in offsets):
            return base
    raise RuntimeError("no free block of ports")
