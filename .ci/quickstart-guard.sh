#!/usr/bin/env bash
# Newcomer guard: a fresh venv, the README quickstart's `pip install` (no extras), then its luisy
# commands as written (from an empty HOME, no cloud settings, /tmp/ mapped to a private dir).
# Fails when a command exits non-zero, a task fails, luigi's summary is missing from stdout, or a
# repeat of the first run or the second machine's run computes anything.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJ=$(pwd)
T=$(mktemp -d /tmp/quickstart.XXXX)
trap 'rm -rf "$T"' EXIT

# The commands of the bash blocks in the README's Quickstart section, in order.
mapfile -t cmds < <(awk '/^## /{ insec = ($0 ~ /^## Quickstart/) } insec && /^```bash/{inb=1; next}
                         /^```/{inb=0; next} insec && inb && NF {print}' README.md)
pips=() runs=()
for c in "${cmds[@]}"; do
  case "$c" in
    "pip install "*) pips+=("$c") ;;
    "luisy "*) runs+=("${c//\/tmp\//$T\/}") ;;
    *) echo "quickstart guard: unexpected README quickstart command: $c"; exit 1 ;;
  esac
done
[ ${#pips[@]} -ge 1 ] && [ ${#runs[@]} -ge 2 ] || {
  echo "quickstart guard: README quickstart needs a pip install and two luisy commands"; exit 1; }

python3 -m venv "$T/venv"
export PATH="$T/venv/bin:$PATH" HOME="$T/home" PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$HOME"
unset WORKING_DIR LUISY_REMOTE LUISY_LOCAL_REMOTE AZURE_STORAGE_CONNECTION_STRING LUISY_AZURE_ACCOUNT_NAME \
      LUISY_AZURE_STORAGE_KEY LUISY_AZURE_CONTAINER_NAME LUISY_AZURE_ENDPOINT LUISY_AZURE_SAS_URL \
      AZURE_STORAGE_SAS_URL LUISY_REQUIREMENTS_PATH PYTHONPATH
for c in "${pips[@]}"; do
  (eval "$c --quiet") >"$T/pip.log" 2>&1 || { echo "quickstart guard: '$c' failed: $(tail -1 "$T/pip.log")"; exit 1; }
done

n=0
run() {  # run one luisy command from $T; $2 = "fresh" (may compute) or "idle" (must not)
  n=$((n + 1))
  local rc=0
  (cd "$T" && eval "$1") >"$T/out$n.log" 2>"$T/err$n.log" </dev/null || rc=$?
  if [ $rc -ne 0 ]; then
    echo "quickstart guard: command $n exited $rc: $1"; tail -5 "$T/err$n.log"; exit 1
  fi
  if grep -qE '^\* [0-9]+ failed' "$T/out$n.log"; then
    echo "quickstart guard: a task failed in: $1"; exit 1
  fi
  grep -q 'This progress looks :)' "$T/out$n.log" || {
    echo "quickstart guard: luigi's ':)' summary is not on stdout of: $1"; exit 1; }
  if [ "$2" = idle ] && grep -q 'ran successfully' "$T/out$n.log"; then
    echo "quickstart guard: this run computed tasks but should not have: $1"; exit 1
  fi
}
run "${runs[0]}" fresh
run "${runs[0]}" idle      # "run it again and nothing runs"
for c in "${runs[@]:1}"; do
  run "$c" idle            # the second machine downloads instead of computing
done
echo "quickstart guard: bare 'pip install .' runs the README quickstart ($n luisy runs): ok"
