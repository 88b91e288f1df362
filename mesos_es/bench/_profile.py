"""Run a `mesos-es` command (a master, synthetic agents) with a profiler that signals switch.

    python -m mesos_es.bench._profile --out PREFIX master --address ... (any `mesos-es` argv)

Nothing is measured until SIGUSR1. Then, until SIGUSR2:

* cProfile on the main thread (the asyncio loop: HTTP, fold, leader), which counts calls
  and times each function, at the price of slowing Python calls down (about 1.5-2x);
* a sampler thread that records every thread's Python stack every `--interval-ms`
  (default 5 ms; the tick thread of pysyncobj too, which cProfile does not see). Samples
  cost little and show where wall time goes, idle waits included.

On SIGUSR2 it writes `PREFIX-LABEL.prof` (pstats; `python -m pstats` reads it) and
`PREFIX-LABEL.samples.txt` (per thread: the functions most often on top of the stack, and
most often anywhere on it), where LABEL is the text of the file `PREFIX.label` if there is
one (the bench writes the phase name there), else a counter. Then `PREFIX-LABEL.done`
appears. SIGUSR1 again starts a new profile.

Used by `mesos-es bench master --profile DIR`; see bench/README.md.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import signal
import sys
import threading
import time
from pathlib import Path



class Sampler(threading.Thread):
    def __init__(self, interval_s: float):
        super().__init__(name="bench-sampler", daemon=True)
        self.interval_s = interval_s
        self.stop_event = threading.Event()
        self.samples: collections.Counter = collections.Counter()  # (thread, leaf) -> n
        self.inclusive: collections.Counter = collections.Counter()  # (thread, frame) -> n
        self.totals: collections.Counter = collections.Counter()  # thread -> n

    def run(self) -> None:
        own = threading.get_ident()
        names = {}
        while not self.stop_event.wait(self.interval_s):
            for thread in threading.enumerate():
                names[thread.ident] = thread.name
            for ident, frame in sys._current_frames().items():
                if ident == own:
                    continue
                name = names.get(ident, str(ident))
                self.totals[name] += 1
                seen = set()
                leaf = None
                depth = 0
                while frame is not None and depth < 80:
                    code = frame.f_code
                    key = f"{code.co_filename.rpartition('site-packages/')[2]}:{code.co_firstlineno}({code.co_name})"
                    if leaf is None:
                        leaf = key
                    if key not in seen:
                        seen.add(key)
                        self.inclusive[(name, key)] += 1
                    frame = frame.f_back
                    depth += 1
                self.samples[(name, leaf)] += 1

    def report(self, top: int = 40) -> str:
        lines = [f"sampling every {self.interval_s * 1000:g} ms; per thread, share of its samples"]
        for thread, total in self.totals.most_common():
            lines += ["", f"== thread {thread}: {total} samples", "-- on top of the stack (self):"]
            own = [(k[1], n) for k, n in self.samples.items() if k[0] == thread]
            for key, n in sorted(own, key=lambda x: -x[1])[:top]:
                lines.append(f"{100 * n / total:6.1f}%  {key}")
            lines.append("-- anywhere on the stack (inclusive):")
            incl = [(k[1], n) for k, n in self.inclusive.items() if k[0] == thread]
            for key, n in sorted(incl, key=lambda x: -x[1])[:top]:
                lines.append(f"{100 * n / total:6.1f}%  {key}")
        return "\n".join(lines) + "\n"


class Profiles:
    def __init__(self, prefix: Path, interval_s: float):
        self.prefix = prefix
        self.interval_s = interval_s
        self.profile: cProfile.Profile | None = None
        self.sampler: Sampler | None = None
        self.count = 0
        self.started = 0.0

    def start(self, *_args) -> None:
        if self.profile is not None:
            return
        self.started = time.monotonic()
        self.sampler = Sampler(self.interval_s)
        self.sampler.start()
        self.profile = cProfile.Profile()
        self.profile.enable()  # the signal handler runs on the main thread: it profiles that

    def stop(self, *_args) -> None:
        if self.profile is None:
            return
        self.profile.disable()
        self.sampler.stop_event.set()
        self.sampler.join(timeout=5)
        self.count += 1
        label_file = Path(f"{self.prefix}.label")
        label = label_file.read_text().strip() if label_file.exists() else str(self.count)
        base = Path(f"{self.prefix}-{label}")
        self.profile.dump_stats(f"{base}.prof")
        elapsed = time.monotonic() - self.started
        Path(f"{base}.samples.txt").write_text(f"wall {elapsed:.2f} s\n" + self.sampler.report())
        Path(f"{base}.done").write_text("")
        self.profile, self.sampler = None, None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mesos_es.bench._profile")
    parser.add_argument("--out", required=True, type=Path, help="prefix of the files written")
    parser.add_argument("--interval-ms", type=float, default=5.0, help="sampling period (default %(default)s)")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="the mesos-es command and its flags")
    args = parser.parse_args()
    profiles = Profiles(args.out, args.interval_ms / 1000)
    signal.signal(signal.SIGUSR1, profiles.start)
    signal.signal(signal.SIGUSR2, profiles.stop)
    from mesos_es.cli import main as cli_main

    try:
        return cli_main(args.argv)
    finally:
        profiles.stop()


if __name__ == "__main__":
    raise SystemExit(main())
