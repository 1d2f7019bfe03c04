# shellcheck shell=bash
# Sourced by scripts/docker-smoke.sh and scripts/cluster-smoke.sh: gets them
# a Docker engine and the base images they build from, the same way on a
# developer's machine, in CI and on machines without registry access.
#
#   docker_engine IMAGE...
#
# - An engine answers: it is used as it is. If an IMAGE is missing and
#   prepare.sh can be run (as root), it makes them.
# - None answers: prepare.sh (as root) starts one and makes the images; then
#   STARTED_ENGINE=1 and STOP_SCRIPT names the script that stops it, for the
#   caller's cleanup.
# - None can be had: `no_engine REASON`, the caller's own (a failure under
#   CI, a skip elsewhere).
# prepare.sh is DOCKER_PREPARE, or ../shared/docker/prepare.sh beside the
# repository. The caller defines ok, note, fail and no_engine, and sets ROOT
# (the repository) and WORK (a scratch directory).

docker_engine() {
  local p prepare="" image missing=0
  for p in "${DOCKER_PREPARE:-}" "$ROOT/../shared/docker/prepare.sh" /work/shared/docker/prepare.sh; do
    if [ -n "$p" ] && [ -x "$p" ]; then prepare=$p; break; fi
  done

  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    note "using the running Docker engine"
    for image in "$@"; do
      docker image inspect "$image" >/dev/null 2>&1 || missing=1
    done
    if [ "$missing" = 1 ] && [ -n "$prepare" ] && [ "$(id -u)" = 0 ]; then
      note "making the base images with $prepare"
      "$prepare" >"$WORK/prepare.log" 2>&1 || { cat "$WORK/prepare.log" >&2; fail "$prepare failed"; }
    fi
  elif [ -n "$prepare" ] && [ "$(id -u)" = 0 ]; then
    note "starting a Docker engine with $prepare"
    if "$prepare" >"$WORK/prepare.log" 2>&1 && docker info >/dev/null 2>&1; then
      # shellcheck disable=SC2034 # read by the caller's cleanup
      STARTED_ENGINE=1
      # shellcheck disable=SC2034
      STOP_SCRIPT="$(dirname "$prepare")/stop.sh"
    else
      cat "$WORK/prepare.log" >&2
      no_engine "$prepare failed"
    fi
  elif ! command -v docker >/dev/null; then
    no_engine "the docker command is not installed"
  else
    no_engine "docker info: $(docker info 2>&1 | tail -1)"
  fi
  ok "Docker engine $(docker version -f '{{.Server.Version}}' 2>/dev/null) answers"
}
