#!/usr/bin/env bash
# The headline comparisons of issue 25, re-measured on the v2 QM9 dev benchmark
# (bench/refs_v2/qm9_dev_v2.sdf.gz: the v1 GFN2-xTB references plus the minima of an independent
# search, 2K conformers per molecule with K the v1 reference count). Whole set, 190 molecules, one
# thread, paired per molecule; results in bench/results/v2/, tables by bench/doc_tables.py.
#   OMP_NUM_THREADS=1 nohup bench/v2_suite.sh > /tmp/v2_suite.log 2>&1 &
# Steps already written are skipped (delete a JSON to rerun it). ~1 core-hour in all on a 2-core x86.
set -euo pipefail
cd "$(dirname "$0")/.."
R=bench/refs_v2/qm9_dev_v2.sdf.gz
D=bench/results/v2
mkdir -p "$D"
step() { local out=$1; shift; [ -s "$out" ] && { echo "have $out"; return 0; }; echo "=== $(date -u +%H:%M:%S) $*"; "$@" --json "$out"; }
# the default (ETKDG warm start) and plain ETKDGv3, each with and without MMFF94
step $D/qm9_warm_vs_etkdg.json python bench/eval_relax.py --ref $R --sample 190 --schedule warm --relax mmff \
  --etkdg-oversample 1
# from noise (quick, 44 evaluations) and 3x diverse ETKDGv3, each with and without MMFF94
step $D/qm9_quick_vs_etkdg3.json python bench/eval_relax.py --ref $R --sample 190 --schedule quick --relax mmff \
  --etkdg-oversample 3
# selections of 2x oversampled samples from noise, paired against 3x diverse ETKDGv3
step $D/qm9_noise_selection_os2.json python bench/noise_selection.py --ref $R --oversample 2 \
  --selections first,fps,mmff0.25,mmff0.5,mmffgreedy --paired $D/qm9_quick_vs_etkdg3.json
# the fast schedule from noise (the paper schedule costs 5,000 evaluations per conformer)
step $D/qm9_fast.json python bench/eval_dev.py --ref $R --schedule fast --no-etkdg --quiet \
  --paired $D/qm9_quick_vs_etkdg3.json
# the from-noise mode (--init random alone: schedule noise), paired against 3x diverse ETKDGv3
step $D/qm9_noise.json python bench/eval_dev.py --ref $R --init random --no-etkdg --quiet \
  --paired $D/qm9_quick_vs_etkdg3.json
# the drug model on the v2 drug dev set (when built) and GEOM-Drugs-10, with and without MMFF94
if [ -s bench/refs_v2/drugs_dev_v2.sdf.gz ]; then
  step $D/drugs_v2.json python bench/eval_drugs.py --bench both --threads 1 --quiet \
    --drugs-ref bench/refs_v2/drugs_dev_v2.sdf.gz
fi
# the drug-like weights from noise on both drug benchmarks (repel 1.0 and sigma_max 4 are those
# weights' sampler_defaults for schedule noise; named here so the command says what ran)
step $D/drugs_geom10_noise_repel.json python bench/eval_drugs.py --bench geom --schedule noise --set repel=1.0 \
  --set sigma_max=4.0 --threads 1 --quiet
if [ -s bench/refs_v2/drugs_dev_v2.sdf.gz ]; then
  step $D/drugs_dev_v2_noise_repel.json python bench/eval_drugs.py --bench drugs --schedule noise --set repel=1.0 \
    --set sigma_max=4.0 --threads 1 --quiet --drugs-ref bench/refs_v2/drugs_dev_v2.sdf.gz
fi
# issue 28: the paper's ConfGFDist ablation beside the paper schedule (5,000 evaluations each, same
# weights), on a seeded 30-molecule sample (the whole set would take ~4 core-hours); plain ETKDGv3 too
step $D/sweeps/qm9_s30_paper.json python bench/eval_dev.py --ref $R --sample 30 --schedule paper --quiet
step $D/sweeps/qm9_s30_dist.json python bench/eval_dev.py --ref $R --sample 30 --schedule dist --no-etkdg --quiet \
  --paired $D/sweeps/qm9_s30_paper.json
