#!/usr/bin/env bash
# The main job on the shared data: shortlists of the Moses baseline phrase table, a small
# RNN Encoder-Decoder trained for a few minutes, and the whole table scored with it.
# Stages whose output exists are skipped (an interrupted stage resumes), like experiment.perl.
#
#   make demo                       # or: bash experiments/demo.sh with .venv/bin on PATH
#   MINUTES=60 HIDDEN=1000 RANK=100 MAXOUT=500 make demo    # the paper's network, longer
set -euo pipefail
DATA=${RESCORER_DATA:-../shared/data}
WORK=${WORK:-work/demo}
TABLE=${TABLE:-$DATA/moses-baseline/phrase-table.gz}
MINUTES=${MINUTES:-6}
SIZE=${SIZE:-15000}
HIDDEN=${HIDDEN:-256}
RANK=${RANK:-100}
MAXOUT=${MAXOUT:-128}

if [ ! -f "$TABLE" ]; then
  echo "demo: no phrase table at $TABLE (set RESCORER_DATA to the shared data directory)" >&2
  exit 1
fi
mkdir -p "$WORK"
echo "== phrase table: $TABLE ($(du -h "$TABLE" | cut -f1))"

echo "== 1. shortlists ($SIZE words per language)"
if [ -f "$WORK/vocab/target.vocab" ]; then echo "   done before: $WORK/vocab"; else
  rescorer vocab --phrase-table "$TABLE" --size "$SIZE" --output "$WORK/vocab"
fi

echo "== 2. training for $MINUTES minutes (hidden $HIDDEN, rank $RANK, maxout $MAXOUT; Adam)"
if [ -f "$WORK/run/summary.json" ]; then echo "   done before: $WORK/run"; else
  resume=(); [ -f "$WORK/run/last.pt" ] && resume=(--resume)
  rescorer train --phrase-table "$TABLE" --vocab "$WORK/vocab" --output "$WORK/run" \
    --hidden "$HIDDEN" --rank "$RANK" --maxout-units "$MAXOUT" --optimizer adam --lr 3e-3 \
    --max-minutes "$MINUTES" --valid-every 500 --checkpoint-minutes 2 "${resume[@]}"
fi

echo "== 3. scoring every pair of the table"
OUT="$WORK/phrase-table.rnn.gz"
if [ -f "$OUT" ]; then echo "   done before: $OUT"; else
  resume=(); [ -f "$OUT.partial.json" ] && resume=(--resume)
  rescorer score --phrase-table "$TABLE" --model "$WORK/run/best.pt" --output "$OUT" --unk-count "${resume[@]}"
fi

echo "== result"
python - "$WORK" <<'PY'
import json, sys
s = json.load(open(f"{sys.argv[1]}/run/summary.json"))
print(f"   validation perplexity {s['best_valid_ppl']:.1f} per target symbol "
      f"(unigram baseline {s['baseline_ppl']:.1f}; {s['baseline_ppl'] / s['best_valid_ppl']:.2f}x lower) "
      f"after {s['updates']} updates, {s['minutes']:.1f} min")
PY
echo "   curves: $WORK/run/curves.png"
echo "   scored table: $OUT; first lines (two new columns: exp(log p(e|f)), exp(-#unknown words)):"
zcat "$OUT" | sed -n '100000,100004p'
