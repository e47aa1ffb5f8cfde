"""The report of a harness run: <stem>.md (tables), <stem>.png (chart) and
<stem>.json (every figure, for tools and the smoke check)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

# what each reference is compared with, and the project's goal (dpdk-fwd / ref)
TARGETS = [
    (4, "l3fwd-lpm", 1.0, "IPv4 route path at least as fast as l3fwd LPM"),
    (6, "l3fwd-fib", 1.2, "IPv6 route path 1.2x l3fwd FIB6"),
    (None, "ovs-dpdk", 3.0, "far ahead of OVS-DPDK (3x)"),
]


STAGE_ORDER = ["rx", "rx_empty", "fast_input", "eth_input", "arp_input", "vxlan_decap4",
               "ipip_decap", "ip4_input", "antispoof4", "nat4", "icmp4_local", "route4",
               "policy4", "vxlan_encap4", "ipip_encap", "l2_rewrite4", "vxlan_decap6",
               "ip6_input", "antispoof6", "nat6", "icmp6_local", "route6", "policy6",
               "vxlan_encap6", "l2_rewrite6", "icmp_errors", "tx", "drop_free"]


def summarize(ref: dict, tsc: float) -> dict | None:
    """Median figures of a reference. A reference whose windows report the
    forwarding CPU's busy share ("cpu1_busy": Linux routing, whose generator
    may not fill CPU 1) gets its cycles/packet from the busy time, and a
    per-busy-core rate ("capacity") the ratio uses; polling ones are 100%."""
    runs = ref["runs"]
    if not runs:
        return None
    mpps = [r["mpps"] for r in runs]
    med = statistics.median(mpps)
    busy = [w["cpu1_busy"] for w in ref.get("extra", {}).get("windows", [])
            if w.get("cpu1_busy")]
    share = min(1.0, statistics.median(busy)) if busy else 1.0
    return {"mpps": med, "min": min(mpps), "max": max(mpps), "n": len(mpps),
            "busy": share, "capacity": med / share,
            "cycles": tsc * share / (med * 1e6),
            "drop": statistics.median(r["drop_ratio"] for r in runs)}


def compared(res: dict, sc: dict, key: str, tsc: float) -> tuple[dict | None, str | None]:
    """A reference's figures for a scenario's ratio: its own, or, when it does not run the
    scenario, those of the scenario named in its baselines (measured in the same run);
    (summary or None, that scenario's name or None)."""
    own = summarize(sc["refs"][key], tsc) if key in sc["refs"] else None
    if own:
        return own, None
    base = sc.get("baselines", {}).get(key)
    ref = res["scenarios"].get(base, {}).get("refs", {}).get(key) if base else None
    s = ref and summarize(ref, tsc)
    return (s, base) if s else (None, None)


def stage_rows(fwd: dict) -> tuple[list, dict]:
    """Per-stage rows of dpdk-fwd summed over its windows:
    (stage, packets per forwarded packet, cycles per forwarded packet, share)."""
    wins = fwd.get("extra", {}).get("windows", [])
    wins = [w for w in wins if w.get("stages")]
    if not wins:
        return [], {}
    rx = sum(w["rx_packets"] for w in wins)
    busy = sum(w["busy_cycles"] for w in wins)
    stages: dict[str, dict] = {}
    for w in wins:
        for k, v in w["stages"].items():
            s = stages.setdefault(k, {"packets": 0, "cycles": 0})
            s["packets"] += v["packets"]
            s["cycles"] += v["cycles"]
    rows = []
    attributed = 0
    for k in sorted(stages, key=lambda k: (STAGE_ORDER + [k]).index(k)):
        v = stages[k]
        if v["cycles"] == 0 and v["packets"] == 0:
            continue
        attributed += v["cycles"]
        rows.append((k, v["packets"] / rx if rx else 0, v["cycles"] / rx if rx else 0,
                     v["cycles"] / busy if busy else 0))
    if busy:
        rows.append(("unattributed (loop, housekeeping)", None, (busy - attributed) / rx,
                     (busy - attributed) / busy))
    return rows, {"busy_cycles_per_pkt": busy / rx if rx else 0, "rx": rx}


def nat_lines(sc: dict) -> list[str]:
    """What the NAT scenarios (harness/nat.py) measured besides the rate: the conntrack
    results in dpdk-fwd's windows, the generator's back-pressure, Linux's conntrack
    counters, the 1M-flow table."""
    L = []
    wins = sc["refs"]["dpdk-fwd"].get("extra", {}).get("windows", [])
    for w in wins:
        if "ct_million" in w:
            m = w["ct_million"]
            mib = lambda b: f"{b / 2**20:.1f} MiB" if b else "n/a"
            L.append("| conntrack at 1M flows | |\n|---|---:|")
            for k, v in (("flows sent (flowgen)", m["flows_sent"]),
                         ("flows created", m["created"]),
                         ("flows tracked (`fwdctl conntrack count`)", m["tracked"]),
                         ("capacity", m["capacity"]),
                         ("bytes per flow (entry + index + free lists, per capacity)",
                          m["bytes_per_flow"]),
                         ("table (`fwdctl tables`)", mib(m["table_bytes"])),
                         ("DPDK heap allocated, whole daemon", mib(m["heap_alloc_bytes"])),
                         ("drops", ", ".join(f"{k} {v}" for k, v in m["drops"].items()) or
                          "none"),
                         ("filled in", f"{m['fill_seconds']} s")):
                L.append(f"| {k} | {v} |")
            L.append("")
            break
    cts = [w["conntrack"] for w in wins if w.get("conntrack")]
    pgen = [w["pod_generator"]["full_share"] for w in wins
            if (w.get("pod_generator") or {}).get("full_share") is not None]
    if pgen:
        pgen.sort()
        L.append(f"dpdk-fwd's pod (testpmd io on core 0 into the vhost-user port): in the "
                 f"windows {pgen[len(pgen) // 2]:.0%} of what it read (median) found the "
                 f"vhost ring full and was dropped there (above a few percent: dpdk-fwd, not "
                 f"the generator, set the pace).\n")
    pol = [w["policy"] for w in wins if w.get("policy")]
    if pol:
        L.append(f"dpdk-fwd's policy: {pol[-1]['rules_counted']} rules enforced; the "
                 f"allowing rule (the last) counted {pol[-1]['allow_rule_packets']} packets "
                 f"by the end of the last window (a flow's first packet is classified, later "
                 f"ones pass on the flow's state).\n")
    gen = [w["generator"] for w in wins if w.get("generator")]
    if gen:
        sh = sorted(g["short_share"] or 0 for g in gen)
        L.append(f"dpdk-fwd's generator (flowgen on core 0): in the windows, "
                 f"{sh[len(sh) // 2]:.0%} of its TX calls (median) found the memif ring "
                 f"full (above ~10%: dpdk-fwd, not the generator, set the pace).\n")
    if cts:
        tot: dict = {}
        for c in cts:
            for k, v in c.items():
                tot[k] = tot.get(k, 0) + v
        L.append("dpdk-fwd's conntrack results in the windows (all runs): " +
                 ", ".join(f"{k} {v}" for k, v in sorted(tot.items())) + "\n")
    fr = sc["refs"]["dpdk-fwd"]
    per_cpu = [r["mpps"] / w["worker_cpu_share"] for r, w in zip(fr["runs"], wins)
               if w.get("worker_cpu_share")]
    if per_cpu:
        shares = sorted(w["worker_cpu_share"] for w in wins if w.get("worker_cpu_share"))
        line = (f"The 2 cores are shared: dpdk-fwd's worker was on its CPU "
                f"{shares[len(shares) // 2]:.0%} of the windows (median), "
                f"{statistics.median(per_cpu):.3f} M a second of its own CPU time")
        km = sc["refs"].get("kernel-masq", {}).get("extra", {}).get("windows", [])
        ns = [w["cpu1_softirq_ns_per_pkt"] for w in km if w.get("cpu1_softirq_ns_per_pkt")]
        if ns:
            lin = 1e3 / statistics.median(ns)
            line += (f"; Linux: {lin:.3f} M a second of CPU 1's softirq time (its median "
                     f"{statistics.median(ns):.0f} ns each, tick-sampled); ratio on CPU time "
                     f"{statistics.median(per_cpu) / lin:.2f}")
        L.append(line + ".\n")
    km = sc["refs"].get("kernel-masq", {}).get("extra", {}).get("windows", [])
    kct = [w["conntrack"] for w in km if w.get("conntrack")]
    if kct:
        tot = {}
        for c in kct:
            for k, v in c.items():
                tot[k] = tot.get(k, 0) + v
        lim = [w.get("limit") for w in km]
        L.append("Linux conntrack in the windows (all runs: nf_conntrack_count's growth and "
                 "the masquerade rule's counter): " +
                 ", ".join(f"{k} {v}" for k, v in sorted(tot.items())) +
                 f"; limit by run: {', '.join(map(str, lim))}\n")
    return L


def oncpu_mpps(key: str, ref: dict, tsc: float) -> list[float]:
    """A polling reference's rate per second of its forwarding thread's own CPU time, run by
    run, where its windows tell that time (dpdk-fwd: worker_cpu_share; l3fwd: oncpu_mpps;
    OVS-DPDK: pmd_oncpu_cycles_per_pkt)."""
    wins = ref.get("extra", {}).get("windows", [])
    out = []
    for run, w in zip(ref["runs"], wins):
        if key == "dpdk-fwd" and w.get("worker_cpu_share"):
            out.append(run["mpps"] / w["worker_cpu_share"])
        elif w.get("oncpu_mpps"):
            out.append(w["oncpu_mpps"])
        elif w.get("pmd_oncpu_cycles_per_pkt"):
            out.append(tsc / w["pmd_oncpu_cycles_per_pkt"] / 1e6)
    return out


def oncpu_lines(sc: dict, tsc: float) -> list[str]:
    """The scenario's targets again on CPU time (the full path, harness/fullpath.py): on a
    machine others load, each forwarding thread gets a different share of its CPU, and
    its rate per second of its own CPU time moves less than the wall-clock one."""
    fwd = oncpu_mpps("dpdk-fwd", sc["refs"]["dpdk-fwd"], tsc)
    if not fwd or not sc.get("targets"):
        return []
    f = statistics.median(fwd)
    parts = []
    for key, goal, _ in sc["targets"]:
        r = sc["refs"].get(key)
        v = oncpu_mpps(key, r, tsc) if r else []
        if v:
            m = statistics.median(v)
            parts.append(f"{r['label']} {m:.2f} ({tsc / (m * 1e6):.0f} cycles a packet; "
                         f"dpdk-fwd / it {f / m:.2f}, goal {goal:g})")
    if not parts:
        return []
    return [f"On CPU time (M packets per second of the forwarding thread's own CPU time, "
            f"medians): dpdk-fwd {f:.2f} ({tsc / (f * 1e6):.0f} cycles a packet), "
            + ", ".join(parts) + ".\n"]


def oncpu_stage_line(prof: dict, rows: list, tsc: float) -> list[str]:
    """The stage counters are TSC differences: when others' processes take the worker's CPU in
    the middle of a stage, that stage is charged for their time too. With the worker on its CPU
    less than 90% of the window, the stages' shares of the busy cycles, applied to the worker's
    own CPU time per packet, give each stage's cost as if alone."""
    share = [w.get("worker_cpu_share") for w in prof.get("extra", {}).get("windows", [])]
    if not share or not share[0] or share[0] >= 0.9 or not prof.get("mpps"):
        return []
    per_pkt = tsc * share[0] / (prof["mpps"] * 1e6)
    cells = ", ".join(f"{k.split(' ')[0]} {sh * per_pkt:.0f}" for k, _, _, sh in rows
                      if sh >= 0.005)
    return [f"The worker was on its CPU {share[0]:.0%} of that run: {per_pkt:.0f} cycles of its "
            f"own CPU time a packet, shared by the stages as above: {cells}.\n"]


def fmt(x, spec=".2f", none="n/a"):
    return none if x is None else format(x, spec)


def markdown(res: dict, chart: str | None) -> str:
    f = res["facts"]
    tsc = f["tsc_hz"]
    a = res["args"]
    L = []
    L.append(f"# dpdk-fwd perf report{' (smoke)' if a['smoke'] else ''}\n")
    L.append(f"- machine: {f['cpu']}, {f['cores']} cores, TSC {tsc / 1e9:.3f} GHz, "
             f"kernel {f['kernel']}, DPDK {f['dpdk']}")
    L.append(f"- dpdk-fwd: git {f['git']}; load average {f['load_before']:.2f} before, "
             f"{f.get('load_after', 0):.2f} after; took {f.get('duration_s', 0):.0f} s")
    L.append(f"- method: each implementation forwards on ONE core (lcore 1) from one "
             f"`net_pcap` device: RX replays the packet set (`infinite_rx=1`), TX is the "
             f"PMD's drop mode (frees and counts, like `net_null`). Mpps = packets sent out "
             f"over a {a['seconds']:g} s window after {a['warmup']:g} s of warm-up; the median "
             f"of {a['runs']} run(s), implementations interleaved run by run, each started "
             f"afresh. Cycles/packet = TSC Hz x the forwarding core's busy share / packets per "
             f"second (a polling core is 100% busy; Linux routing's CPU 1 is measured from "
             f"/proc/stat). Ratio = dpdk-fwd's Mpps / the reference's Mpps per busy core "
             f"(above 1: dpdk-fwd is faster). Drop = 1 - sent / received in the window.")
    L.append("")
    for name, sc in res["scenarios"].items():
        L.append(f"## {sc['title']} (`{name}`)\n")
        traffic = sc.get("traffic") or (f"{sc['packets']} packets, one flow each; 45% to "
                                        f"local pods, 45% to remote blocks, 10% outside the pool")
        L.append(f"Table: {sc['table']}. {traffic}. Mean frame {sc['mean_wire_bytes']:.0f} B "
                 f"on the wire.\n")
        fwd = summarize(sc["refs"]["dpdk-fwd"], tsc)
        flows = sc.get("counts") == "flows"
        if flows:
            L.append("Here the figure is **new flows created per second** (millions), not "
                     "packets; cycles are per flow created; drop = 1 - flows created / packets "
                     "taken in.\n")
        L.append(f"| implementation | {'M flows/s' if flows else 'Mpps'} (median) | min - max | "
                 f"core busy | cycles/{'flow' if flows else 'packet'} | "
                 "Gbit/s (L2) | drop | runs | dpdk-fwd / this |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key, r in sc["refs"].items():
            s, base = compared(res, sc, key, tsc)
            if s is None:
                why = r["na"] and f"n/a: {r['na']}" or f"could not run: " \
                    f"{(r['error'] or 'no run').splitlines()[0][:120]}"
                L.append(f"| {r['label']} | {why} | | | | | | 0 | |")
                continue
            label = r["label"]
            wire = sc.get("wire_bytes", {}).get(key, sc["mean_wire_bytes"])
            if base:   # not run here: its figures on the baseline scenario, said so
                label = f"{label} on `{base}` (n/a here: {r['na']})"
                wire = res["scenarios"][base]["mean_wire_bytes"]
            gbps = s["mpps"] * wire * 8 / 1000
            ratio = fwd["mpps"] / s["capacity"] if fwd else None
            L.append(f"| {label} | {s['mpps']:.2f} | {s['min']:.2f} - {s['max']:.2f} | "
                     f"{s['busy']:.0%} | {s['cycles']:.1f} | {gbps:.1f} | {s['drop']:.2%} | "
                     f"{s['n']} | {fmt(ratio)} |")
        L.append("")
        for key, r in sc["refs"].items():
            s = summarize(r, tsc)
            if s and s["busy"] < 0.95:
                L.append(f"{r['label']}: its generator could not fill the forwarding CPU "
                         f"({s['busy']:.0%} busy), so its Mpps is what was offered; at 100% "
                         f"it would forward about {s['capacity']:.2f} Mpps, which the ratio "
                         f"uses.\n")
        L += nat_lines(sc)
        L += oncpu_lines(sc, tsc)
        prof = sc["refs"]["dpdk-fwd"].get("profile")
        rows, tot = stage_rows(prof) if prof else ([], {})
        if rows:
            L.append(f"Where dpdk-fwd's cycles go: one more run with its per-stage counters "
                     f"on (`stage_stats`), {prof['mpps']:.2f} Mpps with them (the counters' "
                     f"own cost is the difference to the table's median); busy cycles per "
                     f"packet counted inside the worker: {tot['busy_cycles_per_pkt']:.1f}, "
                     f"over {tot['rx']} packets.\n")
            L.append("| stage | packets per packet | cycles per packet | share of busy |")
            L.append("|---|---:|---:|---:|")
            for k, p, c, sh in rows:
                L.append(f"| {k} | {fmt(p, '.2f', '')} | {c:.1f} | {sh:.1%} |")
            L.append("")
            L += oncpu_stage_line(prof, rows, tsc)
        drops = {}
        for w in sc["refs"]["dpdk-fwd"].get("extra", {}).get("windows", []) + \
                (prof or {}).get("extra", {}).get("windows", []):
            for k, v in w.get("drops", {}).items():
                drops[k] = drops.get(k, 0) + v
        if drops:
            L.append("dpdk-fwd drops in the windows, by reason: " +
                     ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) + "\n")
        cg = sc["refs"]["dpdk-fwd"].get("callgrind")
        if cg:
            L.append(f"Instructions per packet (callgrind, {cg['packets']} packets, build "
                     f"without AVX-512, SIMD capped at 256 bits): **{cg['instr_per_pkt']:.0f}**"
                     f". Each function's own instructions (inlined code included), per "
                     f"packet. The pcap PMD's functions have no symbols: its RX is the one "
                     f"that grows with the frame size (it copies each frame into a new "
                     f"mbuf), its TX drop the one that frees"
                     + (f". Callgrind's estimate with its cache and branch simulation: "
                        f"{cg['est_cycles_per_pkt']:.0f} cycles per packet"
                        if cg.get("est_cycles_per_pkt") else "") + ":\n")
            L.append("| function | instructions per packet |")
            L.append("|---|---:|")
            for fn, v in cg["top"]:
                L.append(f"| `{fn[:90]}` | {v:.1f} |")
            L.append("")
    # targets
    L.append("## Against the targets\n")
    L.append("| scenario | compared with | goal (dpdk-fwd / it) | now | met |")
    L.append("|---|---|---:|---:|---|")
    for name, sc in res["scenarios"].items():
        fwd = summarize(sc["refs"]["dpdk-fwd"], tsc)
        targets = sc.get("targets")
        if targets is None:
            targets = [(key, goal, what) for fam, key, goal, what in TARGETS
                       if fam is None or fam == sc["family"]]
        for key, goal, what in targets:
            r = sc["refs"].get(key)
            s, base = compared(res, sc, key, tsc) if r else (None, None)
            if not fwd or not s:
                continue
            now = fwd["mpps"] / s["capacity"]
            on = f" on `{base}`" if base else ""
            L.append(f"| {name} | {r['label']}{on} ({what}) | {goal:.1f} | {now:.2f} | "
                     f"{'yes' if now >= goal else 'no'} |")
    L.append("")
    notes: dict[str, list[str]] = {}  # a note said by several references once
    for k, ns in res["notes"].items():
        for n in ns:
            notes.setdefault(n, []).append(k)
    if notes:
        L.append("## How each reference was run\n")
        for n, ks in notes.items():
            L.append(f"- **{', '.join(ks)}**: {n}")
        L.append("")
    if res["failures"]:
        L.append("## Could not run\n")
        for x in res["failures"]:
            L.append(f"- {x.splitlines()[0]}")
        L.append("")
    if chart:
        L.append(f"![chart]({chart})\n")
    return "\n".join(L)


def plot(res: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    tsc = res["facts"]["tsc_hz"]
    scen = list(res["scenarios"])
    keys = []
    for sc in res["scenarios"].values():
        for k in sc["refs"]:
            if k not in keys:
                keys.append(k)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / max(1, len(keys))
    for i, k in enumerate(keys):
        mp, cy = [], []
        label = k
        for s in scen:
            r = res["scenarios"][s]["refs"].get(k)
            sm = r and summarize(r, tsc)
            label = r["label"] if r else label
            mp.append(sm["mpps"] if sm else 0)
            cy.append(sm["cycles"] if sm else 0)
        xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(scen))]
        axes[0].bar(xs, mp, width, label=label)
        axes[1].bar(xs, cy, width, label=label)
    for ax, title in ((axes[0], "Mpps on one core (higher is better)"),
                      (axes[1], "TSC cycles per packet (lower is better)")):
        ax.set_xticks(range(len(scen)))
        ax.set_xticklabels(scen)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"dpdk-fwd and references, {res['facts']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(res: dict, out_dir: Path, stem: str) -> list[Path]:
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps(res, indent=1))
    png = out_dir / f"{stem}.png"
    has_png = plot(res, png)
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(res, png.name if has_png else None))
    return [md, png, js] if has_png else [md, js]
