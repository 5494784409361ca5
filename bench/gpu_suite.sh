#!/usr/bin/env bash
# GPU suite for a lent GPU machine (the H200 of the `device` tool): one call of at most ~8 minutes
# on a cold machine, build included, that leaves a short summary under $OUT.
#
#   1. env      what the machine has (GPU, torch, triton, rdkit, nvcc)
#   2. build    confgf_fast._C with its CUDA kernels (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=9.0,
#               MAX_JOBS=16: every .cu compiles at once), editable install
#   3. tests    the CUDA and compiled-Triton tests against the reference (test_ops_backends -k cuda,
#               test_gine_aggregate -k cuda, test_ops_triton, test_ops_validation, test_cuda_build,
#               test_kernels_aot)
#   4. ops      op timings with CUDA events, eager and CUDA-graph replay (bench/bench_ops.py --json)
#   5. sampler  bench/bench_sampler.py on cuda at its default short schedule (5 levels x 10 steps):
#               eager, compiled, compiled + CUDA graphs, compiled bf16, and the official-style loop
#               (needs RDKit for SMILES in; skipped with the reason when the machine has none)
#   6. summary  $OUT/summary.md and $OUT/summary.json: per stage status and seconds, test counts,
#               op timings, sampler rates
# Each stage runs under `timeout` with its own cap, cut further so the whole call fits BUDGET_S
# (default 450 s, leaving room for the device tool's transfers within 8 minutes); a stage that times
# out or fails is recorded and the suite goes on. Exit status: 0 when every stage that ran passed.
#
# Usage:  bash bench/gpu_suite.sh [--dry-run] [--summary-only] [--skip-build] [--stages LIST] [--budget S]
#   --dry-run       print each stage's command and write the summary, run nothing (no GPU needed;
#                   what tests/test_gpu_suite.py exercises)
#   --summary-only  rebuild summary.md/json from the stage files already under $OUT
#   --skip-build    use the extension already built (e.g. a second call on a warm machine)
#   --stages LIST   comma-separated subset of env,build,tests,ops,sampler (default: all)
#   --budget S      wall-clock budget in seconds for the whole call (default $BUDGET_S or 450)
# Environment: OUT (default bench/results/gpu_suite_<date>), PYTHON (python3), TORCH_CUDA_ARCH_LIST
#   (9.0), MAX_JOBS (16), WHEELS (a folder of wheels to install offline first, e.g. rdkit and
#   pytest-benchmark carried to the machine: pip install --no-index --find-links "$WHEELS").
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; }

DRY=0; SUMMARY_ONLY=0; SKIP_BUILD=0
STAGES="env,build,tests,ops,sampler"
BUDGET="${BUDGET_S:-450}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --summary-only) SUMMARY_ONLY=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --stages) [ $# -ge 2 ] || { echo "--stages needs a value" >&2; usage; exit 2; }; STAGES="$2"; shift ;;
    --stages=*) STAGES="${1#*=}" ;;
    --budget) [ $# -ge 2 ] || { echo "--budget needs a value" >&2; usage; exit 2; }; BUDGET="$2"; shift ;;
    --budget=*) BUDGET="${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage; exit 2 ;;
  esac
  shift
done
case "$BUDGET" in ''|*[!0-9]*) echo "--budget must be a whole number of seconds, got '$BUDGET'" >&2; exit 2 ;; esac
for s in ${STAGES//,/ }; do
  case "$s" in env|build|tests|ops|sampler) ;; *) echo "unknown stage '$s' (env,build,tests,ops,sampler)" >&2; exit 2 ;; esac
done
[ "$SKIP_BUILD" = 1 ] && STAGES="$(echo ",$STAGES," | sed 's/,build,/,/; s/^,//; s/,$//')"

PY="${PYTHON:-python3}"
DATE="$(date -u +%Y%m%d_%H%M%S)"
OUT="${OUT:-bench/results/gpu_suite_${DATE}}"
mkdir -p "$OUT/stages" || exit 1
LOG="$OUT/suite.log"
export PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"  # H100/H200; one arch keeps the build short
export MAX_JOBS="${MAX_JOBS:-16}"
# torch derives CUDA_HOME from the nvcc on PATH, which may be a wrapper script (as on the dev machines,
# where the link then fails on -lcudart): point it at the toolkit when one is there.
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
START=$(date +%s)
SUMMARY_RESERVE=15  # seconds kept for the summary at the end

say() { echo "=== [$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

# run_stage NAME CAP_SECONDS COMMAND...: runs COMMAND under timeout (CAP, cut to the budget left),
# output to $OUT/stages/NAME.log, and records status/seconds/command in $OUT/stages/NAME.json.
run_stage() {
  local name="$1" cap="$2"; shift 2
  local now left limit status rc t0 t1
  now=$(date +%s); left=$((BUDGET - (now - START) - SUMMARY_RESERVE))
  limit=$cap; [ "$left" -lt "$limit" ] && limit=$left
  printf '%q ' "$@" > "$OUT/stages/$name.cmd"
  if [ "$DRY" = 1 ]; then
    say "$name (dry run, cap ${limit}s): $(cat "$OUT/stages/$name.cmd")"
    status=dry-run; rc=0; t0=$now; t1=$now
  elif [ "$limit" -le 5 ]; then
    say "$name: skipped, budget spent"
    status=skipped-budget; rc=0; t0=$now; t1=$now
  else
    say "$name (cap ${limit}s)"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$OUT/stages/$name.log" 2>&1
    rc=$?
    t1=$(date +%s)
    tail -15 "$OUT/stages/$name.log" | tee -a "$LOG"
    if [ "$rc" = 0 ]; then status=ok; elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout; else status=failed; fi
    say "$name: $status (rc $rc, $((t1 - t0)) s)"
  fi
  STAGE_STATUS="$status"
  "$PY" - "$OUT/stages/$name.json" "$name" "$status" "$rc" "$((t1 - t0))" "$limit" "$OUT/stages/$name.cmd" <<'EOF'
import json, sys
path, name, status, rc, secs, cap, cmd = sys.argv[1:]
json.dump({"stage": name, "status": status, "rc": int(rc), "seconds": int(secs), "cap_s": int(cap),
           "command": open(cmd).read().strip()}, open(path, "w"))
EOF
}

skip_stage() {  # skip_stage NAME REASON
  say "$1: skipped ($2)"
  "$PY" - "$OUT/stages/$1.json" "$1" "$2" <<'EOF'
import json, sys
path, name, reason = sys.argv[1:]
json.dump({"stage": name, "status": "skipped", "reason": reason, "seconds": 0}, open(path, "w"))
EOF
}

want() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

write_summary() {
  "$PY" - "$OUT" <<'EOF'
"""summary.json + summary.md from $OUT/stages/*.json, the stage logs and the benchmark JSONs."""
import json, re, subprocess, sys
from pathlib import Path

out = Path(sys.argv[1])
stages = {}
for name in ("env", "build", "tests", "ops", "sampler"):
    p = out / "stages" / f"{name}.json"
    if p.exists():
        stages[name] = json.loads(p.read_text())
summary = {"stages": stages}
try:
    summary["git"] = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                                    text=True, timeout=10).stdout.strip() or None
except Exception:
    summary["git"] = None
env_log = out / "stages" / "env.log"
if env_log.exists():
    summary["env"] = [line for line in env_log.read_text().splitlines() if line.strip()][:8]
tests_log = out / "stages" / "tests.log"
if tests_log.exists():
    # pytest's closing line, e.g. "== 80 passed, 3 skipped in 41.2s ==" or "1 failed, 79 passed in ..."
    lines = [l for l in tests_log.read_text().splitlines() if re.search(r"\d+ (passed|failed|error)", l)]
    if lines:
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", lines[-1])}
        summary["tests"] = {"line": lines[-1].strip("= "), **counts}
    summary["tests_failed"] = [l.split(" ", 1)[1] for l in tests_log.read_text().splitlines()
                               if l.startswith("FAILED ")][:20]
ops_json = out / "ops.json"
if ops_json.exists():
    data = json.loads(ops_json.read_text())
    summary["ops"] = {"device": data.get("device"), "rows": [
        {k: r.get(k) for k in ("op", "size", "backend", "ms", "ms_cuda_graph", "speedup_vs_reference", "GBps",
                               "max_rel_err_vs_reference", "error") if r.get(k) is not None}
        for r in data.get("results", [])]}
sampler_json = out / "sampler.json"
if sampler_json.exists():
    data = json.loads(sampler_json.read_text())
    summary["sampler"] = {"schedule": data.get("schedule", {}), "rates": {
        size: {m: r.get("conformer_steps_per_s", r.get("conformers_per_s")) for m, r in rows.items()}
        for size, rows in data.get("results", {}).items()}}
ran = [s for s in stages.values() if s["status"] not in ("skipped", "dry-run")]
summary["ok"] = all(s["status"] in ("ok", "skipped", "dry-run") for s in stages.values())
summary["dry_run"] = bool(stages) and all(s["status"] == "dry-run" for s in stages.values() if s["status"] != "skipped")
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

md = [f"# GPU suite {'(dry run) ' if summary['dry_run'] else ''}— {'ok' if summary['ok'] else 'FAILED'}", ""]
md.append(f"git {summary['git']}; {sum(s.get('seconds', 0) for s in stages.values())} s in stages")
md += ["", "| stage | status | s | note |", "| --- | --- | --- | --- |"]
for name, s in stages.items():
    note = s.get("reason") or (s.get("command", "") if s["status"] == "dry-run" else "")
    note = " ".join(note.split())[:90].replace("|", "\\|")
    md.append(f"| {name} | {s['status']} | {s.get('seconds', 0)} | {note} |")
if "tests" in summary:
    md += ["", f"tests: {summary['tests']['line']}"]
    md += [f"- FAILED {t}" for t in summary.get("tests_failed", [])]
if "ops" in summary:
    md += ["", f"ops on {summary['ops']['device']} (ms; CUDA-graph replay; x reference):", ""]
    for r in summary["ops"]["rows"]:
        if "error" in r:
            md.append(f"- {r['op']} {r['size']} {r['backend']}: ERROR {r['error'][:100]}")
            continue
        graph = f" / {r['ms_cuda_graph']:.4f}" if "ms_cuda_graph" in r else ""
        speed = f"  {r['speedup_vs_reference']:.1f}x" if "speedup_vs_reference" in r else ""
        md.append(f"- {r['op']} {r['size']} {r['backend']}: {r['ms']:.4f}{graph} ms{speed}")
if "sampler" in summary:
    md += ["", "sampler (conformer-steps/s; conformers/s for ETKDG):", ""]
    for size, rows in summary["sampler"]["rates"].items():
        md += [f"- {size} {m}: {v:.4g}" for m, v in rows.items() if v is not None]
(out / "summary.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
EOF
}

if [ "$SUMMARY_ONLY" = 1 ]; then
  write_summary
  exit 0
fi

say "gpu_suite: OUT=$OUT budget=${BUDGET}s stages=$STAGES dry_run=$DRY arch=$TORCH_CUDA_ARCH_LIST jobs=$MAX_JOBS"

if [ -n "${WHEELS:-}" ] && [ "$DRY" = 0 ]; then
  say "installing wheels from $WHEELS (offline)"
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$WHEELS"/*.whl 2>&1 | tail -3 | tee -a "$LOG"
fi

if want env; then
  export PY
  # shellcheck disable=SC2016  # expanded by the inner bash
  run_stage env 30 bash -c '
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    "$PY" -c "import sys, torch; print(\"python\", sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda)"
    for m in triton rdkit pytest_benchmark; do "$PY" -c "import $m; print(\"$m\", $m.__version__)" 2>&1 | tail -1; done
    nvcc --version | tail -1
    echo "cpus $(nproc)"
    true'
fi

# The lent machine runs a copy of the working tree, committed or not: the result files record
# git_dirty and allow_dirty rather than refusing and spending device minutes (bench/common.py).
if want build; then
  run_stage build 200 env FORCE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -e .
fi

if want tests; then
  run_stage tests 150 "$PY" -m pytest -q -rs -p no:cacheprovider \
    tests/test_ops_backends.py tests/test_gine_aggregate.py tests/test_ops_triton.py tests/test_ops_validation.py \
    tests/test_cuda_build.py tests/test_kernels_aot.py tests/test_project_sweeps.py \
    -k "cuda or triton or validation or aot or build"
fi

if want ops; then
  run_stage ops 70 "$PY" bench/bench_ops.py --json "$OUT/ops.json" --allow-dirty
fi

if want sampler; then
  if [ "$DRY" = 0 ] && ! "$PY" -c "import rdkit, pytest_benchmark" >/dev/null 2>&1; then
    skip_stage sampler "needs rdkit and pytest-benchmark (carry their wheels and set WHEELS=dir)"
  else
    run_stage sampler 150 "$PY" -m pytest -q -p no:cacheprovider bench/bench_sampler.py \
      --bench-sampler-device=cuda --bench-rounds=2 --bench-json="$OUT/sampler.json" --allow-dirty \
      -k "(test_ours or test_eager_official) and qm9" --benchmark-columns=median
  fi
fi

write_summary | tee -a "$LOG" >/dev/null
"$PY" -c "import json, sys; sys.exit(0 if json.load(open('$OUT/summary.json'))['ok'] else 1)"
status=$?
say "done in $(( $(date +%s) - START )) s (status $status); summary: $OUT/summary.md"
exit "$status"
