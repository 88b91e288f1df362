"""The report of a chaos run: the JSON, a text summary, and the PNG plot.

The JSON holds every checker's verdict and evidence, the schedule, each fault as it ran
(with its failover times), the failover time distributions, the workload's totals and the
throughput over time. The plot has two panels: the failover time of every fault that took
the leader away (to the new leader, to every agent re-registered), and the throughput over
time (acknowledged appends, task launches, terminal updates per second; log positions per
second on the right axis) with each fault marked as a shaded span.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

FAULT_COLOURS = {"kill-leader": "tab:red", "kill-master": "tab:orange", "restart-leader": "tab:brown",
                 "pause-leader": "tab:purple", "kill-agent": "tab:olive", "partition": "tab:cyan"}


def throughput(series: dict, until_s: float, bucket_s: float) -> dict:
    """Per-second rates in buckets of `bucket_s` from 0 to `until_s`."""
    buckets = max(1, math.ceil(until_s / bucket_s))
    out = {"bucket_s": bucket_s, "t": [round(i * bucket_s, 1) for i in range(buckets)]}
    for name in ("appends", "launches", "finished", "acks"):
        counts = [0] * buckets
        for t in series.get(name, []):
            if 0 <= t < until_s:
                counts[min(buckets - 1, int(t // bucket_s))] += 1
        out[name] = [round(c / bucket_s, 2) for c in counts]
    rates = [0.0] * buckets
    positions = series.get("positions", [])
    for (t0, p0), (t1, p1) in itertools.pairwise(positions):
        if 0 <= t0 < until_s and t1 > t0:
            rates[min(buckets - 1, int(t0 // bucket_s))] = max(rates[min(buckets - 1, int(t0 // bucket_s))],
                                                              round((p1 - p0) / (t1 - t0), 1))
    out["positions"] = rates
    return out


def append_stalls(completions: list[float], faults: list[dict]) -> list[float | None]:
    """For each fault, the longest time without an acknowledged append that began between one
    second before the fault and its recovery: how long writes were unavailable."""
    times = sorted(completions)
    gaps = list(itertools.pairwise(times))
    stalls = []
    for fault in faults:
        start, end = fault.get("started_s"), fault.get("recovered_s")
        if start is None or end is None:
            stalls.append(None)
            continue
        within = [b - a for a, b in gaps if start - 1.0 <= a <= end]
        stalls.append(round(max(within), 3) if within else None)
    return stalls


def leader_changes(samples: list[dict]) -> list[tuple[float, str]]:
    """(time, "leader term N") at each election the monitor saw: the leader a majority of the
    masters names, in a new term (the same master may win again)."""
    changes = []
    current = None
    for sample in samples:
        answers = [m for m in sample["masters"].values() if m and m[3]]
        named = [m[3] for m in answers]
        if not named:
            continue
        leader = max(set(named), key=named.count)
        if named.count(leader) * 2 <= len(sample["masters"]):
            continue
        term = max(m[1] for m in answers if m[3] == leader)
        if (leader, term) != current:
            if current is not None:
                changes.append((sample["t"], f"{leader} term {term}"))
            current = (leader, term)
    return changes


def fault_end_s(fault: dict) -> float | None:
    for key in ("restarted_s", "resumed_s", "healed_s"):
        if fault.get(key) is not None:
            return fault[key]
    if fault.get("started_s") is not None:
        return fault["started_s"] + fault["hold_s"]
    return None


def write(report: dict, directory: Path) -> tuple[Path, Path | None]:
    """report.json, report.png and evidence.json (what the checkers judged, taken out of the
    report) in `directory`; the plot is skipped, and said so, if it fails."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    png_path = directory / "report.png"
    report.setdefault("files", {}).update({"json": str(json_path), "png": str(png_path)})
    evidence = report.pop("evidence", None)
    if evidence is not None:
        evidence_path = directory / "evidence.json"
        evidence_path.write_text(json.dumps(evidence) + "\n")
        report["files"]["evidence"] = str(evidence_path)
    try:
        plot(report, png_path)
    except Exception as e:  # noqa: BLE001 - a report without its plot is still a report
        report["files"]["png"] = None
        report["plot_error"] = f"{type(e).__name__}: {e}"
        png_path = None
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    return json_path, png_path


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faults = report["faults"]
    rates = report["throughput"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8.5), gridspec_kw={"height_ratios": [1, 1.3]})
    fig.suptitle(f"chaos run: scenario {report['scenario']}, seed {report['seed']}, {report['duration_s']:g} s, "
                 f"{report['masters']} masters, {report['agents']} agents: "
                 f"{'PASS' if report['ok'] else 'FAIL'}", fontsize=12)

    timed = [f for f in faults if f.get("expects_failover")]
    if timed:
        xs = list(range(1, len(timed) + 1))
        leader = [f["new_leader_s"] if f.get("new_leader_s") is not None else float("nan") for f in timed]
        agents = [f["agents_s"] if f.get("agents_s") is not None else float("nan") for f in timed]
        width = 0.4
        top.bar([x - width / 2 for x in xs], leader, width, label="to the new leader", color="tab:blue")
        top.bar([x + width / 2 for x in xs], agents, width, label="to every agent re-registered", color="tab:green")
        top.set_xticks(xs)
        top.set_xticklabels([f"#{f['index']}\n{_short_kind(f)}" for f in timed], fontsize=7)
        d = report["failover"]["new_leader_s"]
        a = report["failover"]["agents_s"]
        top.set_title(f"failover time per fault (new leader p50 {d['p50']} s, p90 {d['p90']} s, max {d['max']} s; "
                      f"agents p50 {a['p50']} s, p90 {a['p90']} s, max {a['max']} s)", fontsize=10)
        top.legend(fontsize=8)
    else:
        top.text(0.5, 0.5, "no fault took the leader away", ha="center", va="center", transform=top.transAxes)
        top.set_title("failover time per fault", fontsize=10)
    top.set_ylabel("seconds after the fault")
    top.grid(axis="y", alpha=0.3)

    t = rates["t"]
    for name, colour in (("appends", "tab:blue"), ("launches", "tab:green"), ("finished", "tab:orange")):
        label = {"appends": "log appends acknowledged/s", "launches": "tasks launched (202)/s",
                 "finished": "terminal updates/s"}[name]
        bottom.plot(t, rates[name], label=label, color=colour, linewidth=1)
    right = bottom.twinx()
    right.plot(t, rates["positions"], label="log positions/s (right)", color="black", linewidth=0.7,
               linestyle="--", alpha=0.6)
    right.set_ylabel("positions per second")
    elections = leader_changes(report.get("samples", []))
    for i, (at, leader) in enumerate(elections):
        bottom.axvline(at, color="black", linewidth=0.8, linestyle=":", label=None if i else "election (leader, term)")
        if len(elections) <= 12:  # names only while they stay readable
            bottom.annotate(leader, (at, 1), xycoords=("data", "axes fraction"), fontsize=6, rotation=90,
                            va="top", ha="right")
    seen = set()
    for f in faults:
        start, end = f.get("started_s"), fault_end_s(f)
        if start is None or end is None:
            continue
        kind = f["kind"]
        bottom.axvspan(start, end, color=FAULT_COLOURS.get(kind, "tab:pink"), alpha=0.25,
                       label=None if kind in seen else kind)
        seen.add(kind)
    bottom.set_xlabel(f"seconds since the workload started (buckets of {rates['bucket_s']:g} s)")
    bottom.set_ylabel("per second")
    bottom.set_title("throughput over time, faults shaded", fontsize=10)
    lines, labels = bottom.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    bottom.legend(lines + more, labels + more_labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12),
                  ncol=5, frameon=False)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _short_kind(fault: dict) -> str:
    kind = fault["kind"].replace("-leader", "").replace("partition", "part.")
    return kind


def render(report: dict) -> str:
    """The text summary printed at the end of a run."""
    lines = [f"chaos run {'PASSED' if report['ok'] else 'FAILED'}: {report['command']}",
             (f"  {len(report['faults'])} faults run of {len(report['schedule'])} planned; elapsed "
              f"{report['elapsed_s']:g} s; work dir {report['work_dir']}")]
    load = report.get("load_average")
    if load:
        lines.append(f"  load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}, "
                     f"on {load['cpus']} CPUs")
    for name, totals in report["workload"].items():
        lines.append(f"  workload {name}: " + ", ".join(f"{k} {v}" for k, v in totals.items() if k != "errors"))
    lines.append("")
    for v in report["checkers"]:
        lines.append(f"  [{'PASS' if v['ok'] else 'FAIL'}] {v['name']}")
        lines.append(f"         expected: {v['expected']}")
        lines.append(f"         seen:     {v['seen']}")
        for problem, items in v["evidence"].get("problems", {}).items():
            lines.append(f"         {problem}: {items['count']}")
            lines += [f"           - {item}" for item in items["examples"][:5]]
    lines.append("")
    lines.append(f"  {'failover times (seconds)':<34} {'count':<6} " + " ".join(f"{k:<7}" for k in ("min", "p50", "p90",
                                                                                                    "max")))
    for label, key in (("fault to new leader", "new_leader_s"), ("fault to agents re-registered", "agents_s"),
                       ("agent kill to agent back", "agent_back_s"),
                       ("appends stalled (leader faults)", "appends_stalled_s")):
        d = report["failover"][key]
        lines.append(f"  {label:<34} {d['count']:<6} " + " ".join(f"{_num(d[k]):<7}" for k in ("min", "p50", "p90", "max")))
    for kind, d in report["failover"]["new_leader_s_by_kind"].items():
        lines.append(f"    {'new leader, ' + kind:<32} {d['count']:<6} "
                     + " ".join(f"{_num(d[k]):<7}" for k in ("min", "p50", "p90", "max")))
    files = report.get("files", {})
    lines.append("")
    lines.append(f"  report: {files.get('json')}" + (f", plot: {files['png']}" if files.get("png") else "")
                 + (f", evidence: {files['evidence']}" if files.get("evidence") else ""))
    return "\n".join(lines)


def _num(value) -> str:
    return "-" if value is None else f"{value:g}"
