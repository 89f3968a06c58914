#!/usr/bin/env bash
# End to end with the command line: the system built by experiments/build_baseline.py (own tables
# and LM from raw text) tuned with the built-in decoder and MERT on 1,000 sentences of
# newstest2012, then newstest2013 decoded and scored with sacrebleu; beside it the Moses
# baseline tables with the weights experiments/bench_tune.py found (paired bootstrap).
#
#   python experiments/build_baseline.py --config experiments/baseline.ini   # -> work/baseline
#   python experiments/bench_tune.py                                          # -> work/bench_tune
#   bash experiments/tune_and_test_baseline.sh                                # -> work/e2e
set -euo pipefail
cd "$(dirname "$0")/.."
R=.venv/bin/rescorer
B=work/baseline
E=work/e2e
S=$(realpath "${RESCORER_DATA:-../shared/data}")
mkdir -p $E
head -1000 $B/corpus/newstest2012.tc.en > $E/dev.en
head -1000 $B/corpus/newstest2012.tc.fr > $E/dev.fr
date
/usr/bin/time -v $R tune -q --ini $B/model/moses.ini --input $E/dev.en --ref $E/dev.fr --out-ini $E/own.tuned.ini \
  --nbest 100 --max-iter 5 --restarts 10 --overwrite 2> $E/tune.err
date
/usr/bin/time -v $R decode -q --ini $E/own.tuned.ini --input $B/corpus/newstest2013.tc.en --output $E/own.test.out \
  --overwrite 2> $E/decode_own.err
date
# the tuned ini of bench_tune names the tables it filtered to the dev set: point it at the whole ones
sed -e "s#path=[^ ]*/bench_tune/pt.gz#path=$S/moses-baseline/phrase-table.gz#" \
    -e "s#path=[^ ]*/bench_tune/reo.gz#path=$S/moses-baseline/reordering-table.wbe-msd-bidirectional-fe.gz#" \
    work/bench_tune/tuned.ini > $E/moses_tables.tuned.ini
/usr/bin/time -v $R decode -q --ini $E/moses_tables.tuned.ini --input $S/moses-baseline/newstest2013.tc.en \
  --output $E/mosestables.test.out --overwrite 2> $E/decode_moses.err
date
$R evaluate --hyp $E/own.test.out --ref $S/dev/newstest2013.fr --baseline $E/mosestables.test.out | tee $E/eval.txt
grep -h "Elapsed\|Maximum resident" $E/tune.err $E/decode_own.err $E/decode_moses.err
