#!/usr/bin/env bash
# LibriSpeech recipe: corpus -> data dirs -> CMVN -> tokenizer (+ n-gram LM) -> (SSL) -> train -> average
# -> decode -> score and report. Without --librispeech-root it runs on the embedded synthetic
# corpus (eSpeak NG speech in the LibriSpeech layout), made in stage 0.
#
#   ./run.sh                                     # everything, conf/ctc_conformer_small.yaml
#   ./run.sh --stage 5 --stop-stage 5 --tag lr2  # one stage again
#   ./run.sh --config conf/ctc_conformer.yaml --librispeech-root /data/LibriSpeech
#
# Options: --stage N, --stop-stage M, --config FILE, --tag T, --librispeech-root DIR,
# --train-utts N and --eval-utts N (synthetic corpus sizes), --ssl-config FILE (stage 4),
# --avg-num N (epoch checkpoints with the lowest validation loss to average, default 1:
# the small configs stop after a few epochs of a still-falling loss, where averaging hurts), and
# trailing key=value config overrides for every stage that reads the config
# (e.g. train.max_epochs=2 tokenizer.vocab_size=128).
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=8
config=conf/ctc_conformer_small.yaml
tag=""
librispeech_root=""
train_utts=""
eval_utts=""
ssl_config=""
avg_num=1
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --librispeech-root) librispeech_root=$2; shift 2 ;;
    --train-utts) train_utts=$2; shift 2 ;;
    --eval-utts) eval_utts=$2; shift 2 ;;
    --ssl-config) ssl_config=$2; shift 2 ;;
    --avg-num) avg_num=$2; shift 2 ;;
    --*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) overrides+=("$1"); shift ;;
  esac
done
[ -f "$config" ] || { echo "run.sh: no config $config" >&2; exit 2; }

name=$(basename "$config" .yaml)
exp=exp/${name}${tag:+_$tag}
corpus=${librispeech_root:-corpus/synthetic}
data=data${librispeech_root:+_librispeech}
train_set=train-clean-100
sets=(dev-clean test-clean)
mkdir -p "$exp"
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') [stage $1] $2" >&2; }

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ -z "$librispeech_root" ]; then
    log 0 "synthetic corpus -> $corpus"
    python ../../tools/synth_librispeech --out "$corpus" ${train_utts:+--train-utts "$train_utts"} \
      ${eval_utts:+--dev-utts "$eval_utts" --test-utts "$eval_utts"}
  else
    log 0 "using LibriSpeech at $librispeech_root"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log 1 "data preparation -> $data"
  speechforge prepare --root "$corpus" --out "$data" --splits "$train_set" "${sets[@]}"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log 2 "global CMVN -> $exp/cmvn.json"
  speechforge cmvn --config "$config" --data "$data/$train_set" --out "$exp/cmvn.json" --max-utterances 1000 "${overrides[@]}"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log 3 "tokenizer -> $exp/tokenizer, n-gram LM (when lm.order > 0) -> $exp/lm"
  speechforge tokenizer --config "$config" --text "$data/$train_set/text" --exp-dir "$exp" "${overrides[@]}"
  speechforge lm --config "$config" --text "$data/$train_set/text" --exp-dir "$exp" "${overrides[@]}"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  if [ -n "$ssl_config" ]; then
    log 4 "self-supervised pretraining on the $train_set audio -> $exp/ssl"
    speechforge train --config "$ssl_config" --exp-dir "$exp/ssl" --resume \
      data.train="$data/$train_set" data.valid="$data/dev-clean" frontend.cmvn_stats="$PWD/$exp/cmvn.json" "${overrides[@]}"
  else
    log 4 "no --ssl-config: skipping self-supervised pretraining"
  fi
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  init=()  # start from the stage 4 model when there is one (the config's train.init_from says what to take)
  if [ -f "$exp/ssl/model_avg.pt" ] || [ -f "$exp/ssl/checkpoints/latest" ]; then init=(train.init_from.checkpoint="$exp/ssl"); fi
  log 5 "training -> $exp${init:+ from $exp/ssl}"
  speechforge train --config "$config" --exp-dir "$exp" --resume \
    data.train="$data/$train_set" data.valid="$data/dev-clean" "${init[@]}" "${overrides[@]}"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log 6 "checkpoint averaging -> $exp/model_avg.pt"
  speechforge average --exp-dir "$exp" --num "$avg_num" --by valid_loss
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log 7 "decoding ${sets[*]}"
  speechforge decode --exp-dir "$exp" --data "${sets[@]/#/$data/}"
fi

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  log 8 "scoring and report -> $exp/report.md"
  speechforge score --exp-dir "$exp"
  speechforge curve --exp-dir "$exp" --data "$data/dev-clean"
  speechforge report --exp-dir "$exp"
fi

echo "$exp"
