#!/usr/bin/env bash
# One spotlake collection cycle, for cron: venv, credentials file, log file, lock-aware exit codes.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: spotlake-collect.sh [SPOTLAKE COLLECT AZURE OPTIONS...]

Runs `spotlake collect azure --quiet OPTIONS...` once, e.g.
  spotlake-collect.sh --store /var/lib/spotlake/data
  spotlake-collect.sh --store s3://my-spotlake-data/spotlake --credentials dynamodb --cloudwatch --slack

Environment (all optional):
  SPOTLAKE_VENV            virtualenv with spotlake installed (default: the repository's .venv)
  SPOTLAKE_ENV_FILE        KEY=VALUE file sourced first, e.g. AZURE_TENANT_ID, AZURE_CLIENT_ID,
                           AZURE_CLIENT_SECRET, AZURE_SUBSCRIPTION_IDS, SPOTLAKE_SLACK_WEBHOOK_URL;
                           must not be readable by group or others
                           (default: ~/.config/spotlake/env, skipped if absent)
  SPOTLAKE_LOG_DIR         where collect-YYYY-MM-DD.log files go (default: ~/.local/state/spotlake)
  SPOTLAKE_LOG_KEEP_DAYS   log files older than this are deleted (default: 14)
  SPOTLAKE_RUN_TIMEOUT     a run still going after this is stopped (default: 25m; GNU timeout syntax)

Exit codes: 0 done, already done, or skipped because another run holds the store's lock (75);
1 failed (or timed out); 2 bad usage/configuration; 3 committed but some SPS calls failed.
Everything goes to the log file. Only failures (1, 2, timeout) also print one line on stderr, so
cron mails you when something needs a look and stays quiet otherwise.
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  usage
  exit 0
fi

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SPOTLAKE_VENV:-$script_dir/../../.venv}"
env_file="${SPOTLAKE_ENV_FILE:-${XDG_CONFIG_HOME:-$HOME/.config}/spotlake/env}"
log_dir="${SPOTLAKE_LOG_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/spotlake}"
keep_days="${SPOTLAKE_LOG_KEEP_DAYS:-14}"
run_timeout="${SPOTLAKE_RUN_TIMEOUT:-25m}"

fail() { echo "spotlake-collect: $*" >&2; exit 2; }

[[ "$keep_days" =~ ^[0-9]+$ ]] || fail "SPOTLAKE_LOG_KEEP_DAYS must be a number of days, got '$keep_days'"
[[ -f "$venv/bin/activate" ]] || fail "no virtualenv at $venv (set SPOTLAKE_VENV)"

mkdir -p "$log_dir"
log_file="$log_dir/collect-$(date -u +%Y-%m-%d).log"
log() { printf '%s [%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$*" >>"$log_file"; }

if [[ -f "$env_file" ]]; then
  # The file holds the Azure client secret: refuse it if others can read it.
  if [[ -n "$(find "$env_file" -prune \( -perm -040 -o -perm -004 \) -print)" ]]; then
    log "refused $env_file: readable by group or others (chmod 600 it)"
    fail "$env_file is readable by group or others; run: chmod 600 '$env_file'"
  fi
  set -a
  # shellcheck disable=SC1090
  . "$env_file"
  set +a
fi

# venv activation scripts are not written for `set -u`.
set +u
# shellcheck disable=SC1091
. "$venv/bin/activate"
set -u

runner=()
if command -v timeout >/dev/null 2>&1; then
  # TERM first (a run killed before its commit leaves the previous state intact), KILL a minute later.
  runner=(timeout --kill-after=60 "$run_timeout")
fi

log "start: spotlake collect azure --quiet $*"
set +e
${runner[@]+"${runner[@]}"} spotlake collect azure --quiet "$@" >>"$log_file" 2>&1
code=$?
set -e

case "$code" in
  0)
    log "done" ;;
  75)
    # EX_TEMPFAIL: the previous run still holds the store's lock. Not an error: this run's count
    # is collected by the next run (a run that did not commit does not advance the rotation).
    log "skipped: another run holds the store's lock"
    code=0 ;;
  3)
    log "partial: committed, but some SPS calls failed (their pairs are retried by later runs)" ;;
  124 | 137)
    log "stopped: still running after $run_timeout"
    echo "spotlake-collect: run stopped after $run_timeout; see $log_file" >&2
    code=1 ;;
  2)
    log "usage or configuration error (exit 2)"
    echo "spotlake-collect: usage or configuration error; see $log_file" >&2 ;;
  *)
    log "failed (exit $code)"
    echo "spotlake-collect: run failed (exit $code); see $log_file" >&2 ;;
esac

find "$log_dir" -maxdepth 1 -name 'collect-*.log' -mtime +"$keep_days" -delete 2>/dev/null || true
exit "$code"
