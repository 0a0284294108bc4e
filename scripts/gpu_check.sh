#!/usr/bin/env bash
# One prepared check of the GPU path, run as ONE command on a lent GPU machine.
#
#   On the GPU machine, in the repository root:   bash scripts/gpu_check.sh
#   On a CPU machine first (tiny, ~1 min):         bash scripts/gpu_check.sh --quick
#
# Options: --out DIR (default: $OUT when set, else results/gpu_check), --work DIR (scratch:
# data, packed store, run directories; default a fresh temporary folder, removed at the end
# unless --keep-work; a named one is kept), --python PY (use this interpreter, nothing set up),
# --wheels DIR (offline wheels, default .whl), --fetch-wheels (build them here and exit).
#
# Steps, in order; each is logged with its wall time, a failed step is recorded and the later
# steps still run; the exit status is 0 only when every step passed:
#   1. env        a working Python (.venv/bin/python; else, with wheels at hand, the machine's
#                 python3 with its torch plus those wheels; else `make venv`), nvidia-smi,
#                 torch, CUDA
#   2. benchmark  scripts/benchmark.py: ResNet-18 and ResNet-50 at 224 px, batch 256, bf16,
#                 eager and trainer.compile=true, framework step vs the bare PyTorch loop
#                 (--quick: small_cnn at 64 px, ResNet-18 at 32 px, batch 8, 2 steps, CPU)
#   2b. clip_step scripts/benchmark_clip_step.py: a TSAV step (R(2+1)D-18 + ResNet-18, 8 frames
#                 at 112 px, batch 16, bf16) eager, with channels-last-3d and compiled, clips/s
#                 (--quick: the small arch at 32 px on the CPU)
#   3. tests      the suite's training tests with AFFECTLAB_TEST_DEVICE=cuda, -m "not slow",
#                 bounded by `timeout` (--quick: one fast CUDA-free file on the CPU)
#   4. default_job  python train.py trainer.device=cuda (the default job; --quick: 2 steps of
#                 it on a tiny benchmark on the CPU); its metrics.json is copied to the output
#   5. summary    gpu_check.json (per-step status, wall time, key numbers, device) and
#                 gpu_check.md
#
# The output folder holds at most 8 flat files (what the device tool brings back from $OUT):
# gpu_check.json, gpu_check.md, env.log, benchmark.log (the clip step's log too), tests.log,
# default_job.log, metrics.json, clip_step.json. Data, packed images, benchmark folders and the run directory live in the work
# folder, never in the repository. Every step has a time cap (below); the whole run stays under
# ~8 min on an H100 (the four benchmark rows share 200 s, the clip step 100 s). GPU_CHECK_TESTS="FILES..." replaces
# the test selection.
#
# The GPU machine has no network and its python3 (PyTorch preinstalled) lacks Hydra. Before
# the device run, here:   bash scripts/gpu_check.sh --fetch-wheels      (writes .whl/, ~0.5 MB)
# then run on the device with .whl travelling along (it does when not git-ignored; otherwise
# name it in the run's carry), e.g. command "bash scripts/gpu_check.sh", timeout 600 s.
set -u
set -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2

# ------------------------------------------------------------------ settings
QUICK=0
OUTDIR=""
WORK=""
KEEP_WORK=0
WHEELS=".whl"
FETCH_WHEELS=0
PYTHON_GIVEN=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --out) OUTDIR="${2:?--out needs a folder}"; shift ;;
        --out=*) OUTDIR="${1#--out=}" ;;
        --work) WORK="${2:?--work needs a folder}"; KEEP_WORK=1; shift ;;
        --work=*) WORK="${1#--work=}"; KEEP_WORK=1 ;;
        --keep-work) KEEP_WORK=1 ;;
        --wheels) WHEELS="${2:?--wheels needs a folder}"; shift ;;
        --wheels=*) WHEELS="${1#--wheels=}" ;;
        --fetch-wheels) FETCH_WHEELS=1 ;;
        --python) PYTHON_GIVEN="${2:?--python needs an interpreter}"; shift ;;
        --python=*) PYTHON_GIVEN="${1#--python=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# Hydra's offline needs on a machine whose python3 has torch but not Hydra (versions: this
# checkout's .venv when it has them)
WHEEL_PACKAGES="hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher
hydra-submitit-launcher submitit"

if [ "$FETCH_WHEELS" = 1 ]; then
    PIP_PY=".venv/bin/python"
    [ -x "$PIP_PY" ] || PIP_PY="python3"
    specs=()
    for name in $WHEEL_PACKAGES; do
        version="$("$PIP_PY" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')"
        specs+=("$name${version:+==$version}")
    done
    mkdir -p "$WHEELS" || exit 1
    echo "gpu_check: building ${specs[*]} into $WHEELS"
    "$PIP_PY" -m pip wheel --quiet --no-deps -w "$WHEELS" "${specs[@]}" || exit 1
    ls -l "$WHEELS"
    exit 0
fi

if [ -z "$OUTDIR" ]; then
    OUTDIR="${OUT:-results/gpu_check}"
fi
mkdir -p "$OUTDIR" || { echo "gpu_check: cannot create $OUTDIR" >&2; exit 2; }
OUTDIR="$(cd "$OUTDIR" && pwd)"
if [ -z "$WORK" ]; then
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")" || exit 2
fi
mkdir -p "$WORK" || { echo "gpu_check: cannot create $WORK" >&2; exit 2; }
WORK="$(cd "$WORK" && pwd)"
case "$WORK" in
    *[!A-Za-z0-9._/-]*) echo "gpu_check: the work folder '$WORK' must be a plain path (it is" \
                             "passed in Hydra overrides)" >&2; exit 2 ;;
esac
cleanup() { [ "$KEEP_WORK" = 1 ] || rm -rf -- "$WORK"; }
trap cleanup EXIT

STEPS="$WORK/steps.tsv"        # name, status, rc, seconds, detail
: >"$STEPS"
rm -f -- "$OUTDIR"/gpu_check.json "$OUTDIR"/gpu_check.md "$OUTDIR"/metrics.json "$OUTDIR"/clip_step.json \
    "$OUTDIR"/env.log "$OUTDIR"/benchmark.log "$OUTDIR"/tests.log "$OUTDIR"/default_job.log

export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"   # this checkout's code, whatever is installed
export AFFECTLAB_PACKED_DIR="$WORK/packed"
DATA_ROOT="$WORK/data/synthetic"
CPUS="$(nproc 2>/dev/null || echo 2)"
GEN_WORKERS=$(( CPUS > 8 ? 8 : (CPUS > 1 ? CPUS : 0) ))   # processes generating the benchmark

if [ "$QUICK" = 1 ]; then
    MODE="quick"; DEVICE="cpu"
    BENCH_BUDGET=150; ROW_CAP_EAGER=90; ROW_CAP_COMPILE=90
    CLIP_CAP=60; CLIP_ARGS=(--quick)
    TESTS_CAP=120; TRAIN_CAP=120
    BENCH_STEPS=(--steps 2 --warmup 1 --rounds 2)
    TINY=(dataset.num_subjects_train=4 dataset.images_per_subject_train=8
          dataset.num_subjects_unlabeled=4 dataset.images_per_subject_unlabeled=8
          dataset.num_subjects_val=2 dataset.images_per_subject_val=4
          dataset.num_subjects_test=2 dataset.images_per_subject_test=4)
    BENCH_COMMON=(--methods baseline "dataset.root=$DATA_ROOT" "${TINY[@]}"
                  trainer.batch_size=8 trainer.device=cpu)
    # the small CNN at 64 px; ResNet-18 (the GPU rows' torchvision trunk) at 32 px, 4× cheaper
    ROWS=("small_cnn_64|model=small_cnn|model.widths=[8,16]|dataset.image_size=64"
          "resnet18_32|model=resnet18|dataset.image_size=32")
    TEST_FILES=(tests/test_losses.py)
    TEST_ARGS=()
    TRAIN_ARGS=(trainer.device=cpu trainer.max_steps=2 trainer.batch_size=8
                "dataset.root=$DATA_ROOT" dataset.image_size=32 "${TINY[@]}"
                "model.widths=[8,16]")
else
    MODE="gpu"; DEVICE="cuda"
    # caps in seconds: together with the environment (~15 s) under 8 minutes
    BENCH_BUDGET=200; ROW_CAP_EAGER=75; ROW_CAP_COMPILE=120
    CLIP_CAP=100; CLIP_ARGS=(--variants eager,channels_last_3d,compile --steps 20 --warmup 3)
    TESTS_CAP=100; TRAIN_CAP=130
    BENCH_STEPS=(--steps 30 --warmup 5 --rounds 3)
    # 512 training faces (two batches of 256) at 224 px, the other splits token-sized: the
    # benchmark measures steps on prepared batches, so the data only needs to exist
    BENCH_COMMON=(--methods baseline "dataset.root=$DATA_ROOT" dataset.image_size=224
                  dataset.num_subjects_train=16 dataset.images_per_subject_train=32
                  dataset.num_subjects_unlabeled=4 dataset.images_per_subject_unlabeled=8
                  dataset.num_subjects_val=4 dataset.images_per_subject_val=8
                  dataset.num_subjects_test=4 dataset.images_per_subject_test=8
                  "dataset.num_workers=$GEN_WORKERS" trainer.batch_size=256
                  trainer.precision=bf16 trainer.device=cuda)
    ROWS=("resnet18_224_eager|model=resnet18"
          "resnet50_224_eager|model=resnet50"
          "resnet18_224_compile|model=resnet18|trainer.compile=true"
          "resnet50_224_compile|model=resnet50|trainer.compile=true")
    # the tests whose training honours AFFECTLAB_TEST_DEVICE (tests/conftest.py): the
    # trainer, the non-finite guards (a device-side flag on CUDA), methods, MLCR, checkpoints
    TEST_FILES=()
    for f in tests/test_trainer.py tests/test_reliability.py tests/test_methods.py \
             tests/test_mlcr.py tests/test_checkpoints.py tests/test_engine*.py; do
        [ -f "$f" ] && TEST_FILES+=("$f")
    done
    TEST_ARGS=()
    TRAIN_ARGS=(trainer.device=cuda "dataset.root=$DATA_ROOT"
                "dataset.num_workers=$GEN_WORKERS")
fi
if [ -n "${GPU_CHECK_TESTS:-}" ]; then      # another selection, e.g. on a later device run
    read -r -a TEST_FILES <<<"$GPU_CHECK_TESTS"
fi
RUN_DIR="$WORK/default_job"

# ------------------------------------------------------------------ helpers
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "[gpu_check $(date +%H:%M:%S)] $*"; }

record() {     # name status rc seconds detail
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >>"$STEPS"
    say "step $1: $2 (rc $3) in $4 s${5:+ — $5}"
}

# run_logged LOG CAP SIGNAL CMD...: CMD bounded by `timeout` (SIGNAL first, KILL 15 s later),
# output appended to LOG; sets RC
run_logged() {
    local log="$1" cap="$2" sig="$3"
    shift 3
    {
        echo "\$ $*"
        echo "# started $(date '+%F %T'), time cap ${cap} s"
    } >>"$log"
    timeout -s "$sig" -k 15 "$cap" "$@" >>"$log" 2>&1
    RC=$?
    echo "# exit status $RC" >>"$log"
}

status_of() {  # rc -> ok | timeout | failed
    case "$1" in
        0) echo ok ;;
        124|137) echo timeout ;;
        *) echo failed ;;
    esac
}

show_tail() {  # a failed step's last lines on the console
    say "last lines of $1:"
    tail -n "${2:-25}" "$1" | sed 's/^/    /'
}

PY=""
SUMMARY_PY=""

write_summary() {
    local py="${SUMMARY_PY:-}"
    [ -n "$py" ] || py="$(command -v python3 || command -v python || true)"
    if [ -z "$py" ]; then
        say "no Python to write the summary with"
        return 1
    fi
    "$py" - "$WORK" "$OUTDIR" "$MODE" "$DEVICE" "$1" <<'PYEOF'
import json, os, re, sys, time
from pathlib import Path

work, out, mode, device, final = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
steps = {}
for line in (work / "steps.tsv").read_text().splitlines():
    name, status, rc, seconds, detail = (line.split("\t") + [""] * 5)[:5]
    entry = {"status": status, "rc": int(rc) if rc.lstrip("-").isdigit() else rc,
             "seconds": float(seconds) if seconds else None}
    if detail:
        entry["detail"] = detail
    if "/" in name:                  # benchmark/<row>
        steps.setdefault("benchmark", {}).setdefault("rows", {})[name.split("/", 1)[1]] = entry
    else:
        steps.setdefault(name, {}).update(entry)

def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None

env = load(work / "env.json") or {}
if "env" in steps:
    steps["env"]["log"] = "env.log"
    steps["env"].update({k: env.get(k) for k in ("python", "torch", "torch_cuda",
                                                 "cuda_available", "how") if k in env})

bench = steps.get("benchmark")
if bench is not None:
    bench["log"] = "benchmark.log"
    for row, entry in bench.get("rows", {}).items():
        result = load(work / "bench" / row / "benchmark.json")
        if result is None:
            continue
        s, step, pipe = result["settings"], result["step"], result["pipeline"]
        entry.update({
            "model": s.get("model"), "image_size": s.get("image_size"),
            "batch_size": s.get("batch_size"), "precision": s.get("precision"),
            "compile": s.get("compile"), "channels_last": s.get("channels_last"),
            "device": result["machine"].get("device"), "gpu": result["machine"].get("gpu"),
            "framework_images_per_s": step["framework_images_per_s"],
            "bare_images_per_s": step["bare_images_per_s"],
            "framework_over_bare": step["ratio"], "framework_ms": step["framework_ms"],
            "bare_ms": step["bare_ms"], "ratio_per_round": step["ratio_per_round"],
            "loader_images_per_s": pipe["loader_images_per_s"],
            "transform_images_per_s": pipe["transform_images_per_s"],
            "peak_cuda_mb": step.get("peak_cuda_mb"), "peak_rss_mb": result.get("peak_rss_mb"),
            "result": result})

tests = steps.get("tests")
if tests is not None:
    tests["log"] = "tests.log"
    try:
        text = (out / "tests.log").read_text(errors="replace")
    except OSError:
        text = ""
    tests["selection"] = (work / "tests_selection.txt").read_text().strip() \
        if (work / "tests_selection.txt").exists() else None
    finals = [l for l in text.splitlines()
              if re.search(r"\d+ (passed|failed|error|errors|skipped|deselected)\b", l)]
    if finals:
        tests["pytest_summary"] = finals[-1].strip("= ").strip()
        for key in ("passed", "failed", "errors", "error", "skipped", "deselected", "xfailed"):
            m = re.search(rf"(\d+) {key}\b", finals[-1])
            if m:
                tests["errors" if key == "error" else key] = int(m.group(1))

job = steps.get("default_job")
if job is not None:
    job["log"] = "default_job.log"
    metrics = load(out / "metrics.json")
    if metrics is not None:
        job["metrics"] = "metrics.json"
        job.update({k: metrics.get(k) for k in ("method", "dataset", "score", "monitor",
                                                 "best_value", "steps", "epochs",
                                                 "train_time_s", "throughput_images_per_s",
                                                 "device")})
        job["test"] = {task: {k: v for k, v in values.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)}
                       for task, values in (metrics.get("tasks") or {}).items()}

clip = steps.get("clip_step")
if clip is not None:
    clip["log"] = "benchmark.log"
    result = load(work / "clip_step" / "clip_step.json")
    if result is not None:
        clip.update({"file": "clip_step.json", "settings": result["settings"],
                     "precision": result["precision"], "variants": result["variants"]})

order = ["env", "benchmark", "clip_step", "tests", "default_job"]
all_ok = all(steps.get(n, {}).get("status") == "ok" for n in order)
summary = {
    "mode": mode, "device": device,
    "device_name": env.get("device_name"), "gpu": env.get("gpu"),
    "torch": env.get("torch"), "cuda": env.get("torch_cuda"),
    "host": env.get("host"), "cpus": env.get("cpus"),
    "finished": final == "final", "all_ok": all_ok if final == "final" else None,
    "written": time.strftime("%Y-%m-%d %H:%M:%S"),
    "wall_s": round(sum(steps[n].get("seconds") or 0 for n in order if n in steps), 1),
    "steps": {n: steps[n] for n in order if n in steps},
    "env": env,
}
tmp = out / "gpu_check.json.tmp"
tmp.write_text(json.dumps(summary, indent=2) + "\n")
os.replace(tmp, out / "gpu_check.json")

def num(v, fmt="{:.0f}"):
    return "—" if v is None else fmt.format(v)

lines = [f"# GPU check ({mode}): {summary['device_name'] or device}",
         "",
         f"torch {summary['torch']}, CUDA {summary['cuda']}, device `{device}`, "
         f"{summary['cpus']} CPUs; written {summary['written']}; "
         + ("**all steps ok**" if all_ok and final == "final"
            else "finished with failures" if final == "final" else "in progress"),
         "", "| step | status | wall s |", "| --- | --- | ---: |"]
for n in order:
    if n in steps:
        lines.append(f"| {n} | {steps[n].get('status', '—')} | "
                     f"{num(steps[n].get('seconds'), '{:.1f}')} |")
if bench is not None and bench.get("rows"):
    lines += ["", "Benchmark rows (`scripts/benchmark.py --methods baseline`): framework step "
              "vs bare PyTorch loop, same network, tensors and optimizer.", "",
              "| row | status | s | model | px | batch | precision | compile | framework img/s "
              "| bare img/s | framework / bare | peak CUDA MB |",
              "| --- | --- | ---: | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |"]
    for row, e in bench["rows"].items():
        lines.append(f"| {row} | {e['status']} | {num(e.get('seconds'), '{:.1f}')} | "
                     f"{e.get('model', '—')} | {e.get('image_size', '—')} | "
                     f"{e.get('batch_size', '—')} | {e.get('precision', '—')} | "
                     f"{e.get('compile', '—')} | {num(e.get('framework_images_per_s'))} | "
                     f"{num(e.get('bare_images_per_s'))} | "
                     f"{num(e.get('framework_over_bare'), '{:.3f}')} | "
                     f"{num(e.get('peak_cuda_mb'))} |")
if clip is not None and clip.get("variants"):
    c = clip["settings"]
    lines += ["", f"Clip step (`scripts/benchmark_clip_step.py`): TSAV arch {c['arch']}, "
              f"{c['frames']} frames at {c['size']} px, batch {c['batch']}, {clip['precision']}.",
              "", "| variant | clips/s | vs eager | ms/step | peak CUDA MB |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, v in clip["variants"].items():
        lines.append(f"| {name} | " + (f"{num(v.get('clips_per_s'), '{:.1f}')} | "
                     f"{num(v.get('speed_vs_eager'), '{:.2f}')} | {num(v.get('step_ms'), '{:.1f}')} "
                     f"| {num(v.get('peak_cuda_mb'))} |" if "error" not in v
                     else f"error: {v['error'][:80]} | | | |"))
if tests is not None:
    lines += ["", f"Tests ({tests.get('selection')}): {tests.get('pytest_summary', 'no summary')}"]
if job is not None:
    lines += ["", f"Default job: score {num(job.get('score'), '{:.3f}')}, "
              f"{num(job.get('throughput_images_per_s'))} images/s on {job.get('device')}, "
              f"{job.get('steps')} steps, {num(job.get('train_time_s'), '{:.1f}')} s of training"]
failed = [n for n in order if n in steps and steps[n].get("status") != "ok"]
if failed:
    lines += ["", "Failed: " + ", ".join(f"{n} (see {steps[n].get('log', 'the console')})"
                                           for n in failed)]
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
PYEOF
}

say "mode $MODE, output $OUTDIR, work folder $WORK, repository $REPO"

# ------------------------------------------------------------------ 1. environment
LOG="$OUTDIR/env.log"
t0="$(now)"
HOW=""
cat >"$WORK/env_probe.py" <<'PYEOF'
import json, os, platform, socket, sys
import torch, hydra, omegaconf, affectlab   # noqa: F401  (all four must import)
info = {"how": os.environ.get("GPU_CHECK_HOW"), "python": platform.python_version(),
        "executable": sys.executable, "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "gpu_count": torch.cuda.device_count(), "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__, "affectlab": os.path.dirname(affectlab.__file__),
        "cpus": os.cpu_count(), "host": socket.gethostname(), "platform": platform.platform()}
cpu = platform.processor() or platform.machine()
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
               if l.startswith("model name"))
except (OSError, StopIteration):
    pass
info["cpu"] = cpu
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=torch.cuda.get_device_name(0), device_name=torch.cuda.get_device_name(0),
                gpu_memory_gib=round(props.total_memory / 2**30, 1),
                capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported())
    x = torch.randn(1024, 1024, device="cuda")
    info["cuda_matmul_ok"] = bool(torch.isfinite(x @ x).all())
else:
    info.update(gpu=None, device_name=cpu)
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
PYEOF
# probe PYTHON HOW: whether PYTHON imports torch, hydra, omegaconf and affectlab (writes env.json)
probe() {
    echo "# --- probing $1 ($2)" >>"$LOG"
    rm -f "$WORK/env.json"
    GPU_CHECK_HOW="$2" timeout -k 10 180 "$1" "$WORK/env_probe.py" "$WORK/env.json" >>"$LOG" 2>&1
}
{ echo "# gpu_check $MODE, $(date '+%F %T'), host $(hostname 2>/dev/null), $CPUS CPUs"
  echo "# repository $REPO"; echo "# work folder $WORK"
  echo "# --- nvidia-smi"
  if command -v nvidia-smi >/dev/null 2>&1; then timeout 60 nvidia-smi 2>&1; else echo "nvidia-smi: not found"; fi
} >"$LOG"
try_venv() {     # try_venv HOW: .venv/bin/python, when it works
    [ -x .venv/bin/python ] && probe .venv/bin/python "$1" && PY=".venv/bin/python" && HOW="$1"
}
try_system() {   # the machine's python3 with its own torch; Hydra from offline wheels
    local cand base
    for cand in python3 python; do
        base="$(command -v "$cand" || true)"
        [ -n "$base" ] && "$base" -c 'import torch' >>"$LOG" 2>&1 || continue
        echo "# trying $base (its own torch) + the wheels in $WHEELS" >>"$LOG"
        if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
            run_logged "$LOG" 300 TERM "$base" -m pip install --quiet --no-index --no-deps \
                --no-compile --no-cache-dir --target "$WORK/site" "$WHEELS"/*.whl
            case ":$PYTHONPATH:" in *":$WORK/site:"*) ;; *) export PYTHONPATH="$WORK/site:$PYTHONPATH" ;; esac
        else
            echo "# no wheels in $WHEELS (make them with: bash scripts/gpu_check.sh --fetch-wheels)" >>"$LOG"
        fi
        probe "$base" "system $base + wheels" && PY="$base" && HOW="system $base + wheels"
        return
    done
}
have_wheels() { ls "$WHEELS"/*.whl >/dev/null 2>&1; }
if [ -n "$PYTHON_GIVEN" ]; then
    probe "$PYTHON_GIVEN" "--python" && PY="$PYTHON_GIVEN" && HOW="--python $PYTHON_GIVEN"
elif ! try_venv "reused .venv"; then
    SYSTEM_TRIED=0
    if have_wheels; then
        # wheels carried along: the offline GPU machine, where `make venv` cannot download
        try_system; SYSTEM_TRIED=1
    fi
    if [ -z "$PY" ]; then
        echo "# .venv/bin/python missing or incomplete: make venv" >>"$LOG"
        PIP_DEFAULT_TIMEOUT=20 PIP_RETRIES=1 run_logged "$LOG" 600 TERM make venv
        try_venv "make venv"
    fi
    [ -z "$PY" ] && [ "$SYSTEM_TRIED" = 0 ] && try_system
fi
ENV_STATUS="failed"; ENV_DETAIL="no Python with torch, hydra and affectlab (see env.log)"
if [ -n "$PY" ]; then
    SUMMARY_PY="$PY"
    echo "# Python: $PY ($HOW)" >>"$LOG"
    if [ "$DEVICE" = cuda ] && ! grep -q '"cuda_available": true' "$WORK/env.json"; then
        ENV_DETAIL="torch sees no CUDA device"
    else
        ENV_STATUS="ok"; ENV_DETAIL="$HOW"
    fi
fi
record env "$ENV_STATUS" "$([ "$ENV_STATUS" = ok ] && echo 0 || echo 1)" "$(elapsed "$t0")" "$ENV_DETAIL"
[ "$ENV_STATUS" = ok ] || show_tail "$LOG"
write_summary partial
PY="${PY:-python3}"     # later steps still run (and fail, recorded) without one

# ------------------------------------------------------------------ 2. benchmark rows
LOG="$OUTDIR/benchmark.log"
: >"$LOG"
t0="$(now)"
bench_start=$SECONDS
bench_rc=0
COMPILE_FAILED=""
for spec in "${ROWS[@]}"; do
    IFS='|' read -r -a parts <<<"$spec"
    row="${parts[0]}"
    overrides=("${parts[@]:1}")
    cap=$ROW_CAP_EAGER
    case "$spec" in *compile=true*) cap=$ROW_CAP_COMPILE ;; esac
    left=$(( BENCH_BUDGET - (SECONDS - bench_start) ))
    [ "$left" -lt "$cap" ] && cap=$left
    tr="$(now)"
    if [ "$cap" -lt 10 ]; then
        record "benchmark/$row" skipped 1 0 "the benchmark's ${BENCH_BUDGET} s were spent"
        bench_rc=1
        continue
    fi
    case "$spec" in *compile=true*)
        if [ -n "$COMPILE_FAILED" ]; then
            # one compile failure (not a time-out) is the same failure in the next model too:
            # its minutes of compiling go to the later steps instead
            record "benchmark/$row" skipped 1 0 "$COMPILE_FAILED failed with trainer.compile=true"
            bench_rc=1
            continue
        fi ;;
    esac
    echo "######## row $row" >>"$LOG"
    run_logged "$LOG" "$cap" TERM "$PY" scripts/benchmark.py "${BENCH_STEPS[@]}" \
        --out "$WORK/bench/$row" "${BENCH_COMMON[@]}" "${overrides[@]}"
    st="$(status_of "$RC")"
    if [ "$st" = ok ] && [ ! -s "$WORK/bench/$row/benchmark.json" ]; then
        st="failed"; RC=1
    fi
    detail=""
    [ "$st" = ok ] || { detail="see benchmark.log"; bench_rc=1; }
    case "$spec" in *compile=true*) [ "$st" = failed ] && COMPILE_FAILED="$row" ;; esac
    record "benchmark/$row" "$st" "$RC" "$(elapsed "$tr")" "$detail"
    [ "$st" = ok ] || show_tail "$LOG" 15
done
record benchmark "$(status_of "$bench_rc")" "$bench_rc" "$(elapsed "$t0")" \
    "${#ROWS[@]} rows"
write_summary partial

# ------------------------------------------------------------------ 2b. clip step
t0="$(now)"
echo "######## clip step: scripts/benchmark_clip_step.py ${CLIP_ARGS[*]}" >>"$LOG"
run_logged "$LOG" "$CLIP_CAP" TERM "$PY" scripts/benchmark_clip_step.py "${CLIP_ARGS[@]}" \
    --out "$WORK/clip_step"
st="$(status_of "$RC")"
if [ -s "$WORK/clip_step/clip_step.json" ]; then
    cp "$WORK/clip_step/clip_step.json" "$OUTDIR/clip_step.json"
elif [ "$st" = ok ]; then
    st="failed"; RC=1
fi
record clip_step "$st" "$RC" "$(elapsed "$t0")" "$([ "$st" = ok ] || echo 'see benchmark.log')"
[ "$st" = ok ] || show_tail "$LOG" 15
write_summary partial

# ------------------------------------------------------------------ 3. tests
LOG="$OUTDIR/tests.log"
: >"$LOG"
t0="$(now)"
if [ "${#TEST_FILES[@]}" -eq 0 ]; then
    echo "no test files found" >>"$LOG"; RC=1
else
    TEST_ENV=("AFFECTLAB_TEST_DEVICE=$DEVICE")
    if [ "$DEVICE" = cuda ]; then
        # parallel workers and a per-test limit when the machine's pytest has the plugins
        if "$PY" -c 'import xdist' >/dev/null 2>&1; then
            TEST_ARGS+=(-n 8)
            TEST_ENV+=(OMP_NUM_THREADS=2)     # 8 workers × 2 threads on the 16 CPUs
        fi
        "$PY" -c 'import pytest_timeout' >/dev/null 2>&1 && TEST_ARGS+=(--timeout=60)
    fi
    echo "${TEST_FILES[*]} -m 'not slow' ${TEST_ARGS[*]:-}" >"$WORK/tests_selection.txt"
    # SIGINT first: pytest then prints what passed and failed before it stops
    # its own --basetemp: pytest then leaves other sessions' folders under /tmp alone
    run_logged "$LOG" "$TESTS_CAP" INT env "${TEST_ENV[@]}" "$PY" -m pytest -q \
        -p no:cacheprovider --basetemp "$WORK/pytest" -m "not slow" "${TEST_ARGS[@]+"${TEST_ARGS[@]}"}" "${TEST_FILES[@]}"
fi
st="$(status_of "$RC")"
record tests "$st" "$RC" "$(elapsed "$t0")" "$(grep -E '[0-9]+ (passed|failed|error)' "$LOG" | tail -n 1 | tr -d '=' | sed 's/^ *//;s/ *$//')"
[ "$st" = ok ] || show_tail "$LOG"
write_summary partial

# ------------------------------------------------------------------ 4. default job
LOG="$OUTDIR/default_job.log"
: >"$LOG"
t0="$(now)"
[ -e "$RUN_DIR" ] && RUN_DIR="$RUN_DIR.$(date +%Y%m%d_%H%M%S)"
run_logged "$LOG" "$TRAIN_CAP" TERM "$PY" train.py "${TRAIN_ARGS[@]}" \
    trainer.progress_bar=false "hydra.run.dir=$RUN_DIR"
st="$(status_of "$RC")"
if [ -s "$RUN_DIR/metrics.json" ]; then
    cp "$RUN_DIR/metrics.json" "$OUTDIR/metrics.json"
elif [ "$st" = ok ]; then
    st="failed"; RC=1
fi
record default_job "$st" "$RC" "$(elapsed "$t0")" "run dir $RUN_DIR"
[ "$st" = ok ] || show_tail "$LOG"

# ------------------------------------------------------------------ 5. summary
write_summary final || true
say "summary: $OUTDIR/gpu_check.json, $OUTDIR/gpu_check.md"
[ -f "$OUTDIR/gpu_check.md" ] && cat "$OUTDIR/gpu_check.md"
if awk -F'\t' '$1 !~ /\// && $2 != "ok" { bad = 1 } END { exit bad }' "$STEPS"; then
    say "all steps ok"
    exit 0
fi
say "some steps failed"
exit 1
