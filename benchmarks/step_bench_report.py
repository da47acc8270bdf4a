#!/usr/bin/env python3
"""Turns the raw outputs of benchmarks/run_step_bench.sh into a Markdown report (stdout), or splices
a report into benchmarks/RESULTS.md between <!-- step-bench:begin --> and <!-- step-bench:end -->.
Standard library only (runs on any python3).

  step_bench_report.py WORKDIR --warmup N --models "vit bert" --command CMD --qft-bin PATH
  step_bench_report.py WORKDIR --warmup N --mode qat --qat-rules RULES ...   (MODE=qat runs)
  step_bench_report.py --splice RESULTS.md REPORT.md [--mode fp|qat]

qft per-step times: `qft train` with train.log_every=1 writes the cumulative mean ms/step after
every step k (m_k, 3 decimals), so step k took k*m_k - (k-1)*m_(k-1) ms. Steps 1..warmup are dropped.
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys

BEGIN, END = "<!-- step-bench:begin -->", "<!-- step-bench:end -->"
MARKERS = {"fp": (BEGIN, END), "qat": ("<!-- qat-step-bench:begin -->", "<!-- qat-step-bench:end -->")}
QAT_TARGETS = {"qat_fp": 1.15, "qat_torch": 0.5}
TARGETS = {"vit": 0.5, "bert": 1.0}
TITLES = {"vit": "demo ViT (Fashion-MNIST 28x28x1, patch 7, dim 64, depth 4, 4 heads, MLP 256, 10 classes)",
          "bert": "BERT-base-sized layers (2 layers, hidden 768, 12 heads, FFN 3072, vocab 30522, 2 labels)"}
SHORT = {"vit": "demo ViT", "bert": "BERT-base-sized layers (2)"}


def qft_step_times(metrics_path):
    means = {}
    with open(metrics_path) as f:
        for line in f:
            d = json.loads(line)
            if "ms_per_step" in d:
                means[d["step"]] = d["ms_per_step"]
    steps = sorted(means)
    if steps != list(range(1, len(steps) + 1)):
        raise SystemExit(f"{metrics_path}: expected a metrics line for every step (train.log_every=1)")
    out, prev = [], 0.0
    for k in steps:
        cum = k * means[k]
        out.append(cum - prev)
        prev = cum
    return out


def qft_final(out_path):
    final = None
    with open(out_path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                final = json.loads(line)
    if final is None:
        raise SystemExit(f"{out_path}: no final JSON line")
    return final


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""


def run_commit(workdir):
    """(short commit, dirty note) recorded by run_step_bench.sh when the runs started; else the tree's now."""
    path = os.path.join(workdir, "commit")
    if os.path.exists(path):
        parts = open(path).read().split()
        if parts:
            return parts[0], " (working tree had uncommitted changes)" if len(parts) > 1 else ""
    commit = sh("git rev-parse --short HEAD") or "?"
    return commit, " (working tree has uncommitted changes)" if sh("git status --porcelain --untracked-files=no") else ""


def cpu_model():
    txt = sh("lscpu")
    get = lambda key: next((l.split(":", 1)[1].strip() for l in txt.splitlines() if l.startswith(key + ":")), "?")
    flags = get("Flags").split()
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (f"{get('Model name')} (family {get('CPU family')} model {get('Model')}), {get('CPU(s)')} CPUs, "
            f"{get('Thread(s) per core')} thread(s)/core, hypervisor {get('Hypervisor vendor')}, "
            f"ISA: {' '.join(isa)}")


def fmt(x, nd=1):
    return f"{x:.{nd}f}"


QUIET_PCT = 10  # a run is "disturbed" when other processes used >= this % of the machine during it


def short_lib(path):
    """/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 -> openblas-openmp/libblas.so.3"""
    return "/".join(path.split("/")[-2:])


def report(args):
    w = args.workdir
    rd = lambda name: open(os.path.join(w, name)).read().strip() if os.path.exists(os.path.join(w, name)) else "?"
    rows, notes, sgemm, blas, torch_ver, threads = [], [], [], set(), "?", "?"
    busy = {}
    if os.path.exists(os.path.join(w, "background_busy")):
        for line in open(os.path.join(w, "background_busy")):
            name, _before, during = line.split()
            busy[name] = int(during)
    any_disturbed = False
    for model in args.models.split():
        qft, tor = {}, {}  # rep -> (median ms, all timed ms, peak rss)
        seqlens = []
        for path in sorted(glob.glob(os.path.join(w, f"qft_{model}_r*.metrics.jsonl"))):
            rep = int(re.search(r"_r(\d+)\.metrics", path).group(1))
            t = qft_step_times(path)[args.warmup:]
            qft[rep] = (statistics.median(t), t,
                        qft_final(os.path.join(w, f"qft_{model}_r{rep}.out"))["peak_rss_mb"])
        for path in sorted(glob.glob(os.path.join(w, f"torch_{model}_r*.json"))):
            rep = int(re.search(r"_r(\d+)\.json", path).group(1))
            d = json.load(open(path))
            tor[rep] = (d["ms_per_step_median"], d["ms_per_step_all"], d["peak_rss_mb"])
            seqlens = d["seq_len_timed"]
            sgemm.append(d["sgemm_gflops_1024"])
            blas.update(d["blas_libraries_mapped"])
            torch_ver, threads, batch = d["torch_version"], d["threads"], d["batch_size"]
        reps = sorted(set(qft) & set(tor))
        if not reps:
            raise SystemExit(f"no results for {model} in {w}")
        bg = {r: (busy.get(f"qft_{model}_r{r}"), busy.get(f"torch_{model}_r{r}")) for r in reps}
        quiet = [r for r in reps if all(x is not None and x < QUIET_PCT for x in bg[r])]
        used = quiet or reps
        any_disturbed |= len(used) < len(reps) or not quiet
        ratios = {r: qft[r][0] / tor[r][0] for r in reps}
        q = statistics.median(qft[r][0] for r in used)
        t = statistics.median(tor[r][0] for r in used)
        ratio = statistics.median(ratios[r] for r in used)
        lo, hi = min(ratios[r] for r in used), max(ratios[r] for r in used)
        q_min = min(min(qft[r][1]) for r in reps)
        t_min = min(min(tor[r][1]) for r in reps)
        target = TARGETS[model]
        verdict = "met" if ratio <= target else "**missed**"
        if model == "bert":
            tok = (f"{batch} x T; T = qft's trimmed length of each step (same on both sides): "
                   f"median {statistics.median(seqlens):g}, {min(seqlens)}-{max(seqlens)}")
        else:
            tok = f"{batch} x {seqlens[0]}"
        which = (f"{len(used)} of {len(reps)}" if quiet else f"all {len(reps)}, **all disturbed**")
        rows.append(f"| {SHORT[model]} | {tok} | {fmt(q)} | {fmt(t)} | **{ratio:.2f}x** ({lo:.2f}-{hi:.2f}; {which}) "
                    f"| {q_min / t_min:.2f}x | <= {target:.1f}x ({verdict}) "
                    f"| {fmt(max(qft[r][2] for r in reps), 0)} | {fmt(max(tor[r][2] for r in reps), 0)} |")
        per = []
        for r in reps:
            bq, bt = bg[r]
            b = f", others {bq}%/{bt}%" if bq is not None and bt is not None else ""
            per.append(f"{fmt(qft[r][0])}/{fmt(tor[r][0])} ({ratios[r]:.2f}{b}{'' if r in quiet else ', disturbed'})")
        notes.append(f"- {SHORT[model]}: {len(reps)} repetitions x {len(qft[reps[0]][1])} timed steps per side; "
                     f"per repetition qft/torch ms (ratio, other processes' share of the machine during the qft/torch run): "
                     + "; ".join(per) + ".")
    commit, dirty = run_commit(w)
    load0, load1 = rd("loadavg_start").split()[:3], rd("loadavg_end").split()[:3]
    bl = list(busy.values())
    busy_txt = (f"other processes' share of the machine during the runs: {min(bl)}-{max(bl)}% "
                f"(median {statistics.median(bl):g}%) of the machine" if bl else "")
    blas_txt = ", ".join(sorted(short_lib(b) for b in blas)) or "?"
    openblas = any("openblas" in b for b in blas)
    qft_blas = ", ".join(short_lib(x) for x in rd("qft_blas").split()) or "?"
    lines = [
        f"Measured {rd('date')} with `{args.command}` (from the repository root).",
        "",
        f"- CPU: {cpu_model()}; both sides use **{threads} threads**.",
        f"- Load average (1/5/15 min) at start {' '.join(load0)}, at end {' '.join(load1)}"
        + (f"; {busy_txt}" if busy_txt else "") + "."
        + (" **Some runs shared the cores with other processes: see the notes.**" if any_disturbed else ""),
        f"- Environment of both sides: `{args.env or '(none)'}`"
        + (f"; torch also `{args.torch_env}`" if args.torch_env else "") + ".",
        f"- PyTorch {torch_ver} (Debian, `/usr/bin/python3`), BLAS in the process: {blas_txt} "
        f"({'OpenBLAS' if openblas else '**NOT OpenBLAS: baseline invalid**'}); torch 1024^3 float32 matmul: "
        f"**{statistics.median(sgemm):.0f} GFLOP/s** (median of {len(sgemm)} runs; the generic reference BLAS "
        f"would be ~2.5).",
        f"- qft: `{args.qft_bin}` (CPU backend) linked against {qft_blas}; commit {commit}{dirty}.",
        "",
        "| model | batch x tokens | qft ms/step | torch ms/step | qft / torch (range; repetitions used) "
        "| fastest-step ratio | target | qft peak RSS MB | torch peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
        *rows,
        "",
        "A step is zero_grad, forward, cross-entropy loss, backward, AdamW step; float32, dropout 0, no gradient "
        "clipping. Each repetition runs both sides back to back (order alternating). ms/step: median over the "
        "used repetitions of each run's median step (warmup steps dropped). qft / torch: median over the used "
        "repetitions of the paired ratio, with its range. Used = undisturbed repetitions (other processes below "
        f"{QUIET_PCT}% of the machine during both runs), or all when none was. Fastest-step ratio: qft's "
        "fastest step / torch's fastest step over all runs.",
        *notes,
    ]
    print("\n".join(lines))


def qat_report(args):
    """MODE=qat: qft FP, qft QAT, torch FP, torch QAT runs of the demo ViT per repetition."""
    w = args.workdir
    rd = lambda name: open(os.path.join(w, name)).read().strip() if os.path.exists(os.path.join(w, name)) else "?"
    busy = {}
    if os.path.exists(os.path.join(w, "background_busy")):
        for line in open(os.path.join(w, "background_busy")):
            name, _before, during = line.split()
            busy[name] = int(during)
    sides = ("qft", "qftqat", "torch", "torchqat")
    runs = {side: {} for side in sides}  # side -> rep -> (median ms, timed ms, peak rss)
    sgemm, blas, torch_ver, threads, batch, tokens, sites, qparams = [], set(), "?", "?", "?", "?", "?", "?"
    for side in sides:
        if side.startswith("qft"):
            for path in sorted(glob.glob(os.path.join(w, f"{side}_vit_r*.metrics.jsonl"))):
                rep = int(re.search(r"_r(\d+)\.metrics", path).group(1))
                t = qft_step_times(path)[args.warmup:]
                runs[side][rep] = (statistics.median(t), t,
                                   qft_final(os.path.join(w, f"{side}_vit_r{rep}.out"))["peak_rss_mb"])
                if side == "qftqat":
                    m = re.search(r"calibrated (\d+) site", rd(f"{side}_vit_r{rep}.err"))
                    sites = m.group(1) if m else sites
        else:
            for path in sorted(glob.glob(os.path.join(w, f"{side}_vit_r*.json"))):
                rep = int(re.search(r"_r(\d+)\.json", path).group(1))
                d = json.load(open(path))
                runs[side][rep] = (d["ms_per_step_median"], d["ms_per_step_all"], d["peak_rss_mb"])
                sgemm.append(d["sgemm_gflops_1024"])
                blas.update(d["blas_libraries_mapped"])
                torch_ver, threads, batch, tokens = d["torch_version"], d["threads"], d["batch_size"], d["seq_len_timed"][0]
                if side == "torchqat":
                    qparams = d.get("quant_params", "?")
    reps = sorted(set.intersection(*(set(runs[side]) for side in sides)))
    if not reps:
        raise SystemExit(f"no complete QAT repetition in {w}")
    bg = {r: [busy.get(f"{side}_vit_r{r}") for side in sides] for r in reps}
    is_quiet = lambda side, r: busy.get(f"{side}_vit_r{r}") is not None and busy[f"{side}_vit_r{r}"] < QUIET_PCT
    quiet = [r for r in reps if all(is_quiet(side, r) for side in sides)]

    def used_for(*run_sides):  # repetitions whose runs of these sides were all undisturbed (all if none was)
        q = [r for r in reps if all(is_quiet(side, r) for side in run_sides)]
        return (q, f"{len(q)} of {len(reps)}") if q else (reps, f"all {len(reps)}, **all disturbed**")

    def ms(side):
        return statistics.median(runs[side][r][0] for r in used_for(side)[0])

    def paired(num, den):
        vals = {r: runs[num][r][0] / runs[den][r][0] for r in reps}
        used, which = used_for(num, den)
        u = [vals[r] for r in used]
        return vals, statistics.median(u), min(u), max(u), which

    qat_fp = paired("qftqat", "qft")
    qat_torch = paired("qftqat", "torchqat")
    fp_torch = paired("qft", "torch")
    torch_qat_fp = paired("torchqat", "torch")
    verdict = lambda x, t: "met" if x <= t else "**missed**"
    commit, dirty = run_commit(w)
    load0, load1 = rd("loadavg_start").split()[:3], rd("loadavg_end").split()[:3]
    bl = list(busy.values())
    busy_txt = (f"other processes' share of the machine during the runs: {min(bl)}-{max(bl)}% "
                f"(median {statistics.median(bl):g}%)" if bl else "")
    blas_txt = ", ".join(sorted(short_lib(b) for b in blas)) or "?"
    qft_blas = ", ".join(short_lib(x) for x in rd("qft_blas").split()) or "?"
    rng = lambda v: f"**{v[1]:.2f}x** ({v[2]:.2f}-{v[3]:.2f}; {v[4]})"
    per = []
    for r in reps:
        b = bg[r]
        others = "/".join("?" if x is None else f"{x}%" for x in b)
        per.append(f"{'/'.join(fmt(runs[side][r][0]) for side in sides)} "
                   f"(QAT/FP {qat_fp[0][r]:.2f}, vs torch QAT {qat_torch[0][r]:.2f}; others {others})")
    lines = [
        f"Measured {rd('date')} with `{args.command}` (from the repository root).",
        "",
        f"- CPU: {cpu_model()}; every run uses **{threads} threads**.",
        f"- Load average (1/5/15 min) at start {' '.join(load0)}, at end {' '.join(load1)}"
        + (f"; {busy_txt}" if busy_txt else "") + "."
        + (" **Some runs shared the cores with other processes: see the notes.**" if len(quiet) < len(reps) else ""),
        f"- Environment of every run: `{args.env or '(none)'}`"
        + (f"; torch also `{args.torch_env}`" if args.torch_env else "") + ".",
        f"- PyTorch {torch_ver} (Debian, `/usr/bin/python3`), BLAS in the process: {blas_txt}; torch 1024^3 float32 "
        f"matmul: **{statistics.median(sgemm):.0f} GFLOP/s** (median of {len(sgemm)} runs).",
        f"- qft: `{args.qft_bin}` (CPU backend) linked against {qft_blas}; commit {commit}{dirty}.",
        f"- Model: {TITLES['vit']}; batch {batch} x {tokens} tokens. QAT: qft `quant.rules={args.qat_rules}` "
        f"({sites} sites: every linear's weight per output channel, LSQ; its input per tensor, LSQ+); torch: "
        f"`bench_torch_step.py --qat`, torch's learnable fake-quant ops on the same sites ({qparams} quantizer "
        "parameters on both sides).",
        "",
        "| | FP ms/step | QAT ms/step | QAT / FP (range; repetitions used) |",
        "|---|---:|---:|---:|",
        f"| qft | {fmt(ms('qft'))} | {fmt(ms('qftqat'))} | {rng(qat_fp)} |",
        f"| PyTorch | {fmt(ms('torch'))} | {fmt(ms('torchqat'))} | {rng(torch_qat_fp)} |",
        "",
        "| ratio (median of the paired per-repetition ratios; range; repetitions used) | value | target |",
        "|---|---:|---|",
        f"| qft QAT / qft FP | {rng(qat_fp)} | <= {QAT_TARGETS['qat_fp']:.2f}x ({verdict(qat_fp[1], QAT_TARGETS['qat_fp'])}) |",
        f"| qft QAT / torch QAT | {rng(qat_torch)} | <= {QAT_TARGETS['qat_torch']:.1f}x "
        f"({verdict(qat_torch[1], QAT_TARGETS['qat_torch'])}) |",
        f"| qft FP / torch FP (context) | {rng(fp_torch)} | |",
        "",
        "A step is zero_grad, forward, cross-entropy loss, backward, AdamW step (model and quantizer parameters); "
        "float32, dropout 0, no gradient clipping; the QAT runs' quantizer calibration happens before the first "
        "step and is not timed. Each repetition runs the four processes back to back, in an order rotated by one "
        "per repetition. ms/step: median over the used repetitions of each run's median step (warmup steps "
        "dropped). Used = repetitions where other processes stayed below "
        f"{QUIET_PCT}% of the machine during the run(s) concerned (for a ratio: both of its runs), or all when "
        "none did. "
        f"Peak RSS MB (max over runs): qft FP {fmt(max(runs['qft'][r][2] for r in reps), 0)}, "
        f"qft QAT {fmt(max(runs['qftqat'][r][2] for r in reps), 0)}, torch FP "
        f"{fmt(max(runs['torch'][r][2] for r in reps), 0)}, torch QAT {fmt(max(runs['torchqat'][r][2] for r in reps), 0)}.",
        f"- {len(reps)} repetitions x {len(runs['qft'][reps[0]][1])} timed steps per run; per repetition qft FP / "
        "qft QAT / torch FP / torch QAT ms (ratios; other processes' share of the machine during each run, "
        f"a run at >= {QUIET_PCT}% being disturbed): " + "; ".join(per) + ".",
    ]
    print("\n".join(lines))


def splice(results, report_path, mode="fp"):
    begin, end = MARKERS[mode]
    body = open(report_path).read().strip()
    txt = open(results).read()
    if begin not in txt or end not in txt:
        raise SystemExit(f"{results}: markers {begin} / {end} not found")
    head, rest = txt.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(results, "w") as f:
        f.write(f"{head}{begin}\n{body}\n{end}{tail}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--splice":
        if len(sys.argv) == 6 and sys.argv[4] == "--mode" and sys.argv[5] in MARKERS:
            splice(sys.argv[2], sys.argv[3], sys.argv[5])
            return
        if len(sys.argv) != 4:
            raise SystemExit("usage: step_bench_report.py --splice RESULTS.md REPORT.md [--mode fp|qat]")
        splice(sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser()
    p.add_argument("workdir")
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--models", default="vit bert")
    p.add_argument("--command", default="benchmarks/run_step_bench.sh")
    p.add_argument("--qft-bin", default="?")
    p.add_argument("--env", default="", help="environment both sides ran with")
    p.add_argument("--torch-env", default="", help="extra environment of the torch side")
    p.add_argument("--mode", choices=["fp", "qat"], default="fp")
    p.add_argument("--qat-rules", default="?", help="qft's quant.rules of the QAT runs (report text)")
    args = p.parse_args()
    (qat_report if args.mode == "qat" else report)(args)


if __name__ == "__main__":
    main()
