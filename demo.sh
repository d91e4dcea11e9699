#!/usr/bin/env bash
# The main job on embedded defaults, end to end, on a CPU-only machine:
# synthetic data -> SLAM-AGS pretraining (tiny preset) -> embeddings -> MIL (maxmil) -> export to a
# Triton model repository -> validation -> embedded Triton -> `slamctl infer --report` on
# the held-out bags -> summary, report and metrics -> server stopped.
# A second run reuses what exists. `./demo.sh --quick` is the short mode CI runs: its model
# of one epoch on 16 small bags decides nothing and is exported with --allow-degenerate.
set -euo pipefail
cd "$(dirname "$0")"
# The demo's data and budget (README, "Set-up"): 200 bags of 40 synthetic cells of 48 px,
# 20% abnormal cells in an abnormal bag, blasts easier to tell than the default (difficulty
# 0.15, not 0.6), a narrow ResNet18 (width 8) cropped to 40 px, maxmil without per-bag
# standardisation (at 20% it would read the label from the median's shift), top-8 cells.
BAGS=200; CELLS=40; WR=0.2; DIFFICULTY=0.15; IMAGE=48; CROP=40; WIDTH=8; EPOCHS=3; TOPK=8; OUT=demo; EXPORT_FLAGS=()
if [ "${1:-}" = "--quick" ]; then BAGS=16; CELLS=24; EPOCHS=1; OUT=demo-quick; EXPORT_FLAGS=(--allow-degenerate); fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/8 environment (.venv)"
scripts/venv.sh
S=.venv/bin/slamctl

step "2/8 synthetic data: $BAGS bags of ~$CELLS cells ($OUT/bags)"
$S data synth --out "$OUT/bags" --bags "$BAGS" --cells-per-bag "$CELLS" --witness-rate "$WR" \
  --difficulty "$DIFFICULTY" --image-size "$IMAGE"

step "3/8 SLAM-AGS pretraining, tiny preset ($OUT/run)"
$S train pretrain --bags "$OUT/bags" --out "$OUT/run" --method slam-ags --preset tiny --epochs "$EPOCHS" \
  --image-size "$IMAGE" --crop-size "$CROP" --width "$WIDTH" --resume

step "4/8 embeddings and the MIL aggregator"
$S train embed --encoder "$OUT/run/checkpoint.pt" --bags "$OUT/bags" --out "$OUT/run/emb"
# a mil.pt of an older slamctl (one that load_mil refuses) is trained again
if ! .venv/bin/python -c "import sys; from slamctl.training.mil import load_mil; load_mil(sys.argv[1])" \
    "$OUT/run/mil.pt" 2>/dev/null; then
  # 20% of an abnormal bag's cells are blasts here: the bag median moves with them, so the
  # per-bag standardisation (on by default, for 1% to 10%) is off (docs/results/mil-controls)
  $S train mil --embeddings "$OUT/run/emb" --labels "$OUT/bags/labels.csv" --out "$OUT/run" --no-standardise
else
  echo "reusing $OUT/run/mil.pt"
fi
$S evaluate --run "$OUT/run" --embeddings "$OUT/run/emb" --bags "$OUT/bags" --top-k "$TOPK"

step "5/8 export to a Triton model repository and validate it"
# reuse a repository this slamctl validates (one written by an older version is exported again)
if ! { [ -f "$OUT/model_repository/manifest.json" ] && $S export validate "$OUT/model_repository" >/dev/null 2>&1; }; then
  $S export --encoder "$OUT/run/checkpoint.pt" --aggregator "$OUT/run/mil.pt" --repository "$OUT/model_repository" \
    "${EXPORT_FLAGS[@]}"
else
  echo "reusing $OUT/model_repository"
fi
if $S export validate "$OUT/model_repository" --encoder "$OUT/run/checkpoint.pt" --aggregator "$OUT/run/mil.pt" \
    >"$OUT/validate.log" 2>&1; then
  tail -n 1 "$OUT/validate.log"
else
  cat "$OUT/validate.log"; exit 1
fi

step "6/8 embedded Triton server"
read -r GRPC HTTP METRICS < <(.venv/bin/python -c "from serving.launcher import free_ports; print(*free_ports(3))")
$S serve --repository "$OUT/model_repository" --grpc-port "$GRPC" --http-port "$HTTP" --metrics-port "$METRICS" \
  --log-file "$OUT/triton.log" >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  if $S health --url "127.0.0.1:$GRPC" >/dev/null 2>&1; then break; fi
  kill -0 $SERVER 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 1
done
$S health --url "127.0.0.1:$GRPC"

step "7/8 slamctl infer on the held-out bags, with the HTML report"
rm -rf "$OUT/heldout" && mkdir -p "$OUT/heldout"
awk -F, '{ sub(/\r$/, "") } NR > 1 && $2 == "test" { print $1 }' "$OUT/bags/split.csv" | while read -r bag; do
  ln -s "../bags/$bag" "$OUT/heldout/$bag"
done
$S infer "$OUT/heldout" --url "127.0.0.1:$GRPC" --out "$OUT/results" --report --top-k "$TOPK" --resume \
  --truth "$OUT/bags/cells.csv" --audit-log "$OUT/audit.jsonl"
$S audit verify "$OUT/audit.jsonl" "$OUT/results"

step "8/8 done"
echo "report:          $OUT/results/report.html"
echo "model card:      $(ls "$OUT"/model_repository/slam_model_card/*/MODEL_CARD.md | tail -n 1)"
echo "audit log:       $OUT/audit.jsonl"
echo "per-bag results: $OUT/results/"
echo "client metrics:  $OUT/results/metrics.prom"
.venv/bin/python -c "import urllib.request, sys; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())" \
  "http://127.0.0.1:$METRICS/metrics" "$OUT/server_metrics.prom"
echo "server metrics:  $OUT/server_metrics.prom (Triton's, scraped from http://127.0.0.1:$METRICS/metrics)"
.venv/bin/python - "$OUT" "$BAGS" "$CELLS" "$WR" "$DIFFICULTY" "$IMAGE" "$CROP" "$WIDTH" "$EPOCHS" <<'PY'
import csv, json, sys
from pathlib import Path

out, bags, cells, wr, difficulty, image, crop, width, epochs = sys.argv[1:]
s = json.loads(Path(out, "run", "eval", "summary.json").read_text())
labels = {r["bag_id"]: r["label"] for r in csv.DictReader(open(Path(out, "bags", "labels.csv")))}
served = [json.loads(p.read_text()) for p in Path(out, "results").glob("bag_*.json")]
right = sum((r["decision"]["label"] == "abnormal") == (labels[r["bag"]] == "1") for r in served)
print(f"\nsettings: {bags} bags of ~{cells} cells ({image} px, crop {crop}), witness rate {wr}, difficulty {difficulty}, "
      f"ResNet18 width {width}, {epochs} pretraining epochs, features {s['features']}, {s['aggregator']}")
print(f"held-out bags: {s['bags']}; bag AUC {s['auc']:.3f}; F1 {s['f1']:.3f} at the stored threshold "
      f"{s['threshold']:.3f}; top-{s['top_k']} retrieval {s['top_k_fraction_mean']:.3f} (chance "
      f"{s['top_k_chance_mean']:.3f}); encoder probe cell AUC {s['probe_auc']:.3f}"
      + ("; DEGENERATE MODEL" if s["degenerate"] else ""))
print(f"served decisions: {right} of {len(served)} held-out bags right")
PY
